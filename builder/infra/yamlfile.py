"""YAML files validated by pydantic models, with errors that name file, line, key and fix.

Shared by variant specs (:mod:`builder.spec.loader`) and gate policies
(:mod:`builder.scan.policy`): read a mapping and the line of every key, and turn a
pydantic ``ValidationError`` into :class:`~builder.errors.SpecError` items.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from builder.errors import SpecError, SpecErrors

Loc = tuple[Any, ...]


def read_mapping(path: Path, display: Path | str, what: str) -> tuple[dict[str, Any], dict[Loc, int]]:
    """Read a YAML mapping and the line of each key and list item. Raises SpecErrors.

    ``what`` names the kind of file in the message ("a variant file", "a policy").
    """
    text = path.read_text()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecErrors([SpecError(display, "", f"YAML syntax error: {problem}",
                                    line=mark.line + 1 if mark else None,
                                    hint="Fix the YAML at that line (indentation, a missing ':' or quote).")]) from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise SpecErrors([SpecError(display, "", f"{what} must be a mapping of keys", line=1)])
    lines: dict[Loc, int] = {}
    _index(node, (), lines)
    return data, lines


def _index(node: Any, loc: Loc, out: dict[Loc, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            out[(*loc, k.value)] = k.start_mark.line + 1
            _index(v, (*loc, k.value), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out[(*loc, i)] = v.start_mark.line + 1
            _index(v, (*loc, i), out)


def keypath(loc: Loc) -> str:
    """``("ssh", "authorized_keys", 0)`` -> ``ssh.authorized_keys[0]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def fields_at(model: type[BaseModel], loc: Loc, hidden: tuple[str, ...] = ()) -> list[str]:
    """The keys allowed at ``loc`` in ``model`` (for 'unknown key' messages)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if hasattr(current, "model_fields") else None
        ann = field.annotation if field else None
        args = getattr(ann, "__args__", ())
        current = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if current is None:
            return []
    return sorted(k for k in current.model_fields if k not in hidden)


def translate(exc: ValidationError, model: type[BaseModel], where: Callable[[Loc], tuple[Path | str, int | None]],
              *, hidden: tuple[str, ...] = (),
              special: Callable[[dict[str, Any]], str | None] | None = None) -> list[SpecError]:
    """One SpecError per pydantic error: file and line from ``where``, the key path, message and fix.

    ``special`` may return a better message for an error (or None). No input value is
    ever echoed: it could be a secret.
    """
    out = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = tuple(err["loc"])
        file, line = where(loc)
        msg, hint = err["msg"].removeprefix("Value error, "), None
        if err["type"] == "extra_forbidden":
            allowed = fields_at(model, loc[:-1], hidden)
            msg = f"unknown key '{loc[-1]}'{did_you_mean(str(loc[-1]), allowed)}"
            hint = "Allowed keys here: " + ", ".join(allowed) if allowed else None
        elif err["type"] == "missing":
            msg = "this key is required"
        better = special(err) if special else None
        out.append(SpecError(file, keypath(loc), better or msg, line=line, hint=hint))
    return out
