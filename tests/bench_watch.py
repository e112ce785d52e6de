"""`make bench` row 14 (issue 21): `tfimg watch` per digest against a full `trivy image` of the same digest
read from the registry (targets: <= 0.05x the time, <= 1% of the bytes).

bert is built, checked, scanned and gated (demo DB, demo waivers) and published to a registry of the
bench's own (Debian's docker-registry with an access log: the bytes each run read are the response sizes
it logs) in three repositories. Then, timed: `tfimg watch` of the three digests under the DB's later
edition (one DB fetch, start-up included, divided by three), and `trivy image --image-src remote` of one
of them with a cold layer cache and the DB already in place (its download is not counted).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPOS = ("a", "b", "c")


def _bytes(log: Path, mark: int) -> int:
    with open(log) as fh:
        fh.seek(mark)
        return sum(int(m[1]) for m in re.finditer(r'" \d{3} (\d+) "', fh.read()))


def watch_cost(work: Path, base: str, tfimg: Callable[..., float], row: Callable[..., None]) -> None:
    from builder.infra.engine import Engine
    from tests.conftest_registry import serve_registry

    first = subprocess.run([str(ROOT / "scripts/trivydb/demo-db.sh")], capture_output=True, text=True)
    later = subprocess.run([str(ROOT / "scripts/trivydb/demo-db.sh"), "--later"], capture_output=True, text=True)
    if first.returncode or later.returncode or not shutil.which("docker-registry"):
        print("14. watch cost: skipped (needs make trivydb and docker-registry)")
        return
    db, later_db = first.stdout.split()[-1], later.stdout.split()[-1]
    out, bert = work / "watch-build", str(work / "variants/bert.yaml")
    tfimg("build", bert, "--base", base, "--out", str(out), "--trivy-db-repository", db,
          "--trivy-cache-dir", str(work / "watch-trivy"), "--policy", str(work / "policies/demo-bert-waivers.yaml"))
    (work / "watch-registry").mkdir()
    refs: list[str] = []
    with serve_registry(work / "watch-registry", accesslog=True) as host:
        log = work / "watch-registry/registry.log"
        try:
            for ns in REPOS:
                tfimg("publish", bert, "--out", str(out), "--registry", f"{host}/bench/{ns}", "--push")
                refs += [f"{host}/bench/{ns}/bert:{t}" for t in (out / "bert/tags.txt").read_text().split()]
            mark = log.stat().st_size
            watched = tfimg("watch", f"{host}/bench", "--trivy-db-repository", later_db,
                            "--policy", str(work / "policies/demo-bert-waivers.yaml"), "--jobs", "3") / len(REPOS)
            watch_bytes = _bytes(log, mark) / len(REPOS)
            digest = subprocess.run([sys.executable, "-c", "import json,sys; print(json.load(open(sys.argv[1]))"
                                     "['publish']['digest'])", str(out / "bert/report.json")],
                                    capture_output=True, text=True, check=True).stdout.strip()
            trivy = str(Path(sys.executable).parent / "trivy")
            cache = work / "watch-image-cache"
            subprocess.run([trivy, "image", "--download-db-only", "--cache-dir", str(cache), "--db-repository", later_db,
                            "--quiet"], check=True, capture_output=True)
            mark = log.stat().st_size
            start = time.monotonic()
            subprocess.run([trivy, "image", "--image-src", "remote", "--cache-dir", str(cache), "--skip-db-update",
                            "--scanners", "vuln", "--format", "json", "--output", str(work / "watch-image.json"),
                            "--quiet", f"{host}/bench/a/bert@{digest}"], check=True, capture_output=True)
            image = time.monotonic() - start
            image_bytes = _bytes(log, mark)
        finally:
            for ref in refs:
                Engine.from_env().remove_image(ref)
    row("14. tfimg watch, per digest (3 digests, one DB fetch)", f"{watched:.2f}s", watched / image,
        "<= 0.05 of a full trivy image", watched / image <= 0.05)
    row("14b. bytes read from the registry, per digest", f"{watch_bytes / 1e3:.0f} KB", watch_bytes / image_bytes,
        "<= 0.01 of a full trivy image", watch_bytes / image_bytes <= 0.01)
    row("   trivy image --image-src remote of the same digest, cold cache",
        f"{image:.1f}s, {image_bytes / 1e6:.0f} MB", None, "(reference)", None)
