"""`tfimg registry catalog` against a real registry holding really published images (tests/conftest_catalog.py).

The catalog is made the way a user makes it (the CLI), with key A and a policy that blocks CRITICAL findings:
bert (stand-in based, published with key A) is verified but blocked, tiny (published with key B) passes but
does not verify, and tiny's promotion shows. The registry's access log shows what the catalog read: manifests,
image configs and evidence, never a layer. Without a key no image is shown as fine. Bad input is exit 2.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from tests.catalog_data import Published, tfimg
from tests.conftest_catalog import HOSTILE

pytest_plugins = ["tests.conftest_catalog"]
pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def made(published: Published, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], str]:
    """The catalog ``--key a.pub --policy critical-only``, and the access-log lines it caused."""
    out = tmp_path_factory.mktemp("catalog") / "site"
    log = published.root / "registry.log"
    start = log.stat().st_size
    res = tfimg("registry", "catalog", published.namespace, "--out", str(out), "--key", str(published.keys["a.pub"]),
                "--policy", str(published.policy), timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return out, log.read_bytes()[start:].decode(errors="replace").splitlines(), res.stdout


def _images(out: Path) -> dict[str, dict]:
    data = json.loads((out / "catalog.json").read_text())
    return {i["repository"].split("/", 1)[1]: i for i in data["images"]}


def test_the_index_validates_and_lists_every_published_digest(made, published: Published) -> None:
    out, _, stdout = made
    data = json.loads((out / "catalog.json").read_text())
    jsonschema.Draft202012Validator(json.loads((out / "catalog.schema.json").read_text())).validate(data)
    assert data["registry"] == published.namespace and [k["name"] for k in data["keys"]] == ["a.pub"]
    assert {(r, i["digest"]) for r, i in _images(out).items()} == {
        ("team/bert", published.bert), ("team/tiny", published.tiny), ("team/prod/tiny", published.tiny)}
    assert "3 digest(s) in 2 variant(s); 0 verified and passing, 1 blocked, 2 whose evidence does not verify" in stdout
    assert f"open {(out / 'index.html').resolve().as_uri()}" in stdout


def test_bert_verified_but_blocked_with_its_facts_waiver_findings_and_packages(made, published: Published) -> None:
    out, _, _ = made
    bert = _images(out)["team/bert"]
    assert bert["trust"]["state"] == "verified" and bert["trust"]["keys"] == ["a.pub"]
    assert bert["flags"] == ["blocked"]
    publish_time, today = bert["decisions"]
    assert (publish_time["source"], publish_time["decision"], publish_time["policy"]) == (
        "publish", "pass", "demo-bert-waivers")
    assert (today["source"], today["decision"]) == ("catalog", "block") and bert["latest"] == today
    assert "1 finding(s) block under policy 'critical-only'" in today["reasons"][0]
    # the stand-in's versions, as the checks read them; no CUDA there, so no driver is needed
    assert bert["versions"]["tensorflow"].startswith("2.9.") and bert["versions"]["python"].startswith("3.9.")
    assert bert["versions"]["cuda"] is None and bert["driver"]["basis"] == "cpu-only"
    assert bert["checks"]["passed"] is True and bert["checks"]["gpu_checked"] is False
    assert bert["checks"]["profile"] == "standin-cpu"
    (waiver,) = bert["waivers"]
    assert (waiver["id"], waiver["owner"], waiver["expires"], waiver["findings"]) == (
        "CVE-2023-6730", "ml-platform@example.com", "2027-03-31", 1)
    (cve,) = [f for f in bert["findings"] if f["id"] == "CVE-2023-6730"]
    assert (cve["origin"], cve["package"], cve["installed"], cve["waived_by"]) == (
        "introduced", "transformers", "4.21.3", "CVE-2023-6730")
    assert any(f["origin"] == "inherited" for f in bert["findings"])       # the base's own findings
    pkg = next(p for p in bert["packages"] if p["name"] == "transformers")
    assert (pkg["version"], pkg["type"], pkg["origin"]) == ("4.21.3", "pypi", "introduced")
    assert any(p["origin"] == "inherited" and p["type"] == "deb" for p in bert["packages"])
    sizes = bert["sizes"]
    assert sizes["pull"] > sizes["pull_over_base"] > 0 and sizes["unpacked"] > sizes["unpacked_over_base"] > 0
    assert bert["immutable"] in bert["tags"] and "bert-latest" in bert["tags"] and bert["tags"][0] == bert["immutable"]
    assert bert["snippets"]["docker_run"].rstrip().endswith(f"{published.namespace}/bert@{published.bert}")
    assert "--gpus all" in bert["snippets"]["docker_run"] and bert["snippets"]["kubeflow"]
    page = (out / bert["page"]).read_text()
    assert "BLOCKED" in page and "ml-platform@example.com" in page and "transformers" in page


def test_tiny_passes_but_does_not_verify_and_its_promotion_shows(made, published: Published) -> None:
    out, _, _ = made
    images = _images(out)
    tiny, prod = images["team/tiny"], images["team/prod/tiny"]
    for image in (tiny, prod):
        assert image["trust"]["state"] == "unverifiable" and image["flags"] == ["unverifiable"]
        assert any("no envelope signed by a trusted key" in p and "other signer" in p for p in image["trust"]["problems"])
        assert image["latest"]["decision"] == "pass"
        assert [p["name"] for p in image["packages"]] == [HOSTILE, "six"]
        assert image["driver"]["minimum"] == "515" and image["driver"]["basis"] == "profile"   # NGC 22.07, CUDA 11.7
    assert [(p["from"], p["to"]) for p in tiny["promotions"]] == [
        (f"{published.namespace}/tiny", f"{published.namespace}/prod/tiny")]
    index = (out / "index.html").read_text()
    assert index.count("DOES NOT VERIFY") >= 3 and index.count(">BLOCKED<") >= 2   # the rows and the legend
    page = (out / tiny["page"]).read_text()
    assert "DOES NOT VERIFY" in page and HOSTILE not in page and "&lt;img src=x onerror=" in page


def test_the_catalog_reads_only_manifests_configs_and_evidence(made, published: Published) -> None:
    _, lines, _ = made
    blobs = re.findall(r'"GET /v2/(\S+?)/blobs/(sha256:[0-9a-f]{64}) HTTP', "\n".join(lines))
    assert len(blobs) >= 3 * 4, lines[:20]          # configs and evidence envelopes, per digest
    layers = published.layers()
    assert layers and not {d for _, d in blobs} & layers, "the catalog fetched an image layer"
    assert any(re.search(r'"GET /v2/team/bert/manifests/sha256:', line) for line in lines)


def test_without_a_key_no_image_is_shown_as_fine(published: Published, tmp_path: Path) -> None:
    out = tmp_path / "site"
    res = tfimg("registry", "catalog", published.namespace, "--out", str(out), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    images = _images(out)
    assert all("not-verified" in i["flags"] and i["trust"]["state"] == "not-verified" for i in images.values())
    assert "verified, passes" not in (out / "index.html").read_text().split('<h2 id="legend-h">')[0]
    for image in images.values():
        page = (out / image["page"]).read_text()
        assert "NOT VERIFIED" in page and "verified, passes" not in page
    assert "No key was given: no signature was checked." in (out / "index.html").read_text()


def test_bad_input_is_exit_2_and_writes_nothing(published: Published, tmp_path: Path) -> None:
    out = tmp_path / "site"
    res = tfimg("registry", "catalog", published.namespace, "--out", str(out), "--key", str(tmp_path / "nope.pub"))
    assert res.returncode == 2 and "no public key file" in res.stderr and "Traceback" not in res.stderr
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    res = tfimg("registry", "catalog", published.namespace, "--out", str(mine))
    assert res.returncode == 2 and "not a tfimg catalog" in res.stderr and (mine / "keep.txt").read_text() == "mine"
    res = tfimg("registry", "catalog", "127.0.0.1:1/team", "--out", str(out))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
