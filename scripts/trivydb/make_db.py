#!/usr/bin/env python3
"""Build a small Trivy vulnerability DB (trivy-db schema 2) from advisories.yaml.

    make_db.py [--advisories FILE] --out DIR [--edition first|later] [--schema-version N]
               [--corrupt] [--valid-for HOURS] [--updated-at ISO8601]
    make_db.py [--edition first|later] --print-entries | --print-expected standin|bert

Writes DIR/db/trivy.db (bbolt) and DIR/db/metadata.json, the two files Trivy
keeps in <cache-dir>/db/ and finds at the root of the tar.gz layer of the
`trivy-db:2` OCI artifact (push.py publishes them that way).

The buckets are those Trivy 0.76 reads (aquasecurity/trivy-db pkg/db,
pkg/types, pkg/vulnsrc/{debian,ghsa,osv,bucket}; the optimised DB that aquasec
publishes has no vulnerability-detail bucket):

  data-source                       key: platform bucket name, value {ID, Name, URL}
  debian 11 / <source package>      key: CVE id, value {FixedVersion, VendorIDs, Severity, Status}
  pip::GitHub Security Advisory pip / <PEP 503 name>
                                    key: CVE id (GHSA id when there is no CVE),
                                    value {VendorIDs, PatchedVersions, VulnerableVersions}
  vulnerability                     key: CVE id, value {Title, Description, Severity,
                                    CweIDs, VendorSeverity, CVSS, References, ...}

The bbolt file itself is written by the small Go program main.go (bbolt has no
Python writer), built once with Debian's golang-go and
golang-github-coreos-bbolt-dev into build/tools/trivydb-<hash of main.go>.

Editions: the first (default) leaves out the advisories marked `edition: later`;
the later edition has every advisory (`tfimg watch` finds what it adds, without a rebuild).

Failure-test DBs: --schema-version 1 writes an old schema in metadata.json;
--corrupt writes garbage bytes instead of a bbolt file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
TOOLS = Path(os.environ.get("TFIMG_TOOLS_DIR", REPO / "build" / "tools"))

SEVERITIES = ["UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"]          # trivy-db types.Severity
STATUSES = ["unknown", "not_affected", "affected", "fixed", "under_investigation",
            "will_not_fix", "fix_deferred", "end_of_life"]              # trivy-db types.Status

DEBIAN_SOURCE = {"ID": "debian", "Name": "Debian Security Tracker",
                 "URL": "https://salsa.debian.org/security-tracker-team/security-tracker"}
PIP_BUCKET = "pip::GitHub Security Advisory pip"                        # bucket.NewPyPI(ghsa source)
PIP_SOURCE = {"ID": "ghsa", "Name": "GitHub Security Advisory pip",
              "URL": "https://github.com/advisories?query=type%3Areviewed+ecosystem%3Apip"}


def die(msg: str) -> None:
    print(f"make_db: {msg}", file=sys.stderr)
    sys.exit(2)


def pep503(name: str) -> str:
    """trivy-db vulnerability.NormalizePkgName for pip: lower case, '_' -> '-'."""
    return name.lower().replace("_", "-")


def severity_int(name: str, where: str) -> int:
    try:
        return SEVERITIES.index(str(name).upper())
    except ValueError:
        die(f"{where}: unknown severity {name!r} (one of {', '.join(SEVERITIES)})")
        raise


def rfc3339(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        value = value.astimezone(dt.timezone.utc) if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dt.date):
        return f"{value.isoformat()}T00:00:00Z"
    return str(value)


EDITIONS = ("first", "later")


def advisories(doc: dict, edition: str = "first") -> list[dict]:
    """The advisories of one edition: the first leaves out those marked `edition: later`."""
    out = []
    for i, adv in enumerate(doc.get("advisories") or []):
        marked = adv.get("edition", "first")
        if marked not in EDITIONS:
            die(f"advisories[{i}] ({adv.get('id')}): edition must be one of {', '.join(EDITIONS)}, not {marked!r}")
        if edition == "later" or marked == "first":
            out.append(adv)
    return out


def entries(doc: dict, edition: str = "first") -> list[dict]:
    """The (bucket path, key, value) entries for the advisories of one edition in doc."""
    out: list[dict] = []
    platforms: dict[str, dict] = {}
    vulns: dict[str, dict] = {}
    for i, adv in enumerate(advisories(doc, edition)):
        vid = adv.get("id")
        where = f"advisories[{i}] ({vid})"
        if not vid or not re.fullmatch(r"(CVE-\d{4}-\d{4,}|GHSA(-[23456789cfghjmpqrvwx]{4}){3})", vid):
            die(f"{where}: id must be a CVE or GHSA id")
        eco = adv.get("ecosystem")
        pkg = adv.get("package")
        if not pkg:
            die(f"{where}: package is required")
        if eco == "debian":
            release = str(adv.get("release", "11"))
            platform = f"debian {release}"
            platforms[platform] = DEBIAN_SOURCE
            value: dict = {}
            if adv.get("fixed_version"):
                value["FixedVersion"] = str(adv["fixed_version"])
            else:
                status = adv.get("status", "affected")
                if status not in STATUSES:
                    die(f"{where}: unknown status {status!r}")
                value["Status"] = STATUSES.index(status)
            if adv.get("vendor_ids"):
                value["VendorIDs"] = list(adv["vendor_ids"])
            if adv.get("debian_severity"):
                # per-package severity (trivy-db: from the tracker's urgency)
                value["Severity"] = severity_int(adv["debian_severity"], where)
            out.append({"bucket": [platform, pkg], "key": vid, "value": value})
        elif eco == "pip":
            platforms[PIP_BUCKET] = PIP_SOURCE
            if not adv.get("vulnerable_versions"):
                die(f"{where}: vulnerable_versions is required for pip advisories")
            value = {"VulnerableVersions": [str(v) for v in adv["vulnerable_versions"]]}
            if adv.get("patched_versions"):
                value["PatchedVersions"] = [str(v) for v in adv["patched_versions"]]
            if adv.get("vendor_ids"):
                value["VendorIDs"] = list(adv["vendor_ids"])
            out.append({"bucket": [PIP_BUCKET, pep503(pkg)], "key": vid, "value": value})
        else:
            die(f"{where}: ecosystem must be debian or pip, not {eco!r}")

        vuln = vulns.setdefault(vid, {})
        for field, key in (("title", "Title"), ("description", "Description")):
            if adv.get(field):
                vuln[key] = str(adv[field]).strip()
        if adv.get("severity"):
            severity_int(adv["severity"], where)
            vuln["Severity"] = str(adv["severity"]).upper()
        if adv.get("cwe_ids"):
            vuln["CweIDs"] = list(adv["cwe_ids"])
        if adv.get("vendor_severity"):
            vuln.setdefault("VendorSeverity", {}).update(
                {src: severity_int(sev, where) for src, sev in adv["vendor_severity"].items()})
        if adv.get("cvss"):
            vuln.setdefault("CVSS", {}).update(adv["cvss"])
        refs = list(adv.get("references") or [])
        if adv.get("source") and adv["source"] not in refs:
            refs.insert(0, adv["source"])
        if refs:
            vuln["References"] = sorted(set(vuln.get("References", [])) | set(refs))
        for field, key in (("published", "PublishedDate"), ("modified", "LastModifiedDate")):
            if adv.get(field):
                vuln[key] = rfc3339(adv[field])

    for platform, source in sorted(platforms.items()):
        out.append({"bucket": ["data-source"], "key": platform, "value": source})
    for vid, vuln in sorted(vulns.items()):
        out.append({"bucket": ["vulnerability"], "key": vid, "value": vuln})
    return out


def go_tool() -> Path:
    """The Go bbolt writer, built once per version of main.go."""
    src = HERE / "main.go"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    binary = TOOLS / f"trivydb-{digest}"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if not go or not Path("/usr/share/gocode/src/go.etcd.io/bbolt").is_dir():
        die("building the DB writer needs Go and bbolt: "
            "apt-get install -y golang-go golang-github-coreos-bbolt-dev")
    TOOLS.mkdir(parents=True, exist_ok=True)
    gopath = TOOLS / "gopath"
    gopath.mkdir(exist_ok=True)
    env = {**os.environ, "GO111MODULE": "off", "GOFLAGS": "", "CGO_ENABLED": "0",
           "GOPATH": f"{gopath}:/usr/share/gocode",
           "GOCACHE": str(TOOLS / "go-build-cache")}
    tmp = binary.with_suffix(".tmp")
    print(f"make_db: building {binary.name} (once)", file=sys.stderr)
    subprocess.run([go, "build", "-trimpath", "-o", str(tmp), str(src)], env=env, check=True)
    tmp.replace(binary)
    return binary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--advisories", type=Path, default=HERE / "advisories.yaml")
    ap.add_argument("--out", type=Path, help="output dir; the DB goes to OUT/db/")
    ap.add_argument("--schema-version", type=int, default=2,
                    help="Version in metadata.json (Trivy 0.76 needs 2; 1 makes an 'old schema' DB)")
    ap.add_argument("--corrupt", action="store_true", help="write garbage bytes as trivy.db")
    ap.add_argument("--updated-at", help="UpdatedAt (RFC 3339; default: now)")
    ap.add_argument("--valid-for", type=float, default=24.0,
                    help="hours from UpdatedAt to NextUpdate (default 24, as aquasec's DB)")
    ap.add_argument("--edition", choices=EDITIONS, default="first",
                    help="first (default): without the advisories marked `edition: later`; later: all of them")
    ap.add_argument("--print-entries", action="store_true", help="print the JSON lines and exit")
    ap.add_argument("--print-expected", metavar="IMAGE", choices=["standin", "bert"],
                    help="print {match: [[id, package]...], control: [...]} for a scan of IMAGE and exit")
    args = ap.parse_args()

    doc = yaml.safe_load(args.advisories.read_text())
    if args.print_expected:
        out: dict[str, list] = {"match": [], "control": []}
        for adv in advisories(doc, args.edition):
            if adv.get("image", "standin") in ("standin", args.print_expected):
                out[adv.get("expect", "match")].append([adv["id"], adv["package"]])
        print(json.dumps(out, indent=1))
        return
    lines = "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries(doc, args.edition))
    if args.print_entries:
        sys.stdout.write(lines)
        return
    if not args.out:
        die("--out is required")

    updated = (dt.datetime.fromisoformat(args.updated_at.replace("Z", "+00:00"))
               if args.updated_at else dt.datetime.now(dt.timezone.utc).replace(microsecond=0))
    updated = updated.astimezone(dt.timezone.utc)
    meta = {"Version": args.schema_version,
            "NextUpdate": rfc3339(updated + dt.timedelta(hours=args.valid_for)),
            "UpdatedAt": rfc3339(updated),
            "DownloadedAt": "0001-01-01T00:00:00Z"}

    db_dir = args.out / "db"
    db_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=db_dir) as tmp:
        tmp_db = Path(tmp) / "trivy.db"
        if args.corrupt:
            tmp_db.write_bytes(b"this is not a bbolt database\n" * 2048)
        else:
            subprocess.run([str(go_tool()), str(tmp_db)], input=lines.encode(), check=True)
        (Path(tmp) / "metadata.json").write_text(json.dumps(meta) + "\n")
        os.replace(tmp_db, db_dir / "trivy.db")
        os.replace(Path(tmp) / "metadata.json", db_dir / "metadata.json")
    print(f"make_db: wrote {db_dir}/trivy.db ({lines.count(chr(10))} entries"
          f"{', CORRUPT' if args.corrupt else ''}) and metadata.json (Version {args.schema_version})",
          file=sys.stderr)
    print(db_dir)


if __name__ == "__main__":
    main()
