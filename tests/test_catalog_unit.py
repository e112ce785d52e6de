"""The catalog without a registry: hostile evidence renders inert (a property), the JSON index validates against
its schema, the driver a CUDA version needs, the snippets, and how ``--out`` is replaced.

Evidence is attacker-controlled (anyone who can push to the registry writes it), so the properties feed
:func:`builder.catalog.collect.image` documents of any JSON shape and strings such as ``<script>`` in every
place the pages show, and check what a browser would parse: only the site's own tags, no inline script, no
event handler, no link but relative or http(s) ones, and every flag of a flagged image on its page and the index.
"""

from __future__ import annotations

import datetime as dt
import html.parser
import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.catalog import collect, drivers, render, snippets
from builder.catalog.evidence_source import Evidence, ImageConfig, Listed, Verification
from builder.catalog.models import SCHEMA_PATH, Catalog, schema, schema_text
from builder.errors import TfimgError
from builder.infra import labels

ROOT = Path(__file__).resolve().parent.parent
NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.timezone.utc)
BASE_LAYER, OWN_LAYER = "sha256:" + "b" * 64, "sha256:" + "c" * 64
DIGEST = "sha256:" + "d" * 64
PROPS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NASTY = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "</pre><svg onload=alert(1)>",
         "javascript:alert(1)", "{{ 7*7 }}{% raw %}", "&lt;b&gt;&amp;", "'; rm -rf / #", "$(touch /tmp/x)",
         "`id`", "\u2028</script><script>alert(1)</script>", "a\nb: c\n- d", "ml:0:0\n--privileged"]
TEXT = st.one_of(st.sampled_from(NASTY), st.text(max_size=30))
KEYS = ["variant", "report", "facts", "build", "checks", "gate", "tags", "immutable", "moving", "tensorflow",
        "python", "cuda", "waivers", "id", "owner", "expires", "reason", "decision", "reasons", "base_layers",
        "labels", "modules", "counts", "published_at", "gpu", "enabled", "passed", "profile"]
JSON = st.recursive(st.none() | st.booleans() | st.integers(-5, 10**10) | TEXT,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS) | TEXT, inner,
                                                                               max_size=4), max_leaves=20)


@st.composite
def documents(draw: st.DrawFn) -> dict:
    """An evidence document of today's shape with hostile values in every field the pages show."""
    t = lambda: draw(TEXT)
    decision = draw(st.sampled_from(["pass", "block", "unscanned"]) | TEXT)
    waiver = {"id": t(), "owner": t(), "expires": draw(st.sampled_from(["2027-03-31", "2026-01-01"]) | TEXT),
              "reason": t(), "package": t(), "findings": draw(st.integers(0, 3))}
    return {"variant": t(), "published_at": t(), "tags": {"immutable": t(), "moving": [t(), t()]},
            "promotions": [{"from": t(), "to": t(), "at": t(), "policy": t()}],
            "report": {"facts": {"tensorflow": t(), "python": t(), "cuda": draw(st.sampled_from(["11.7", None]) | TEXT),
                                 "cudnn": t(), "nccl": t()},
                       "build": {"base_layers": [BASE_LAYER], "profile": draw(st.sampled_from(["ngc-22.07"]) | TEXT),
                                 "labels": {labels.USER: t()}, "size": draw(st.integers(0, 10**10)),
                                 "added_bytes": draw(st.integers(0, 10**9))},
                       "checks": {"passed": draw(st.booleans()), "modules": ["test_jupyter", "test_ssh", t()],
                                  "gpu": {"enabled": draw(st.booleans()), "reason": t()}, "profile": t(),
                                  "profile_note": t(), "counts": {"passed": 3, t(): 1}},
                       "gate": {"decision": decision, "policy": t(), "reasons": [t()], "blocking_ids": [t()],
                                "waivers": [waiver], "expired_waivers": [t()], "stale_waivers": [t()],
                                "evaluated_on": t(), "counts": {"license": {"new": {"HIGH": 2}}}}}}


