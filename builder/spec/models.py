"""Variant spec models (pydantic): every key, its default, its validation.

:mod:`builder.spec.loader` loads YAML into these models; the JSON Schema comes from them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from builder.infra import yamlfile
from builder.spec import profiles, text
from builder.spec.tag_templates import TAG_FIELDS, TAG_RE, check_template  # noqa: F401  (part of the API)

DEFAULT_BASE = "nvcr.io/nvidia/tensorflow:22.07-tf2-py3"
DEFAULT_PROFILE = "ngc-22.07"
DEFAULT_PROTECTED = [
    "tensorflow", "tensorflow-*", "tf-*", "keras", "keras-*", "tensorboard",
    "tensorboard-*", "numpy", "protobuf", "h5py", "horovod", "nvidia-*",
    "tensorrt", "jax", "jaxlib", "dllogger",
]
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


def _specifier(value: str) -> str:
    try:
        SpecifierSet(value)
    except InvalidSpecifier:
        raise ValueError(f"{text.shown(value)} is not a PEP 440 specifier (e.g. '==2.9.*' or '>=4.21,<5')") from None
    return value


Specifier = Annotated[str, AfterValidator(_specifier)]


class Strict(BaseModel):
    """Base of every spec model: unknown keys are errors, values are frozen, and every string
    (dict keys and list items too) is checked by :func:`builder.spec.text.bad_char`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    multiline: ClassVar[frozenset[str]] = frozenset()   # fields that may hold line breaks and tabs

    @field_validator("*", mode="after")
    @classmethod
    def _text(cls, value: Any, info: ValidationInfo) -> Any:
        problem = text.problem_in(value, multiline=info.field_name in cls.multiline)
        if problem:
            raise ValueError(problem)
        return value


def _container_path(value: str, what: str) -> str:
    problem = text.container_path_problem(value, what)
    if problem:
        raise ValueError(problem)
    return value


class Base(Strict):
    """The image to build on and the profile of versions it claims."""

    image: str = Field(DEFAULT_BASE, description="Base image reference.",
                       examples=[DEFAULT_BASE])
    digest: str | None = Field(None, pattern=r"^sha256:[0-9a-f]{64}$",
                               description="Pin the base to this digest (FROM image@digest).")
    profile: str = Field(DEFAULT_PROFILE, description="Base profile (expected versions).")
    expect: dict[str, Specifier] = Field(default_factory=dict,
                                   description="Override a profile expectation: component -> PEP 440 specifier.")

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        if not text.IMAGE_REF.fullmatch(v):
            raise ValueError("not an image reference like registry/name:tag "
                             "(put a digest under base.digest)")
        return v

    @field_validator("profile")
    @classmethod
    def _profile(cls, v: str) -> str:
        known = profiles.names()
        if v not in known:
            raise ValueError(f"unknown base profile {text.shown(v)}{_did_you_mean(v, known)}; "
                             f"known profiles: {', '.join(known)}")
        return v

    @property
    def ref(self) -> str:
        """The reference built on: ``image@digest`` when the spec pins a digest, else ``image``."""
        return f"{self.image}@{self.digest}" if self.digest else self.image


def pinned(ref: str) -> bool:
    """The one rule for "the base is pinned": its reference names a digest (``NAME@sha256:...``).

    The build, the gate (``require_base_digest``, ``tfimg gate``) and the gate's reuse key all ask this.
    """
    return "@sha256:" in ref


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
        return self

    @field_validator("home")
    @classmethod
    def _home(cls, v: str | None) -> str | None:
        return None if v is None else _container_path(v, "home")

    @field_validator("shell")
    @classmethod
    def _shell(cls, v: str) -> str:
        return _container_path(v, "shell")

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
            if not text.APT_PACKAGE.fullmatch(p):
                raise ValueError(f"{text.shown(p)} is not a package name (name or name=version)")
        return v


class Python(Strict):
    requirements: list[str] = Field(default_factory=list,
                                    description="Private requirements files (relative to the variant file).")
    index_url: str | None = Field(None, description="Package index URL without credentials.")
    extra_index_urls: list[str] = Field(default_factory=list)
    protect_base: bool = Field(True, description="Install under constraints from the base's own packages.")
    protected: list[str] = Field(default_factory=lambda: list(DEFAULT_PROTECTED),
                                 description="Distribution name patterns that protect_base pins.")

    @field_validator("requirements")
    @classmethod
    def _requirement_names(cls, v: list[str]) -> list[str]:
        for i, p in enumerate(v):
            if not text.FILE_NAME.fullmatch(Path(p).name):
                raise ValueError(f"item [{i}]: the file name {text.shown(Path(p).name)} is copied into the "
                                 "build context and named in a script; rename the file to letters, digits "
                                 "and . _ + - (starting with a letter or digit, at most 128 characters)")
        return v

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
        return self

    @field_validator("authorized_keys_file")
    @classmethod
    def _keys_file(cls, v: str | None) -> str | None:
        return None if v is None else _container_path(v, "authorized_keys_file")


