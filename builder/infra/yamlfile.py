"""YAML files validated by pydantic models, with errors that name file, line, key and fix.

Shared by variant specs (:mod:`builder.spec.loader`) and gate policies
(:mod:`builder.scan.policy`): read a mapping and the line of every key, and turn a
pydantic ``ValidationError`` into :class:`~builder.errors.SpecError` items.

It is the one YAML reader of the package, and it refuses hostile files fast:
more than :data:`MAX_BYTES`, nesting deeper than :data:`MAX_DEPTH`, more than
:data:`MAX_ALIASES` aliases, a recursive alias, or more than :data:`MAX_NODES`
nodes once aliases are expanded. It refuses what it cannot read without
guessing: a key written twice in one mapping (both lines named; ``<<`` merge
keys may still be overridden), a value Python cannot hold (the date
``2026-02-30``, an integer of more than 4300 digits), a lone surrogate escape.
The file itself is read by :mod:`builder.infra.datafile` (regular files only, UTF-8).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from builder.errors import SpecError, SpecErrors, UnreadableInput
from builder.infra import datafile

Loc = tuple[Any, ...]


# Limits for every YAML file tfimg reads (docs/bad-input.md, "Limits of a variant or policy file"):
# a hostile file (a "billion laughs" of aliases, thousands of nested brackets) is
# refused before it can hang tfimg or exhaust its stack. Real files are far below them.
MAX_BYTES = 1024 * 1024      # file size
MAX_DEPTH = 32               # nesting of mappings and lists
MAX_ALIASES = 100            # alias nodes (*name)
MAX_NODES = 100_000          # nodes once every alias is expanded


class _LimitExceeded(Exception):
    def __init__(self, message: str, line: int | None, hint: str) -> None:
        super().__init__(message)
        self.message, self.line, self.hint = message, line, hint


class _Refused(_LimitExceeded):
    """A value or key the file cannot be trusted with (not a limit)."""


MERGE_TAG = "tag:yaml.org,2002:merge"


class _LimitedLoader(yaml.SafeLoader):
    """A safe loader that counts depth, aliases and expanded nodes while it composes.

    Composition is lazy (events are scanned as they are needed), so a limit stops
    the reading at the first node over it, long before the file is expanded.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        self._aliases = 0
        self._sizes: dict[int, int] = {}   # id(anchored node) -> its expanded size

    def _line(self) -> int | None:
        mark = self.peek_event().start_mark if self.check_event() else None
        return mark.line + 1 if mark else None

    def _count(self, n: int) -> None:
        self._nodes += n
        if self._nodes > MAX_NODES:
            raise _LimitExceeded(f"expands to more than {MAX_NODES} nodes once its aliases are expanded "
                                 f"(tfimg's limit; a 'billion laughs' file)", self._line(),
                                 "Write the values out instead of nesting aliases of aliases.")

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        """Construct as SafeLoader does; a scalar Python refuses (ValueError, OverflowError) or a
        lone surrogate becomes a refusal naming its line."""
        try:
            value = super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            digits = "digits" in str(exc)
            raise _Refused(f"has a value tfimg cannot read: {'an integer longer than 4300 digits' if digits else exc}",
                           node.start_mark.line + 1,
                           "Quote it if it is text; write dates as real days (YYYY-MM-DD).") from None
        if isinstance(value, str) and not value.isascii() and any("\ud800" <= c <= "\udfff" for c in value):
            raise _Refused("has a lone UTF-16 surrogate escape (\\udXXX), which is not text",
                           node.start_mark.line + 1, "Remove the escape, or write the character itself.")
        return value

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        """Refuse a key written twice in one mapping (YAML forbids it; PyYAML keeps the last)."""
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, tuple[int, int, str]] = {}   # key -> line, column, as written
            for key_node, _ in node.value:
                if key_node.tag == MERGE_TAG:   # `<<: *base` then `key: value` is an override, not a duplicate
                    continue
                key = self.construct_object(key_node, deep=True)
                mark = key_node.start_mark
                written = datafile.show_key(key_node.value if isinstance(key_node, yaml.ScalarNode) else key)
                try:
                    first = seen.get(key)
                except TypeError:   # an unhashable key: SafeLoader says so
                    continue
                if first is not None:
                    where = (f"lines {first[0]} and {mark.line + 1}" if first[0] != mark.line + 1 else
                             f"line {first[0]}, columns {first[1]} and {mark.column + 1}")
                    named = (written if first[2] == written else
                             f"{first[2]} / {written} (both read as {datafile.show_key(key)})")
                    raise _Refused(f"has the key {named} twice in one mapping ({where}); "
                                   "tfimg does not guess which one you meant",
                                   mark.line + 1, "Remove one of them (or merge their values).")
                seen[key] = (mark.line + 1, mark.column + 1, written)
        return super().construct_mapping(node, deep)

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _LimitExceeded(f"uses more than {MAX_ALIASES} aliases (*name; tfimg's limit)",
                                     event.start_mark.line + 1, "Write the values out instead of aliasing them.")
            target = self.anchors.get(event.anchor)
            if target is not None:
                size = self._sizes.get(id(target))
                if size is None:
                    raise _LimitExceeded(f"has a recursive alias: *{event.anchor} is inside the node it refers "
                                         "to (tfimg's limit: none allowed)",
                                         event.start_mark.line + 1, "Remove the alias from inside its anchor.")
                self._count(size)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _LimitExceeded(f"is nested more than {MAX_DEPTH} levels deep (tfimg's limit)", self._line(),
                                 "Flatten the file: variant and policy files need only a few levels.")
        before = self._nodes
        self._count(1)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._sizes[id(node)] = self._nodes - before
        return node


