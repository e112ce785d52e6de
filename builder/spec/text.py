"""What a string in a variant may hold, and the allowlists for names and paths (pure).

Every string of a variant, keys included, is checked here before anything is
rendered. Characters that no target language of tfimg can carry faithfully are
refused wherever they appear:

* control characters (Unicode category Cc: C0 such as NUL, CR, LF and tab, DEL,
  and C1 such as NEL U+0085);
* line and paragraph separators (U+2028, U+2029), lone surrogates;
* bidirectional formatting controls (U+202A-U+202E, U+2066-U+2069, U+200E,
  U+200F, U+061C), which make a rendered file read differently from what runs.

A Dockerfile has no escape for a line break inside ENV or LABEL (BuildKit keeps
``\\n`` as two characters), editors and reviewers treat CR and U+2028 as line
breaks where BuildKit does not, and bash cannot hold NUL. Fields that are
commands (``checks.commands``) may hold line breaks and tabs, nothing else of
the above.

Names and paths are matched against allowlists with :func:`re.fullmatch` only.
"""

from __future__ import annotations

import re
import unicodedata

# Allowlists (always used with re.fullmatch).
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Label keys: reverse-DNS, Docker's label-key guideline made strict. Two or more
# dot-separated components of lower-case letters and digits with single inner
# hyphens, starting with a letter; at most LABEL_KEY_MAX characters.
LABEL_KEY = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*(?:\.[a-z0-9]+(?:-[a-z0-9]+)*)+")
LABEL_KEY_MAX = 128
# Absolute paths inside the container: segments of letters, digits and . _ + @ -
CONTAINER_PATH = re.compile(r"(?:/[A-Za-z0-9._+@-]+)+")
# File names that become part of the build context (requirements files).
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
APT_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+(?:=[A-Za-z0-9.+:~-]+)?")
IMAGE_REF = re.compile(r"[a-z0-9][a-z0-9._/:-]*[a-zA-Z0-9_.-]")
ARGON2_HASH = re.compile(r"argon2:\$argon2(?:id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}")

BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
MULTILINE_OK = frozenset("\n\t")


def bad_char(value: str, *, multiline: bool = False) -> str | None:
    """The first character of ``value`` that cannot be rendered safely, described, or None.

    >>> bad_char("a\\nb")
    'a line break (U+000A) at position 2'
    >>> bad_char("a\\nb", multiline=True) is None
    True
    """
    for i, ch in enumerate(value, 1):
        if multiline and ch in MULTILINE_OK:
            continue
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cs", "Zl", "Zp") or ch in BIDI:
            return f"{_kind(ch, cat)} (U+{ord(ch):04X}) at position {i}"
    return None


def _kind(ch: str, cat: str) -> str:
    if ch in "\n\r\x0b\x0c\x85" or cat in ("Zl", "Zp"):
        return "a line break"
    if ch == "\x00":
        return "a NUL character"
    if cat == "Cs":
        return "a lone surrogate"
    if ch in BIDI:
        return "a bidirectional formatting control"
    return "a control character"


def shown(value: object, limit: int = 40) -> str:
    """A key or name as it can be printed in a message: escaped, quoted, shortened.

    Only for keys, names and paths; never call it on a value that may be a secret.
    """
    text = ascii(str(value))[1:-1]
    return "'" + (text if len(text) <= limit else text[: limit - 3] + "...") + "'"
