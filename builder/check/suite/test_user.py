"""The container runs as the spec's user, never root; its home is its own; no sudo unless allowed."""

from __future__ import annotations

from builder.check.suite.helpers import out, program_json, sh


def test_runs_as_spec_user(host, variant, ctx, programs, note):
    u = variant.user
    uid, gid, name = out(host, "id -u; id -g; id -un").split()
    assert (int(uid), int(gid)) == (u.uid, u.gid), \
        f"the image runs as {name} ({uid}:{gid}), the spec says {u.name} ({u.uid}:{u.gid})"
    assert name == u.name, f"uid {uid} is named {name}, the spec says {u.name}"
    procs = _services(program_json(host, programs, "tfimg_procs.py", timeout=ctx.timeout))
    root = [f"{comm} (pid {pid})" for pid, puid, comm in procs if puid == 0]
    assert not root, f"processes run as root: {', '.join(root)}"
    others = sorted({f"{comm}:{puid}" for _, puid, comm in procs if puid != u.uid})
    assert not others, f"processes run as another user than {u.uid}: {', '.join(others)}"
    note(f"{u.name} {uid}:{gid}; {len(procs)} processes, all uid {u.uid}")


def _services(rows: list[list]) -> list[tuple[int, int, str]]:
    """The container's own processes: PID 1 and its descendants. A `docker exec` (this check's, or one
    of a check running beside it, while runc starts it) has parent 0 in the container: not a service."""
    parent = {pid: ppid for pid, _, _, ppid in rows}

    def served(pid: int) -> bool:
        seen: set[int] = set()
        while pid not in (0, 1) and pid not in seen:
            seen.add(pid)
            pid = parent.get(pid, 0)
        return pid == 1
    return [(pid, uid, comm) for pid, uid, comm, _ in rows if served(pid)]


def test_home_owned_and_writable(user_host, variant, note):
    u = variant.user
    home = out(user_host, 'printf %s "$HOME"').strip()
    assert home == u.home_dir, f"$HOME is '{home}', the spec says {u.home_dir}"
    owner = out(user_host, f"stat -c '%u:%g %a' {u.home_dir}").strip()
    assert owner.split()[0] == f"{u.uid}:{u.gid}", f"{u.home_dir} is owned by {owner}, not {u.uid}:{u.gid}"
    probe = f"{u.home_dir}/.tfimg-check-write"
    res = sh(user_host, f"echo ok > {probe} && cat {probe} && rm -f {probe}")
    assert res.rc == 0 and "ok" in res.stdout, f"{u.name} cannot write to {u.home_dir}: {res.stderr.strip()}"
    note(f"{u.home_dir} owned by {u.uid}:{u.gid} (mode {owner.split()[1]}), writable")


def test_sudo_as_spec_says(user_host, variant, note):
    u = variant.user
    found = sh(user_host, "command -v sudo").stdout.strip()
    if u.sudo:
        res = sh(user_host, "sudo -n true")
        assert res.rc == 0, f"the spec allows sudo but `sudo -n true` fails: {res.stderr.strip()}"
        note("passwordless sudo, as the spec allows")
        return
    assert not found, f"sudo is installed ({found}) but the spec does not allow it (user.sudo: false)"
    rules = sh(user_host, f"ls /etc/sudoers.d/{u.name} 2>/dev/null").stdout.strip()
    assert not rules, f"a sudoers rule exists for {u.name}: {rules}"
    note("no sudo")
