"""The image itself: no setuid files added, no keys baked in, no credentials in ENV, metadata.

Files are looked at in a container whose entrypoint never ran (``image_host``),
so a host key the services made at start is not mistaken for a baked one;
the base image (``base_host``) tells what the variant's layers added.
"""

from __future__ import annotations

import re

import pytest

from builder.check.suite.helpers import lines, out
from builder.spec.loader import CREDENTIAL_NAME

SUID = "find / -xdev -perm /6000 -type f 2>/dev/null | sort"
# Bounded: one file system (-xdev: no /proc, /sys, /dev or mounts), files under 1 MiB (a PEM key is a few
# KB; this skips the multi-GB libraries of an NGC base), text files only (-I), first match per file (-m1).
HOST_KEYS = "find / -xdev -name 'ssh_host_*' 2>/dev/null | sort"
PRIVATE = ("find / -xdev -type f -size -1024k -print0 2>/dev/null | xargs -0 -r grep -lIs -m1 -E "
           "-e '^-----BEGIN ([A-Z0-9]+ )?PRIVATE KEY-----' | sort | while read -r f; do printf '%s %s\\n' \"$(sha256sum < \"$f\" | cut -c1-64)\" \"$f\"; done")
OCI = ("title", "description", "created", "revision", "base.name", "base.digest")


def test_no_setuid_added(image_host, base_run, ctx, note):
    image = set(lines(out(image_host, SUID, ctx.timeout)))
    if not ctx.base_container:
        pytest.skip(f"cannot run: no base image to compare with ({ctx.base_note or 'unknown base'})")
    rc, text = base_run(SUID, ctx.timeout)
    assert rc == 0, f"`{SUID}` exited {rc} in the base"
    base = set(lines(text))
    added = sorted(image - base)
    assert not added, f"setuid/setgid files added by the variant's layers: {', '.join(added)}"
    note(f"{len(image)} setuid/setgid files, all from the base ({ctx.base_ref})")


def test_no_host_keys(image_host, ctx, note):
    found = lines(out(image_host, HOST_KEYS, ctx.timeout))
    assert not found, f"SSH host keys are baked into the image: {', '.join(found)} (they must be made at first start)"
    note("no ssh_host_* files in the image")


def test_no_private_keys(image_host, ctx, base_run, note):
    hits = {p: h for p, h in _key_files(out(image_host, PRIVATE, 300)).items()
            if not p.rpartition("/")[2].startswith("ssh_host_")}   # host keys: no_host_keys reports them
    if ctx.base_container:
        rc, text = base_run(PRIVATE, 300)
        assert rc == 0, f"the private key scan exited {rc} in the base"
        base = _key_files(text)
        added = sorted(p for p, h in hits.items() if base.get(p) != h)
        where = f"{len(hits) - len(added)} in the base's own files ignored"
    else:
        added = sorted(hits)
        where = f"whole image scanned: {ctx.base_note}"
    assert not added, f"private keys in the image: {', '.join(added)}"
    note(f"no private key added ({where})")


def _key_files(text: str) -> dict[str, str]:
    """path -> sha256 of the files the PRIVATE scan found."""
    return {path: digest for digest, path in (ln.split(" ", 1) for ln in lines(text))}


def test_no_credential_env(ctx, note):
    names = [e.split("=", 1)[0] for e in ctx.image_config.get("Env") or []]
    bad = [n for n in names if CREDENTIAL_NAME.search(n)]
    assert not bad, f"credential-looking variables are baked into the image's ENV: {', '.join(bad)}"
    note(f"{len(names)} ENV names, none credential-looking")


def test_oci_labels(ctx, variant, note):
    labels = ctx.image_config.get("Labels") or {}
    missing = [k for k in OCI if not labels.get(f"org.opencontainers.image.{k}")]
    assert not missing, "OCI labels missing: " + ", ".join(f"org.opencontainers.image.{k}" for k in missing)
    want = {"org.opencontainers.image.title": variant.name, "io.tfimg.variant": variant.name,
            "io.tfimg.profile": variant.base.profile, "io.tfimg.spec-hash": ctx.spec_hash,
            "io.tfimg.user": f"{variant.user.name}:{variant.user.uid}:{variant.user.gid}"}
    if variant.source:
        want["org.opencontainers.image.source"] = variant.source
    wrong = [f"{k}={labels.get(k)!r} (expected {v!r})" for k, v in want.items() if labels.get(k) != v]
    assert not wrong, "labels do not match the spec: " + "; ".join(wrong)
    created = labels["org.opencontainers.image.created"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", created), f"created label '{created}' is not RFC 3339"
    note(f"{len(labels)} labels; spec hash {ctx.spec_hash[:19]}")


def test_user_numeric(ctx, note):
    user = ctx.image_config.get("User") or ""
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER is '{user or '(unset: root)'}', not numeric uid:gid"
    note(f"USER {user}")


def test_exposed_ports(ctx, variant, note):
    exposed = {int(p.split("/")[0]) for p in (ctx.image_config.get("ExposedPorts") or {})}
    from_base = {int(p.split("/")[0]) for p in ((ctx.base_config or {}).get("ExposedPorts") or {})}
    want = set(variant.exposed_ports())
    missing, extra = sorted(want - exposed), sorted(exposed - want - from_base)
    assert not missing and not extra, f"EXPOSE {sorted(exposed)}; the spec wants {sorted(want)}" + \
        (f" (missing {missing})" if missing else "") + (f" (not in the spec or base {extra})" if extra else "")
    note(f"EXPOSE {' '.join(map(str, sorted(exposed)))}")
