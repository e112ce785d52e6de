"""One error tree, and the one place where exit codes are defined.

Exit codes (documented in docs/bad-input.md):

* 0 -- success
* 1 -- a gate, a check, a build or a publish policy failed (:class:`GateFailed`,
  :class:`ChecksFailed`, :class:`BuildFailed`, :class:`PublishRefused`), or attached evidence
  did not verify (:class:`VerificationFailed`)
* 2 -- bad input or environment (:class:`SpecError`, :class:`EnvError` and its
  kinds: :class:`RegistryError`, :class:`EngineError`)
* 3 -- a bug in tfimg (an unexpected exception)
* 4 -- a Trivy report given to ``tfimg gate --report`` does not show that the vulnerability
  scanner ran on it (no tfimg scan record of that very file): :class:`ScanNotProven`;
  ``--assume-vuln-scanned`` accepts it
* 130 -- interrupted (Ctrl-C)
"""

from __future__ import annotations

OK, FAILED, BAD_INPUT, INTERNAL, SCAN_NOT_PROVEN, INTERRUPTED = 0, 1, 2, 3, 4, 130


def worst(codes: list[int]) -> int:
    """One exit code for many (several variants): interrupted, then input or environment,
    then an unproven scan, then a bug, then a failure, else ok."""
    for code in (INTERRUPTED, BAD_INPUT, SCAN_NOT_PROVEN, INTERNAL, FAILED):
        if code in codes:
            return code
    return OK


def printable(text: str) -> str:
    """``text`` with every control character but the line break escaped (``\\x1b``, ``\\u2028``):
    a file name or key in a message cannot move the cursor, recolour the terminal or fake a line."""
    return "".join(ch if ch == "\n" or (ch.isprintable() or ch == " ") else ascii(ch)[1:-1] for ch in text)


class TfimgError(Exception):
    """Base of every error shown to the user without a traceback."""

    exit_code = BAD_INPUT
    title = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        text = self.message.rstrip()
        if self.hint:
            text += f"\n{self.hint.rstrip()}"
        return printable(text)


class SpecError(TfimgError):
    """A variant or policy file is wrong. Names the file, key path and fix."""

    title = "invalid spec"

    def __init__(self, file: object, key: str, message: str, *, hint: str | None = None,
                 line: int | None = None) -> None:
        self.file = str(file)
        self.key = key
        self.line = line
        self.text = message   # without the location
        where = self.file + (f":{line}" if line else "")
        loc = f"{where}: {key}: " if key else f"{where}: "
        super().__init__(loc + message, hint=hint)


class SpecErrors(TfimgError):
    """Several spec errors at once (every `location: message` is listed)."""

    title = "invalid spec"

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = errors
        super().__init__("\n".join(e.render() for e in errors))


class UnreadableInput(SpecError, ValueError):
    """A file or document tfimg cannot trust (not a regular file, not UTF-8, bad or ambiguous JSON).
    Names the file and, where there is one, the line (:mod:`builder.infra.datafile`). A ValueError
    too, as ``json.JSONDecodeError`` is: code that turns a tool's unparsable output into an
    EnvError keeps doing so."""

    title = "unreadable input"


class EnvError(TfimgError):
    """The environment cannot do what was asked (no engine, no trivy, ...)."""

    title = "environment"


class BuildFailed(TfimgError):
    """The image build failed; carries the tail of the log and its path."""

    exit_code = FAILED
    title = "build failed"

    def __init__(self, message: str, *, log_tail: str = "", log_path: str | None = None,
                 hint: str | None = None) -> None:
        self.log_tail = log_tail
        self.log_path = log_path
        extra = []
        if log_tail:
            extra.append("Last lines of the build log:\n" + log_tail.rstrip())
        if log_path:
            extra.append(f"Full log: {log_path}")
        if hint:
            extra.append(hint)
        super().__init__(message, hint="\n".join(extra) or None)


class ChecksFailed(TfimgError):
    exit_code = FAILED
    title = "checks failed"


class GateFailed(TfimgError):
    exit_code = FAILED
    title = "gate blocked"


class ScanNotProven(TfimgError):
    """A Trivy report that does not show the vulnerability scanner ran on it: no record of a tfimg scan
    of that very file. Trivy's JSON cannot show it (``--scanners secret`` writes the same package
    results as ``--scanners vuln`` when nothing is found); ``--assume-vuln-scanned`` accepts it."""

    exit_code = SCAN_NOT_PROVEN
    title = "scan not proven"


class ReportMismatch(TfimgError):
    """A Trivy report of another image than the build recorded beside it (bad input)."""

    title = "wrong report"


class PublishRefused(TfimgError):
    exit_code = FAILED
    title = "publish refused"


class VerificationFailed(TfimgError):
    """An attached statement is missing, unsigned, signed by another key, altered or inconsistent."""

    exit_code = FAILED
    title = "verification failed"


class CommandFailed(TfimgError):
    """A subprocess failed; keeps the command, exit code and output."""

    title = "command failed"

    def __init__(self, argv: list[str], returncode: int, stdout: str = "", stderr: str = "",
                 message: str | None = None) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        tail = (stderr or stdout).strip().splitlines()[-10:]
        msg = message or f"`{argv[0]}` exited with {returncode}"
        super().__init__(msg, hint="\n".join(tail) or None)


class EngineError(EnvError):
    """The Docker engine refused an operation (tag, push, pull) that was not the user's input."""

    title = "docker engine"


class RegistryError(EnvError):
    """The registry answered with an error (or not at all); carries the HTTP status."""

    title = "registry"

    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None) -> None:
        self.status = status
        super().__init__(message, hint=hint)


class TransientError(RegistryError):
    """A failure worth retrying: connection error, timeout, 429 or 5xx."""


class TaggingError(TfimgError):
    """A tag template cannot be filled from the image's facts (bad input: the spec's tags)."""

    title = "tags"
