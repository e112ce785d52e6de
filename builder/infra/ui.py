"""One status printer: a live display on a terminal, plain lines in CI or with --quiet.

Honours NO_COLOR (rich does) and CI (plain output).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Iterator

from rich.console import Console
from rich.status import Status

STEP = re.compile(r"^#\d+ \[(?:[\w-]+ )?\d+/\d+\] ")


class UI:
    def __init__(self, quiet: bool = False) -> None:
        # In logs (CI, pipes) tables get room instead of rich's default 80 columns.
        self.console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False,
                               width=None if sys.stderr.isatty() else 160)
        self.live = self.console.is_terminal and not quiet and not os.environ.get("CI")
        self.quiet = quiet
        self._status: Status | None = None
        self.timings: dict[str, float] = {}

    def info(self, text: str) -> None:
        self.console.print(text, markup=False)

    def warn(self, text: str) -> None:
        self.console.print(f"tfimg: warning: {text}", markup=False)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        if self.live:
            with self.console.status(f"{name} ...") as status:
                self._status = status
                try:
                    yield
                finally:
                    self._status = None
        else:
            self.info(f"-> {name}")
            yield
        took = time.monotonic() - start
        self.timings[name] = round(took, 3)
        self.info(f"ok {name} ({took:.1f}s)")

    def build_line(self, line: str) -> None:
        """A line of BuildKit plain progress: show step headers only."""
        if not STEP.match(line) or " CACHED" in line:
            return
        text = line.split(" ", 1)[1][:150]
        if self._status is not None:
            self._status.update(f"build {text}")
        elif not self.quiet:
            print(f"   {text}", file=sys.stderr, flush=True)
