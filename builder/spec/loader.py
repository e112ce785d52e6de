"""Variant specs: the YAML loader, ``extends`` and errors (models: :mod:`builder.spec.models`).

A variant file is YAML; :func:`load` reads it with its parents, merges them,
validates the result and returns a frozen :class:`Variant`. Every problem is
raised as :class:`~builder.errors.SpecErrors` naming the file, line, key path
and the fix; nothing is built from an invalid spec.

Files a variant names (``extends``, requirements, keys, policy) must lie in
its repository or an allowed folder (:mod:`builder.spec.paths`); every URL in
it and in its requirements files is searched for credentials
(:mod:`builder.spec.urls`); every file is read by :mod:`builder.infra.datafile`.

Merge rules for ``extends`` (parents first, in order, then the child):
mappings merge key by key, a child's scalar wins, lists replace; a key
written ``name+`` appends to the parent's list instead of replacing it.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from builder.errors import SpecError, SpecErrors, UnreadableInput
from builder.infra import datafile, yamlfile
from builder.spec import paths, requirements, urls
from builder.spec.models import *  # noqa: F403  (the models are part of this module's API)
from builder.spec.models import PATH_KEYS, PUBKEY_TYPES, LoadedVariant, Variant

# --------------------------------------------------------------------------- loading

Origin = dict[tuple[Any, ...], tuple[Path, int]]


def load(path: str | Path, allow: Sequence[Path | str] = ()) -> LoadedVariant:
    """Load, merge and validate a variant file. Raises SpecErrors.

    Files it names must lie in its repository or under one of the ``allow`` folders
    (``--allow-dir``; :mod:`builder.spec.paths`).
    """
    path = Path(path)
    try:
        datafile.check_regular(path, what="the variant file")
    except UnreadableInput as exc:
        raise SpecErrors([exc]) from None
    roots = paths.Roots.of(path, allow)
    data, origin, chain = _load_tree(paths.real(path), display=path, stack=[], roots=roots)
    data.setdefault("name", path.stem)
    origin.setdefault(("name",), (path, 0))
    try:
        spec = Variant.model_validate(data)
    except ValidationError as exc:
        raise SpecErrors(_translate(exc, origin, path)) from None
    errors = _check_files(spec, origin, path, roots)
    if errors:
        raise SpecErrors(errors)
    return LoadedVariant(spec=spec, path=path, chain=chain)


def load_all(files: list[Path], allow: Sequence[Path | str] = ()) -> list[LoadedVariant]:
    """Load every variant file; raise one SpecErrors naming every error of every file."""
    loaded, errors = [], []
    for path in files:
        try:
            loaded.append(load(path, allow))
        except SpecErrors as exc:
            errors += exc.errors
    if errors:
        raise SpecErrors(errors)
    return loaded


def _read_yaml(path: Path, display: Path) -> tuple[dict[str, Any], Origin]:
    """One variant file's data and the line of each key; refused when a URL in it holds a credential."""
    data, lines = yamlfile.read_mapping(path, display, "a variant file")
    origin = {loc: (display, line) for loc, line in lines.items()}
    found = urls.scan(data)
    if found:   # before validation: a validator's message could echo the value
        raise SpecErrors([SpecError(display, yamlfile.keypath(loc), msg, line=_where(loc, origin, display)[1],
                                    hint=hint) for loc, msg, hint in found])
    return data, origin


def _load_tree(path: Path, display: Path, stack: list[Path],
               roots: paths.Roots) -> tuple[dict[str, Any], Origin, list[Path]]:
    if path in stack:
        cycle = " -> ".join(p.name for p in [*stack, path])
        raise SpecErrors([SpecError(display, "extends", f"extends cycle: {cycle}",
                                    hint="Remove one of these extends so that the chain ends.")])
    data, origin = _read_yaml(path, display)
    _resolve_paths(data, path.parent, origin, display, roots)
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
        ppath = Path(parent)   # resolved and confined by _resolve_paths
        line = origin.get(("extends", i), origin.get(("extends",), (None, None)))[1]
        try:
            datafile.check_regular(ppath, what=f"parent file '{ppath}'")
        except UnreadableInput as exc:
            raise SpecErrors([SpecError(display, "extends", exc.text, line=line,
                                        hint="Paths in extends are relative to the file that declares them.")]) \
                from None
        pdata, porigin, pchain = _load_tree(ppath, _display(ppath), [*stack, path], roots)
        pdata.pop("name", None)   # a child never inherits its parent's name ...
        pdata.pop("abstract", None)   # ... nor its being abstract
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
        if append:   # onto the parent's list, or onto the default when no parent set one
            start = out[name] if name in out else _default_at(where)
            out[name] = list(start or []) + (value if isinstance(value, list) else [value])
        elif isinstance(value, dict):
            out[name] = _merge(out[name] if isinstance(out.get(name), dict) else {}, value,
                               origin, over_origin, where)
        else:
            out[name] = value
        for k, v in over_origin.items():
            if k[: len(path) + 1] == (*path, key):
                origin[tuple(where) + tuple(k[len(path) + 1:])] = v
    return out


