"""Variant specs: pydantic models, the YAML loader, ``extends`` and errors.

A variant file is YAML; :func:`load` reads it with its parents, merges them,
validates the result and returns a frozen :class:`Variant`. Every problem is
raised as :class:`~builder.errors.SpecErrors` naming the file, line, key path
and the fix; nothing is built from an invalid spec.

Merge rules for ``extends`` (parents first, in order, then the child):
mappings merge key by key, a child's scalar wins, lists replace; a key
written ``name+`` appends to the parent's list instead of replacing it.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import re
import string
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)

from . import profiles
from .errors import SpecError, SpecErrors

DEFAULT_BASE = "nvcr.io/nvidia/tensorflow:22.07-tf2-py3"
DEFAULT_PROFILE = "ngc-22.07"
DEFAULT_PROTECTED = [
    "tensorflow", "tensorflow-*", "tf-*", "keras", "keras-*", "tensorboard",
    "tensorboard-*", "numpy", "protobuf", "h5py", "horovod", "nvidia-*",
    "tensorrt", "jax", "jaxlib", "dllogger",
]
TAG_FIELDS = {
    "variant": "the variant's name",
    "tf": "TensorFlow version as detected (2.9.1)",
    "tf_minor": "TensorFlow major.minor (2.9)",
    "py": "Python major.minor (3.8)",
    "cuda": "CUDA major.minor, or 'none' (11.7)",
    "cudnn": "cuDNN version, or 'none' (8.4.1)",
    "accel": "'cuda11.7' on a CUDA base, else 'cpu'",
    "date": "build date, UTC (20261126)",
    "rev": "short git revision of the variant repository, or 'norev'",
    "profile": "the base profile's name",
}
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
NAME_RE = r"^[a-z0-9][a-z0-9._-]{0,62}$"
CREDENTIAL_NAME = re.compile(
    r"(TOKEN|PASSWORD|PASSWD|SECRET|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL)", re.I)
PUBKEY_TYPES = {
    "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
}
PATH_KEYS = [  # keys whose values are host paths, resolved relative to the declaring file
    ("python", "requirements"), ("ssh", "authorized_keys"), ("policy",),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Base(Strict):
    """The image to build on and the profile of versions it claims."""

    image: str = Field(DEFAULT_BASE, description="Base image reference.",
                       examples=[DEFAULT_BASE])
    digest: str | None = Field(None, pattern=r"^sha256:[0-9a-f]{64}$",
                               description="Pin the base to this digest (FROM image@digest).")
    profile: str = Field(DEFAULT_PROFILE, description="Base profile (expected versions).")
    expect: dict[str, str] = Field(default_factory=dict,
                                   description="Override a profile expectation: component -> PEP 440 specifier.")

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        if not re.match(r"^[a-z0-9][a-z0-9._/:-]*[a-zA-Z0-9_.-]$", v) or "@" in v:
            raise ValueError("not an image reference like registry/name:tag "
                             "(put a digest under base.digest)")
        return v

    @field_validator("profile")
    @classmethod
    def _profile(cls, v: str) -> str:
        known = profiles.names()
        if v not in known:
            raise ValueError(f"unknown base profile '{v}'{_did_you_mean(v, known)}; "
                             f"known profiles: {', '.join(known)}")
        return v

    @field_validator("expect")
    @classmethod
    def _expect(cls, v: dict[str, str]) -> dict[str, str]:
        for comp, spec in v.items():
            try:
                SpecifierSet(spec)
            except InvalidSpecifier:
                raise ValueError(f"'{spec}' for {comp} is not a PEP 440 specifier (e.g. '==2.9.*')")
        return v


class User(Strict):
    """The non-root user the container runs as."""

    name: str = Field("ml", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    uid: int = Field(1000, ge=0, le=2**31 - 2)
    gid: int = Field(1000, ge=0, le=2**31 - 2)
    home: str | None = Field(None, description="Home directory; default /home/<name>.")
    shell: str = "/bin/bash"
    sudo: bool = Field(False, description="Allow passwordless sudo (off by default).")

    @model_validator(mode="after")
    def _not_root(self) -> User:
        if self.name == "root":
            raise ValueError("the user must not be root; pick a name such as 'ml'")
        if self.uid == 0 or self.gid == 0:
            raise ValueError("uid and gid must not be 0 (root); use 1000 or another unprivileged id")
        if self.home is not None and not self.home.startswith("/"):
            raise ValueError("home must be an absolute path such as /home/ml")
        return self

    @property
    def home_dir(self) -> str:
        return self.home or f"/home/{self.name}"


class Apt(Strict):
    packages: list[str] = Field(default_factory=list,
                                description="Extra Debian/Ubuntu packages (name or name=version).")

    @field_validator("packages")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        for p in v:
            if not re.match(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+:~-]+)?$", p):
                raise ValueError(f"'{p}' is not a package name (name or name=version)")
        return v


class Python(Strict):
    requirements: list[str] = Field(default_factory=list,
                                    description="Private requirements files (relative to the variant file).")
    index_url: str | None = Field(None, description="Package index URL without credentials.")
    extra_index_urls: list[str] = Field(default_factory=list)
    protect_base: bool = Field(True, description="Install under constraints from the base's own packages.")
    protected: list[str] = Field(default_factory=lambda: list(DEFAULT_PROTECTED),
                                 description="Distribution name patterns that protect_base pins.")

    @field_validator("index_url")
    @classmethod
    def _index(cls, v: str | None) -> str | None:
        return None if v is None else _check_index_url(v)

    @field_validator("extra_index_urls")
    @classmethod
    def _extra(cls, v: list[str]) -> list[str]:
        return [_check_index_url(u) for u in v]


def _check_index_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("an index URL must be an http(s) URL such as https://pypi.example.com/simple")
    if parts.username or parts.password:
        raise ValueError("the index URL embeds credentials; put the whole URL in the secret "
                         "'pip_index_url' (secrets.pip_index_url: {env: NAME}) or give credentials "
                         "through a 'netrc' secret, never in the spec")
    return url


class SecretRef(Strict):
    """Where a build secret comes from: a file or an environment variable, never a value."""

    file: str | None = None
    env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    required: bool = Field(True, description="Fail the build when the source is missing.")

    @model_validator(mode="before")
    @classmethod
    def _no_literal(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "value" in data:
            raise ValueError("a secret must be given as {file: PATH} or {env: NAME}, never as a "
                             "literal value (the value would end up in the spec and its history)")
        return data

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.file is None) == (self.env is None):
            raise ValueError("give exactly one of 'file' or 'env'")
        return self

    def identity(self) -> str:
        """Where the secret comes from (never its value): part of the input hash."""
        return f"file:{self.file}" if self.file else f"env:{self.env}"


class Secrets(Strict):
    """Build secrets, mounted with BuildKit ``RUN --mount=type=secret`` only."""

    pip_index_url: SecretRef | None = Field(None, description="Full index URL, token included (PIP_INDEX_URL).")
    pip_extra_index_url: SecretRef | None = Field(None, description="Extra index URL with token (PIP_EXTRA_INDEX_URL).")
    netrc: SecretRef | None = Field(None, description="A .netrc with index credentials.")
    ca_bundle: SecretRef | None = Field(None, description="CA bundle of a corporate TLS proxy (PEM).")

    def items(self) -> list[tuple[str, SecretRef]]:
        return [(k, v) for k, v in (("pip_index_url", self.pip_index_url),
                                    ("pip_extra_index_url", self.pip_extra_index_url),
                                    ("netrc", self.netrc), ("ca_bundle", self.ca_bundle)) if v]


class SSH(Strict):
    enabled: bool = False
    port: int = Field(2222, ge=1024, le=65535, description="Unprivileged port sshd listens on.")
    authorized_keys: list[str] = Field(default_factory=list, description="Public key files baked in.")
    authorized_keys_file: str | None = Field(
        None, description="Path inside the container of a keys file mounted at run time.",
        examples=["/run/secrets/authorized_keys"])

    @model_validator(mode="after")
    def _keys(self) -> SSH:
        if self.enabled and not self.authorized_keys and not self.authorized_keys_file:
            raise ValueError("SSH is enabled but no key is given; add ssh.authorized_keys "
                             "(public key files) or ssh.authorized_keys_file (mounted at run time)")
        if self.authorized_keys_file and not self.authorized_keys_file.startswith("/"):
            raise ValueError("authorized_keys_file is a path inside the container and must be absolute")
        return self


class Jupyter(Strict):
    enabled: bool = False
    port: int = Field(8888, ge=1024, le=65535)
    password_hash: str | None = Field(None, description="argon2 hash from `tfimg hash-password`.")
    password_hash_env: str = Field("JUPYTER_PASSWORD_HASH", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                   description="Run-time variable holding the hash.")
    password_hash_file: str = Field("/run/secrets/jupyter_password_hash",
                                    description="Run-time file holding the hash.")
    app: Literal["lab", "server", "notebook"] = "lab"

    @model_validator(mode="before")
    @classmethod
    def _no_plaintext(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            raise ValueError("plaintext passwords are not accepted; run `tfimg hash-password` and "
                             "put the result in jupyter.password_hash, or supply the hash at run time")
        return data

    @field_validator("password_hash")
    @classmethod
    def _hash(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^argon2:\$argon2(id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$\S+\$\S+$", v):
            raise ValueError("this is not an argon2 password hash (it may be a plaintext password); "
                             "run `tfimg hash-password` and paste its output")
        return v


class Checks(Strict):
    """Expectations checked against a running container (`tfimg test`)."""

    python_packages: dict[str, str] = Field(default_factory=dict,
                                            description="Distribution -> PEP 440 specifier.")
    commands: list[str] = Field(default_factory=list, description="Commands that must exit 0 as the user.")

    @field_validator("python_packages")
    @classmethod
    def _specs(cls, v: dict[str, str]) -> dict[str, str]:
        for name, spec in v.items():
            try:
                SpecifierSet(spec)
            except InvalidSpecifier:
                raise ValueError(f"'{spec}' for {name} is not a PEP 440 specifier")
        return v


class Tags(Strict):
    """Tag templates; fields in braces, see TAG_FIELDS."""

    immutable: str = "{variant}-tf{tf}-py{py}-{accel}-{date}-{rev}"
    moving: list[str] = Field(default_factory=lambda: ["{variant}-tf{tf_minor}", "{variant}-latest"])

    @field_validator("immutable")
    @classmethod
    def _imm(cls, v: str) -> str:
        return _check_tag_template(v)

    @field_validator("moving")
    @classmethod
    def _mov(cls, v: list[str]) -> list[str]:
        return [_check_tag_template(t) for t in v]


def _check_tag_template(tpl: str) -> str:
    sample: dict[str, str] = {}
    try:
        for _, field, spec, conv in string.Formatter().parse(tpl):
            if field is None:
                continue
            if field not in TAG_FIELDS or spec or conv:
                raise ValueError(f"unknown tag field '{{{field}}}' in '{tpl}'"
                                 f"{_did_you_mean(field, list(TAG_FIELDS))}; fields: "
                                 + ", ".join("{" + f + "}" for f in TAG_FIELDS))
            sample[field] = "x" * 12
    except ValueError as exc:
        if "unknown tag field" in str(exc):
            raise
        raise ValueError(f"'{tpl}' is not a valid tag template ({exc})")
    rendered = tpl.format(**sample)
    if not TAG_RE.match(rendered):
        raise ValueError(f"'{tpl}' cannot give a valid tag: tags are letters, digits, '_', '.' "
                         "and '-', start with a letter, digit or '_', and have at most 128 characters")
    return tpl


class Variant(Strict):
    """A tfimg variant: everything needed to build, check, scan and tag one image."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="tfimg variant")

    name: str = Field(..., pattern=NAME_RE, description="Variant name; defaults to the file name.")
    description: str = ""
    source: str | None = Field(None, description="URL for org.opencontainers.image.source.")
    base: Base = Field(default_factory=Base)
    user: User = Field(default_factory=User)
    apt: Apt = Field(default_factory=Apt)
    python: Python = Field(default_factory=Python)
    secrets: Secrets = Field(default_factory=Secrets)
    ssh: SSH = Field(default_factory=SSH)
    jupyter: Jupyter = Field(default_factory=Jupyter)
    env: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    ports: list[int] = Field(default_factory=list, description="Extra ports to EXPOSE.")
    tags: Tags = Field(default_factory=Tags)
    checks: Checks = Field(default_factory=Checks)
    policy: str | None = Field(None, description="Gate policy file; default: tfimg's default policy.")

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k):
                raise ValueError(f"'{k}' is not an environment variable name")
            if CREDENTIAL_NAME.search(k):
                raise ValueError(f"'{k}' looks like a credential; ENV values are baked into the image. "
                                 "Use a build secret (secrets:) or pass it at run time")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if CREDENTIAL_NAME.search(k):
                raise ValueError(f"label '{k}' looks like a credential; labels are public")
        return v

    @field_validator("ports")
    @classmethod
    def _ports(cls, v: list[int]) -> list[int]:
        for p in v:
            if not 1 <= p <= 65535:
                raise ValueError(f"port {p} is out of range (1-65535)")
        return v

    @model_validator(mode="after")
    def _clashes(self) -> Variant:
        used: dict[int, str] = {}
        pairs = [(p, f"ports[{i}]") for i, p in enumerate(self.ports)]
        if self.ssh.enabled:
            pairs.insert(0, (self.ssh.port, "ssh.port"))
        if self.jupyter.enabled:
            pairs.insert(0, (self.jupyter.port, "jupyter.port"))
        for port, where in pairs:
            if port in used:
                raise ValueError(f"port {port} is used by both {used[port]} and {where}; give each its own port")
            used[port] = where
        return self

    @property
    def profile(self) -> profiles.Profile:
        return profiles.get(self.base.profile).with_overrides(self.base.expect)

    def exposed_ports(self) -> list[int]:
        ports = list(self.ports)
        if self.ssh.enabled:
            ports.append(self.ssh.port)
        if self.jupyter.enabled:
            ports.append(self.jupyter.port)
        return sorted(set(ports))


