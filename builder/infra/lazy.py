"""Modules loaded on first use, so `tfimg --help` and a command that needs few stages import only
what they use (``python -X importtime -m builder --help`` shows it).

    if TYPE_CHECKING:
        from builder.pipeline import orchestrator as pipeline
    else:
        pipeline = lazy.module("builder.pipeline.orchestrator")

The real module is imported (normally, so thread-safely) on the first attribute access.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType


class _Deferred(ModuleType):
    """Stands for a module until its first attribute is read, then imports it for real.

    Only the CLI module that asked for it holds this object: ``sys.modules`` gets the real module,
    by a normal (thread-safe) import, so every other importer sees a fully initialised module.
    (importlib's LazyLoader puts a half-made module into ``sys.modules``, and two threads touching
    it at once can see it without its attributes.)
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_real"] = None

    def __getattr__(self, attr: str) -> object:
        real = self.__dict__["_real"]
        if real is None:
            real = importlib.import_module(self.__name__)
            self.__dict__["_real"] = real
        return getattr(real, attr)


def module(name: str) -> ModuleType:
    """``name``, imported on first use (at once when it is already imported)."""
    found = sys.modules.get(name)
    if found is not None:
        return found
    if importlib.util.find_spec(name) is None:
        raise ImportError(f"no module named {name!r}", name=name)
    return _Deferred(name)
