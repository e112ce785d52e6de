"""The oldest NVIDIA driver an image runs on: from its base profile, else from NVIDIA's CUDA/driver table.

A base profile that states a driver (``builder/spec/data/profiles.yaml``: NGC's release notes, which count
its forward-compatibility package) is the answer when the CUDA the checks read is the one the profile
expects. Otherwise the CUDA version decides, through NVIDIA's table (``data/cuda-drivers.yaml``, with its
source): from CUDA 11 on, any driver of the major release's minor-version-compatibility branch runs it.
An image whose checks read no CUDA needs no driver. Pure: reads only the two data files.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from builder.catalog.models import DriverNeed
from builder.infra import yamlfile
from builder.spec import profiles

TABLE = Path(__file__).parent / "data" / "cuda-drivers.yaml"


class DriverTable(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    minor_version_compatibility: dict[str, str]
    toolkit_drivers: dict[str, str]


@lru_cache(maxsize=1)
def table() -> DriverTable:
    return DriverTable.model_validate(yamlfile.load(TABLE))


def _numbers(version: str) -> tuple[int, ...]:
    """'11.7' -> (11, 7); '11.7.99+x' -> (11, 7, 99); '' -> ()."""
    m = re.match(r"^\s*(\d+(?:\.\d+)*)", version)
    return tuple(int(p) for p in m.group(1).split(".")) if m else ()


def _driver_key(driver: str) -> tuple[int, ...]:
    return _numbers(driver)


def toolkit_driver(cuda: str) -> str | None:
    """The driver NVIDIA ships with the CUDA release ``cuda`` (its oldest update when only major.minor is known)."""
    given = _numbers(cuda)
    exact = [d for v, d in table().toolkit_drivers.items() if _numbers(v) == given]
    if exact:
        return exact[0]
    want = given[:2]
    if len(want) < 2:
        return None
    rows = [d for v, d in table().toolkit_drivers.items() if _numbers(v)[:2] == want]
    return min(rows, key=_driver_key) if rows else None


def _profile(name: str | None) -> profiles.Profile | None:
    return profiles.get(name) if name and name in profiles.names() else None


def _from_table(cuda: str) -> DriverNeed:
    major = str(_numbers(cuda)[0]) if _numbers(cuda) else ""
    full = toolkit_driver(cuda)
    minor = table().minor_version_compatibility.get(major)
    source = table().source
    if minor is not None and full is not None and _driver_key(full) < _driver_key(minor):
        minor = full   # CUDA 11.0 shipped before the branch that runs all of 11.x: its own driver is older
    if minor is not None:
        return DriverNeed(minimum=minor, basis="cuda-table", full_features=full, source=source,
                          note=f"CUDA {cuda}: any driver from {minor} runs CUDA {major}.x (minor version "
                               f"compatibility)" + (f"; {full} or newer has every feature of that release" if full
                                                    else ""))
    if full is not None:
        return DriverNeed(minimum=full, basis="cuda-table", full_features=full, source=source,
                          note=f"CUDA {cuda} predates minor version compatibility: its own driver or newer")
    return DriverNeed(minimum=None, basis="unknown", source=source,
                      note=f"CUDA {cuda} is not in NVIDIA's table as tfimg has it; see the source")


def need(profile_name: str | None, cuda: str | None) -> DriverNeed:
    """The driver an image whose checks compared it with ``profile_name`` and read CUDA ``cuda`` needs."""
    prof = _profile(profile_name)
    expected = prof.components.get("cuda") if prof else None
    if prof is not None and prof.driver is not None and (
            cuda is None or expected is None or profiles.version_matches(cuda, expected.expect or "")):
        if cuda:
            what = f"CUDA {cuda}"
        else:
            want = expected.expect if expected and expected.expect else "as the profile says"
            what = f"CUDA {want} (the profile's; the checks read none)"
        return DriverNeed(minimum=prof.driver.minimum, basis="profile",
                          forward_compatible=list(prof.driver.forward_compatible),
                          full_features=toolkit_driver(cuda) if cuda else None, source=prof.driver.source,
                          note=f"{what} on the {prof.name} base: driver {prof.driver.minimum} or newer"
                               + (", or a forward-compatible data-center branch" if prof.driver.forward_compatible
                                  else ""))
    if cuda:
        return _from_table(cuda)
    if prof is not None and prof.gpu:
        return DriverNeed(minimum=None, basis="unknown", source="the checks' facts",
                          note=f"the checks read no CUDA version, and the {prof.name} profile states no driver")
    return DriverNeed(minimum=None, basis="cpu-only", source="the checks' facts",
                      note="no CUDA in the image (the checks read none): it runs on CPUs, no NVIDIA driver needed")
