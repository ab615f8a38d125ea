"""The ``owa-data`` command. Argument parsing, logging set-up and progress bars live only in this package.

Each subcommand lives in its own module and registers itself on :data:`app` when imported below.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import typer

app = typer.Typer(
    name="owa-data",
    help="Turn desktop recordings (OWAMcap + video) into training-ready datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain, one-line usage errors
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def main() -> None:
    app()


def run_single(command: Callable[..., None]) -> None:
    """Run one command function as a whole program (the scripts/ wrappers), with plain one-line errors."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    single.command()(command)
    single()


# Subcommand modules: each defines its command(s) on `app`. Keep one import per line.
from owa.data.cli import bin as _bin  # noqa: E402,F401
from owa.data.cli import demo as _demo  # noqa: E402,F401
from owa.data.cli import events as _events  # noqa: E402,F401
from owa.data.cli import sample as _sample  # noqa: E402,F401
