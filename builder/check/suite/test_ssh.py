"""SSH (where enabled): keys only, a real client logs in on the loopback port, ssh-audit clean.

The runner mounts a throwaway public key at the spec's runtime keys path
(``ssh.authorized_keys_file``). Baked keys (``ssh.authorized_keys``) belong to
the team and tfimg never holds their private halves, so a variant with baked
keys only cannot be logged into by a check: that check says so and is skipped.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from builder.check.suite.helpers import out, ssh
from builder.infra import runner

CONFIG = "/etc/tfimg/ssh/sshd_config"
WANT = {"passwordauthentication": "no", "kbdinteractiveauthentication": "no",
        "challengeresponseauthentication": "no", "permitrootlogin": "no",
        "pubkeyauthentication": "yes", "permitemptypasswords": "no"}
AUDIT_LINE = re.compile(r"^(?:\((\w+)\)\s+(\S+)\s+)?(?:--|`-)\s*\[(fail|warn)\]\s+(.*)$")


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


def terrapin(audit: dict) -> str | None:
    """Why the offered algorithms are open to Terrapin (CVE-2023-48795), or None."""
    kex = {k.get("algorithm") for k in audit.get("kex") or []}
    if "kex-strict-s-v00@openssh.com" in kex:
        return None
    enc, macs = set(audit.get("enc") or []), set(audit.get("mac") or [])
    if "chacha20-poly1305@openssh.com" in enc:
        return "chacha20-poly1305 without strict key exchange"
    if any(c.endswith("-cbc") for c in enc) and any(m.endswith("-etm@openssh.com") for m in macs):
        return "CBC ciphers with EtM MACs without strict key exchange"
    return None


def test_ssh_audit(port, record, note):
    if not shutil.which("ssh-audit"):
        pytest.skip("cannot run: ssh-audit is not on PATH (apt-get install ssh-audit)")
    text = runner.run(["ssh-audit", "-n", "-t", "20", "-p", str(port), "127.0.0.1"], check=False, timeout=90)
    data = runner.run(["ssh-audit", "-j", "-t", "20", "-p", str(port), "127.0.0.1"], check=False, timeout=90)
    findings: dict[str, list[str]] = {"fail": [], "warn": []}
    algo = ""
    for ln in text.stdout.splitlines():
        m = AUDIT_LINE.match(ln.strip())
        if m:
            algo = m.group(2) or algo
            findings[m.group(3)].append(f"({m.group(1) or '-'}) {algo}: {m.group(4).strip()}")
    audit = json.loads(data.stdout) if data.stdout.strip().startswith("{") else {}
    why = terrapin(audit)
    if why:
        findings["fail"].append(f"Terrapin (CVE-2023-48795): {why}")
    helptext = runner.run(["ssh-audit", "-h"], check=False, timeout=30)
    version = re.search(r"ssh-audit v[\w.]+", helptext.stdout + helptext.stderr)
    record("ssh_audit", {"tool": version.group(0) if version else "ssh-audit", "banner": (audit.get("banner") or {}).get("raw"), **findings})
    assert text.stdout.strip(), f"ssh-audit printed nothing ({text.returncode}): {text.stderr.strip()[-300:]}"
    assert not findings["fail"], "ssh-audit failures: " + "; ".join(findings["fail"])
    note(f"no failures; {len(findings['warn'])} warning(s) recorded" +
         (f": {'; '.join(findings['warn'])}" if findings["warn"] else ""))
