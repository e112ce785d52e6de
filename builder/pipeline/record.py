"""The one writer of ``build/<variant>/report.json``: the orchestrator records each stage's result here.

Stages return frozen results (:mod:`builder.infra.report_models` sections); only the pipeline
records them, one section at a time, so report.json always says what the last run decided::

    rec = Record(Path("build/bert"))
    rec.add(built.section)            # replaces the ``build`` section, keeps the others
    rec.report                        # the report as it is on disk now

Writes are atomic (:func:`builder.infra.report.write_json`), so a crash never leaves half a report.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from builder.errors import TfimgError
from builder.infra import report
from builder.infra.report_models import AnySection, Report


def save(directory: Path | str, rep: Report) -> Report:
    """Write the whole report (e.g. ``Report()`` to void every section)."""
    report.write_json(Path(directory) / report.REPORT, rep.to_json())
    return rep


def write_section(directory: Path | str, section: AnySection) -> Report:
    """Replace one section of the report (``section.SECTION``) and return the whole report."""
    return save(directory, report.load(directory).with_section(section))


def load_or_new(directory: Path, warn: Callable[[str], None]) -> Report:
    """The report of the last run here; an empty one (with a warning) when it is not a report tfimg can read."""
    try:
        return report.load(directory)
    except TfimgError as exc:
        warn(f"{exc.message}; starting a new one")
        return Report()


class Record:
    """report.json of one variant directory, as this run writes it."""

    def __init__(self, directory: Path, previous: Report | None = None) -> None:
        self.directory = Path(directory)
        self.report = previous if previous is not None else report.load(self.directory)

    def add(self, *sections: AnySection) -> Report:
        """Record these sections (each replaces its own); returns the report as written."""
        rep = self.report
        for section in sections:
            rep = rep.with_section(section)
        self.report = save(self.directory, rep)
        return self.report

    def reset(self) -> Report:
        """Void every section (a new image: nothing recorded of an older one stands)."""
        self.report = save(self.directory, Report())
        return self.report
