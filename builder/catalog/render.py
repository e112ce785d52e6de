"""Write a :class:`~builder.catalog.models.Catalog` as a static site: HTML, CSS, a little JavaScript, JSON.

``DIR/index.html`` (the variants and their digests), ``DIR/images/*.html`` (one page per digest),
``DIR/catalog.json`` (the same data, for tools) with ``DIR/catalog.schema.json``, ``DIR/search-index.js``
(the search data as a script, so search works from ``file://``, where Chromium refuses ``fetch()`` of local
files) and ``DIR/assets/``. Nothing is loaded from the network; every page carries a Content-Security-Policy
that allows only its own folder's scripts and styles.

Jinja2 autoescapes every value (evidence is attacker-controlled: a package named ``<script>`` is text);
links to findings are kept only when they are http(s). The site is written into a new folder beside
``DIR`` and moved into place at the end: a failure leaves the previous catalog as it was. ``DIR`` must be
new, empty, or a catalog tfimg wrote (it holds ``.tfimg-catalog``): tfimg deletes no folder it did not make.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import tempfile
from functools import lru_cache
from itertools import groupby
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from builder.catalog.models import FLAG_TEXT, Catalog, Image, schema_text
from builder.errors import TfimgError

HERE = Path(__file__).parent
ASSETS = HERE / "assets"
TEMPLATES = HERE / "templates"
MARKER = ".tfimg-catalog"
FLAG_SHORT = {"blocked": "BLOCKED", "not-passed": "NOT PASSED", "unverifiable": "DOES NOT VERIFY",
              "not-verified": "NOT VERIFIED", "waiver-expired": "WAIVER EXPIRED",
              "evidence-unreadable": "EVIDENCE UNREADABLE"}
DECISION_SOURCE = {"publish": "the gate, at publishing", "watch": "tfimg watch",
                   "catalog": "the catalog's --policy, today"}


def human_size(n: int | None) -> str:
    """Bytes in SI units, as `docker images` and tfimg's summary write them: '862.4 MB'."""
    if n is None:
        return "unknown"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def _parse(when: str) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(re.sub(r"\.\d+", "", when.strip()).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=dt.timezone.utc) if parsed.tzinfo is None else parsed.astimezone(dt.timezone.utc)


def iso_when(value: str | None) -> str:
    """ISO 8601 in UTC to the second ('2026-12-04 14:05:45Z'); a bare date stays a date; else as given."""
    if not value:
        return "unknown"
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        return value.strip()
    parsed = _parse(value)
    return parsed.strftime("%Y-%m-%d %H:%M:%SZ") if parsed else value


def iso_day(value: str | None) -> str:
    parsed = _parse(value) if value else None
    return parsed.strftime("%Y-%m-%d") if parsed else (value or "unknown")


def short(digest: str) -> str:
    return digest.partition(":")[2][:12] or digest[:12]


def http_url(value: str | None) -> str:
    return value if value and re.fullmatch(r"https?://[^\s\"'<>]+", value) else ""


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The one Jinja2 environment (templates compiled once): autoescape on, undefined names are errors."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(size=human_size, when=iso_when, day=iso_day, short=short, httpurl=http_url)
    env.globals.update(flag_text=FLAG_TEXT, flag_short=FLAG_SHORT, decision_source=DECISION_SOURCE)
    return env


def _variants(catalog: Catalog) -> list[tuple[str, list[Image]]]:
    """Variants by name, each with its digests newest first (the catalog's order)."""
    ordered = sorted(catalog.images, key=lambda i: i.variant)
    return [(name, list(items)) for name, items in groupby(ordered, key=lambda i: i.variant)]


def _licenses(image: Image) -> str:
    lic = image.counts.get("license") or {}
    total = {origin: sum(sev.values()) for origin, sev in lic.items()}
    return ", ".join(f"{n} {'introduced' if o == 'new' else o}" for o, n in sorted(total.items()) if n)


def search_data(catalog: Catalog) -> dict[str, Any]:
    """What search.js searches: per image its page, tags, status, packages and findings (compact)."""
    return {"registry": catalog.registry, "generated_at": catalog.generated_at, "flags": FLAG_SHORT,
            "images": [{"page": i.page, "variant": i.variant, "repository": i.repository, "digest": i.digest,
                        "tags": i.tags, "created": i.created, "flags": i.flags,
                        "packages": [[p.name, p.version or ""] for p in i.packages],
                        "findings": _findings(i)} for i in catalog.images]}


def _findings(i: Image) -> list[list[str]]:
    """[id, severity, package, origin] of the attached scan, and the ids the latest watch found since."""
    known = [[f.id, f.severity, f.package or "", f.origin] for f in i.findings]
    ids = {f.id for f in i.findings}
    later = [[cve, "disclosed since publishing", "", "tfimg watch"] for cve in (i.watch.new_findings if i.watch else [])
             if cve not in ids]
    return known + later


def pages(catalog: Catalog) -> dict[str, str]:
    """Every text file of the site by its path relative to the site's root (pure: no files are written)."""
    env = environment()
    out = {"index.html": env.get_template("index.html.j2").render(catalog=catalog, root="",
                                                                  variants=_variants(catalog))}
    image_page = env.get_template("image.html.j2")
    for i in catalog.images:
        out[i.page] = image_page.render(catalog=catalog, root="../", i=i, licenses=_licenses(i))
    out["catalog.json"] = json.dumps(catalog.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n"
    out["catalog.schema.json"] = schema_text()
    out["search-index.js"] = ("// tfimg catalog search data (the same as catalog.json); a script, so it loads "
                              "from file:// too\nwindow.TFIMG_SEARCH = "
                              + json.dumps(search_data(catalog), separators=(",", ":")) + ";\n")
    out[MARKER] = "This folder was written by `tfimg registry catalog`; the next run replaces it.\n"
    return out


def _target(out: Path) -> None:
    """Refuse an ``--out`` that is a file, or a folder with content tfimg did not write."""
    if out.exists() and not out.is_dir():
        raise TfimgError(f"--out {out} exists and is not a folder", hint="Give a new or empty folder.")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise TfimgError(f"--out {out} holds files that are not a tfimg catalog; tfimg replaces only a folder "
                         "it wrote itself", hint="Give a new or empty folder, or the folder of an earlier catalog.")


def write(catalog: Catalog, out: Path) -> Path:
    """Write the site to ``out`` (see the module's docstring); returns the path of its index.html."""
    _target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for rel, content in pages(catalog).items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
        shutil.copytree(ASSETS, tmp / "assets")
        if out.is_dir() and (out / MARKER).is_file():      # an earlier catalog: swap it out, then drop it
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            out.rename(old / "site")
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        elif out.is_dir():                                 # the user's empty folder: fill it, keep it
            for entry in tmp.iterdir():
                entry.rename(out / entry.name)
            tmp.rmdir()
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "index.html"
