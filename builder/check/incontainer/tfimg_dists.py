"""Installed distributions, and whether their top-level modules import: one JSON line.

A program for the image's own Python (3.8 or newer, standard library only; see
``builder/check/incontainer/__init__.py``), run by the check suite
(``builder/check/suite/test_python.py``) in the running container::

    python3 -B tfimg_dists.py '["requests", "tqdm"]'
    {"requests": {"import_errors": {}, "version": "2.31.0"}, "tqdm": {"version": null}}
    python3 -B tfimg_dists.py --no-import '["requests"]'
    {"requests": {"version": "2.31.0"}}

A top-level module whose name starts with ``_`` and the usual test packages
are not imported.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import json
import sys
from typing import Any

SKIP = ("tests", "test", "testing")


def import_errors(dist: md.Distribution) -> dict[str, str]:
    """Each top-level module of ``dist`` (its ``top_level.txt``) that fails to import, with the error."""
    errors: dict[str, str] = {}
    tops = {t.split("/")[0] for t in (dist.read_text("top_level.txt") or "").split()}
    for top in sorted(tops):
        if top.startswith("_") or top in SKIP:
            continue
        try:
            importlib.import_module(top)
        except Exception as exc:   # any failure of a third-party import is the finding
            errors[top] = type(exc).__name__ + ": " + str(exc)[:200]
    return errors


def describe(names: list[str], imports: bool = True) -> dict[str, dict[str, Any]]:
    """Per name: its installed version (None when absent) and, with ``imports``, its modules' import errors."""
    result: dict[str, dict[str, Any]] = {}
    for name in names:
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            result[name] = {"version": None}
            continue
        result[name] = {"version": dist.version}
        if imports:
            result[name]["import_errors"] = import_errors(dist)
    return result


def main(argv: list[str]) -> int:
    args = argv[1:]
    imports = args[:1] != ["--no-import"]
    if not imports:
        args = args[1:]
    if len(args) != 1:
        sys.stderr.write("usage: python3 tfimg_dists.py [--no-import] JSON-LIST-OF-NAMES\n")
        return 2
    names = json.loads(args[0])
    print(json.dumps(describe([str(n) for n in names], imports), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
