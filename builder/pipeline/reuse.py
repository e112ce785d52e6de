"""Stage results reused when their inputs have not changed.

Each stage's section of report.json records ``reuse``: the key (every input that
decides the result, by name) and whether this run reused it. The next run
computes the key again and reuses the section only when every value is the same,
the stage passed and it is not forced (``--recheck``, ``--rescan``, ``--force``):

- checks: image id, base id, the check suite's hash, spec hash, GPU mode, the engine's GPU facts;
- scan: image id, Trivy version, DB ``UpdatedAt``/schema/repository, scanners and options;
- gate: the scan's result (its key and report files), the policy file's hash, today's date;
- tags: the facts, the image, the tag templates.

A failed stage is never reused: it has no passing result to reuse.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.errors import UnreadableInput
from builder.infra import datafile
from builder.infra.report_models import BuildSection, JsonObject, StageReuse, TrivyDb

SUITE_DIR = Path(__file__).resolve().parents[1] / "check"

LABELS = {"image": "image", "base": "base", "suite": "suite", "spec": "spec", "gpu": "GPU mode",
          "engine_gpu": "engine GPU facts", "trivy": "Trivy version", "trivy_binary": "Trivy binary",
          "db": "DB", "db_repository": "DB repository", "scanners": "scanners", "options": "scan options",
          "misconfig": "Dockerfile checks", "scan": "scan", "report": "scan report", "policy": "policy",
          "date": "date", "base_layers": "base layers", "facts": "facts", "templates": "tag templates"}


@dataclass(frozen=True)
class Decision:
    stage: str
    key: dict[str, str]
    reuse: bool
    why: str

    def record(self) -> StageReuse:
        return StageReuse(reused=self.reuse, key=self.key)

    @property
    def message(self) -> str:
        return f"{self.stage}: {self.why}"


def decide(stage: str, key: dict[str, str], previous: StageReuse | None, passed: bool,
           forced: str | None = None) -> Decision:
    """Reuse the earlier result of ``stage`` when it passed and had the same key, unless forced."""
    if forced:
        return Decision(stage, key, False, f"ran ({forced})")
    if previous is None:
        return Decision(stage, key, False, "ran (no earlier result to reuse)")
    if not passed:
        return Decision(stage, key, False, "ran (the earlier run did not pass; a failure is never reused)")
    changed = [k for k in sorted(set(key) | set(previous.key)) if key.get(k) != previous.key.get(k)]
    if changed:
        return Decision(stage, key, False, "ran (" + ", ".join(f"{LABELS.get(k, k)} changed" for k in changed) + ")")
    return Decision(stage, key, True, "reused (same " + ", ".join(LABELS.get(k, k) for k in key) + ")")


def digest(value: Any) -> str:
    """sha256 of a JSON value (sorted keys): a short, stable key part."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes; 'absent' when there is none."""
    try:
        return "sha256:" + hashlib.sha256(datafile.read_bytes(path, limit=datafile.MAX_JSON_BYTES)).hexdigest()
    except UnreadableInput:   # missing, or not a regular file (never opened: no FIFO blocks here)
        return "absent"


def suite_hash() -> str:
    """The check suite's own hash: every file of builder/check/suite, and the code that starts it
    (the containers, the probe, the programs copied into the container)."""
    h = hashlib.sha256()
    files = sorted(p for p in (SUITE_DIR / "suite").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    files += [SUITE_DIR / "stage.py", SUITE_DIR / "probe.py", SUITE_DIR / "probe_models.py",
              *sorted((SUITE_DIR / "incontainer").glob("*.py"))]   # the programs run in the container
    for p in files:
        h.update(str(p.relative_to(SUITE_DIR)).encode() + b"\0" + p.read_bytes() + b"\0")
    return "sha256:" + h.hexdigest()


def engine_gpu_facts(runtimes: list[str], default: str) -> str:
    """The engine's GPU facts (``docker info``, :meth:`Engine.runtimes`): its runtimes and default runtime."""
    return f"runtimes={','.join(sorted(runtimes))};default={default}"


def checks_key(built: BuildSection, spec_hash: str, gpu_requested: str, gpu_enabled: bool,
               engine_gpu: str) -> dict[str, str]:
    return {"image": built.image_id, "base": built.base.id, "suite": suite_hash(), "spec": spec_hash,
            "gpu": f"{gpu_requested}:{'on' if gpu_enabled else 'off'}", "engine_gpu": engine_gpu}


def scan_key(image_id: str, *, trivy_version: str, trivy_binary: str, db: TrivyDb | None,
             db_repository: str | None, scanners: list[str], options: JsonObject, misconfig: str) -> dict[str, str]:
    return {"image": image_id, "trivy": trivy_version, "trivy_binary": trivy_binary,
            "db": f"{(db.UpdatedAt if db else None) or 'unknown'} (schema {db.Version if db else None})",
            "db_repository": db_repository or "offline", "scanners": ",".join(scanners),
            "options": digest(options), "misconfig": misconfig}


def gate_key(scan: StageReuse | None, out_dir: Path, policy_file: Path, today: str,
             base_layers: list[str] | None, pinned: bool) -> dict[str, str]:
    return {"scan": digest(scan.key if scan else None),
            "report": digest([file_digest(out_dir / "trivy.json"), file_digest(out_dir / "trivy-config.json")]),
            "policy": f"{policy_file}:{file_digest(policy_file)}", "date": today,
            "base_layers": digest([base_layers, pinned])}


def tags_key(built: BuildSection, facts: Any, templates: Any) -> dict[str, str]:
    return {"image": built.image_id, "facts": digest([facts, built.revision]), "templates": digest(templates)}
