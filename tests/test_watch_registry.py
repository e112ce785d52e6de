"""``tfimg watch`` and ``tfimg vex`` against real publishes of bert, built on the stand-in base, scanned
and gated under the demo DB's first edition (and policies/demo-bert-waivers.yaml), published signed to a
real registry (Debian's docker-registry 2.8, with an access log) in three repositories. The later
edition of the DB (scripts/trivydb, with CVE-2025-5197) is served from that registry too, so its log
also shows how often the DB is fetched. Real Trivy throughout.
"""

from __future__ import annotations

import http.server
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jsonschema import Draft202012Validator, FormatChecker

from builder import cli
from builder.catalog import evidence_source
from builder.infra import report as report_mod
from builder.infra.engine import Engine
from builder.infra.registry_client import Registry
from builder.infra.ui import UI
from builder.pipeline import context, gatekeeping, single
from builder.pipeline import orchestrator as pipeline
from builder.publish import push, referrers, store, verify, watched
from builder.scan import trivy
from builder.spec import loader as spec
from tests.conftest import ROOT, VARIANTS
from tests.conftest_registry import registry_binary_or_skip, serve_registry

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.trivy]
pytest_plugins = ["tests.conftest_registry"]

DEMO = ROOT / "policies/demo-bert-waivers.yaml"
REPOS = ("a", "b", "c")
SCHEMA = Draft202012Validator(json.loads((ROOT / "tests/data/openvex/openvex_json_schema.json").read_text()),
                              format_checker=FormatChecker())


@dataclass
class Published:
    host: str
    root: Path
    out: Path                    # build/bert of the build that was published
    digest: str
    later_db: str                # HOST/tfimg/trivy-db:2-later, in the same registry
    pub: Path                    # the signing key's public half
    key: Path

    @property
    def log(self) -> Path:
        return self.root / "registry.log"

    def mark(self) -> int:
        return self.log.stat().st_size

    def gets_since(self, mark: int) -> list[str]:
        with open(self.log) as fh:
            fh.seek(mark)
            return re.findall(r'"GET (/v2/\S+) HTTP', fh.read())

    def layers(self) -> set[str]:
        found = Registry(self.host).manifest("w/a/bert", self.digest)
        assert found is not None
        return {layer["digest"] for layer in json.loads(found[0])["layers"]}


