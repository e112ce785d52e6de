"""The inputs of a build, and the one recipe of their hash.

``tfimg build`` (is the image up to date?), ``tfimg build --registry`` (is it published?) and
``tfimg bake`` (the target's label and tag) all compute the input hash here, from the same parts:

- the rendered context's hash (:meth:`builder.render.context.Rendered.context_hash`);
- the base: its reference, and :func:`base_key` (its registry digest when one is known, so two
  engines that pulled the same base agree; the image id of a base that was never pushed);
- the secrets that are passed (:func:`secret_choice`): their ids and where they come from, never
  their values.

    choice = secret_choice(loaded)
    ihash = input_hash(rendered.context_hash(), base_key(ref, digest, image_id), choice.used, ref)
    local_ref(loaded.name, ihash)      # tfimg/<variant>:<12 hex>
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import EnvError
from builder.infra import clock, git, registry_client
from builder.infra.engine import Engine
from builder.infra.labels import LOCAL_REPO
from builder.spec.loader import LoadedVariant


def input_hash(context_hash: str, base_key: str, secret_ids: Mapping[str, str], base_ref: str) -> str:
    """What decides whether a build is needed: context, base, secrets' identities (not values).

    ``base_key`` is :func:`base_key`: the base's registry digest when one is known, so two
    engines (two CI runners) that pulled the same base compute the same hash.
    """
    blob = json.dumps({"context": context_hash, "base_id": base_key, "base_ref": base_ref,
                       "secrets": dict(secret_ids)}, sort_keys=True).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def base_key(ref: str, digest: str | None, image_id: str | None) -> str:
    """The engine-independent identity of a base: the digest in ``ref``, else its registry
    digest (RepoDigests), else (a base built locally, never pushed or pulled) its image id."""
    if "@sha256:" in ref:
        return ref.rsplit("@", 1)[1]
    return digest or image_id or "unknown"


def repo_digest(ref: str, repo_digests: list[str]) -> str | None:
    """The registry digest of an image (RepoDigests): the one of ``ref``'s repository when there is one."""
    if "@sha256:" in ref:
        return ref.rsplit("@", 1)[1]
    pairs = [d.split("@", 1) for d in repo_digests if "@" in d]
    repo = ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref
    return next((dg for r, dg in pairs if r == repo), pairs[0][1] if pairs else None)


def local_ref(name: str, ihash: str) -> str:
    """The local tag a build sets and follows: ``tfimg/<variant>:<12 hex of the input hash>``."""
    return f"{LOCAL_REPO.format(name=name)}:{ihash[7:19]}"


def build_args(base: str, base_digest: str | None, revision: str, date: SourceDate) -> dict[str, str]:
    """The build args of every build (``tfimg build`` and ``tfimg bake``). SOURCE_DATE_EPOCH sets the
    image's times (BuildKit v0.11 and later); the created label says the same time."""
    return {"TFIMG_BASE": base, "TFIMG_CREATED": date.rfc3339, "TFIMG_REVISION": revision,
            "TFIMG_BASE_DIGEST": base_digest or "unknown", "SOURCE_DATE_EPOCH": str(date.epoch)}


# --------------------------------------------------------------------------- the image's time

@dataclass(frozen=True)
class SourceDate:
    """The time an image says it was made (SOURCE_DATE_EPOCH), and where it came from: ``spec``
    (build.source_date_epoch), ``env`` ($SOURCE_DATE_EPOCH), ``git`` (the last commit of the variant's
    files), ``recorded`` (a published image's, ``--reproduce``) or ``now`` (none of those: the image is
    not reproducible)."""

    epoch: int
    source: str

    @property
    def rfc3339(self) -> str:
        return dt.datetime.fromtimestamp(self.epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def variant_files(loaded: LoadedVariant) -> list[Path]:
    """Every file a variant's image is made from: its file, the files it extends, the requirements
    and keys they name."""
    return [*loaded.chain, *map(Path, loaded.spec.python.requirements), *map(Path, loaded.spec.ssh.authorized_keys)]


def source_date(loaded: LoadedVariant, environ: Mapping[str, str] | None = None) -> SourceDate:
    """The build's SOURCE_DATE_EPOCH. Raises EnvError for a $SOURCE_DATE_EPOCH that is not a Unix time."""
    if loaded.spec.build.source_date_epoch is not None:
        return SourceDate(loaded.spec.build.source_date_epoch, "spec")
    env = (os.environ if environ is None else environ).get("SOURCE_DATE_EPOCH", "").strip()
    if env:
        if not env.isdigit() or not 0 < int(env) < 4102444800:
            raise EnvError(f"SOURCE_DATE_EPOCH={env[:40]!r} is not a Unix time in seconds (e.g. 1700000000)",
                           hint="Unset it to use the time of the variant's last commit.")
        return SourceDate(int(env), "env")
    committed = git.commit_time(variant_files(loaded))
    if committed is not None:
        return SourceDate(committed, "git")
    return SourceDate(int(clock.now().timestamp()), "now")


def cache_ref(ref: str | None, name: str) -> str | None:
    """A cache reference with ``{name}`` replaced by the variant's name."""
    return ref.replace("{name}", name) if ref else ref


# --------------------------------------------------------------------------- secrets

@dataclass(frozen=True)
class SecretChoice:
    """Which of a variant's secrets a build passes, decided once for build, bake and ``--registry``."""

    used: dict[str, str] = field(default_factory=dict)       # id -> identity (file:PATH | env:NAME)
    sources: dict[str, str] = field(default_factory=dict)    # id -> the file, or the variable's name
    skipped: tuple[str, ...] = ()                            # optional and absent: not passed
    missing: dict[str, EnvError] = field(default_factory=dict)   # required and absent: no build can run here


def secret_choice(loaded: LoadedVariant, environ: Mapping[str, str] | None = None) -> SecretChoice:
    """A file secret is passed when the file exists, an env secret when its variable is set and not
    empty; an absent optional secret is skipped, an absent required one is ``missing``."""
    env = os.environ if environ is None else environ
    used: dict[str, str] = {}
    sources: dict[str, str] = {}
    skipped: list[str] = []
    missing: dict[str, EnvError] = {}
    for sid, ref in loaded.spec.secrets.items():
        if ref.file:
            present, source = Path(ref.file).is_file(), ref.file
            why = EnvError(f"{loaded.path}: secrets.{sid}: file '{ref.file}' does not exist",
                           hint="Create it, or mark the secret `required: false`.")
        else:
            present, source = bool(env.get(ref.env or "")), str(ref.env)
            why = EnvError(f"{loaded.path}: secrets.{sid}: environment variable {ref.env} is not set",
                           hint=f"Export {ref.env} before building.")
        if not present and ref.required:
            missing[sid] = why
        elif not present:
            skipped.append(sid)
        else:
            used[sid], sources[sid] = ref.identity(), source
    return SecretChoice(used, sources, tuple(skipped), missing)


# --------------------------------------------------------------------------- the base, without pulling it

def remote_base(ref: str, engine: Engine) -> tuple[str, str | None] | None:
    """(:func:`base_key`, registry digest or None) of the base, without pulling it: from the
    reference, the local engine, or one manifest request to its registry. None when unknown."""
    if "@sha256:" in ref:
        return base_key(ref, None, None), ref.rsplit("@", 1)[1]
    info = engine.image(ref)
    if info is not None:
        digest = repo_digest(ref, info.repo_digests)
        return base_key(ref, digest, info.id), digest
    digest = registry_client.remote_digest(ref)
    return (digest, digest) if digest else None