def _trivy(draw: st.DrawFn) -> dict:
    t = lambda: draw(TEXT)
    vuln = {"VulnerabilityID": t(), "PkgName": t(), "InstalledVersion": t(), "FixedVersion": t(), "Title": t(),
            "Severity": draw(st.sampled_from(["CRITICAL", "HIGH"]) | TEXT),
            "PrimaryURL": draw(st.sampled_from(["javascript:alert(1)", "https://example.com/<x>", "data:text/html,x"])
                               | TEXT),
            "Layer": {"DiffID": draw(st.sampled_from([BASE_LAYER, OWN_LAYER]))}}
    return {"SchemaVersion": 2, "Results": [{"Target": t(), "Class": "lang-pkgs", "Vulnerabilities": [vuln],
                                             "Secrets": [{"RuleID": t(), "Title": t(), "Severity": "HIGH"}]}]}


@st.composite
def evidences(draw: st.DrawFn) -> Evidence:
    shaped = draw(st.booleans())
    report = draw(documents()) if shaped else draw(st.dictionaries(st.sampled_from(KEYS), JSON, max_size=6))
    sbom = {"components": [{"name": draw(TEXT), "version": draw(TEXT), "group": draw(TEXT),
                            "purl": "pkg:" + draw(TEXT), "type": "library",
                            "properties": [{"name": "aquasecurity:trivy:LayerDiffID", "value": OWN_LAYER}]}]}
    repository = draw(st.sampled_from(["127.0.0.1:5000/team/bert", "registry.example.com/ml/dev/worker"])
                      | TEXT.map(lambda s: "host/" + s))
    state = draw(st.sampled_from(["verified", "unverifiable", "not-verified"]))
    return Evidence(
        listed=Listed(repository, "sha256:" + draw(st.integers(0, 2**64)).to_bytes(32, "big").hex(), tuple(draw(st.lists(TEXT, max_size=3))), draw(st.none() | TEXT),
                      draw(st.none() | st.integers(0, 10**10))),
        report=report, report_signed=True, sbom=sbom if shaped else draw(JSON), trivy=_trivy(draw) if shaped else None,
        promotions=tuple(p for p in (report.get("promotions") or []) if isinstance(p, dict)) if shaped else (),
        unsigned_promotions=True,
        verification=Verification(state, "a.pub" if state == "verified" else None,
                                   (draw(TEXT),) if state == "unverifiable" else ()),
        config=ImageConfig(labels={labels.USER: draw(TEXT)}, exposed_ports=(2222, 8888),
                           diff_ids=(BASE_LAYER, OWN_LAYER), layer_sizes=(100, 20)),
        problems=tuple(draw(st.lists(TEXT, max_size=1))))


def _catalog(images: list) -> Catalog:
    return Catalog(generated_at=NOW.isoformat(), registry="127.0.0.1:5000/<team>", tfimg="0.1.0", images=images)


