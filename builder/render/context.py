"""Render a variant into a Dockerfile and its build context (pure, deterministic).

Templates live in ``templates/`` (one per concern, composed by
``Dockerfile.j2``); Jinja2 runs with StrictUndefined. Same spec, same bytes:
nothing depends on time, machine or absolute paths. Nothing secret is
rendered: secrets are referenced by id in ``RUN --mount=type=secret`` only.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from builder.infra import datafile, labels, outdir
from builder.render import escape
from builder.render.escape import ArgRef
from builder.spec.loader import LoadedVariant, Variant

PKG = Path(__file__).resolve().parents[1]  # builder/
# Installed: builder/templates (force-included in the wheel); from a checkout: the top-level templates/.
TEMPLATES = PKG / "templates" if (PKG / "templates").is_dir() else PKG.parent / "templates"
PYTHON_SECRETS = ("pip_index_url", "pip_extra_index_url", "netrc", "ca_bundle")
SECRET_MOUNT = "/run/secrets"
# The time of every file a RUN step writes (templates/dockerfile/settle.j2): 1980-01-01T00:00:00Z, the
# earliest a zip (a wheel) can hold. A constant, so that no layer's cache key depends on a commit.
LAYER_TIME = 315532800
# JupyterLab's front-end defaults (jupyterlab_server reads labconfig/default_setting_overrides.json
# in every Jupyter config dir): no "fetch Jupyter news?" prompt, no update check.
LAB_SETTINGS = json.dumps({"@jupyterlab/apputils-extension:notification":
                           {"fetchNews": "false", "checkForUpdates": False}}, indent=2) + "\n"


@dataclass(frozen=True)
class Rendered:
    """A rendered build context: relative path -> (content, mode)."""

    variant: str
    files: dict[str, tuple[str, int]] = field(default_factory=dict)
    spec_hash: str = ""

    @property
    def dockerfile(self) -> str:
        return self.files["Dockerfile"][0]

    def context_hash(self) -> str:
        h = hashlib.sha256()
        for name in sorted(self.files):
            content, mode = self.files[name]
            h.update(f"{name}\0{mode:o}\0{len(content.encode())}\0".encode())
            h.update(content.encode())
        return "sha256:" + h.hexdigest()


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters.update(escape.FILTERS)
    return env


def spec_hash(loaded: LoadedVariant) -> str:
    """Hash of the merged spec plus the content of every file it names (machine independent).

    Files are hashed by content; a secret's file by where it is, relative to the
    variant file (absolute paths outside the checkout, like a system CA bundle, stay).
    """
    data = loaded.spec.model_dump(mode="json")
    root = loaded.path.resolve().parent
    data["python"]["requirements"] = [(Path(p).name, _sha(datafile.read_bytes(p, limit=datafile.MAX_INPUT_BYTES)))
                                      for p in loaded.spec.python.requirements]
    data["ssh"]["authorized_keys"] = [_sha(datafile.read_bytes(p, limit=datafile.MAX_INPUT_BYTES))
                                      for p in loaded.spec.ssh.authorized_keys]
    # The policy decides the gate, not the image: a new or edited policy re-runs the gate only
    # (report.json's gate section records the policy file and its hash).
    data.pop("policy", None)
    if not any(data["build"].values()):   # the default build settings leave every earlier hash as it was
        data.pop("build")
    for ref in data["secrets"].values():
        if ref and ref.get("file") and Path(ref["file"]).is_relative_to(root.parent):
            ref["file"] = os.path.relpath(ref["file"], root)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _apt_packages(v: Variant) -> list[str]:
    pkgs = {"tini", "ca-certificates"}
    if v.ssh.enabled:
        pkgs.add("openssh-server")
    if v.user.sudo:
        pkgs.add("sudo")
    pkgs.update(v.apt.packages)
    return sorted(pkgs)


def _labels(loaded: LoadedVariant, shash: str) -> list[tuple[str, str | ArgRef]]:
    v = loaded.spec
    oci = "org.opencontainers.image."
    found: dict[str, str | ArgRef] = {
        oci + "title": v.name,
        oci + "description": v.description or f"tfimg variant {v.name}",
        oci + "created": ArgRef("TFIMG_CREATED"),
        oci + "revision": ArgRef("TFIMG_REVISION"),
        oci + "source": v.source or "",
        oci + "base.name": ArgRef("TFIMG_BASE"),
        oci + "base.digest": ArgRef("TFIMG_BASE_DIGEST"),
        labels.VARIANT: v.name,
        labels.PROFILE: v.base.profile,
        labels.SPEC_HASH: shash,
        labels.USER: f"{v.user.name}:{v.user.uid}:{v.user.gid}",
    }
    clash = sorted(set(found) & set(v.labels))
    if clash:   # the models refuse these keys (exit 2); reaching here is a bug
        raise escape.UnsafeValue(f"variant labels {clash} would override tfimg's own")
    return sorted({**found, **v.labels}.items())


def render(loaded: LoadedVariant) -> Rendered:
    """Render the Dockerfile and context files of a loaded variant."""
    v = loaded.spec
    shash = spec_hash(loaded)
    env = _env()
    req_names = [f"requirements-{i + 1}-{Path(p).name}" for i, p in enumerate(v.python.requirements)]
    declared = {name for name, _ in v.secrets.items()}
    python_secrets = sorted(s for s in PYTHON_SECRETS if s in declared or s == "ca_bundle")
    ctx: dict[str, Any] = {
        "v": v,
        "u": v.user,
        "spec_file": loaded.path.name,
        "spec_hash": shash,
        "base_ref": f"{v.base.image}@{v.base.digest}" if v.base.digest else v.base.image,
        "apt_packages": _apt_packages(v),
        "requirements": bool(req_names),
        "requirement_files": req_names,
        "python_mounts": [
            f"--mount=type=secret,id={s},required="
            + ("true" if getattr(v.secrets, s) and getattr(v.secrets, s).required else "false")
            for s in python_secrets],
        "env": sorted({**v.env, "TFIMG_VARIANT": v.name}.items()),
        "ports": v.exposed_ports(),
        "layer_time": LAYER_TIME,
        "labels": _labels(loaded, shash),
        "services": [s for s, on in (("jupyter", v.jupyter.enabled), ("sshd", v.ssh.enabled)) if on],
        "authorized_keys_files": [p for p in (
            "/etc/tfimg/ssh/authorized_keys" if v.ssh.authorized_keys else None,
            v.ssh.authorized_keys_file) if p],
    }
    files: dict[str, tuple[str, int]] = {
        "Dockerfile": (env.get_template("Dockerfile.j2").render(ctx), 0o644),
        "entrypoint.sh": (env.get_template("context/entrypoint.sh.j2").render(ctx), 0o755),
    }
    if req_names:
        files["python/pip-install.sh"] = (env.get_template("context/pip-install.sh.j2").render(ctx), 0o755)
        files["python/protect.py"] = (env.get_template("context/protect.py.j2").render(ctx), 0o644)
        for name, src in zip(req_names, v.python.requirements, strict=True):
            files[f"python/{name}"] = (datafile.read_text(src, limit=datafile.MAX_INPUT_BYTES), 0o644)
    if v.ssh.enabled:
        files["etc/ssh/sshd_config"] = (env.get_template("context/sshd_config.j2").render(ctx), 0o644)
        if v.ssh.authorized_keys:
            keys = "".join(_normalise_key(datafile.read_text(p, limit=datafile.MAX_INPUT_BYTES))
                           for p in v.ssh.authorized_keys)
            files["etc/ssh/authorized_keys"] = (keys, 0o644)
    if v.jupyter.enabled:
        cfg = env.get_template("context/jupyter_config.py.j2").render(ctx)
        files["etc/jupyter/jupyter_server_config.py"] = (cfg, 0o644)
        files["etc/jupyter/jupyter_notebook_config.py"] = (cfg, 0o644)
        files["etc/jupyter/labconfig/default_setting_overrides.json"] = (LAB_SETTINGS, 0o644)
        if v.jupyter.password_hash:
            files["etc/jupyter/tfimg_password_hash"] = (v.jupyter.password_hash + "\n", 0o644)
    files[".dockerignore"] = ("# rendered by tfimg: the context holds only rendered files\n", 0o644)
    return Rendered(variant=v.name, files=files, spec_hash=shash)


def _normalise_key(text: str) -> str:
    return "".join(line.strip() + "\n" for line in text.splitlines()
                   if line.strip() and not line.lstrip().startswith("#"))


def write(rendered: Rendered, directory: Path | str) -> Path:
    """Write the context into ``directory`` atomically, replacing it only when tfimg created it
    (:func:`builder.infra.outdir.replace`; raises OutDirRefused for any other folder)."""
    def fill(tmp: Path) -> None:
        for name, (content, mode) in sorted(rendered.files.items()):
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            path.chmod(mode)
    return outdir.replace(directory, fill, "build context folder")
