"""Base profiles: the expected component versions of each supported base.

The catalog is data (``builder/spec/data/profiles.yaml``). A component whose value
is not confirmed by a source is detected and recorded, never asserted.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field

from builder.infra import yamlfile

CATALOG = Path(__file__).parent / "data" / "profiles.yaml"


class Component(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    expect: str | None = None
    confirmed: bool = False
    source: str = ""


class Driver(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    minimum: str
    forward_compatible: list[str] = Field(default_factory=list)
    source: str = ""


class Profile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    image: str
    description: str
    os: str
    gpu: bool
    python_site: str
    components: dict[str, Component]
    driver: Driver | None = None
    recommended_run: list[str] = Field(default_factory=list)

    def with_overrides(self, expect: dict[str, str]) -> Profile:
        if not expect:
            return self
        comps = dict(self.components)
        for name, spec in expect.items():
            comps[name] = Component(expect=spec, confirmed=True, source="variant override (base.expect)")
        return self.model_copy(update={"components": comps})

    def compare(self, component: str, detected: str | None) -> dict[str, Any]:
        """Compare a detected version with the profile: status is ok, mismatch, missing or recorded.

        Against an unconfirmed expectation a different version is a ``mismatch`` with ``confirmed``
        false (reported, never failed: see :func:`builder.check.probe.failed`); anything else is
        ``recorded``."""
        comp = self.components.get(component)
        row: dict[str, Any] = {"component": component, "detected": detected,
                               "expected": comp.expect if comp else None,
                               "confirmed": bool(comp and comp.confirmed)}
        if comp is None or comp.expect is None:
            row["status"] = "recorded"
        elif not comp.confirmed:   # shown when it differs, never failed: the expectation itself is unsure
            row["status"] = "recorded" if detected is None or version_matches(detected, comp.expect) else "mismatch"
        elif detected is None:
            row["status"] = "missing"
        else:
            row["status"] = "ok" if version_matches(detected, comp.expect) else "mismatch"
        return row

    def driver_ok(self, driver: str) -> tuple[bool, str]:
        """Whether a host driver can run this profile's CUDA (minimum or forward-compatible branch)."""
        if self.driver is None:
            return True, "profile has no GPU stack"
        try:
            v = Version(driver)
        except InvalidVersion:
            return False, f"driver version '{driver}' cannot be parsed"
        if v >= Version(self.driver.minimum):
            return True, f"driver {driver} >= minimum {self.driver.minimum}"
        for branch in self.driver.forward_compatible:
            if v in SpecifierSet(branch):
                return True, f"driver {driver} is a forward-compatible data-center branch ({branch})"
        return False, (f"driver {driver} is older than {self.driver.minimum} and not a forward-compatible "
                       f"branch ({', '.join(self.driver.forward_compatible) or 'none'})")


def version_matches(detected: str | None, spec: str) -> bool:
    """Whether a detected version satisfies a PEP 440 specifier (pre-releases allowed); None never does."""
    if detected is None:
        return False
    try:
        return Version(detected) in SpecifierSet(spec, prereleases=True)
    except InvalidVersion:
        return False


@lru_cache(maxsize=1)
def _catalog() -> dict[str, Profile]:
    raw = yamlfile.load(CATALOG)
    return {name: Profile(name=name, **body) for name, body in raw.items()}


def names() -> list[str]:
    return sorted(_catalog())


def get(name: str) -> Profile:
    return _catalog()[name]