class Page(html.parser.HTMLParser):
    """What a browser would make of a page: its tags, attributes and scripts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text = ""
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_text += data


SITE_TAGS = {"html", "head", "meta", "title", "link", "body", "a", "header", "p", "code", "time", "strong", "main",
             "footer", "script", "h1", "h2", "h3", "section", "form", "label", "input", "kbd", "div", "noscript",
             "ul", "li", "span", "table", "caption", "thead", "tr", "th", "tbody", "td", "br", "small", "nav",
             "pre", "dl", "dt", "dd", "em"}
SCRIPTS = {"search-index.js", "assets/search.js", "../assets/page.js"}


def _inert(text: str) -> Page:
    page = Page()
    page.feed(text)
    assert {t for t, _ in page.tags} <= SITE_TAGS, {t for t, _ in page.tags} - SITE_TAGS
    for tag, attrs in page.tags:
        assert not [a for a in attrs if a.lower().startswith("on")], (tag, attrs)
        if tag == "script":
            assert attrs.get("src") in SCRIPTS, attrs
        href = attrs.get("href") or ""
        assert not href or href.startswith(("https://", "http://", "#", "../", "images/", "catalog", "assets/",
                                            "index.html")), href
    assert page.script_text.strip() == ""
    return page


@PROPS
@given(st.lists(evidences(), min_size=1, max_size=3, unique_by=lambda e: (e.listed.repository, e.listed.digest)))
def test_hostile_evidence_renders_inert_and_every_flag_is_shown(items: list[Evidence]) -> None:
    images = [collect.image(ev, [], None, NOW) for ev in items]
    catalog = _catalog(images)
    site = render.pages(catalog)
    index = _inert(site["index.html"])
    for image in images:
        page = site[image.page]
        _inert(page)
        for flag in image.flags:                          # marked on every page that shows it
            assert render.FLAG_SHORT[flag] in page
        assert ("verified, passes" in page) == image.ok
    assert all(render.FLAG_SHORT[f] in site["index.html"] for i in images for f in i.flags)
    assert index.tags[0][0] == "html"
    data = json.loads(site["catalog.json"])
    jsonschema.Draft202012Validator(schema()).validate(data)
    assert Catalog.model_validate(data) == catalog                 # the JSON index is the same data
    prefix, _, rest = site["search-index.js"].partition("window.TFIMG_SEARCH = ")
    assert prefix.startswith("//") and "\n" not in prefix.strip("\n").split("\n")[-1] and rest.endswith(";\n")
    assert json.loads(rest[:-2]) == render.search_data(catalog)   # one JSON literal: nothing breaks out


def test_a_script_named_package_is_text_on_the_page() -> None:
    doc = {"schema": "tfimg.evidence/v1", "digest": DIGEST, "variant": "bert",
           "report": {"gate": {"decision": "pass"}, "checks": {"passed": True}}}
    ev = Evidence(Listed("127.0.0.1:5000/team/bert", DIGEST, ("bert-latest",), None, 10), doc, True,
                  {"components": [{"name": "<script>alert(1)</script>", "version": "1.0", "type": "library"}]},
                  None, (), True, Verification("verified", "a.pub"), ImageConfig())
    image = collect.image(ev, [Path("a.pub")], None, NOW)
    page = render.pages(_catalog([image]))[image.page]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert image.ok and image.packages[0].name == "<script>alert(1)</script>"


def test_the_shipped_schema_is_current() -> None:
    assert (ROOT / SCHEMA_PATH).read_text() == schema_text(), \
        "docs/catalog.schema.json is stale: run `python -m builder.catalog.models -o docs/catalog.schema.json`"


# --------------------------------------------------------------------------- the driver an image needs

@pytest.mark.parametrize("profile,cuda,minimum,basis,full", [
    ("ngc-22.07", "11.7", "515", "profile", "515.43.04"),        # NGC's release notes (forward compatibility)
    ("ngc-22.07", None, "515", "profile", None),                 # the profile's CUDA, not read from the image
    ("standin-cuda", "11.7", "450.80.02", "profile", "515.43.04"),
    ("standin-cpu", None, None, "cpu-only", None),
    (None, "12.2", "525", "cuda-table", "535.54.03"),            # CUDA 12.x minor version compatibility
    ("ngc-22.07", "12.4", "525", "cuda-table", "550.54.14"),     # not the profile's CUDA: the table decides
    (None, "11.8.89", "450.80.02", "cuda-table", "520.61.05"),
    (None, "10.2", "440.33", "cuda-table", "440.33"),            # before CUDA 11: the toolkit's own driver
    (None, "9.0", None, "unknown", None),
])
def test_minimum_driver(profile, cuda, minimum, basis, full) -> None:
    need = drivers.need(profile, cuda)
    assert (need.minimum, need.basis, need.full_features) == (minimum, basis, full)
    assert need.source and need.note


def test_driver_table_has_its_source_and_no_minimum_exceeds_a_release_own_driver() -> None:
    table = drivers.table()
    assert "docs.nvidia.com/cuda/cuda-toolkit-release-notes" in table.source
    for version, driver in table.toolkit_drivers.items():
        need = drivers.need(None, version)
        assert need.basis == "cuda-table" and need.minimum is not None, version
        assert drivers._numbers(need.minimum) <= drivers._numbers(driver), (version, driver, need.minimum)
    assert drivers.need(None, "11.0.3").minimum == "450.51.06"   # 11.0 shipped before the 450.80.02 branch


# --------------------------------------------------------------------------- snippets

REF = "127.0.0.1:5000/team/bert@sha256:" + "a" * 64
SAFE_TOKEN = r"^[A-Za-z0-9_./:=,@+-]+$"


def test_snippets_run_hardened_with_a_gpu() -> None:
    s = snippets.make(snippets.RunInfo(REF, "bert", "ml:1000:1000", (2222, 8888), jupyter=True, ssh=True, gpu=True))
    argv = shlex.split(s.docker_run.replace("\\\n", " "))   # the shell's line continuation
    for flag in (["--gpus", "all"], ["--cap-drop", "ALL"], ["--security-opt", "no-new-privileges"],
                 ["--read-only"], ["-p", "127.0.0.1:8888:8888"], ["--tmpfs", "/home/ml:uid=1000,gid=1000,mode=0755"]):
        assert any(argv[i:i + len(flag)] == flag for i in range(len(argv))), flag
    assert argv[-1] == REF
    pod = yaml.safe_load(s.kubernetes_pod)
    spec, (container,) = pod["spec"], pod["spec"]["containers"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 1000
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True and container["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert container["image"] == REF
    notebook = yaml.safe_load(s.kubeflow)
    assert notebook["kind"] == "Notebook" and "--ServerApp.base_url=$(NB_PREFIX)" in \
        notebook["spec"]["template"]["spec"]["containers"][0]["args"]

    class Config:   # traitlets' config object, as far as a config file uses it
        def __getattr__(self, name: str) -> Config:
            setattr(self, name, Config())
            return getattr(self, name)

    c = Config()
    exec(compile(s.jupyterhub, "jupyterhub_config.py", "exec"), {"c": c})   # valid Python, sets KubeSpawner
    assert c.KubeSpawner.image == REF and c.KubeSpawner.extra_resource_limits == {"nvidia.com/gpu": "1"}
    assert c.KubeSpawner.container_security_context["capabilities"] == {"drop": ["ALL"]}


def test_no_jupyter_no_notebook_settings_and_no_gpu_flags_for_a_cpu_image() -> None:
    s = snippets.make(snippets.RunInfo(REF, "worker", "ml:1000:1000", (2222,), jupyter=False, ssh=True, gpu=False))
    assert s.jupyterhub is None and s.kubeflow is None and "--gpus" not in s.docker_run
    assert "nvidia.com/gpu" not in s.kubernetes_pod and "JUPYTER_PASSWORD_HASH" not in s.docker_run


@settings(max_examples=200, deadline=None)
@given(ref=TEXT | st.just(REF), variant=TEXT, user=TEXT | st.just("ml:1000:1000"),
       ports=st.lists(st.integers(1, 65535), max_size=3), flags=st.tuples(st.booleans(), st.booleans(), st.booleans()))
def test_hostile_values_never_reach_a_pasted_command(ref, variant, user, ports, flags) -> None:
    s = snippets.make(snippets.RunInfo(ref, variant, user, tuple(ports), *flags))
    argv = shlex.split(s.docker_run.replace("\\\n", " "))   # the shell's line continuation
    assert argv[:2] == ["docker", "run"] and argv[-1] in (ref, "IMAGE")
    assert all(re.match(SAFE_TOKEN, a) for a in argv), argv
    for text in (s.kubernetes_pod, s.kubeflow):
        if text is not None:
            doc = yaml.safe_load(text)
            container = (doc["spec"].get("template", {}).get("spec") or doc["spec"])["containers"][0]
            assert container["image"] in (ref, "IMAGE")
            assert re.match(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", doc["metadata"]["name"])


# --------------------------------------------------------------------------- where the site goes

def _one() -> Catalog:
    ev = Evidence(Listed("127.0.0.1:5000/team/bert", DIGEST, ("bert-latest",), "2026-12-01T10:00:00Z", 10),
                  None, False, None, None, (), True, Verification("not-verified"), ImageConfig())
    return _catalog([collect.image(ev, [], None, NOW)])


def test_out_is_new_empty_or_an_earlier_catalog(tmp_path: Path) -> None:
    site = tmp_path / "site"
    index = render.write(_one(), site)
    assert index == site / "index.html" and (site / render.MARKER).is_file()
    assert (site / "assets" / "search.js").is_file() and (site / "catalog.schema.json").is_file()
    render.write(_one(), site)                                  # an earlier catalog is replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]   # nothing left beside it
    empty = tmp_path / "empty"
    empty.mkdir()
    render.write(_one(), empty)                                 # the user's empty folder is filled, kept
    assert (empty / "index.html").is_file()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(TfimgError, match="not a tfimg catalog") as info:
        render.write(_one(), mine)
    assert info.value.exit_code == 2 and (mine / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "mine", "site"]


def test_a_failed_write_leaves_the_earlier_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    render.write(_one(), site)
    before = (site / "catalog.json").read_text()

    def broken(catalog: Catalog) -> dict[str, str]:
        raise OSError("disk full")

    monkeypatch.setattr(render, "pages", broken)
    with pytest.raises(OSError):
        render.write(_one(), site)
    assert (site / "catalog.json").read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["site"]


@pytest.mark.parametrize("n,shown", [(None, "unknown"), (0, "0 B"), (999, "999 B"), (862379828, "862.4 MB"),
                                     (2207095479, "2.2 GB")])
def test_sizes_in_human_units(n, shown) -> None:
    assert render.human_size(n) == shown


@pytest.mark.parametrize("value,shown", [("2026-12-04T14:05:45Z", "2026-12-04 14:05:45Z"),
                                         ("2026-12-04T15:05:45.123+01:00", "2026-12-04 14:05:45Z"),
                                         ("2026-12-04", "2026-12-04"), ("yesterday", "yesterday"), (None, "unknown")])
def test_times_in_iso_form(value, shown) -> None:
    assert render.iso_when(value) == shown


def test_a_watch_result_is_the_latest_decision_and_is_shown() -> None:
    """Issue 21 attaches dated watch statements; the adapter hands the newest one over as ``watch``."""
    doc = {"schema": "tfimg.evidence/v1", "digest": DIGEST, "variant": "bert",
           "report": {"gate": {"decision": "pass", "policy": "default"}, "checks": {"passed": True}}}
    ev = Evidence(Listed("127.0.0.1:5000/team/bert", DIGEST, ("bert-latest",), None, 10), doc, True, None, None, (),
                  True, Verification("verified", "a.pub"), ImageConfig(),
                  watch={"at": "2026-12-10T08:00:00Z", "decision": "block", "policy": "default",
                         "new_findings": ["CVE-2026-0001"], "verified_with": "a.pub"})
    image = collect.image(ev, [Path("a.pub")], None, NOW)
    assert [d.source for d in image.decisions] == ["publish", "watch"] and image.latest.decision == "block"
    assert image.flags == ["blocked"] and image.watch is not None and image.watch.new_findings == ["CVE-2026-0001"]
    page = render.pages(_catalog([image]))[image.page]
    assert "CVE-2026-0001" in page and "BLOCKED" in page
