"""What the runner hands the check suite: one JSON file named by ``$TFIMG_CHECKS_CONTEXT``.

The runner (:mod:`builder.check.stage`) starts the containers, makes the throwaway
SSH keys and Jupyter password, probes the image, and writes a
:class:`Context`; the suite (a separate ``python -m pytest`` process) reads it
in ``conftest.py``. A model, validated when it is read back on the other side
of the process boundary; the probe's summary keeps its own model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from builder.check.probe_models import Summary

ENV = "TFIMG_CHECKS_CONTEXT"


class Context(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variant: str
    spec: dict[str, Any]                    # Variant.model_dump(mode="json")
    spec_hash: str
    image: str
    image_config: dict[str, Any]            # docker inspect .Config of the image
    profile: str                            # the profile versions are compared with
    profile_note: str = ""
    results_path: str = ""
    services: str | None = None             # container running the variant's services
    services_note: str = ""                 # why services may be down (logs tail)
    pristine: str | None = None             # container of the image with the entrypoint bypassed
    base_ref: str | None = None
    base_container: str | None = None       # container of the base image, for comparisons
    base_config: dict[str, Any] | None = None
    base_note: str = ""                     # why there is no base container
    base_cache: str | None = None           # JSON file of the base's inventory, by base image id
    ports: dict[str, int] = Field(default_factory=dict)    # container port -> 127.0.0.1 port
    ssh_key: str | None = None              # private key matching the mounted authorized_keys
    ssh_key_note: str = ""                  # why no key could be mounted
    wrong_key: str | None = None            # a key that is NOT authorized
    jupyter_password: str | None = None
    gpu: bool = False
    gpu_reason: str = ""
    probe: Summary | None = None            # builder.check.probe.summarize(...); None when the probe failed
    probe_error: str | None = None
    requirements: list[dict[str, Any]] = Field(default_factory=list)   # name, specifier, file, line
    declared: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)  # commands, python_packages
    timeout: float = 120.0                  # per command inside a check

    def write(self, path: Path) -> Path:
        path.write_text(self.model_dump_json(indent=2))
        return path

    @classmethod
    def read(cls, path: str | os.PathLike[str] | None = None) -> Context:
        where = path or os.environ.get(ENV)
        if not where:
            raise RuntimeError(f"${ENV} is not set: run the checks with `tfimg test`, not pytest directly")
        return cls.model_validate_json(Path(where).read_text())