class LoadedVariant(BaseModel):
    """A validated variant and where it came from."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    spec: Variant
    path: Path
    chain: list[Path]          # the files merged, parents first

    @property
    def name(self) -> str:
        return self.spec.name


# --------------------------------------------------------------------------- loading

Origin = dict[tuple[Any, ...], tuple[Path, int]]


def load(path: str | Path) -> LoadedVariant:
    """Load, merge and validate a variant file. Raises SpecErrors."""
    path = Path(path)
    data, origin, chain = _load_tree(path.resolve(), display=path, stack=[])
    data.setdefault("name", path.stem)
    origin.setdefault(("name",), (path, 0))
    try:
        spec = Variant.model_validate(data)
    except ValidationError as exc:
        raise SpecErrors(_translate(exc, origin, path)) from None
    errors = _check_files(spec, origin, path)
    if errors:
        raise SpecErrors(errors)
    return LoadedVariant(spec=spec, path=path, chain=chain)


def _read_yaml(path: Path, display: Path) -> tuple[dict[str, Any], Origin]:
    if not path.is_file():
        raise SpecErrors([SpecError(display, "", "file not found",
                                    hint="Check the path; it is resolved relative to the file that names it.")])
    text = path.read_text()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecErrors([SpecError(display, "", f"YAML syntax error: {problem}", line=line,
                                    hint="Fix the YAML at that line (indentation, a missing ':' or quote).")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecErrors([SpecError(display, "", "a variant file must be a mapping of keys (name: ..., base: ...)", line=1)])
    origin: Origin = {}
    _index_lines(node, (), display, origin)
    return data, origin


def _index_lines(node: Any, path: tuple[Any, ...], file: Path, origin: Origin) -> None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = (*path, k.value)
            origin[key] = (file, k.start_mark.line + 1)
            _index_lines(v, key, file, origin)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            origin[(*path, i)] = (file, v.start_mark.line + 1)
            _index_lines(v, (*path, i), file, origin)


def _load_tree(path: Path, display: Path, stack: list[Path]) -> tuple[dict[str, Any], Origin, list[Path]]:
    if path in stack:
        cycle = " -> ".join(p.name for p in [*stack, path])
        raise SpecErrors([SpecError(display, "extends", f"extends cycle: {cycle}",
                                    hint="Remove one of these extends so that the chain ends.")])
    data, origin = _read_yaml(path, display)
    _resolve_paths(data, path.parent)
    parents = data.pop("extends", None) or []
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise SpecErrors([SpecError(display, "extends", "must be a file path or a list of file paths",
                                    line=origin.get(("extends",), (None, None))[1])])
    merged: dict[str, Any] = {}
    merged_origin: Origin = {}
    chain: list[Path] = []
    for i, parent in enumerate(parents):
        ppath = (path.parent / parent).resolve()
        if not ppath.is_file():
            line = origin.get(("extends", i), origin.get(("extends",), (None, None)))[1]
            raise SpecErrors([SpecError(display, "extends", f"parent file '{parent}' not found", line=line,
                                        hint="Paths in extends are relative to the file that declares them.")])
        pdata, porigin, pchain = _load_tree(ppath, _display(ppath), [*stack, path])
        pdata.pop("name", None)   # a child never inherits its parent's name
        merged = _merge(merged, pdata, merged_origin, porigin, ())
        chain += [c for c in pchain if c not in chain]
    merged = _merge(merged, data, merged_origin, origin, ())
    chain.append(path)
    return merged, merged_origin, chain


def _display(path: Path) -> Path:
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _merge(base: dict[str, Any], over: dict[str, Any], origin: Origin, over_origin: Origin,
           path: tuple[Any, ...]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        append = isinstance(key, str) and key.endswith("+")
        name = key[:-1] if append else key
        where = (*path, name)
        if append:
            if not isinstance(value, list):
                value = [value]
            out[name] = list(out.get(name) or []) + value
        elif isinstance(value, dict) and isinstance(out.get(name), dict):
            out[name] = _merge(out[name], value, origin, over_origin, where)
            continue
        else:
            out[name] = value
        for k, v in over_origin.items():
            if k[: len(path) + 1] == (*path, key):
                origin[(*where, *k[len(path) + 1:])] = v
    return out


def _resolve_paths(data: dict[str, Any], root: Path) -> None:
    def fix(v: Any) -> Any:
        if isinstance(v, str):
            return str((root / Path(v).expanduser()).resolve())
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v

    for keys in PATH_KEYS:
        node: Any = data
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict):
            for last in (keys[-1], keys[-1] + "+"):
                if last in node:
                    node[last] = fix(node[last])
    secrets = data.get("secrets")
    if isinstance(secrets, dict):
        for ref in secrets.values():
            if isinstance(ref, dict) and isinstance(ref.get("file"), str):
                ref["file"] = str((root / Path(ref["file"]).expanduser()).resolve())


# --------------------------------------------------------------------------- errors

def _translate(exc: ValidationError, origin: Origin, path: Path) -> list[SpecError]:
    out = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = tuple(err["loc"])
        file, line = _where(loc, origin, path)
        key = _keypath(loc)
        msg = err["msg"].removeprefix("Value error, ")
        hint = None
        if err["type"] == "extra_forbidden":
            allowed = _fields_at(loc[:-1])
            msg = f"unknown key '{loc[-1]}'{_did_you_mean(str(loc[-1]), allowed)}"
            hint = "Allowed keys here: " + ", ".join(allowed) if allowed else None
        elif err["type"] == "missing":
            msg = "this key is required"
        out.append(SpecError(file, key, msg, line=line, hint=hint))
    return out


def _where(loc: tuple[Any, ...], origin: Origin, path: Path) -> tuple[Path, int | None]:
    for n in range(len(loc), 0, -1):
        if loc[:n] in origin:
            return origin[loc[:n]]
    return path, None


def _keypath(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    model: Any = Variant
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        model = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is None:
            return []
    return sorted(model.model_fields)


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_files(spec: Variant, origin: Origin, path: Path) -> list[SpecError]:
    errors: list[SpecError] = []

    def err(loc: tuple[Any, ...], msg: str, hint: str | None = None) -> None:
        file, line = _where(loc, origin, path)
        errors.append(SpecError(file, _keypath(loc), msg, line=line, hint=hint))

    for i, req in enumerate(spec.python.requirements):
        loc = ("python", "requirements", i)
        p = Path(req)
        if not p.is_file():
            err(loc, f"requirements file '{p}' not found", "Paths are relative to the variant file that names them.")
            continue
        for problem in requirement_problems(p):
            err(loc, problem)
    for i, key in enumerate(spec.ssh.authorized_keys):
        loc = ("ssh", "authorized_keys", i)
        p = Path(key)
        if not p.is_file():
            err(loc, f"public key file '{p}' not found")
            continue
        problem = public_key_problem(p.read_text(errors="replace"))
        if problem:
            err(loc, f"{p.name}: {problem}")
    if spec.policy and not Path(spec.policy).is_file():
        err(("policy",), f"policy file '{spec.policy}' not found")
    return errors


def requirement_problems(path: Path) -> list[str]:
    """Problems of a requirements file; never echoes a line that could hold a credential."""
    problems = []
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            problems.append(f"{path.name}:{n}: pip options ('{line.split()[0]}') are not allowed in requirements "
                            "files; set python.index_url / secrets in the spec and inline other files")
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            problems.append(f"{path.name}:{n}: not a valid requirement (expected e.g. 'transformers==4.21.3')")
            continue
        if req.url and urlsplit(req.url).password:
            problems.append(f"{path.name}:{n}: a direct URL with embedded credentials; use a netrc secret")
    return problems


def public_key_problem(text: str) -> str | None:
    """Why ``text`` is not a usable OpenSSH public key, or None. Never echoes the content."""
    if "PRIVATE KEY" in text:
        return ("this is a PRIVATE key; give the public key (the .pub file) instead, "
                "and keep the private key out of the repository")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines:
        return "the file holds no public key"
    for ln in lines:
        parts = ln.split()
        if len(parts) < 2 or parts[0] not in PUBKEY_TYPES:
            return ("not an OpenSSH public key line ('<type> <base64> [comment]', type one of "
                    + ", ".join(sorted(PUBKEY_TYPES)) + ")")
        try:
            blob = base64.b64decode(parts[1], validate=True)
            n = int.from_bytes(blob[:4], "big")
            if blob[4:4 + n].decode() != parts[0]:
                return "the key data does not match its type; the key is corrupt"
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return "the key data is not valid base64; the key is corrupt"
    return None


def schema() -> dict[str, Any]:
    """JSON Schema of a variant file (extends and 'list+' keys included)."""
    sch = Variant.model_json_schema()
    sch["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    sch["properties"]["extends"] = {
        "description": "Parent variant file(s), relative to this file.",
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    sch["required"] = []
    for obj in [sch, *sch.get("$defs", {}).values()]:
        props = obj.get("properties", {})
        for name, prop in list(props.items()):
            if prop.get("type") == "array":
                props[name + "+"] = {**prop, "description": f"Append to the parent's {name}."}
    return sch
