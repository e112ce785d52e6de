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
from typing import Any

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

OCI = "org.opencontainers.image."
# Labels tfimg sets itself, and where their value comes from: a variant cannot set them.
# Every io.tfimg.* key is tfimg's too (builder.infra.labels), set or reserved.
TFIMG_LABELS = {
    OCI + "title": "the variant's name",
    OCI + "description": "the variant's description: set description: instead",
    OCI + "source": "the variant's source: set source: instead",
    OCI + "created": "the build time",
    OCI + "revision": "the git revision of the variant repository",
    OCI + "base.name": "the base image reference",
    OCI + "base.digest": "the base image digest",
}
TFIMG_LABEL_PREFIX = "io.tfimg."
TFIMG_ENV_PREFIX = "TFIMG_"

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


def problem_in(value: Any, *, multiline: bool = False) -> str | None:
    """Why a field's value (a string, list or dict of strings; keys too) cannot be rendered, or None.

    Names the item or key, never echoes a value (it could be a secret).
    """
    for where, s, is_key in _strings(value):
        problem = bad_char(s, multiline=multiline and not is_key)
        if problem:
            if multiline and not is_key:
                return f"{where or 'the value'} holds {problem}; only line breaks and tabs are allowed here. " \
                       "Remove that character"
            return (f"{where or 'the value'} holds {problem}; tfimg writes it into Dockerfiles, scripts or "
                    "sshd_config, where it cannot be written safely. Remove that character (write the value "
                    "on one line; in YAML not with | or >, use >- to fold)")
    return None


def _strings(value: Any) -> list[tuple[str, str, bool]]:
    """Every string directly in a field's value: (where, string, is a key)."""
    if isinstance(value, str):
        return [("", value, False)]
    if isinstance(value, list | tuple):
        return [(f"item [{i}]", s, False) for i, s in enumerate(value) if isinstance(s, str)]
    out: list[tuple[str, str, bool]] = []
    if isinstance(value, dict):
        for k, s in value.items():
            if isinstance(k, str):
                out.append((f"the key {shown(k)}", k, True))
            if isinstance(s, str):
                out.append((f"the value of {shown(k)}", s, False))
    return out


def container_path_problem(value: str, what: str) -> str | None:
    """Why ``value`` is not an allowlisted absolute path inside the container (no '.', '..',
    spaces, quotes or '%'), or None."""
    parts = value.split("/")[1:]
    if CONTAINER_PATH.fullmatch(value) and not any(p in (".", "..") for p in parts):
        return None
    return (f"{what} must be an absolute path inside the container made of letters, digits and "
            ". _ + @ - (no '..', spaces, quotes or '%'), such as "
            + {"home": "/home/ml", "shell": "/bin/bash"}.get(what, "/run/secrets/name"))


def label_key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a label a variant sets (grammar, or tfimg's own), or None."""
    if not LABEL_KEY.fullmatch(key) or len(key) > LABEL_KEY_MAX:
        return (f"label key {shown(key)} is not a reverse-DNS key: two or more dot-separated parts of "
                "lower-case letters, digits and single inner hyphens, starting with a letter, at most "
                f"{LABEL_KEY_MAX} characters (such as com.example.team)")
    if key.startswith(TFIMG_LABEL_PREFIX) or key in TFIMG_LABELS:
        why = TFIMG_LABELS.get(key, "tfimg's own namespace")
        return f"label {shown(key)} is set by tfimg ({why}); remove it from labels:"
    return None
