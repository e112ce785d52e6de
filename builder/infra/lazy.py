"""Modules loaded on first use, so `tfimg --help` and a command that needs few stages import only
what they use (``python -X importtime -m builder --help`` shows it).

    if TYPE_CHECKING:
        from builder.pipeline import orchestrator as pipeline
    else:
        pipeline = lazy.module("builder.pipeline.orchestrator")

The module is created now and run on its first attribute access (:class:`importlib.util.LazyLoader`).
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def module(name: str) -> ModuleType:
    """``name``, imported on first use (at once when it is already imported)."""
    found = sys.modules.get(name)
    if found is not None:
        return found
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    loader.exec_module(mod)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, mod)
    return mod
