"""Where tfimg writes by default: the output root, and its own cache (standard library only)."""

from __future__ import annotations

import os
from pathlib import Path

OUT_ROOT = Path("build")   # build/<variant>/ (every command's --out default)


def cache_root(chosen: Path | None = None) -> Path:
    """tfimg's cache directory: ``chosen`` (``--cache`` / ``$TFIMG_CACHE_DIR``), else
    ``$XDG_CACHE_HOME/tfimg`` (``~/.cache/tfimg``)."""
    if chosen is not None:
        return chosen
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "tfimg"