def _read_text(path: Path, display: Path | str) -> str:
    return datafile.read_text(path, display, limit=MAX_BYTES, what="the file")


def _compose(path: Path, display: Path | str) -> tuple[Any, Any]:
    """The node tree and the Python data of one YAML file, within the limits.

    Raises SpecErrors for a limit, yaml.YAMLError for bad YAML.
    """
    text = _read_text(path, display)
    loader = _LimitedLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except _LimitExceeded as exc:
        raise SpecErrors([SpecError(display, "", f"refused: the file {exc.message}", line=exc.line,
                                    hint=exc.hint)]) from None
    except RecursionError:   # MAX_DEPTH keeps composition far below it; a guard, not a path
        raise SpecErrors([SpecError(display, "", "refused: the file is nested too deeply to read")]) from None
    finally:
        loader.dispose()
    return node, data


def load(path: Path, display: Path | str | None = None) -> Any:
    """The Python data of a YAML file (any shape), within the limits. Raises SpecErrors."""
    return _parse(path, path if display is None else display)[1]


def _parse(path: Path, display: Path | str) -> tuple[Any, Any]:
    """The one YAML reader of tfimg: every YAML file it reads (variants, policies, its own
    catalog) comes through here, within the limits. Raises SpecErrors."""
    try:
        return _compose(path, display)
    except UnreadableInput as exc:
        raise SpecErrors([exc]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecErrors([SpecError(display, "", f"YAML syntax error: {problem}",
                                    line=mark.line + 1 if mark else None,
                                    hint="Fix the YAML at that line (indentation, a missing ':' or quote).")]) from None


def read_mapping(path: Path, display: Path | str, what: str) -> tuple[dict[str, Any], dict[Loc, int]]:
    """Read a YAML mapping and the line of each key and list item. Raises SpecErrors.

    ``what`` names the kind of file in the message ("a variant file", "a policy").
    """
    node, data = _parse(path, display)
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise SpecErrors([SpecError(display, "", f"{what} must be a mapping of keys", line=1)])
    lines: dict[Loc, int] = {}
    _index(node, (), lines)
    return data, lines


def _index(node: Any, loc: Loc, out: dict[Loc, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            out[loc + (k.value,)] = k.start_mark.line + 1
            _index(v, loc + (k.value,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out[loc + (i,)] = v.start_mark.line + 1
            _index(v, loc + (i,), out)


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
        better = special(dict(err)) if special else None
        out.append(SpecError(file, keypath(loc), better or msg, line=line, hint=hint))
    return out