class Jupyter(Strict):
    enabled: bool = False
    port: int = Field(8888, ge=1024, le=65535)
    password_hash: str | None = Field(None, description="argon2 hash from `tfimg hash-password`.")
    password_hash_env: str = Field("JUPYTER_PASSWORD_HASH", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                   description="Run-time variable holding the hash.")
    password_hash_file: str = Field("/run/secrets/jupyter_password_hash",
                                    description="Run-time file holding the hash.")
    app: Literal["lab", "server", "notebook"] = "lab"

    @field_validator("password_hash_file")
    @classmethod
    def _hash_file(cls, v: str) -> str:
        return _container_path(v, "password_hash_file")

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
        if v is not None and not text.ARGON2_HASH.fullmatch(v):
            raise ValueError("this is not an argon2 password hash (it may be a plaintext password); "
                             "run `tfimg hash-password` and paste its output")
        return v


class Checks(Strict):
    """Expectations checked against a running container (`tfimg test`)."""

    multiline: ClassVar[frozenset[str]] = frozenset({"commands"})

    python_packages: dict[str, Specifier] = Field(default_factory=dict,
                                            description="Distribution -> PEP 440 specifier.")
    commands: list[str] = Field(default_factory=list, description="Commands that must exit 0 as the user.")


class Tags(Strict):
    """Tag templates; fields in braces, see TAG_FIELDS."""

    immutable: str = "{variant}-tf{tf}-py{py}-{accel}-{date}-{rev}"
    moving: list[str] = Field(default_factory=lambda: ["{variant}-tf{tf_minor}", "{variant}-latest"])

    @field_validator("immutable")
    @classmethod
    def _imm(cls, v: str) -> str:
        return check_template(v)

    @field_validator("moving")
    @classmethod
    def _mov(cls, v: list[str]) -> list[str]:
        return [check_template(t) for t in v]


class Build(Strict):
    """How the image is built."""

    source_date_epoch: int | None = Field(
        None, ge=315532800, le=4102444800,
        description="Unix time (seconds) of the image's timestamps (its created time and label, the history "
                    "of its layers): SOURCE_DATE_EPOCH. Default: $SOURCE_DATE_EPOCH, else the time of the "
                    "last git commit of the variant's files, else the build's time (not reproducible).",
        examples=[1700000000])


class Variant(Strict):
    """A tfimg variant: everything needed to build, check, scan and tag one image."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="tfimg variant")

    name: str = Field(..., pattern=NAME_RE, description="Variant name; defaults to the file name.")
    description: str = ""
    abstract: bool = Field(False, description="Only a parent for other variants: never built or listed "
                                               "by `tfimg matrix`. Never inherited.")
    source: str | None = Field(None, description="URL for org.opencontainers.image.source.")
    base: Base = Field(default_factory=Base)
    build: Build = Field(default_factory=Build)
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
            if not text.ENV_NAME.fullmatch(k):
                raise ValueError(f"{text.shown(k)} is not an environment variable name "
                                 "(letters, digits and '_', not starting with a digit)")
            if k.startswith(text.TFIMG_ENV_PREFIX):
                raise ValueError(f"{text.shown(k)}: names starting with {text.TFIMG_ENV_PREFIX} are tfimg's "
                                 "(it sets TFIMG_VARIANT itself); pick another name")
            if CREDENTIAL_NAME.search(k):
                raise ValueError(f"{text.shown(k)} looks like a credential; ENV values are baked into the image. "
                                 "Use a build secret (secrets:) or pass it at run time")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            _label_key(k)
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


def _label_key(k: str) -> None:
    problem = text.label_key_problem(k)
    if problem:
        raise ValueError(problem)
    if CREDENTIAL_NAME.search(k):
        raise ValueError(f"label {text.shown(k)} looks like a credential; labels are public")


def _did_you_mean(word: str, choices: list[str]) -> str:
    return yamlfile.did_you_mean(word, choices)
