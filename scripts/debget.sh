#!/usr/bin/env bash
# Fetch Debian packages from one suite of the machine's own Debian archive and
# unpack them into a private folder, WITHOUT installing them (apt-get download +
# dpkg -x; nothing in dpkg's database or the system's files changes):
#
#   scripts/debget.sh SUITE DEST PACKAGE...     e.g. bookworm /var/lib/tfimg/x docker.io
#
# - DEST/root/ gets the packages' files (DEST/root/usr/bin/...), DEST/VERSIONS one
#   "package version" line each, DEST/debs/ the .deb files.
# - Idempotent and offline once done: if DEST/VERSIONS already names exactly these
#   packages, nothing is fetched (remove DEST to pick up a newer Debian revision).
# - Uses the system's apt lists when they know SUITE for a package (Debian 12 knows
#   bookworm; scripts/trixie.sh adds trixie); else a private sources list and lists
#   folder under DEST/apt/ (one `apt-get update` of that suite only), written from
#   the machine's Debian archive URI, never a hard-coded host.
# Needs apt-get and dpkg (Debian); not root. Exit 2 when a package cannot be found.
set -euo pipefail
say() { printf 'debget: %s\n' "$*" >&2; }
die() { say "$*"; exit 2; }
[ $# -ge 3 ] || die "usage: $0 SUITE DEST PACKAGE..."
SUITE=$1 DEST=$2
shift 2
if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then die "needs apt-get and dpkg (Debian)"; fi

want=$(printf '%s\n' "$@" | sort -u)
if [ -f "$DEST/VERSIONS" ] && [ "$(cut -d' ' -f1 "$DEST/VERSIONS" | sort -u)" = "$want" ] && [ -d "$DEST/root" ]; then
  exit 0
fi

# The version of PACKAGE in SUITE according to apt with options "$@" (empty if unknown).
version_in() {
  local pkg=$1; shift
  apt-cache "$@" madison "$pkg" 2>/dev/null |
    awk -F' *[|] *' -v s=" $SUITE/main " '(" " $3 " ") ~ s {print $2; exit}'
}

private=()
need_private=0
for pkg in "$@"; do [ -n "$(version_in "$pkg")" ] || need_private=1; done
if [ "$need_private" = 1 ]; then
  uri=$(grep -h -E '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
        grep -v -E 'security|-updates' | grep -o -E '(https?|file)://[^ ]+' | grep -m1 '/debian/*$' || true)
  [ -n "$uri" ] || die "cannot find this machine's Debian archive URI in /etc/apt/sources.list*"
  a=$DEST/apt
  mkdir -p "$a/lists/partial" "$a/cache/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $SUITE main" >"$a/sources.list"
  private=(-o "Dir::Etc::SourceList=$a/sources.list" -o Dir::Etc::SourceParts=/dev/null
           -o "Dir::State::Lists=$a/lists" -o "Dir::Cache=$a/cache" -o Dir::Etc::Preferences=/dev/null
           -o Dir::Etc::PreferencesParts=/dev/null)
  say "reading the $SUITE package lists from $uri (private lists in $a)"
  apt-get "${private[@]}" update -qq >/dev/null 2>&1 || die "apt-get update of $SUITE from $uri failed"
fi

rm -rf "$DEST/root" "$DEST/debs" "$DEST/VERSIONS"
mkdir -p "$DEST/debs"
: >"$DEST/VERSIONS.tmp"
for pkg in "$@"; do
  ver=$(version_in "$pkg" "${private[@]}")
  [ -n "$ver" ] || die "Debian $SUITE has no package $pkg"
  say "fetching $pkg $ver ($SUITE)"
  # apt-get download writes into the working directory; as root it warns that _apt
  # cannot write there, harmlessly (the download is then done as root).
  (cd "$DEST/debs"; apt-get "${private[@]}" download -qq "$pkg=$ver" 2>&1 | { grep -v 'unsandboxed' || true; } >&2)
  deb=$(find "$DEST/debs" -maxdepth 1 -name "${pkg}_*.deb" | head -n1)
  [ -n "$deb" ] || die "apt-get download $pkg=$ver gave no .deb"
  dpkg -x "$deb" "$DEST/root"
  echo "$pkg $ver" >>"$DEST/VERSIONS.tmp"
done
mv "$DEST/VERSIONS.tmp" "$DEST/VERSIONS"
