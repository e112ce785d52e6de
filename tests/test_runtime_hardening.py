"""The images run under a restricted runtime profile, and SSH and Jupyter logins still work there.

The profile (docs/running.md, "Running hardened"): every capability dropped,
``no-new-privileges``, a read-only root filesystem, and writable tmpfs only
where the services must write: the user's home (Jupyter's runtime files,
kernels' connection files) and ``/var/lib/tfimg/ssh`` (sshd's host key, made
at first start, and its pid file). sshd runs as the user, so it needs no
capability: the test reads the effective and bounding sets (all zero) over SSH.
"""

from __future__ import annotations

import time
from pathlib import Path

import docker
import pytest
import requests

from builder.check import stage as testrun
from builder.check.suite.helpers import ssh
from builder.infra.engine import Engine
from builder.spec import loader as spec
from builder.spec import passwords

VARIANTS = Path(__file__).resolve().parent.parent / "variants"
PASSWORD = "hardened-Pa55-word"


def hardened(v: spec.Variant) -> dict:
    """The Docker SDK form of the flags in docs/running.md, with the minimal tmpfs set that works."""
    owner = f"uid={v.user.uid},gid={v.user.gid}"
    return {"cap_drop": ["ALL"], "security_opt": ["no-new-privileges"], "read_only": True,
            "tmpfs": {v.user.home_dir: f"{owner},mode=0755", "/var/lib/tfimg/ssh": f"{owner},mode=0700"}}


def _jupyter_login(port: int) -> tuple[requests.Session, requests.Response, str]:
    s = requests.Session()
    deadline = time.monotonic() + 90
    while True:
        try:
            if s.get(f"http://127.0.0.1:{port}/login", timeout=10).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, "Jupyter did not answer /login within 90 s"
        time.sleep(1)
    xsrf = s.cookies.get("_xsrf") or ""
    res = s.post(f"http://127.0.0.1:{port}/login", data={"password": PASSWORD, "_xsrf": xsrf},
                 allow_redirects=False, timeout=30)
    return s, res, xsrf


@pytest.mark.slow
def test_services_variant_runs_hardened_and_logins_work(built, tmp_path: Path, ssh_client: str) -> None:
    loaded = spec.load(VARIANTS / "bert.yaml")
    v = loaded.spec
    assert v.ssh.enabled and v.jupyter.enabled
    image_id = built("bert").image_id
    volumes, key, note, _ = testrun._keys(tmp_path, v)
    assert key, note
    extra = {**hardened(v), "volumes": volumes}
    env = {v.jupyter.password_hash_env: passwords.hash_password(PASSWORD)}
    with Engine.from_env().running(image_id, ports=[v.ssh.port, v.jupyter.port], environment=env, extra=extra) as (c, ports):
        host = docker.from_env().api.inspect_container(c.id)["HostConfig"]   # the engine's own record
        assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"] and host["ReadonlyRootfs"]
        assert set(host["Tmpfs"]) == {v.user.home_dir, "/var/lib/tfimg/ssh"}
        why = testrun.wait_ready(c, v, ports, Engine.from_env())
        assert not why, f"{why}\n{Engine.from_env().container_logs(c)}"

        # Jupyter: a real HTTP login with the password, then the API and a kernel
        s, res, xsrf = _jupyter_login(ports[v.jupyter.port])
        assert res.status_code in (302, 303), f"POST /login gave {res.status_code}\n{Engine.from_env().container_logs(c)}"
        base = f"http://127.0.0.1:{ports[v.jupyter.port]}"
        assert s.get(f"{base}/api/status", timeout=30).status_code == 200
        kernel = s.post(f"{base}/api/kernels", json={"name": "python3"}, headers={"X-XSRFToken": xsrf}, timeout=60)
        assert kernel.status_code == 201, f"starting a kernel gave {kernel.status_code}: {kernel.text[:300]}"
        assert s.get(f"{base}/api/kernels/{kernel.json()['id']}", timeout=30).status_code == 200

        # SSH: the real client with the mounted key; what the session sees of the profile
        probe = ("id -u; grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status; "
                 "grep -E '^CapEff:' /proc/$(cat /var/lib/tfimg/ssh/sshd.pid)/status; "
                 "touch /etc/tfimg-probe 2>&1 || true; touch ~/probe && echo home-writable")
        res_ssh = ssh(ports[v.ssh.port], v.user.name, "-i", key, "-o", "IdentitiesOnly=yes", command=probe)
        assert res_ssh.returncode == 0, f"ssh login failed: {res_ssh.stderr[-400:]}\n{Engine.from_env().container_logs(c)}"
        out = res_ssh.stdout
        assert out.splitlines()[0] == str(v.user.uid)
        assert "CapEff:\t0000000000000000" in out and "CapBnd:\t0000000000000000" in out
        assert out.count("CapEff:\t0000000000000000") == 2          # the session and sshd itself
        assert "NoNewPrivs:\t1" in out
        assert "Read-only file system" in out and "home-writable" in out
