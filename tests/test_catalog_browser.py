"""The catalog in a real browser: headless Chromium under selenium (the setup of tests/test_jupyter_browser.py).

The catalog of the registry of tests/conftest_catalog.py (bert verified but blocked, tiny unverifiable), opened
from disk (file://) and from a local web server:

- the index lists the published images with their status in words;
- a search by CVE id, by package (and version) and by tag finds the right images, across the catalog;
- a blocked and an unverifiable image show their status on their pages and in search results;
- a package named like markup (`<img src=x onerror=...>`, in a published SBOM) is shown as text and runs nothing;
- the pages make no network request (Chromium's performance log: only file:// or the local server);
- the keyboard alone reaches the search box (``/``), a result (Tab) and opens it (Enter); the skip link works;
- without JavaScript the tables are there and the search box is not; on a 390 px screen nothing overflows.

Screenshots are written to pytest's tmp folder and to build/test-artifacts/catalog/ (CI keeps them);
``TFIMG_UPDATE_SCREENSHOT=1`` also writes docs/catalog.png.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.catalog_data import Published, tfimg
from tests.test_jupyter_browser import NOT_NETWORK, _requested_urls, chromium

pytest_plugins = ["tests.conftest_catalog"]
pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "build" / "test-artifacts" / "catalog"


@pytest.fixture(scope="module")
def site(published: Published, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("catalog-browser") / "site"
    res = tfimg("registry", "catalog", published.namespace, "--out", str(out), "--key", str(published.keys["a.pub"]),
                "--policy", str(published.policy), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


@pytest.fixture
def browser(pytestconfig: pytest.Config, tmp_path: Path) -> Iterator:
    driver = chromium(pytestconfig, tmp_path)
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver, tmp_path: Path, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(tmp_path / name))
    shutil.copy(tmp_path / name, ARTIFACTS / name)
    print(f"screenshot: {ARTIFACTS / name}")


def _pages(site: Path) -> dict[str, str]:
    """repository path (team/bert ...) -> its page, relative to the site."""
    return {i["repository"].split("/", 1)[1]: i["page"] for i in json.loads((site / "catalog.json").read_text())["images"]}


def _search(driver, query: str) -> list:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    box = WebDriverWait(driver, 10).until(ec.visibility_of_element_located((By.ID, "q")))
    box.clear()
    box.send_keys(query)
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "results").text.strip())
    return driver.find_elements(By.CSS_SELECTOR, "#results li")


def _links(items: list) -> list[str]:
    from selenium.webdriver.common.by import By
    return sorted(urlsplit(li.find_element(By.TAG_NAME, "a").get_attribute("href")).path.rsplit("/", 1)[-1]
                  for li in items)


def _no_network(driver) -> list[str]:
    urls = _requested_urls(driver)
    assert urls, "the performance log recorded no request"
    return [u for u in urls if urlsplit(u).scheme not in NOT_NETWORK | {"file"}]


def test_index_search_and_status_from_disk(site: Path, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    pages = _pages(site)
    name = {repo: page.rsplit("/", 1)[-1] for repo, page in pages.items()}
    browser.get((site / "index.html").as_uri())
    rows = {r.find_element(By.TAG_NAME, "small").text: r for r in browser.find_elements(By.CSS_SELECTOR, "table.images tbody tr")}
    assert {k.split("/", 1)[1] for k in rows} == {"team/bert", "team/tiny", "team/prod/tiny"}
    bert_row = next(r for k, r in rows.items() if k.endswith("/team/bert"))
    assert "BLOCKED" in bert_row.text and "2.9." in bert_row.text
    assert all("DOES NOT VERIFY" in r.text for k, r in rows.items() if "tiny" in k)

    found = _search(browser, "CVE-2023-6730")
    assert _links(found) == [name["team/bert"]] and "BLOCKED" in found[0].text
    assert "introduced" in found[0].text and "transformers" in found[0].text
    _shot(browser, tmp_path, "catalog-search-cve.png")
    assert _links(_search(browser, "six==1.16.0")) == sorted([name["team/tiny"], name["team/prod/tiny"]])
    assert _links(_search(browser, "transformers 4.21.3")) == [name["team/bert"]]
    assert _links(_search(browser, "transformers==9.9")) == []
    assert "0 images match" in browser.find_element(By.ID, "results").text
    assert _links(_search(browser, "bert-latest")) == [name["team/bert"]]
    found = _search(browser, "onerror")                              # a package named like markup: text only
    assert _links(found) == sorted([name["team/tiny"], name["team/prod/tiny"]])
    assert "package <img src=x onerror=window.__pwned=1> 6.6.6" in found[0].text
    assert not browser.find_elements(By.CSS_SELECTOR, "#results img")
    assert browser.execute_script("return window.__pwned") is None
    found = _search(browser, "CVE-2099-0002")                        # tiny's finding, in both repositories
    assert _links(found) == sorted([name["team/tiny"], name["team/prod/tiny"]])
    assert all("DOES NOT VERIFY" in li.text for li in found)
    _shot(browser, tmp_path, "catalog-index.png")
    if os.environ.get("TFIMG_UPDATE_SCREENSHOT"):
        browser.set_window_size(1280, 1180)
        browser.get((site / "index.html").as_uri() + "?q=transformers")
        browser.save_screenshot(str(ROOT / "docs" / "catalog.png"))

    for repo, word in (("team/bert", "BLOCKED"), ("team/tiny", "DOES NOT VERIFY")):
        browser.get((site / pages[repo]).as_uri())
        banner = browser.find_element(By.CSS_SELECTOR, ".banner")
        assert word in banner.text and "bad" in banner.get_attribute("class")
        _shot(browser, tmp_path, f"catalog-{repo.replace('/', '-')}.png")
    assert "<img src=x onerror=" in browser.find_element(By.ID, "packages").text   # tiny's page: text, not markup
    assert browser.execute_script("return window.__pwned") is None
    filt = browser.find_element(By.ID, "pkg-filter")                  # two packages, filtered to one, then none
    filt.send_keys("six")
    assert "1 of 2 packages match" in browser.find_element(By.ID, "pkg-count").text
    filt.send_keys("-nothing-like-this")
    assert "0 of 2 packages match" in browser.find_element(By.ID, "pkg-count").text
    assert browser.get_log("browser") == []                          # no script error, no CSP violation
    assert not _no_network(browser)


def test_keyboard_alone_finds_and_opens_an_image(site: Path, browser) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get((site / "index.html").as_uri())
    ActionChains(browser).send_keys(Keys.TAB).perform()              # the first stop: the skip link
    focused = browser.switch_to.active_element
    assert focused.get_attribute("class") == "skip" and focused.is_displayed()
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    assert browser.switch_to.active_element.get_attribute("id") == "main"
    ActionChains(browser).send_keys("/").perform()                   # '/' jumps to the search box
    assert browser.switch_to.active_element.get_attribute("id") == "q"
    ActionChains(browser).send_keys("CVE-2023-6730").perform()
    browser.find_element(By.CSS_SELECTOR, "#results li a")
    ActionChains(browser).send_keys(Keys.TAB).perform()
    link = browser.switch_to.active_element
    assert link.tag_name == "a" and "bert" in link.text
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    assert browser.current_url.endswith(_pages(site)["team/bert"])
    assert "BLOCKED" in browser.find_element(By.CSS_SELECTOR, ".banner").text
    outline = browser.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
    assert outline is not None                                       # (a focus style exists; see catalog.css)


def test_served_over_http_it_asks_only_its_own_server(site: Path, browser) -> None:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        browser.get(f"{base}/index.html")
        assert _search(browser, "CVE-2023-6730")
        browser.get(f"{base}/{_pages(site)['team/tiny']}")
        urls = _requested_urls(browser)
        off = [u for u in urls if urlsplit(u).scheme not in NOT_NETWORK and urlsplit(u).hostname != "127.0.0.1"]
        assert not off, off
        assert any(u.endswith("search-index.js") for u in urls) and any(u.endswith("page.js") for u in urls)
        assert not [u for u in urls if "favicon.ico" in u]             # its own icon, no guess at /favicon.ico
    finally:
        server.shutdown()
        server.server_close()


def test_readable_without_javascript_and_on_a_narrow_screen(site: Path, pytestconfig, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver = chromium(pytestconfig, tmp_path, javascript=False, width=390, height=860)
    try:
        driver.get((site / "index.html").as_uri())
        assert not driver.find_element(By.ID, "search").is_displayed()   # search needs JavaScript
        assert "Search needs JavaScript" in driver.find_element(By.TAG_NAME, "body").text
        assert len(driver.find_elements(By.CSS_SELECTOR, "table.images tbody tr")) == 3
        for page in ["index.html", *_pages(site).values()]:
            driver.get((site / page).as_uri())
            width = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], (page, width)                     # tables scroll inside their box
        assert "Copy" not in driver.find_element(By.TAG_NAME, "body").text   # the copy buttons come from JS
        _shot(driver, tmp_path, "catalog-narrow-nojs.png")
        assert not _no_network(driver)
    finally:
        driver.quit()