def _default_at(loc: tuple[Any, ...]) -> Any:
    """The model's default for a key path (``("python", "protected")``), or None."""
    model: Any = Variant
    field = None
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        model = field.annotation
    return field.get_default(call_default_factory=True) if field else None


def _resolve_paths(data: dict[str, Any], root: Path, origin: Origin, display: Path, roots: paths.Roots) -> None:
    """Make every host path of one file absolute (``~``, the declaring folder, symlinks resolved) and
    refuse those outside ``roots`` (:mod:`builder.spec.paths`). Secret files may lie anywhere."""
    errors: list[SpecError] = []

    def fix(v: Any, loc: tuple[Any, ...], confined: bool) -> Any:
        if isinstance(v, list):
            return [fix(x, (*loc, i), confined) for i, x in enumerate(v)]
        if not isinstance(v, str):
            return v
        resolved = paths.real(root / os.path.expanduser(v))
        why = roots.problem(resolved, v) if confined else paths.secret_problem(str(resolved))
        if why:
            errors.append(SpecError(display, yamlfile.keypath(loc), why, line=_where(loc, origin, display)[1],
                                    hint=paths.HINT if confined else None))
        return str(resolved)

    for keys in [*PATH_KEYS, ("extends",)]:
        node: Any = data
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict):
            for last in (keys[-1], keys[-1] + "+"):
                if last in node:
                    node[last] = fix(node[last], (*keys[:-1], last), True)
    secrets = data.get("secrets")
    if isinstance(secrets, dict):
        for sid, ref in secrets.items():
            if isinstance(ref, dict) and isinstance(ref.get("file"), str):
                ref["file"] = fix(ref["file"], ("secrets", sid, "file"), False)
    if errors:
        raise SpecErrors(errors)


# --------------------------------------------------------------------------- errors

def _translate(exc: ValidationError, origin: Origin, path: Path) -> list[SpecError]:
    return yamlfile.translate(exc, Variant, lambda loc: _where(loc, origin, path))


def _where(loc: tuple[Any, ...], origin: Origin, path: Path) -> tuple[Path, int | None]:
    """The file and line that set ``loc`` (the nearest enclosing key that has one)."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in origin:
            return origin[loc[:n]]
    return path, None


def _check_files(spec: Variant, origin: Origin, path: Path, roots: paths.Roots) -> list[SpecError]:
    """Each file the variant names is a readable regular file in ``roots`` with valid content."""
    errors: list[SpecError] = []

    def err(loc: tuple[Any, ...], msg: str, hint: str | None = None) -> None:
        file, line = _where(loc, origin, path)
        errors.append(SpecError(file, yamlfile.keypath(loc), msg, line=line, hint=hint))

    def read(loc: tuple[Any, ...], p: Path, what: str) -> str | None:
        try:
            return datafile.read_text(p, p, limit=datafile.MAX_INPUT_BYTES, what=f"{what} '{p}'")
        except UnreadableInput as exc:
            err(loc, exc.text, exc.hint)
            return None

    for i, req in enumerate(spec.python.requirements):
        loc = ("python", "requirements", i)
        if (text := read(loc, Path(req), "requirements file")) is not None:
            for problem in requirements.problems(text, Path(req).name):
                err(loc, problem, urls.HINT if "credential" in problem else None)
    for i, key in enumerate(spec.ssh.authorized_keys):
        loc = ("ssh", "authorized_keys", i)
        if (text := read(loc, Path(key), "public key file")) is not None \
                and (key_problem := public_key_problem(text)) is not None:
            err(loc, f"{Path(key).name}: {key_problem}")
    if spec.policy:
        try:
            datafile.check_regular(spec.policy, what=f"policy file '{spec.policy}'")
        except UnreadableInput as exc:
            err(("policy",), exc.text, exc.hint)
    return errors


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
