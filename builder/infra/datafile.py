"""The one reader of files a user gives tfimg, and of every JSON document it reads.

Everything tfimg reads from a path (variant and policy files through
:mod:`builder.infra.yamlfile`, requirements and key files, Trivy reports,
report.json, base-layer lists, keys) comes through :func:`read_bytes` or
:func:`read_text`, and every JSON text (those files, registry answers, tool
output) through :func:`loads_json`. What they cannot trust is refused as
:class:`~builder.errors.UnreadableInput` (exit 2) naming the file and, where
there is one, the line:

* a path that is missing, a symlink loop, a folder, not readable, or not a
  regular file: a FIFO, a device or a socket is refused after ``stat`` and
  before ``open`` (and opened non-blocking, then checked again, so a swap
  cannot make tfimg wait on a pipe); anything under ``/proc``, ``/sys`` or
  ``/dev`` is refused by its real path, since those "regular" files are not
  data a user wrote;
* more bytes than the caller's limit, bytes that are not UTF-8 (line and
  column named);
* JSON with a duplicate key (both lines named), nested deeper than Python can
  read, an integer longer than Python converts (4300 digits), ``NaN``,
  ``Infinity`` or a number beyond a float's range (``1e999``: none is JSON, and
  written back out it would not be), or a lone UTF-16 surrogate escape (not text).

Nothing here echoes file content beyond a key name or a number (cut to 60 and 24
characters).
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from builder.errors import UnreadableInput

MAX_JSON_BYTES = 512 * 2**20    # a Trivy report of a large image is tens of MiB
MAX_INPUT_BYTES = 2**20         # a requirements, key or tags file (variant and policy files: yamlfile.MAX_BYTES)
KERNEL_TREES = ("/proc", "/sys", "/dev")
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]:,]')
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONE_SURROGATE = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])|"
                             r"(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}")


def show_key(key: object) -> str:
    """A key as a message may show it: JSON-quoted (no control characters), at most 60 characters."""
    text = json.dumps(key if isinstance(key, str) else str(key))
    return text if len(text) <= 60 else text[:57] + '..."'


# --------------------------------------------------------------------------- files

def _kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _os_error(shown: object, what: str, exc: OSError) -> UnreadableInput:
    why = {errno.ELOOP: "is a symlink loop (too many levels of symbolic links)",
           errno.EACCES: "cannot be read: permission denied",
           errno.EPERM: "cannot be read: operation not permitted",
           errno.EISDIR: "is a folder, not a file",
           errno.ENOTDIR: "is not reachable: a part of its path is not a folder",
           errno.ENAMETOOLONG: "has a name that is too long",
           }.get(exc.errno or 0, f"cannot be read: {exc.strerror or exc}")
    return UnreadableInput(shown, "", f"{what} {why}",
                           hint="Give a readable regular file; fix the path or the link it follows.")


def check_regular(path: Path | str, display: object = None, *, what: str = "the file") -> os.stat_result:
    """Refuse, before anything opens it, a path that is not a readable regular file of data.

    Follows symlinks (a link to a file is fine); a loop, a FIFO, a device, a socket,
    a folder or a file under /proc, /sys or /dev is refused. Raises UnreadableInput.
    """
    shown = path if display is None else display
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UnreadableInput(shown, "", f"{what} was not found",
                              hint="Check the path (relative paths start at the file that names them).") from None
    except OSError as exc:
        raise _os_error(shown, what, exc) from None
    real = os.path.realpath(path)
    if any(real == tree or real.startswith(tree + "/") for tree in KERNEL_TREES):
        raise UnreadableInput(shown, "", f"refused: {what} is {real}, a kernel or device file, not data",
                              hint="Give a regular file; tfimg never reads /proc, /sys or /dev.")
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableInput(shown, "", f"refused: {what} is {_kind(st.st_mode)}, not a regular file",
                              hint="Give a regular file; tfimg never opens pipes, devices or sockets.")
    return st


def read_bytes(path: Path | str, display: object = None, *, limit: int, what: str = "the file") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes. Raises UnreadableInput."""
    shown = path if display is None else display
    check_regular(path, shown, what=what)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise _os_error(shown, what, exc) from None
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):   # swapped between stat and open
            raise UnreadableInput(shown, "", f"refused: {what} is {_kind(mode)}, not a regular file")
        try:
            raw = fh.read(limit + 1)
        except OSError as exc:
            raise _os_error(shown, what, exc) from None
    if len(raw) > limit:
        raise UnreadableInput(shown, "", f"refused: {what} is larger than {_size(limit)} (tfimg's limit)")
    return raw


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n} bytes"


def decode(raw: bytes, display: object, *, what: str = "the file") -> str:
    """UTF-8 text (a leading byte-order mark dropped). Raises UnreadableInput naming line and column."""
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise UnreadableInput(display, "", f"{what} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at line "
                                           f"{line}, column {column})", line=line,
                              hint="Save it as UTF-8 (not UTF-16, Latin-1 or binary).") from None


