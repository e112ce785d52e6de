"""The latest `tfimg watch` result flows into the catalog (issues 21 and 22), all of it made the real way.

bert, published signed with key A (tests/conftest_catalog.py), is promoted (signed with key A) into a namespace
of its own (``watched/``, so the ``team`` catalog of the other tests is unchanged), then watched with the real
Trivy against the demo DB's later edition (CVE-2025-5197 in transformers, disclosed after publishing), and the
watch's dated statement is signed with key A. The catalog made ``--key a.pub`` shows that watch as the latest
decision, with the newly disclosed id, on the image's page and in the search data; made with key B only, the
watch is not taken from an envelope the catalog could not verify.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.catalog_data import Published, tfimg
from tests.test_watch_registry import _later_db

pytest_plugins = ["tests.conftest_catalog"]
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.trivy]

DEMO_POLICY = "policies/demo-bert-waivers.yaml"


@pytest.fixture(scope="module")
def watched(published: Published, tmp_path_factory: pytest.TempPathFactory) -> str:
    """HOST/watched, holding bert (promoted, then watched under the later DB, the watch signed with key A)."""
    tmp = tmp_path_factory.mktemp("catalog-watch")
    host, a_pem, a_pub = published.host, str(published.keys["a.pem"]), str(published.keys["a.pub"])
    res = tfimg("promote", f"{published.namespace}/bert@{published.bert}", "--to", f"{host}/watched/bert",
                "--key", a_pub, "--sign-key", a_pem)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    later = _later_db(host, tmp / "later")
    res = tfimg("watch", f"{host}/watched", "--policy", DEMO_POLICY, "--trivy-db-repository", later, "--key", a_pub,
                "--sign-key", a_pem, "--trivy-cache-dir", str(tmp / "trivy-cache"), "--date", "2026-12-04", "--json",
                timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (digest,) = json.loads(res.stdout)["digests"]
    assert digest["statement"], digest                                  # the dated statement was attached
    return f"{host}/watched"


def _catalog(namespace: str, out: Path, *keys: Path) -> dict:
    res = tfimg("registry", "catalog", namespace, "--out", str(out), *[a for k in keys for a in ("--key", str(k))])
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    (image,) = json.loads((out / "catalog.json").read_text())["images"]
    return image


def test_the_signed_watch_is_the_latest_decision_on_the_page_and_in_search(watched: str, published: Published,
                                                                           tmp_path: Path) -> None:
    out = tmp_path / "site"
    image = _catalog(watched, out, published.keys["a.pub"])
    assert image["trust"]["state"] == "verified" and image["digest"] == published.bert
    watch = image["watch"]
    assert (watch["decision"], watch["new_findings"], watch["verified_with"]) == ("pass", ["CVE-2025-5197"], "a.pub")
    assert watch["policy"] == "demo-bert-waivers" and watch["at"] > image["decisions"][0]["on"]
    assert [d["source"] for d in image["decisions"]] == ["publish", "watch"] and image["latest"]["source"] == "watch"
    assert image["flags"] == []                                     # verified, and still passes under the demo policy
    assert [(p["from"], p["to"]) for p in image["promotions"]] == [(f"{published.namespace}/bert", f"{watched}/bert")]
    page = (out / image["page"]).read_text()
    assert "disclosed since publishing: CVE-2025-5197" in page and "Its statement verified with a.pub" in page
    search = (out / "search-index.js").read_text()
    assert '["CVE-2025-5197","disclosed since publishing","","tfimg watch"]' in search


def test_a_watch_the_keys_do_not_verify_is_not_shown_as_verified(watched: str, published: Published,
                                                                 tmp_path: Path) -> None:
    image = _catalog(watched, tmp_path / "site-b", published.keys["b.pub"])
    assert image["trust"]["state"] == "unverifiable" and "unverifiable" in image["flags"]
    assert image["watch"] is None                                   # signed by A: not taken on B's word
    image = _catalog(watched, tmp_path / "site-none")
    assert image["watch"]["new_findings"] == ["CVE-2025-5197"] and image["watch"]["verified_with"] is None
    assert "not-verified" in image["flags"]
    assert "Its statement was <strong>not verified</strong>" in (tmp_path / "site-none" / image["page"]).read_text()