def _keys(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    (directory / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    (directory / "k.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return directory / "k.pem", directory / "k.pub"


def _later_db(host: str, tmp: Path) -> str:
    """The later edition, built by make_db.py and pushed to ``host`` as demo-db.sh --later does."""
    subprocess.run([sys.executable, str(ROOT / "scripts/trivydb/make_db.py"), "--edition", "later", "--out", str(tmp)],
                   check=True, capture_output=True, cwd=ROOT)
    ref = f"{host}/tfimg/trivy-db:2-later"
    subprocess.run([sys.executable, str(ROOT / "scripts/trivydb/push.py"), str(tmp / "db"), ref],
                   check=True, capture_output=True, cwd=ROOT)
    return ref


@pytest.fixture(scope="module")
def published(standin_base: str, demo_db: str, docker_engine, tmp_path_factory: pytest.TempPathFactory,
              pytestconfig: pytest.Config) -> Iterator[Published]:
    """bert built, checked, scanned (first edition) and gated under the demo waivers, then published signed
    to HOST/w/a, HOST/w/b and HOST/w/c (one digest, three repositories)."""
    registry_binary_or_skip(pytestconfig)
    tmp = tmp_path_factory.mktemp("watch")
    key, pub = _keys(tmp)
    loaded = spec.load(VARIANTS / "bert.yaml")
    out = tmp / "build" / "bert"
    (tmp / "registry").mkdir()
    refs: list[str] = []
    with serve_registry(tmp / "registry", accesslog=True) as host:
        base = f"{host}/base/tfimg-standin:1"   # pushed first: the provenance names the base by digest (tfimg verify)
        Engine.from_env().tag(standin_base, f"{host}/base/tfimg-standin", "1")
        refs.append(base)
        Engine.from_env().push(f"{host}/base/tfimg-standin", "1")
        try:
            options = pipeline.BuildOptions(out_root=tmp / "build", base=base, trivy_db_repository=demo_db,
                                            trivy_cache=tmp / "trivy-cache", policy=DEMO)
            pipeline.run(context.make(loaded, options, UI(quiet=True), docker_engine))   # build, checks, scan, gate, tags
            assert report_mod.load(out).gate.decision == "pass"
            for ns in REPOS:
                rec = single.publish(loaded, out, f"{host}/w/{ns}", engine=Engine.from_env(), push=True,
                                     sign_key=str(key))
                refs += rec.refs
            yield Published(host, tmp / "registry", out, rec.digest, _later_db(host, tmp / "later"), pub, key)
        finally:
            for ref in refs:   # the local names the pushes made; the image keeps its own
                Engine.from_env().remove_image(ref)


def _watch(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = cli.main(["watch", *args, "--json"])
    seen = capsys.readouterr()
    return code, json.loads(seen.out) if seen.out.strip().startswith("{") else {"stderr": seen.err}


def test_watch_finds_the_newly_disclosed_advisory_without_fetching_a_layer(published: Published, capsys) -> None:
    mark = published.mark()
    code, out = _watch(capsys, f"{published.host}/w", "--policy", str(DEMO), "--trivy-db-repository",
                       published.later_db, "--key", str(published.pub), "--warn-days", "180", "--jobs", "3",
                       "--date", "2026-12-04")
    assert code == 0, out
    assert [d["published"]["reference"] for d in out["digests"]] == [
        f"{published.host}/w/{ns}/bert@{published.digest}" for ns in REPOS]
    for d in out["digests"]:
        assert d["status"] == "pass" and d["published"]["decision"] == "pass"
        new = [(f["id"], f["package"], f["severity"], f["origin"]) for f in d["findings"] if f["since"] == "new"]
        assert new == [("CVE-2025-5197", "transformers", "MEDIUM", "introduced")]
        known = {(f["id"], f["package"]): f for f in d["findings"] if f["since"] == "known"}
        assert known[("CVE-2023-6730", "transformers")]["waived_by"] == "CVE-2023-6730"
        assert known[("CVE-2024-5535", "libssl1.1")]["origin"] == "inherited"
        assert [(w["id"], w["owner"], w["state"]) for w in d["waivers"]] == [
            ("CVE-2023-6730", "ml-platform@example.com", "expiring")]
    gets = published.gets_since(mark)
    fetched = {m[1] for g in gets for m in [re.search(r"/blobs/(sha256:[0-9a-f]{64})", g)] if m}
    assert published.layers() and not (fetched & published.layers())     # no layer of the image
    db_layer = json.loads(Registry(published.host).manifest("tfimg/trivy-db", "2-later")[0])["layers"][0]["digest"]
    assert [g for g in gets if db_layer in g] == [f"/v2/tfimg/trivy-db/blobs/{db_layer}"]   # the DB once, 3 digests


def test_watch_alerts_under_the_default_policy(published: Published, capsys, tmp_path: Path) -> None:
    code, out = _watch(capsys, f"{published.host}/w", "a", "--trivy-db-repository", published.later_db,
                       "--markdown", str(tmp_path / "watch.md"), "--sarif", str(tmp_path / "watch.sarif"))
    assert code == 1, out                                             # an alert: the CRITICAL is not waived there
    (d,) = out["digests"]
    assert d["status"] == "block" and [f["id"] for f in d["findings"] if f["blocking"]] == ["CVE-2023-6730"]
    md = (tmp_path / "watch.md").read_text()
    assert "now BLOCKS" in md and "| CVE-2025-5197 | MEDIUM | `transformers@4.21.3` | introduced | 4.53.0 |" in md
    sarif = json.loads((tmp_path / "watch.sarif").read_text())
    since = {r["ruleId"]: r["properties"]["since"] for r in sarif["runs"][0]["results"]}
    assert since["vulnerability/CVE-2025-5197"] == "new" and since["vulnerability/CVE-2023-6730"] == "known"


def test_a_signed_watch_statement_is_dated_kept_beside_and_used_by_promote(published: Published, capsys) -> None:
    host, digest = published.host, published.digest
    code, out = _watch(capsys, f"{host}/w", "c", "--trivy-db-repository", published.later_db,
                       "--sign-key", str(published.key), "--key", str(published.pub))
    assert code == 1 and out["digests"][0]["statement"]
    reg = Registry(host)
    found, problems = watched.statements(reg, "w/c/bert", digest, published.pub)
    assert problems == []
    vulns = [(s.source, s.artifact) for s in found if s.kind == "vuln"]
    assert [s for s, _ in vulns] == ["publish", "watch"] and vulns[1][1] == out["digests"][0]["statement"]
    watch_stmt = found[-1].predicate
    assert watch_stmt["invocation"]["parameters"]["decision"] == "block"
    assert watch_stmt["invocation"]["parameters"]["new"] == ["CVE-2025-5197"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", watch_stmt["metadata"]["scanFinishedOn"])
    assert cli.main(["verify", f"{host}/w/c/bert@{digest}", "--key", str(published.pub)]) == 0
    # the catalog sees the newest watch, and that every statement verified with the key
    ev = evidence_source.read(evidence_source.Listed(f"{host}/w/c/bert", digest, (), None, None), [published.pub])
    assert ev.watch is not None and ev.verification.state == "verified" and ev.verification.key
    assert (ev.watch["decision"], ev.watch["new_findings"]) == ("block", ["CVE-2025-5197"]) and ev.watch["verified_with"]
    assert evidence_source.read(evidence_source.Listed(f"{host}/w/a/bert", digest, (), None, None), []).watch is None
    # promote (the recorded decision) and --registry's shortcut use the newer watch; w/a has none
    capsys.readouterr()
    assert cli.main(["promote", f"{host}/w/c/bert@{digest}", "--to", f"{host}/prod/bert", "--dry-run"]) == 1
    assert "the latest watch" in capsys.readouterr().err
    assert cli.main(["promote", f"{host}/w/a/bert@{digest}", "--to", f"{host}/prod/bert", "--dry-run"]) == 0
    ihash = report_mod.load(published.out).build.input_hash
    judge = gatekeeping.judge(None)
    assert push.find_published(f"{host}/w/c", "bert", ihash, judge).decision == "block"
    assert push.find_published(f"{host}/w/a", "bert", ihash, judge).decision == "pass"


def test_the_waivers_are_attached_as_signed_openvex_that_trivy_honours(published: Published, capsys,
                                                                      tmp_path: Path) -> None:
    host, digest = published.host, published.digest
    verdict = verify.verify(f"{host}/w/b/bert@{digest}", [published.pub], (*verify.DEFAULT_REQUIRED, "vex"))
    assert verdict.ok and [j.kind for j in verdict.judged if j.kind == "vex" and j.ok] == ["vex"]
    attached = watched.vex_documents(f"{host}/w/b/bert@{digest}", published.pub)
    assert len(attached) == 1
    SCHEMA.validate(attached[0])
    assert cli.main(["vex", f"{host}/w/b/bert@{digest}", "--policy", str(DEMO), "-o", str(tmp_path / "b.vex")]) == 0
    doc = json.loads((tmp_path / "b.vex").read_text())
    SCHEMA.validate(doc)
    assert doc["statements"][0]["status"] == "not_affected"
    # the real Trivy drops the waived CVE from the published SBOM's scan, and only that one
    opts = trivy.Options(cache_dir=tmp_path / "cache", db_repository=published.later_db)
    tool = trivy.resolve(opts)
    trivy.current_db(opts, tool)
    sbom = published.out / "sbom.cdx.json"
    plain, _ = trivy.scan_sbom(sbom, opts, tool=tool, name="bert")
    honoured, _ = trivy.scan_sbom(sbom, opts, tool=tool, name="bert", vex=[tmp_path / "b.vex"])
    ids = lambda rep: sorted((f.id, f.package) for f in rep.findings())
    assert set(ids(plain)) - set(ids(honoured)) == {("CVE-2023-6730", "transformers")}
    # the gate takes the attached document by reference: the demo policy without its waiver blocks on
    # CVE-2023-6730 alone, and passes bert once the attached document applies
    unwaived = tmp_path / "unwaived.yaml"
    unwaived.write_text(DEMO.read_text().split("\nwaivers:")[0] + "\n")
    layers = tmp_path / "base-layers.json"
    layers.write_text(json.dumps(report_mod.load(published.out).build.base_layers))
    gate = ["gate", "--report", str(published.out / "trivy.json"), "--policy", str(unwaived),
            "--base-layers", str(layers)]
    assert cli.main([*gate, "--out", str(tmp_path / "g0")]) == 1
    blocking = json.loads((tmp_path / "g0" / "gate.json").read_text())
    assert sorted({b["finding"]["id"] for b in blocking["blocking"]}) == ["CVE-2023-6730"]
    assert cli.main([*gate, "--out", str(tmp_path / "g1"), "--vex", f"{host}/w/b/bert@{digest}"]) == 0


class _SlowProxy:
    """Forwards GET and HEAD to the registry after a short delay, counting requests in flight."""

    def __init__(self, upstream: str, delay: float = 0.15) -> None:
        self.inflight = self.most = 0
        lock, proxy = threading.Lock(), self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def _forward(self) -> None:
                with lock:
                    proxy.inflight += 1
                    proxy.most = max(proxy.most, proxy.inflight)
                try:
                    time.sleep(delay)
                    hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                    resp = requests.request(self.command, f"http://{upstream}{self.path}", headers=hdrs, timeout=30)
                finally:
                    with lock:
                        proxy.inflight -= 1
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(resp.content)

            do_GET = do_HEAD = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_digests_are_watched_concurrently(published: Published, capsys) -> None:
    proxy = _SlowProxy(published.host)
    try:
        for jobs, most in (("1", 1), ("3", 2)):
            proxy.most = 0
            code, out = _watch(capsys, f"{proxy.host}/w", "a", "b", "--trivy-db-repository", published.later_db,
                               "--policy", str(DEMO), "--jobs", jobs)
            assert code == 0 and len(out["digests"]) == 2
            assert (proxy.most == 1) if most == 1 else (proxy.most >= most), (jobs, proxy.most)
    finally:
        proxy.server.shutdown()


def test_what_cannot_be_watched_is_an_alert_and_a_bad_namespace_bad_input(published: Published, capsys,
                                                                          tmp_path: Path, tiny_image) -> None:
    code, out = _watch(capsys, f"{published.host}/w", "a", "--trivy-db-repository", published.later_db,
                       "--key", str(_keys(tmp_path)[1]))                  # another key: nothing verifies
    assert code == 1 and out["digests"][0]["status"] == "error"
    assert "does not verify" in out["digests"][0]["reasons"][0]
    image = tiny_image()                                                  # pushed without any evidence
    engine = Engine.from_env()
    engine.tag(image, f"{published.host}/x/tiny", "1")
    try:
        engine.push(f"{published.host}/x/tiny", "1")
    finally:
        engine.remove_image(f"{published.host}/x/tiny:1")
    code, out = _watch(capsys, f"{published.host}/x", "--trivy-db-repository", published.later_db)
    assert code == 1 and "no SBOM is attached" in out["digests"][0]["reasons"][0]
    capsys.readouterr()
    assert cli.main(["watch", f"{published.host}/nothing-here", "--trivy-db-repository", published.later_db]) == 2
    assert "nothing is published under" in capsys.readouterr().err
    # the referrers index of a watched digest lists only what was attached to it
    refs, _ = referrers.list_referrers(Registry(published.host), "w/a/bert", published.digest)
    assert {r.annotations.get(store.KIND_ANNOTATION) for r in refs} == {"report", "sbom", "vuln", "provenance", "vex"}


def test_publishing_again_attaches_the_same_waivers_once(published: Published) -> None:
    """A second publish of the same digest (make demo run twice) reuses every statement, the OpenVEX
    document of the same waivers too, though a new one would carry a new timestamp."""
    reg = Registry(published.host)
    before, _ = referrers.list_referrers(reg, "w/a/bert", published.digest)
    rec = single.publish(spec.load(VARIANTS / "bert.yaml"), published.out, f"{published.host}/w/a",
                         engine=Engine.from_env(), push=True, sign_key=str(published.key))
    assert rec.digest == published.digest
    assert {a.kind: a.existing for a in rec.attestations} == \
        {"report": True, "sbom": True, "vuln": True, "provenance": True, "vex": True}
    after, _ = referrers.list_referrers(reg, "w/a/bert", published.digest)
    assert sorted(r.digest for r in after) == sorted(r.digest for r in before)
