"""SSH (where enabled): keys only, a real client logs in on the loopback port, ssh-audit clean.

The runner mounts a throwaway public key at the spec's runtime keys path
(``ssh.authorized_keys_file``). Baked keys (``ssh.authorized_keys``) belong to
the team and tfimg never holds their private halves, so a variant with baked
keys only cannot be logged into by a check: that check says so and is skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from builder.check.suite.helpers import out, ssh
from builder.infra import runner

CONFIG = "/etc/tfimg/ssh/sshd_config"
WANT = {"passwordauthentication": "no", "kbdinteractiveauthentication": "no",
        "challengeresponseauthentication": "no", "permitrootlogin": "no",
        "pubkeyauthentication": "yes", "permitemptypasswords": "no"}


@pytest.fixture(scope="module")
def port(ctx, variant):
    p = ctx.ports.get(str(variant.ssh.port))
    if not p:
        pytest.fail(f"port {variant.ssh.port} is not published: {ctx.services_note or 'the container exposes no such port'}")
    return p


def test_sshd_config_keys_only(host, ctx, note):
    effective = {}
    for ln in out(host, f"/usr/sbin/sshd -T -f {CONFIG}", ctx.timeout).splitlines():
        key, _, value = ln.partition(" ")
        effective[key.lower()] = value.strip()
    wrong = [f"{k} {effective.get(k)} (want {v})" for k, v in WANT.items() if k in effective and effective[k] != v]
    absent = [k for k in ("passwordauthentication", "permitrootlogin", "pubkeyauthentication") if k not in effective]
    assert not wrong and not absent, f"sshd -T: {'; '.join(wrong + [f'{k} not reported' for k in absent])}"
    note("sshd -T: " + ", ".join(f"{k} {effective[k]}" for k in WANT if k in effective))


def test_login_with_key(ctx, variant, port, note):
    if not ctx.ssh_key:
        pytest.skip(f"cannot run: {ctx.ssh_key_note}")
    res = ssh(port, variant.user.name, "-i", ctx.ssh_key, "-o", "IdentitiesOnly=yes", command="id")
    assert res.returncode == 0, f"ssh login with the mounted key failed ({res.returncode}): {res.stderr.strip()[-400:]}"
    assert f"uid={variant.user.uid}({variant.user.name})" in res.stdout, f"`id` over ssh said: {res.stdout.strip()}"
    note(f"ssh -p {port} {variant.user.name}@127.0.0.1 id -> {res.stdout.strip()}")


def test_wrong_key_refused(ctx, variant, port, note):
    res = ssh(port, variant.user.name, "-i", ctx.wrong_key, "-o", "IdentitiesOnly=yes", command="id")
    assert res.returncode != 0, f"a key that is not authorized logged in: {res.stdout.strip()}"
    assert "Permission denied" in res.stderr, f"refused, but not by authentication: {res.stderr.strip()[-300:]}"
    note("an unauthorized key is refused")


def test_password_refused(variant, port, note):
    res = ssh(port, variant.user.name, "-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=0",
              "-o", "PreferredAuthentications=password,keyboard-interactive", command="id")
    assert res.returncode != 0, "logged in without a key"
    m = re.search(r"Permission denied \(([^)]*)\)", res.stderr)
    assert m, f"no authentication refusal: {res.stderr.strip()[-300:]}"
    offered = m.group(1).split(",")
    assert not {"password", "keyboard-interactive"} & set(offered), f"sshd offers {', '.join(offered)}"
    note(f"password refused; sshd offers only {', '.join(offered)}")


# ssh-audit's exit status, by its documented meaning (ssh_audit/exitcodes.py, 2.x and 3.x alike);
# anything else (-1, seen as 255) is an unknown error.
AUDIT_EXIT = {0: "good", 1: "connection error", 2: "warnings", 3: "failures"}
UNKNOWN_ALGORITHM = "using unknown algorithm"   # ssh-audit's JSON says this at fail level; its exit is a warning


def ssh_audit_path() -> str | None:
    """The ssh-audit beside this Python first (tfimg's ``checks`` extra pins it), then one on PATH."""
    beside = Path(sys.executable).parent / "ssh-audit"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("ssh-audit")


def _names(entries: list[Any] | None) -> set[str]:
    """Algorithm names of a JSON section: entries are ``{"algorithm": ...}`` (3.x) or names (2.x)."""
    return {e.get("algorithm", "") if isinstance(e, dict) else str(e) for e in entries or []}


def terrapin(audit: dict) -> str | None:
    """Why the offered algorithms are open to Terrapin (CVE-2023-48795), or None."""
    if "kex-strict-s-v00@openssh.com" in _names(audit.get("kex")):
        return None
    enc, macs = _names(audit.get("enc")), _names(audit.get("mac"))
    if "chacha20-poly1305@openssh.com" in enc:
        return "chacha20-poly1305 without strict key exchange"
    if any(c.endswith("-cbc") for c in enc) and any(m.endswith("-etm@openssh.com") for m in macs):
        return "CBC ciphers with EtM MACs without strict key exchange"
    return None


def audit_findings(audit: dict) -> dict[str, list[str]]:
    """The fail and warn notes of ssh-audit's JSON (3.x), one line per algorithm and note."""
    found: dict[str, list[str]] = {"fail": [], "warn": []}
    for section in ("kex", "key", "enc", "mac"):
        for entry in audit.get(section) or []:
            if not isinstance(entry, dict):
                continue
            notes = entry.get("notes") or {}
            for level in ("fail", "warn"):
                for text in notes.get(level) or []:
                    kind = "warn" if text == UNKNOWN_ALGORITHM else level
                    found[kind].append(f"({section}) {entry.get('algorithm')}: {text}")
    for note in audit.get("additional_notes") or []:
        found["warn"].append(f"note: {note}")
    return found


def test_ssh_audit(port, record, note):
    tool = ssh_audit_path()
    if not tool:
        pytest.skip("cannot run: ssh-audit is not installed (pip install 'tfimg[checks]')")
    res = runner.run([tool, "-j", "-t", "20", "-p", str(port), "127.0.0.1"], check=False, timeout=180)
    code = res.returncode
    meaning = AUDIT_EXIT.get(code, "unknown error")
    helptext = runner.run([tool, "-h"], check=False, timeout=30)
    version = re.search(r"ssh-audit v[\w.]+", helptext.stdout + helptext.stderr)
    assert code in (0, 2, 3), (f"ssh-audit could not audit 127.0.0.1:{port} (exit {code}: {meaning}): "
                               f"{(res.stderr or res.stdout).strip()[-400:]}")
    try:
        audit = json.loads(res.stdout)
    except ValueError:
        pytest.fail(f"ssh-audit -j printed no JSON (exit {code}): {res.stdout.strip()[-300:]}")
    findings = audit_findings(audit)
    why = terrapin(audit)
    if why:
        findings["fail"].append(f"Terrapin (CVE-2023-48795): {why}")
    if code == 3 and not findings["fail"]:
        findings["fail"].append("ssh-audit exited 3 (failures) without a failure in its JSON")
    if code == 2 and not findings["warn"]:
        findings["warn"].append("ssh-audit exited 2 (warnings) without a warning in its JSON")
    record("ssh_audit", {"tool": version.group(0) if version else "ssh-audit", "path": tool, "exit": code,
                         "meaning": meaning, "banner": (audit.get("banner") or {}).get("raw"), **findings})
    assert not findings["fail"], f"ssh-audit: exit {code} ({meaning}): " + "; ".join(findings["fail"])
    note(f"{version.group(0) if version else tool}: exit {code} ({meaning}); no failures; "
         f"{len(findings['warn'])} warning(s) recorded" +
         (f": {'; '.join(findings['warn'])}" if findings["warn"] else ""))
