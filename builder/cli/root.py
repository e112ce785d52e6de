"""The ``tfimg`` command line. Error classes map to exit codes here, in one place.

Exit codes: 0 ok, 1 a gate, check or build failed, 2 bad input or environment,
3 a bug in tfimg, 4 a saved Trivy report no scan record vouches for (tfimg gate), 130 interrupted. No traceback unless ``--debug``.

Command modules (``builder/cli/*.py``) add their commands to :data:`app`;
:mod:`builder.cli` imports each of them explicitly.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import typer

try:  # typer >= 0.20 vendors click
    from typer import _click
except ImportError:  # pragma: no cover - older typer depends on click
    import click as _click  # type: ignore[no-redef]
from rich.console import Console
from rich.markup import escape

from builder import __version__, errors
from builder.errors import TfimgError
from builder.infra import paths

app = typer.Typer(
    name="tfimg",
    help="Build hardened, tested, scanned and tagged TensorFlow images from YAML variant files.\n\n"
         "Exit codes: 0 ok; 1 a gate, check or build failed; 2 bad input or environment; 3 a bug in tfimg "
         "(run with --debug and report it); 4 tfimg gate: nothing shows the report's vulnerability scan "
         "ran; 130 interrupted.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# emoji=False: rich would turn "file:100:" in a message into an emoji
console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False,
                  width=None if sys.stderr.isatty() else 160)
out = Console(highlight=False, soft_wrap=True, emoji=False, width=None if sys.stdout.isatty() else 160)


@dataclass(frozen=True)
class Settings:
    """The global options of one invocation, kept on the root command's context (no module state)."""

    debug: bool = False
    quiet: bool = False
    cache: Path | None = None      # tfimg's own cache (--cache / $TFIMG_CACHE_DIR)

    @property
    def cache_root(self) -> Path:
        return paths.cache_root(self.cache)


def settings() -> Settings:
    """This invocation's global options (defaults outside a command)."""
    # typer 0.29 vendors click without re-exporting get_current_context at the top
    current = getattr(_click, "get_current_context", None) or _click.globals.get_current_context
    ctx = current(silent=True)
    obj = ctx.find_root().obj if ctx is not None else None
    return obj if isinstance(obj, Settings) else Settings()


def _version(value: bool) -> None:
    if value:
        out.print(f"tfimg {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Plain, terse output (also in CI)."),
    cache: Path | None = typer.Option(None, "--cache", envvar="TFIMG_CACHE_DIR",
                                      help="tfimg's own cache (the base images' file inventories); "
                                           "default ~/.cache/tfimg."),
    version: bool | None = typer.Option(None, "--version", callback=_version, is_eager=True,
                                           help="Print the version and exit."),
) -> None:
    ctx.obj = Settings(debug=debug, quiet=quiet, cache=cache)
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and turn errors into messages and exit codes."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        # Without standalone mode typer returns exit codes (typer.Exit, and 130 for Ctrl-C).
        rv = app(args=argv, standalone_mode=False)
        if isinstance(rv, int) and not isinstance(rv, bool) and rv:
            if rv == errors.INTERRUPTED:
                console.print("tfimg: interrupted")
            return rv
    except TfimgError as exc:
        if debug:
            console.print_exception()
        console.print(f"[bold red]tfimg: {exc.title}:[/] {escape(exc.render())}", markup=True, highlight=False)
        return exc.exit_code
    except KeyboardInterrupt:
        console.print("tfimg: interrupted")
        return errors.INTERRUPTED
    except typer.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:  # click usage errors in standalone mode off
        return int(exc.code or 0)
    except Exception as exc:  # click's usage errors and the unexpected
        if isinstance(exc, typer.Abort):
            console.print("tfimg: interrupted")
            return errors.INTERRUPTED
        if isinstance(exc, _click.ClickException):
            exc.show()
            return errors.BAD_INPUT
        if debug:
            raise
        console.print(f"tfimg: internal error: {type(exc).__name__}: {exc}\n"
                      "This is a bug in tfimg; run again with --debug for the traceback and report it.")
        return errors.INTERNAL
    return 0


def warn(text: str) -> None:
    """A warning on stderr (not an error: the command goes on)."""
    console.print(f"[bold yellow]tfimg: warning:[/] {escape(text)}", highlight=False)


def _allow_dirs_env() -> list[Path]:
    """TFIMG_ALLOW_DIRS, split on ':'; an empty piece is no folder (not the current one)."""
    return [Path(d) for d in os.environ.get("TFIMG_ALLOW_DIRS", "").split(os.pathsep) if d]


#: ``--allow-dir`` of every command that loads variants (builder/spec/paths.py says why).
ALLOW_DIRS = typer.Option(
    ..., "--allow-dir", default_factory=_allow_dirs_env, metavar="DIR", show_default=False,
    help="Also accept files a variant names (extends, requirements, keys, policy) under DIR; by default they "
         "must lie in the variant's repository. Repeatable; without it, TFIMG_ALLOW_DIRS (folders separated "
         "by ':').")


def spec_arg(help: str = "Variant file (variants/NAME.yaml).") -> Path:
    arg: Path = typer.Argument(..., metavar="SPEC", help=help, show_default=False)
    return arg
