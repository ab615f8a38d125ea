"""The ``owa-data`` Typer application: exit codes, one-line errors, interrupts. Subcommands register on :data:`app`."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import typer
import typer.core

from owa.data.errors import InvalidInputError, OWADataError

__all__ = ["EXIT_DATA_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "app", "exit_code", "run_single"]

logger = logging.getLogger(__name__)

# click's UsageError, as the installed typer uses it (recent typers vendor click and export only BadParameter).
_UsageError: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")

EXIT_OK = 0
EXIT_DATA_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def exit_code(error: BaseException) -> int:
    """The exit status for ``error`` escaping a command (see the module docs); any other error is a bug and exits
    1 with its traceback, as Python does."""
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(error, ValueError | InvalidInputError | _UsageError):
        return EXIT_USAGE
    return EXIT_DATA_ERROR


class _OneLineUsageError(_UsageError):  # type: ignore[misc,valid-type]
    """A usage error shown as one line (click shows the usage block first)."""

    def show(self, file: Any = None) -> None:
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        typer.echo(f"Error: {self.format_message()}{hint}", err=True)


class _Command(typer.core.TyperCommand):
    """Every owa-data command: maps the errors its function raises to exit codes, one line each."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except _UsageError as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # shows the help, as asked
                raise
            raise _OneLineUsageError(e.format_message(), ctx) from None

    def invoke(self, ctx: typer.Context) -> Any:
        with _sigterm_as_interrupt():
            try:
                return super().invoke(ctx)
            except KeyboardInterrupt as e:
                _exit("Interrupted", e)
            except (ValueError, OWADataError) as e:
                _exit(f"Error: {e}", e)


def _exit(message: str, error: BaseException) -> NoReturn:
    logger.debug("%s", message, exc_info=error)  # the traceback, with --verbose
    typer.echo(message, err=True)
    raise typer.Exit(exit_code(error))


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C while a command runs, so partial outputs are removed and it exits 130."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _App(typer.Typer):
    """A Typer whose commands are :class:`_Command` (the shared exit codes)."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        kwargs.setdefault("cls", _Command)
        return super().command(*args, **kwargs)


_SETTINGS: dict[str, Any] = {
    "add_completion": False,
    "pretty_exceptions_enable": False,
    "rich_markup_mode": None,  # plain, one-line usage errors
}

app = _App(
    name="owa-data",
    help="Turn desktop recordings (OWAMcap + video) into training-ready datasets.",
    no_args_is_help=True,
    **_SETTINGS,
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def run_single(command: Callable[..., None]) -> None:
    """Run one command function as a whole program (the scripts/ wrappers), with the same errors and exit codes."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    single = _App(**_SETTINGS)
    single.command()(command)
    single()
