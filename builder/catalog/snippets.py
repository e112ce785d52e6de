"""Copy-paste snippets that run one published digest hardened: Docker, a Kubernetes Pod, JupyterHub, Kubeflow.

The flags are docs/running.md's: every capability dropped, no new privileges, a read-only root filesystem,
the user's home and sshd's key folder on tmpfs (emptyDir in Kubernetes), ports on 127.0.0.1 only; the
Pod and the notebooks meet the Kubernetes "restricted" Pod Security Standard. Values that come from the
registry (the reference, the user label, the variant name) are checked against strict patterns before they
go into a command line, so a hostile label cannot inject into a pasted shell command. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from builder.catalog.models import Snippets

REF = re.compile(r"[a-z0-9][a-z0-9._:-]*(/[a-z0-9][a-z0-9._-]*)+@sha256:[0-9a-f]{64}")   # fullmatch
USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}:\d{1,9}:\d{1,9}")   # fullmatch
SSH_PORT, JUPYTER_PORT = 2222, 8888


@dataclass(frozen=True)
class RunInfo:
    ref: str                       # HOST/NAMESPACE/VARIANT@sha256:...
    variant: str
    user: str | None               # the io.tfimg.user label: name:uid:gid
    ports: tuple[int, ...]         # the image's exposed ports
    jupyter: bool
    ssh: bool
    gpu: bool                      # meant for GPUs (its variant's base profile has a GPU stack)


def pod_name(variant: str) -> str:
    """A DNS-1123 label from a variant name ('tfimg-image' when nothing is left)."""
    name = re.sub(r"[^a-z0-9-]+", "-", variant.lower()).strip("-")[:50].strip("-")
    return name or "tfimg-image"


def _user(info: RunInfo, notes: list[str]) -> tuple[str, int, int]:
    if info.user and USER.fullmatch(info.user):
        name, uid, gid = info.user.split(":")
        return name, int(uid), int(gid)
    notes.append("The image's io.tfimg.user label is missing or unusual: the snippets assume user ml, 1000:1000.")
    return "ml", 1000, 1000


def _docker(ref: str, info: RunInfo, user: tuple[str, int, int]) -> str:
    name, uid, gid = user
    lines = ["docker run --rm" + (" --gpus all" if info.gpu else ""),
             "--cap-drop ALL --security-opt no-new-privileges --read-only",
             "--shm-size 8g --ulimit memlock=-1 --ulimit stack=67108864" if info.gpu else "",
             f"--tmpfs /home/{name}:uid={uid},gid={gid},mode=0755",
             f"--tmpfs /var/lib/tfimg/ssh:uid={uid},gid={gid},mode=0700" if info.ssh else "",
             "--tmpfs /tmp",
             "-v ./keys:/run/secrets/authorized_keys:ro" if info.ssh else "",
             "-e JUPYTER_PASSWORD_HASH" if info.jupyter else "",
             " ".join(f"-p 127.0.0.1:{p}:{p}" for p in info.ports),
             ref]
    return " \\\n    ".join(x for x in lines if x) + "\n"


def _security(uid: int, gid: int) -> list[str]:
    return ["  securityContext:", "    runAsNonRoot: true", f"    runAsUser: {uid}", f"    runAsGroup: {gid}",
            f"    fsGroup: {gid}", "    seccompProfile: {type: RuntimeDefault}"]


def _container(ref: str, info: RunInfo, user: tuple[str, int, int], indent: str,
               args: list[str] | None = None) -> list[str]:
    name, _, _ = user
    out = [f'- name: "{pod_name(info.variant)}"', f'  image: "{ref}"']
    if args:   # args, not command: the image's entrypoint (tini, then the command) stays
        out += ["  args: [" + ", ".join(f'"{c}"' for c in args) + "]"]
    if info.jupyter:
        out += ["  env:", "    - name: JUPYTER_PASSWORD_HASH     # make one with `tfimg hash-password`",
                f'      valueFrom: {{secretKeyRef: {{name: "{pod_name(info.variant)}-jupyter", key: password-hash}}}}']
    if info.ports:
        out += ["  ports: [" + ", ".join(f"{{containerPort: {p}}}" for p in info.ports) + "]"]
    if info.gpu:
        out += ["  resources:", "    limits: {nvidia.com/gpu: 1}"]
    out += ["  securityContext:", "    allowPrivilegeEscalation: false", "    readOnlyRootFilesystem: true",
            "    runAsNonRoot: true", "    capabilities: {drop: [ALL]}", "    seccompProfile: {type: RuntimeDefault}",
            "  volumeMounts:", f"    - {{name: home, mountPath: /home/{name}}}", "    - {name: tmp, mountPath: /tmp}"]
    if info.gpu:
        out += ["    - {name: shm, mountPath: /dev/shm}"]
    if info.ssh and args is None:
        out += ["    - {name: sshd, mountPath: /var/lib/tfimg/ssh}",
                "    - {name: keys, mountPath: /run/secrets/authorized_keys, subPath: authorized_keys, readOnly: true}"]
    return [indent + line for line in out]


def _volumes(info: RunInfo, indent: str, ssh: bool) -> list[str]:
    out = ["volumes:", "  - {name: home, emptyDir: {}}", "  - {name: tmp, emptyDir: {}}"]
    if info.gpu:
        out += ["  - {name: shm, emptyDir: {medium: Memory, sizeLimit: 8Gi}}"]
    if ssh:
        out += ["  - {name: sshd, emptyDir: {}}", "  - {name: keys, secret: {secretName: team-ssh-keys}}"]
    return [indent + line for line in out]


def _pod(ref: str, info: RunInfo, user: tuple[str, int, int]) -> str:
    _, uid, gid = user
    lines = ["apiVersion: v1", "kind: Pod", f'metadata: {{name: "{pod_name(info.variant)}"}}', "spec:",
             *_security(uid, gid), "  containers:", *_container(ref, info, user, "    "),
             *_volumes(info, "  ", info.ssh)]
    return "\n".join(lines) + "\n"


def _kubeflow(ref: str, info: RunInfo, user: tuple[str, int, int]) -> str:
    _, uid, gid = user
    lines = ["apiVersion: kubeflow.org/v1", "kind: Notebook",
             f'metadata: {{name: "{pod_name(info.variant)}", namespace: YOUR-PROFILE-NAMESPACE}}',
             "spec:", "  template:", "    spec:", *["    " + s for s in _security(uid, gid)],
             "      containers:",
             *_container(ref, info, user, "        ",
                         ["jupyter", "lab", "--ServerApp.base_url=$(NB_PREFIX)", f"--ServerApp.port={JUPYTER_PORT}"]),
             *_volumes(info, "      ", False)]
    return "\n".join(lines) + "\n"


def _jupyterhub(ref: str, info: RunInfo, user: tuple[str, int, int]) -> str:
    name, uid, gid = user
    gpu = '\nc.KubeSpawner.extra_resource_limits = {"nvidia.com/gpu": "1"}' if info.gpu else ""
    return (f'# jupyterhub_config.py, with KubeSpawner\nc.KubeSpawner.image = "{ref}"\n'
            'c.KubeSpawner.cmd = ["jupyterhub-singleuser"]\n'
            f"c.KubeSpawner.uid = {uid}\nc.KubeSpawner.gid = {gid}\nc.KubeSpawner.fs_gid = {gid}{gpu}\n"
            'c.KubeSpawner.container_security_context = {\n'
            '    "runAsNonRoot": True, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,\n'
            '    "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}\n'
            'c.KubeSpawner.volumes = [{"name": "home", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]\n'
            f'c.KubeSpawner.volume_mounts = [{{"name": "home", "mountPath": "/home/{name}"}},\n'
            '                               {"name": "tmp", "mountPath": "/tmp"}]\n')


def make(info: RunInfo) -> Snippets:
    """The snippets for one image; ``notes`` say what a reader must add or know."""
    notes: list[str] = []
    ref = info.ref
    if not REF.fullmatch(ref):
        notes.append("The reference did not look like HOST/NAME@sha256:<64 hex>; the snippets say IMAGE instead.")
        ref = "IMAGE"
    user = _user(info, notes)
    if info.gpu:
        notes.append("--shm-size 8g (an emptyDir in memory in Kubernetes) instead of NVIDIA's --ipc=host keeps the "
                     "host's IPC namespace private; NCCL across GPUs needs the shared memory.")
    if info.ssh:
        notes.append("SSH: mount your public keys at /run/secrets/authorized_keys (./keys, or the team-ssh-keys "
                     "Secret).")
    if info.jupyter:
        notes.append("Jupyter asks for a password: give its argon2 hash (`tfimg hash-password`) as "
                     "JUPYTER_PASSWORD_HASH. JupyterHub's single-user server needs the jupyterhub package in the "
                     "image (add jupyterhub, at your hub's version, to the variant's requirements).")
    notes.append("The Kubernetes, JupyterHub and Kubeflow forms were not run on a cluster by tfimg's tests.")
    return Snippets(docker_run=_docker(ref, info, user), kubernetes_pod=_pod(ref, info, user),
                    jupyterhub=_jupyterhub(ref, info, user) if info.jupyter else None,
                    kubeflow=_kubeflow(ref, info, user) if info.jupyter else None, notes=notes)
