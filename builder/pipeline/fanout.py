"""Several variants in one ``tfimg build``: each in its own ``tfimg build`` process, N at a time.

Each child is the single-variant command (the tested path), so a failure in
one variant never leaves another half-built; BuildKit shares its layer cache
between them. The children get the same options (:meth:`BuildOptions.to_argv`,
and ``--debug``/``--quiet``). Lines are prefixed with the variant's name. Ctrl-C
reaches every child (same process group) and each cleans up after itself.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from builder.infra import runner
from builder.pipeline.context import BuildOptions
from builder.spec.loader import LoadedVariant

_PRINT = threading.Lock()


def child_argv(loaded: LoadedVariant, opts: BuildOptions, *, debug: bool = False, quiet: bool = False,
               cache: Path | None = None) -> list[str]:
    """The ``tfimg build`` command line of one variant's child process (the root options first)."""
    root = [*(["--debug"] if debug else []), *(["--quiet"] if quiet else []), *(["--cache", str(cache)] if cache else [])]
    return [sys.executable, "-m", "builder", *root, "build", str(loaded.path), *opts.to_argv()]


def _run_one(loaded: LoadedVariant, argv: list[str]) -> tuple[str, int, str]:
    last: list[str] = []

    def show(line: str) -> None:
        nonlocal last
        last = (last + [line])[-3:]
        with _PRINT:
            print(f"[{loaded.name}] {line}", file=sys.stderr, flush=True)
    rc = runner.stream(argv, show, env={"CI": os.environ.get("CI", "1")})
    return loaded.name, rc, "; ".join(x for x in last if x.startswith("tfimg:")) or ""


def build_many(variants: list[LoadedVariant], opts: BuildOptions, jobs: int, *, debug: bool = False,
               quiet: bool = False, cache: Path | None = None) -> list[tuple[str, int, str]]:
    """Build every variant, ``jobs`` at a time; returns (name, exit code, error line) per variant."""
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(lambda lv: _run_one(lv, child_argv(lv, opts, debug=debug, quiet=quiet, cache=cache)),
                             variants))


def duplicate_names(variants: list[LoadedVariant]) -> list[str]:
    names = [v.name for v in variants]
    return sorted({n for n in names if names.count(n) > 1})