def read_text(path: Path | str, display: object = None, *, limit: int, what: str = "the file") -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes. Raises UnreadableInput."""
    shown = path if display is None else display
    return decode(read_bytes(path, shown, limit=limit, what=what), shown, what=what)


# --------------------------------------------------------------------------- JSON

class _Duplicate(Exception):
    pass


class _Constant(Exception):
    """A number JSON cannot hold: (what to call it, its text in the document)."""

    def __init__(self, shown: str, token: str) -> None:
        super().__init__(shown)
        self.shown, self.token = shown, token


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _Duplicate
    return out


def _constant(name: str) -> Any:
    raise _Constant(name, name)


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):   # 1e999: written back out it would be Infinity, which is no JSON
        raise _Constant(f"{text[:24]}{'...' if len(text) > 24 else ''} (beyond a float's range)", text)
    return value


def _lines(text: str) -> Iterator[tuple[str, int, int]]:
    """(token, offset, line) for each string and structural character of a JSON text."""
    line, last = 1, 0
    for m in _TOKEN.finditer(text):
        line += text.count("\n", last, m.start())
        last = m.start()
        yield m.group(), m.start(), line


def _duplicate(text: str) -> tuple[str, int, int] | None:
    """The first duplicate key in document order: (key, first line, second line)."""
    stack: list[dict[str, int] | None] = []
    prev: tuple[str, int] | None = None
    for tok, _, line in _lines(text):
        if tok == "{" or tok == "[":
            stack.append({} if tok == "{" else None)
        elif tok == "}" or tok == "]":
            if stack:
                stack.pop()
        elif tok == ":" and prev is not None and stack and stack[-1] is not None:
            key = json.loads(prev[0])
            if key in stack[-1]:
                return key, stack[-1][key], prev[1]
            stack[-1][key] = prev[1]
        prev = (tok, line) if tok.startswith('"') else None
    return None


def _deepest(text: str) -> tuple[int, int]:
    """(depth, line) of the deepest point of a JSON text."""
    depth, best = 0, (0, 1)
    for tok, _, line in _lines(text):
        if tok == "{" or tok == "[":
            depth += 1
            if depth > best[0]:
                best = (depth, line)
        elif tok == "}" or tok == "]":
            depth -= 1
    return best


def _line_of(text: str, pattern: str) -> int | None:
    m = re.search(pattern, text)
    return text.count("\n", 0, m.start()) + 1 if m else None


def _has_surrogate(data: Any) -> bool:
    todo = [data]
    while todo:
        x = todo.pop()
        if isinstance(x, str):
            if not x.isascii() and any("\ud800" <= c <= "\udfff" for c in x):
                return True
        elif isinstance(x, dict):
            todo += x.keys()
            todo += x.values()
        elif isinstance(x, list):
            todo += x
    return False


def loads_json(text: str | bytes, source: object, *, what: str = "the file") -> Any:
    """Parse a JSON document strictly. ``source`` names it in messages (a path, "registry answer").

    Raises UnreadableInput for bad UTF-8, bad JSON, a duplicate key, too deep a nesting,
    an over-long integer, NaN/Infinity or a number beyond a float's range, or a lone
    surrogate escape; never another error.
    """
    if isinstance(text, bytes):
        text = decode(text, source, what=what)
    text = text.removeprefix("\ufeff")
    hint = "Give the file as the tool wrote it; a hand edit or a truncated copy breaks it."
    try:
        data = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant, parse_float=_float)
    except _Duplicate:
        key, first, second = _duplicate(text) or ("?", 0, 0)
        raise UnreadableInput(source, "", f"{what} has the key {show_key(key)} twice in one object "
                                          f"(lines {first} and {second}); a reader would silently keep one",
                              line=second, hint="Remove one of them.") from None
    except _Constant as exc:
        line = _line_of(text, r"(?:^|[:\[,])\s*" + re.escape(exc.token))
        raise UnreadableInput(source, "", f"{what} holds {exc.shown}, which is not a JSON number", line=line,
                              hint=hint) from None
    except json.JSONDecodeError as exc:
        raise UnreadableInput(source, "", f"{what} is not JSON: {exc.msg} (line {exc.lineno}, "
                                          f"column {exc.colno})", line=exc.lineno, hint=hint) from None
    except RecursionError:
        depth, line = _deepest(text)
        raise UnreadableInput(source, "", f"{what} is nested too deeply to read ({depth} levels, deepest at "
                                          f"line {line})", line=line, hint=hint) from None
    except ValueError as exc:   # an integer longer than Python converts (sys.get_int_max_str_digits)
        line = _line_of(text, r"(?:^|[:\[,])\s*-?\d{4300}")
        why = "an integer with more digits than tfimg reads (4300)" if line else f"a value tfimg cannot read ({exc})"
        raise UnreadableInput(source, "", f"{what} holds {why}", line=line, hint=hint) from None
    if _SURROGATE_ESCAPE.search(text) and _has_surrogate(data):
        raise UnreadableInput(source, "", f"{what} holds a lone UTF-16 surrogate escape (\\udXXX), which is "
                                          "not text", line=_line_of(text, _LONE_SURROGATE.pattern), hint=hint)
    return data


def load_json(path: Path | str, display: object = None, *, limit: int = MAX_JSON_BYTES,
              what: str = "the file") -> Any:
    """Read and parse a JSON file (see :func:`read_bytes` and :func:`loads_json`). Raises UnreadableInput."""
    shown = path if display is None else display
    return loads_json(read_bytes(path, shown, limit=limit, what=what), shown, what=what)
