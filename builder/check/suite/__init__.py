"""The container checks: a pytest-testinfra suite shipped inside tfimg.

Checks are registered as data. Every variant gets the :data:`SHARED` modules;
a feature the spec enables adds its modules (:data:`FEATURES`). A variant adds
its own checks as data in its spec -- ``checks.python_packages`` and
``checks.commands`` -- and a child inherits its parent's through spec merging
(``extends``; ``commands+`` appends). :func:`declared` says which file
declared each of them, and the check's id and detail show it::

    variant::command[base.yaml#1]   python3 -c "import tensorflow ..."  (declared in base.yaml)

The suite runs as ``python -m pytest <this folder>`` with a context file made
by :mod:`builder.check.stage`; it is not meant to be run on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from builder.infra import yamlfile
from builder.spec.loader import LoadedVariant, Variant

DIR = Path(__file__).parent
SHARED = ("test_user", "test_image", "test_python", "test_variant", "test_stack")
FEATURES = {"ssh": ("test_ssh",), "jupyter": ("test_jupyter",)}


def modules_for(spec: Variant) -> list[str]:
    """Check modules that apply to ``spec`` (GPU checks always run and skip without a GPU)."""
    mods = list(SHARED)
    for feature, names in sorted(FEATURES.items()):
        if getattr(spec, feature).enabled:
            mods += names
    return mods


def paths_for(spec: Variant) -> list[str]:
    return [str(DIR / f"{m}.py") for m in modules_for(spec)]


def declared(loaded: LoadedVariant) -> dict[str, list[dict[str, Any]]]:
    """The variant's own checks with the file that declared each (parents first)."""
    commands: list[dict[str, Any]] = []
    packages: dict[str, dict[str, Any]] = {}
    for path in loaded.chain:
        raw = (yamlfile.load(Path(path)) or {}).get("checks") or {}
        if "commands" in raw:
            commands = []
        for key in ("commands", "commands+"):
            items = raw.get(key) or []
            for cmd in items if isinstance(items, list) else [items]:
                commands.append({"command": str(cmd), "file": Path(path).name})
        for name, spec in (raw.get("python_packages") or {}).items():
            packages[name] = {"name": name, "specifier": str(spec), "file": Path(path).name}
    final = loaded.spec.checks
    if [c["command"] for c in commands] != list(final.commands):
        commands = [{"command": c, "file": loaded.path.name} for c in final.commands]
    pkgs = [packages.get(n, {"name": n, "file": loaded.path.name}) | {"name": n, "specifier": s}
            for n, s in sorted(final.python_packages.items())]
    for i, c in enumerate(commands):
        same_file = [x for x in commands[: i + 1] if x["file"] == c["file"]]
        c["id"] = f"{c['file']}#{len(same_file)}"
    return {"commands": commands, "python_packages": pkgs}
