"""Variant specs: the YAML loader, ``extends`` and errors (models: :mod:`builder.spec.models`).

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
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from builder.errors import SpecError, SpecErrors
from builder.infra import yamlfile
from builder.spec import requirements
from builder.spec.models import *  # noqa: F403  (the models are part of this module's API)
from builder.spec.models import PATH_KEYS, PUBKEY_TYPES, LoadedVariant, Variant

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


def load_all(paths: list[Path]) -> list[LoadedVariant]:
    """Load every variant file; raise one SpecErrors naming every error of every file."""
    loaded, errors = [], []
    for path in paths:
        try:
            loaded.append(load(path))
        except SpecErrors as exc:
            errors += exc.errors
    if errors:
        raise SpecErrors(errors)
    return loaded


def _read_yaml(path: Path, display: Path) -> tuple[dict[str, Any], Origin]:
    if not path.is_file():
        raise SpecErrors([SpecError(display, "", "file not found",
                                    hint="Check the path; it is resolved relative to the file that names it.")])
    data, lines = yamlfile.read_mapping(path, display, "a variant file")
    return data, {loc: (display, line) for loc, line in lines.items()}


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
    return yamlfile.translate(exc, Variant, lambda loc: _where(loc, origin, path))


def _where(loc: tuple[Any, ...], origin: Origin, path: Path) -> tuple[Path, int | None]:
    for n in range(len(loc), 0, -1):
        if loc[:n] in origin:
            return origin[loc[:n]]
    return path, None


def _check_files(spec: Variant, origin: Origin, path: Path) -> list[SpecError]:
    errors: list[SpecError] = []

    def err(loc: tuple[Any, ...], msg: str, hint: str | None = None) -> None:
        file, line = _where(loc, origin, path)
        errors.append(SpecError(file, yamlfile.keypath(loc), msg, line=line, hint=hint))

    for i, req in enumerate(spec.python.requirements):
        loc = ("python", "requirements", i)
        p = Path(req)
        if not p.is_file():
            err(loc, f"requirements file '{p}' not found", "Paths are relative to the variant file that names them.")
            continue
        for problem in requirements.problems(p):
            err(loc, problem)
    for i, key in enumerate(spec.ssh.authorized_keys):
        loc = ("ssh", "authorized_keys", i)
        p = Path(key)
        if not p.is_file():
            err(loc, f"public key file '{p}' not found")
            continue
        if (key_problem := public_key_problem(p.read_text(errors="replace"))) is not None:
            err(loc, f"{p.name}: {key_problem}")
    if spec.policy and not Path(spec.policy).is_file():
        err(("policy",), f"policy file '{spec.policy}' not found")
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
