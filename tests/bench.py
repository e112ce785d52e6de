"""`make bench`: build speed and size, measured side by side in one run on the stand-in base.

    python -m tests.bench            (TFIMG_BENCH_BASE=IMAGE, default: the stand-in)
    python -m tests.bench --reuse-only | --runners-only | --scan-only | --gate-only | --catalog-only | --watch-only
        (one group of rows)

Prints each measurement, its ratio and whether the target is met. It never
fails on a missed target: targets are reported, not asserted. Its work folder
is made and deleted through builder/infra/outdir.py (only what it created).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
SHARED = ["bert", "notebook", "worker", "dev"]


def tfimg(*args: str, docker_host: str | None = None) -> float:
    start = time.monotonic()
    env = {**os.environ, "CI": "1", **({"DOCKER_HOST": docker_host} if docker_host else {})}
    res = subprocess.run([sys.executable, "-m", "builder", "--quiet", *args], capture_output=True, text=True,
                         env=env)
    took = time.monotonic() - start
    if res.returncode != 0:
        sys.exit(f"bench: tfimg {' '.join(args)} failed:\n{res.stderr[-2000:]}")
    return took


def docker_build(context: Path, *extra: str) -> float:
    start = time.monotonic()
    res = subprocess.run([DOCKER, "build", "-q", *extra, str(context)], capture_output=True, text=True,
                         env={**os.environ, "DOCKER_BUILDKIT": "1"})
    if res.returncode != 0:
        sys.exit(f"bench: docker build failed:\n{res.stderr[-2000:]}")
    return time.monotonic() - start


BENCH_BASES: list[str] = []


@atexit.register
def _untag_bench_bases() -> None:   # also when a step fails (sys.exit): leave no bench tags behind
    subprocess.run([DOCKER, "rmi", "-f", *BENCH_BASES, "tfimg-bench-naive:latest"], capture_output=True)


def fresh_base(work: Path, base: str, name: str) -> str:
    """The base plus a unique file: new layers, so BuildKit has no cached layer on it.

    (A label alone would not do: BuildKit keys its cache on the layers, not the config.)
    """
    d = work / f"base-{name}"
    d.mkdir()
    (d / "stamp").write_text(str(uuid.uuid4()))
    (d / "Dockerfile").write_text(f"FROM {base}\nCOPY stamp /etc/tfimg-bench-stamp\n")
    ref = f"tfimg-bench-base:{name}"
    docker_build(d, "-t", ref)
    BENCH_BASES.append(ref)
    return ref


def image_size(ref: str) -> int:
    out = subprocess.run([DOCKER, "image", "inspect", "-f", "{{.Size}}", ref], capture_output=True, text=True,
                         check=True).stdout
    return int(out.strip())


def commit(work: Path, when: int = 1_700_000_000) -> None:
    """Commit the work folder at a fixed time: every build's SOURCE_DATE_EPOCH (the variants' last commit)."""
    env = {**os.environ, "GIT_AUTHOR_DATE": f"@{when} +0000", "GIT_COMMITTER_DATE": f"@{when} +0000",
           "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@tfimg", "GIT_COMMITTER_NAME": "bench",
           "GIT_COMMITTER_EMAIL": "bench@tfimg"}
    for argv in (["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run(["git", "-C", str(work), *argv], check=True, env=env, capture_output=True)


def report_image(out: Path, name: str) -> str:
    import json
    return json.loads((out / name / "report.json").read_text())["build"]["image_id"]


def row(label: str, value: str, ratio: float | None, target: str, met: bool | None) -> None:
    r = f"{ratio:6.3f}" if ratio is not None else "   n/a"
    status = {True: "met", False: "NOT met", None: ""}[met]
    print(f"{label:<52} {value:>14}  ratio {r}  target {target:<24} {status}")


def wall(argv: list[str], runs: int = 5) -> float:
    """The fastest of ``runs`` runs of a command (wall-clock seconds)."""
    best = float("inf")
    for _ in range(runs):
        start = time.monotonic()
        subprocess.run(argv, capture_output=True, check=True)
        best = min(best, time.monotonic() - start)
    return best


def services_floor(image: str, spec_path: Path) -> float:
    """The floor of the checks stage: from `docker run` until SSH and Jupyter both answer."""
    from builder.check import stage as testrun
    from builder.infra.engine import Engine
    from builder.spec import loader, passwords

    spec = loader.load(spec_path).spec
    with tempfile.TemporaryDirectory() as tmp:
        volumes = testrun._keys(Path(tmp), spec)[0]
        env = {spec.jupyter.password_hash_env: passwords.hash_password("bench")} if spec.jupyter.enabled else {}
        start = time.monotonic()
        with Engine.from_env().running(image, ports=spec.exposed_ports(), environment=env,
                            extra={"volumes": volumes}) as (container, ports):
            why = testrun.wait_ready(container, spec, ports, Engine.from_env())
            took = time.monotonic() - start
    if why:
        sys.exit(f"bench: the services did not answer: {why}")
    return took


def stage_reuse(work: Path, base: str) -> None:
    """Issue 13: a full rerun with nothing changed against the first run; the checks stage against
    its floor; `tfimg --help` against `python -c pass`."""
    db = subprocess.run([str(ROOT / "scripts/trivydb/demo-db.sh")], capture_output=True, text=True)
    if db.returncode != 0:
        print(f"7-9. stage reuse: skipped, no demo Trivy DB (make trivydb): {db.stderr.strip()[-300:]}")
        return
    import json
    out = work / "build-full"
    full = ["build", str(work / "variants/bert.yaml"), "--base", base, "--out", str(out),
            "--trivy-db-repository", db.stdout.strip().splitlines()[-1], "--trivy-cache-dir", str(work / "trivy-cache"),
            "--policy", str(work / "policies/demo-bert-waivers.yaml")]
    first = tfimg(*full, "--force")   # a real build (BuildKit's layer cache may serve it) and every stage
    rerun = min(tfimg(*full) for _ in range(3))
    row("7. full tfimg build of bert, rerun, nothing changed", f"{rerun:.2f}s", rerun / first,
        "<= 0.03 and < 1.5 s", rerun / first <= 0.03 and rerun < 1.5)
    row("   first full run (build, checks, scan, gate, tags)", f"{first:.1f}s", None, "(reference)", None)
    rep = json.loads((out / "bert/report.json").read_text())
    checks = float(rep["build"]["timings"].get("checks") or 0) or float(rep["checks"]["duration"])
    floor = services_floor(rep["build"]["image_id"], work / "variants/bert.yaml")
    row("8. checks stage of bert (first run)", f"{checks:.1f}s", checks / floor, "<= 2.5x the floor",
        checks / floor <= 2.5)
    row("   floor: docker run until SSH and Jupyter answer", f"{floor:.1f}s", None, "(reference)", None)
    tfimg_bin = str(Path(sys.executable).parent / "tfimg")
    helptime = wall([tfimg_bin, "--help"])
    bare = wall([sys.executable, "-c", "pass"])
    clickonly = wall([sys.executable, "-c", "import typer"])
    row("9. tfimg --help", f"{helptime:.2f}s", helptime / bare, "<= 3x python -c pass", helptime / bare <= 3)
    row("   python -c pass, same venv", f"{bare:.3f}s", None, "(reference)", None)
    row("   python -c 'import typer' (the CLI library alone)", f"{clickonly:.3f}s", clickonly / bare, "", None)


def registry() -> str:
    return subprocess.run([str(ROOT / "scripts/registry.sh"), "url"], capture_output=True, text=True,
                          check=True).stdout.strip()


def scan_cost(work: Path, built: list[str], db: str) -> None:
    """Issue 11: a scan with a cold Trivy cache against a second variant on the same base with it warm,
    Trivy reading the image from the engine (a whole-image export each time) and from a registry by
    digest (`tfimg build --scan-registry`: only layers the cache lacks are fetched)."""
    from builder.infra.engine import Engine
    from builder.publish import push

    def scan(target: str, cache: str, out: str, *extra: str) -> float:
        return tfimg("scan", target, "--cache-dir", str(work / cache), "--db-repository", db, *extra,
                     "--out", str(work / out))

    cold = scan(built[0], "cache-engine", "scan-cold", "--by-reference")
    warm = scan(built[1], "cache-engine", "scan-warm", "--by-reference")
    row(f"6. scan of {SHARED[1]} from the engine, same base, warm cache", f"{warm:.1f}s", warm / cold,
        "< 0.3 (only new layers)", warm / cold < 0.3)
    row(f"   scan of {SHARED[0]} from the engine, cold cache", f"{cold:.1f}s", None, "(reference)", None)
    quarantine, engine, pushed = f"{registry()}/tfimg-bench-quarantine", Engine.from_env(), []
    for name, image in zip(SHARED[:2], built[:2], strict=True):
        start = time.monotonic()
        pushed.append(push.push_for_scan(image, quarantine, name, "sha256:" + uuid.uuid4().hex, engine=engine))
        row(f"   push of {name} for the scan ({'first on its base' if not pushed[1:] else 'same base'})",
            f"{time.monotonic() - start:.1f}s", None, "(reference)", None)
    rcold = scan(pushed[0], "cache-registry", "rscan-cold")
    rwarm = scan(pushed[1], "cache-registry", "rscan-warm")
    row(f"6b. scan of {SHARED[1]} through the registry, warm cache", f"{rwarm:.1f}s", rwarm / rcold,
        "< 0.3 (only new layers)", rwarm / rcold < 0.3)
    row(f"   scan of {SHARED[0]} through the registry, cold cache", f"{rcold:.1f}s", None, "(reference)", None)


def engine2(*args: str) -> str:
    return subprocess.run([str(ROOT / "scripts/engine2.sh"), *args], capture_output=True, text=True, check=True,
                          timeout=600).stdout.strip()


def fresh_engine2() -> str:
    """DOCKER_HOST of the second engine, started empty (its data purged first)."""
    engine2("stop", "--purge")
    engine2("start")
    return engine2("host")


def runners(work: Path, base: str) -> None:
    """Issue 12: a second, empty engine (scripts/engine2.sh) as a fresh CI runner, and the registry."""
    db = subprocess.run([str(ROOT / "scripts/trivydb/demo-db.sh")], capture_output=True, text=True)
    if os.geteuid() != 0 or db.returncode != 0:
        print("10-11. many runners: skipped (a second engine needs root; the demo DB needs make trivydb)")
        return
    reg = registry()
    base_ref = f"{reg}/tfimg-bench/standin:{base.rsplit(':', 1)[-1]}"
    subprocess.run([DOCKER, "tag", base, base_ref], check=True)
    start = time.monotonic()
    subprocess.run([DOCKER, "push", base_ref], check=True, capture_output=True)
    print(f"   (the stand-in base is in the registry as {base_ref}: push {time.monotonic() - start:.1f}s)")
    cache = f"{reg}/tfimg-bench/cache/{{name}}:buildcache"
    bert = str(work / "variants/bert.yaml")
    build = ["build", bert, "--base", base_ref, "--no-test", "--no-scan"]
    tfimg(*build, "--out", str(work / "runner-a"), "--force", "--cache-to", cache)   # runner A exports its cache
    try:
        def cold(*extra: str, pulled: bool = False) -> float:
            host = fresh_engine2()
            if pulled:   # a runner whose engine keeps the base (a runner image with it, or a warm host)
                subprocess.run([DOCKER, "-H", host, "pull", base_ref], check=True, capture_output=True)
            return tfimg(*build, "--out", str(work / "runner-b"), *extra, docker_host=host)

        without = cold()
        b_image = report_image(work / "runner-b", "bert")   # no layer cache: every layer built there
        with_cache = cold("--cache-from", cache)
        row("10. empty runner: build of bert with --cache-from", f"{with_cache:.1f}s", with_cache / without,
            "<= 0.3 of without", with_cache / without <= 0.3)
        row("   empty runner: build of bert without a registry cache", f"{without:.1f}s", None, "(reference)", None)
        host = fresh_engine2()
        start = time.monotonic()
        subprocess.run([DOCKER, "-H", host, "pull", base_ref], check=True, capture_output=True)
        row("   of both: pulling the base on an empty engine", f"{time.monotonic() - start:.1f}s", None, "", None)
        without = cold(pulled=True)
        with_cache = cold("--cache-from", cache, pulled=True)
        row("10b. runner with the base only: bert with --cache-from", f"{with_cache:.1f}s", with_cache / without,
            "<= 0.3 of without", with_cache / without <= 0.3)
        row("   runner with the base only: bert without a cache", f"{without:.1f}s", None, "(reference)", None)

        policy = str(work / "policies/demo-bert-waivers.yaml")
        ns = f"{reg}/tfimg-bench-{uuid.uuid4().hex[:8]}"   # a new namespace: immutable tags are never moved
        full = tfimg("build", bert, "--base", base_ref, "--out", str(work / "runner-a"), "--no-cache",
                     "--trivy-db-repository", db.stdout.strip().splitlines()[-1],
                     "--trivy-cache-dir", str(work / "trivy-cache-a"), "--policy", policy)
        tfimg("publish", bert, "--out", str(work / "runner-a"), "--registry", ns, "--push")
        host = fresh_engine2()
        lookup = tfimg("build", bert, "--base", base_ref, "--out", str(work / "runner-b"), "--registry", ns,
                       "--policy", policy, docker_host=host)
        row("11. already published: build --registry, empty runner", f"{lookup:.2f}s", lookup / full,
            "<= 0.05 of a full build", lookup / full <= 0.05)
        row("   full build of bert (no cache; checks, scan, gate, tags)", f"{full:.1f}s", None, "(reference)", None)
        a_image = report_image(work / "runner-a", "bert")   # the same inputs, no layer cache, the first engine
        row("15. rebuild on another runner: same digest", "yes" if a_image == b_image else "no", None,
            "yes (same image id: config and every layer)", a_image == b_image)
        print(f"   (runner A {a_image[:19]}, runner B {b_image[:19]}: A with --no-cache, B on an empty engine)")
    finally:
        engine2("stop", "--purge")
        refs = subprocess.run([DOCKER, "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True,
                              text=True).stdout.split()
        mine = [r for r in refs if r.startswith(f"{reg}/tfimg-bench") and not r.endswith(":<none>")]
        subprocess.run([DOCKER, "rmi", *mine], capture_output=True)   # the local tags its pushes made


def gate_scale(work: Path) -> None:
    """Issue 18: `tfimg gate` of 60,000 findings (real Trivy rows replicated, tests/bigreport.py):
    evaluate and every output (gate.json, gate.sarif, gate.md, the table), against 6,000; then the
    whole command, reading the report too."""
    import datetime as dt
    import io
    import json

    from rich.console import Console

    from builder.scan import gate, policy, trivy_report
    from builder.scan import gate_outputs as gate_render
    from builder.scan import stage as scan_stage
    from tests import bigreport

    def cost(n: int) -> tuple[float, Path]:
        data = bigreport.generate(n)
        path = work / f"trivy-{n}.json"
        path.write_text(json.dumps(data))
        report = trivy_report.load(path)
        best = float("inf")
        for _ in range(3):
            start = time.monotonic()
            result = gate.evaluate(report, policy.load(None), report.diff_ids[:1], dt.date.today(), False,
                                   scanners=["vuln", "secret", "license"], scanners_from="this scan")
            scan_stage.write_gate(work / f"gate-{n}", result)
            Console(file=io.StringIO(), width=160).print(gate_render.table(result))
            best = min(best, time.monotonic() - start)
        return best, path

    small, _ = cost(6_000)
    big, path = cost(60_000)
    row("12. gate of 60,000 findings (evaluate + every output)", f"{big:.2f}s", big / small,
        "< 5 s; ratio to 6,000 <= 15", big < 5 and big / small <= 15)
    row("   the same for 6,000 findings", f"{small:.2f}s", None, "(reference)", None)
    size = sum(f.stat().st_size for f in (work / "gate-60000").glob("gate.*"))
    print(f"   (gate.json, gate.sarif and gate.md of 60,000 findings: {size / 1e6:.0f} MB)")
    start = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "builder", "--quiet", "gate", "--report", str(path),
                          "--assume-vuln-scanned", "--out", str(work / "gate-cli")], capture_output=True, text=True)
    took = time.monotonic() - start
    if res.returncode not in (0, 1):
        sys.exit(f"bench: tfimg gate failed:\n{res.stderr[-2000:]}")
    row(f"   tfimg gate --report ({path.stat().st_size / 1e6:.0f} MB, 60,000 findings)", f"{took:.1f}s", None,
        "(reference: reads it too)", None)


def catalog_rows(work: Path) -> None:
    """Issue 22: `tfimg registry catalog` of the demo registry (what `make demo` published), and of a generated
    registry with 50 signed digests (tests/catalog_data.py), concurrently and one digest at a time."""
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests import catalog_data
    from tests.conftest_registry import serve_registry

    demo, demo_key = f"{registry()}/tfimg-demo", ROOT / "build/demo-keys/tfimg.pub"
    took = tfimg("registry", "catalog", demo, "--out", str(work / "catalog-demo"),
                 *(["--key", str(demo_key)] if demo_key.is_file() else []))
    n = len(json.loads((work / "catalog-demo/catalog.json").read_text())["images"])
    if n:
        row(f"13. catalog of the demo registry ({n} digest(s))", f"{took:.2f}s", None, "(reference)", None)
    else:
        print("13. catalog of the demo registry: nothing published there yet (make demo publishes bert)")
    key = ec.generate_private_key(ec.SECP256R1())
    (work / "bench.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    (work / "bench.pub").write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    (work / "catalog-registry").mkdir()
    with serve_registry(work / "catalog-registry") as host:
        start = time.monotonic()
        catalog_data.generate(host, "bench", 50, work / "bench.pem")
        print(f"   (50 signed digests in 5 variants generated in {time.monotonic() - start:.1f}s)")
        args = ["registry", "catalog", f"{host}/bench", "--key", str(work / "bench.pub")]
        concurrent = min(tfimg(*args, "--out", str(work / "catalog-50")) for _ in range(3))
        serial = min(tfimg(*args, "--out", str(work / "catalog-50-serial"), "--workers", "1") for _ in range(2))
    row("13b. catalog of a generated registry, 50 digests", f"{concurrent:.2f}s", concurrent / serial,
        "< 10 s; < 1 of --workers 1", concurrent < 10 and concurrent < serial)
    row("   the same, one digest at a time (--workers 1)", f"{serial:.2f}s", None, "(reference)", None)


def _remove(work: Path) -> None:
    """The bench's work folder, with the repository its `git init` made (outdir refuses a repository's root)."""
    from builder.infra import outdir
    shutil.rmtree(work / ".git", ignore_errors=True)
    outdir.remove(work)


def main() -> None:
    from builder.infra import outdir
    work = outdir.claim(tempfile.mkdtemp(prefix="tfimg-bench-"))   # empty: marked as the bench's own
    if "--gate-only" in sys.argv:   # issue 18's gate of 60,000 findings alone (no engine needed)
        gate_scale(work)
        outdir.remove(work)
        return
    if "--catalog-only" in sys.argv:   # issue 22's catalog rows alone (a registry, no engine needed)
        catalog_rows(work)
        outdir.remove(work)
        return
    base = os.environ.get("TFIMG_BENCH_BASE") or subprocess.run(
        [str(ROOT / "scripts/standin/build.sh")], capture_output=True, text=True, check=True).stdout.split()[-1]
    shutil.copytree(ROOT / "variants", work / "variants")
    shutil.copytree(ROOT / "policies", work / "policies")
    subprocess.run(["git", "init", "-q", str(work)], check=True)   # the variants' repository (builder/spec/paths.py)
    commit(work)   # SOURCE_DATE_EPOCH: the commit time of the variants (reproducible images, row 15)
    out = work / "build"
    common = ["--base", base, "--out", str(out), "--no-test", "--no-scan"]
    bert = str(work / "variants/bert.yaml")
    print(f"tfimg bench on {base} ({os.cpu_count()} cores); all times are wall-clock seconds\n")
    if "--watch-only" in sys.argv:   # issue 21's tfimg watch against a full trivy image of the digest
        from tests.bench_watch import watch_cost
        watch_cost(work, base, tfimg, row)
        _remove(work)
        return
    if "--reuse-only" in sys.argv:   # issue 13's three ratios alone (python -m tests.bench --reuse-only)
        stage_reuse(work, base)
        _remove(work)
        return
    if "--runners-only" in sys.argv:   # issue 12's two ratios alone
        runners(work, base)
        _remove(work)
        return
    if "--scan-only" in sys.argv:   # issue 11's scan cost alone: two variants on a base no cache has seen
        own = fresh_base(work, base, "scan")
        for n in SHARED[:2]:
            tfimg("build", str(work / f"variants/{n}.yaml"), "--base", own, "--out", str(out), "--no-test", "--no-scan")
        built = [report_image(out, n) for n in SHARED[:2]]
        db = subprocess.run([str(ROOT / "scripts/trivydb/demo-db.sh")], capture_output=True, text=True, check=True)
        scan_cost(work, built, db.stdout.strip().splitlines()[-1])
        subprocess.run([DOCKER, "rmi", "-f", *built, *BENCH_BASES], capture_output=True)
        _remove(work)
        return

    # 1. full build (no layer cache)
    full = tfimg("build", bert, *common, "--no-cache")
    row("1. full build of bert (pip, SSH, Jupyter)", f"{full:.1f}s", None, "(reference)", None)

    # 2. rebuild after changing only an authorized key (median of three new keys)
    rekeys = []
    for i in range(3):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / f"newkey{i}")], check=True)
        shutil.copy(work / f"newkey{i}.pub", work / "variants/keys/team.pub")
        rekeys.append(tfimg("build", bert, *common))
    rekey = sorted(rekeys)[1]
    row("2. rebuild after changing one authorized key", f"{rekey:.1f}s", rekey / full, "<= 0.10 of full",
        rekey / full <= 0.10)

    # 3. no-op tfimg build vs a cached docker build of the same context
    noop = min(tfimg("build", bert, *common) for _ in range(3))
    cached = min(docker_build(out / "bert/context", "--build-arg", f"TFIMG_BASE={base}",
                              "--secret", "id=ca_bundle,src=/etc/ssl/certs/ca-certificates.crt") for _ in range(3))
    row("3. no-op tfimg build (up to date)", f"{noop:.2f}s", noop / cached,
        "< 1 s and < 0.2 of cached", noop < 1 and noop / cached < 0.2)
    row("   cached docker build of the same context", f"{cached:.2f}s", None, "(reference)", None)
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "import builder.cli"], check=True)
    row("   of which: starting Python and importing tfimg", f"{time.monotonic() - start:.2f}s", None, "", None)

    # 4. bytes added over the base vs the naive recipe
    naive = work / "naive"
    naive.mkdir()
    shutil.copy(ROOT / "variants/requirements/bert.txt", naive / "requirements.txt")
    (naive / "Dockerfile").write_text(
        "ARG BASE\nFROM ${BASE}\nCOPY requirements.txt .\n"
        "RUN --mount=type=secret,id=ca PIP_CERT=/run/secrets/ca pip install -r requirements.txt\n")
    docker_build(naive, "--build-arg", f"BASE={base}", "-t", "tfimg-bench-naive:latest",
                 "--secret", "id=ca,src=/etc/ssl/certs/ca-certificates.crt")
    # the same requirements and nothing else: no SSH, Jupyter or extra apt packages
    (work / "variants/plain.yaml").write_text(
        "extends: base.yaml\npython: {requirements: [requirements/bert.txt]}\n")
    tfimg("build", str(work / "variants/plain.yaml"), *common)
    base_size = image_size(base)
    ours = image_size(report_image(out, "plain")) - base_size
    theirs = image_size("tfimg-bench-naive:latest") - base_size
    row("4. bytes added over the base: tfimg, same reqs", f"{ours / 1e6:.1f} MB", ours / theirs,
        "<= naive (ratio <= 1)", ours <= theirs)
    row("   naive FROM/COPY/pip install -r, same reqs", f"{theirs / 1e6:.1f} MB", None, "(reference)", None)
    bert_added = image_size(report_image(out, "bert")) - base_size
    print(f"   (bert itself adds {bert_added / 1e6:.1f} MB: it also carries openssh-server, git, git-lfs, "
          "Jupyter config and a user)")

    # 5. four variants sharing a parent, from a cold layer cache both ways: tfimg's way (one
    #    command, two at a time, one BuildKit cache) against four builds one after another,
    #    each on a base of its own.
    shared_base = fresh_base(work, base, "shared")
    shared = tfimg("build", *[str(work / f"variants/{n}.yaml") for n in SHARED], "--jobs", "2",
                   "--base", shared_base, "--out", str(out), "--no-test", "--no-scan")
    built = [report_image(out, n) for n in SHARED]
    independent = 0.0
    for n in SHARED:
        own = fresh_base(work, base, n)
        independent += tfimg("build", str(work / f"variants/{n}.yaml"), "--base", own, "--out", str(out),
                             "--no-test", "--no-scan")
        built.append(report_image(out, n))
    row("5. tfimg build of four variants (--jobs 2), cold", f"{shared:.1f}s", shared / independent,
        "< 1 (faster than independent)", shared < independent)
    row("   four independent builds in a row, cold", f"{independent:.1f}s", None, "(reference)", None)

    # 6. Trivy scan of a variant with a cold cache (DB download + every layer) against a second
    #    variant on the same base with that cache warm (only its own layers are analysed)
    db = subprocess.run([str(ROOT / "scripts/trivydb/demo-db.sh")], capture_output=True, text=True)
    if db.returncode == 0:
        scan_cost(work, built, db.stdout.strip().splitlines()[-1])
    else:
        print(f"6. scan cost: skipped, no demo Trivy DB (make trivydb): {db.stderr.strip()[-300:]}")
    subprocess.run([DOCKER, "rmi", "-f", *built, *BENCH_BASES], capture_output=True)   # nothing left behind

    subprocess.run([DOCKER, "rmi", "-f", "tfimg-bench-naive:latest"], capture_output=True)
    stage_reuse(work, base)
    runners(work, base)
    gate_scale(work)
    from tests.bench_watch import watch_cost
    watch_cost(work, base, tfimg, row)
    catalog_rows(work)
    _remove(work)


if __name__ == "__main__":
    main()
