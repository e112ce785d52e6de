"""What the gate may believe about a saved Trivy report: which scanners made it, and of which image.

Trivy's JSON does not name the scanners it ran, and its content cannot show it. Measured with the
real Trivy 0.76 (tests/test_trivy_real.py): on an image with an OS, ``--scanners secret`` (and
``--scanners license``) writes the same ``os-pkgs`` result, with the package list, as a
``--scanners vuln`` scan that found nothing; on an image without an OS or packages both write no
``Results`` at all. Only a ``Vulnerabilities`` entry shows that the vulnerability scanner ran, and
not with which flags (``--severity``, ``--ignore-unfixed``, ``--pkg-types``, a ``.trivyignore`` hide
findings). So the scanners come from tfimg's own scan record -- the ``scan`` section of the
``report.json`` beside the report, naming that file and its sha256 as tfimg wrote it -- or the user
says so (``tfimg gate --assume-vuln-scanned``). Anything else is :class:`ScanNotProven` (exit 4).

The image: ``Metadata.ImageID`` is the image id (the config digest) in every mode tfimg scans
with. ``ArtifactID`` (Trivy 0.68+) is not: Trivy 0.76 writes its own artifact key there, which
differs from the image id, so it is not compared.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from builder.errors import ReportMismatch, ScanNotProven
from builder.infra import datafile
from builder.infra.report_models import ScanSection
from builder.scan import trivy_report
from builder.scan.gate import ScannersFrom
from builder.scan.trivy_report import Report

ASSUME = "--assume-vuln-scanned"


def read(path: Path) -> tuple[Report, str]:
    """A saved Trivy report and the sha256 of the very bytes parsed (the file cannot change between
    the two). Raises UnreadableInput / TfimgError as :func:`builder.scan.trivy_report.load` does."""
    raw = datafile.read_bytes(path, limit=datafile.MAX_JSON_BYTES, what="the Trivy report")
    return trivy_report.parse(raw, source=str(path)), hashlib.sha256(raw).hexdigest()


def record_gaps(path: Path, sha256: str, record: ScanSection | None) -> list[str]:
    """What keeps ``record`` (report.json's scan section beside ``path``) from vouching for that file
    (``sha256``: of the bytes read); empty when it does."""
    beside = path.parent / "report.json"
    if record is None:
        return [f"{beside} holds no tfimg scan record (its 'scan' section)"]
    gaps = []
    if record.status != "ok":
        gaps.append(f"the scan recorded in {beside} failed ({record.error or 'no reason given'})")
    if record.report != path.name:
        gaps.append(f"the scan recorded in {beside} wrote {record.report!r}, not {path.name!r}")
    if not record.report_sha256:
        gaps.append(f"the scan record in {beside} has no report_sha256 (written by an older tfimg)")
    elif record.report_sha256 != sha256:
        gaps.append(f"{path} changed after tfimg wrote it (its sha256 is not the recorded one)")
    if record.scanners is None:
        gaps.append(f"the scan record in {beside} names no scanners")
    return gaps


def scanners_of(path: Path, sha256: str, record: ScanSection | None, *,
                assume: bool) -> tuple[list[str], ScannersFrom]:
    """The scanners a saved report (read from ``path``, ``sha256`` of its bytes) was made with, and
    how that is known.

    Raises:
        ScanNotProven: no record vouches for the file and ``assume`` is False.
    """
    gaps = record_gaps(path, sha256, record)
    if not gaps and record is not None and record.scanners is not None:
        return list(record.scanners), "scan record"
    if assume:
        return ["vuln"], "assumed"
    raise ScanNotProven(
        f"{path} does not show that Trivy's vulnerability scanner ran on it: " + "; ".join(gaps) + ". "
        "Trivy's JSON cannot show it: `--scanners secret` writes the same package results as a "
        "`--scanners vuln` scan that found nothing.",
        hint=f"Scan with tfimg (tfimg scan IMAGE --out DIR; then tfimg gate --report DIR/trivy.json), or, "
             f"if you ran `trivy image --scanners vuln` yourself without filters (--severity, "
             f"--ignore-unfixed, .trivyignore), pass {ASSUME}.")


def check_image(report: Report, image_id: str | None, *, source: str, where: str) -> None:
    """Refuse a report of another image than ``image_id`` (the build recorded in ``where``).

    Raises:
        ReportMismatch: the report names another image, or none.
    """
    if not image_id:
        return
    scanned = report.Metadata.ImageID if report.Metadata else None
    if not scanned:
        raise ReportMismatch(f"{source} names no image (no Metadata.ImageID), but {where} records the build "
                             f"of image {image_id}: it cannot be shown to be a scan of that image",
                             hint="Give the report of a `trivy image` scan of that image.")
    if scanned != image_id:
        raise ReportMismatch(f"{source} is a scan of image {scanned}, but {where} records the build of "
                             f"image {image_id}",
                             hint="Scan the image that was built (tfimg scan SPEC).")
