"""The ``owa-data`` command. Argument parsing, logging set-up and progress bars live only in this package.

The application and its error handling live in :mod:`owa.data.cli.app`; each subcommand lives in its own module
and registers itself on :data:`app` when imported below.

Every command, here and in the ``scripts/`` wrappers, ends with the same exit codes (also in the README):

==  ==========================================================================================================
0   success
1   a data error at run time (an :class:`~owa.data.errors.OWADataError`: a corrupt recording with ``--strict``,
    a missing video, ...)
2   a usage or configuration error: a bad flag or value (``ValueError``), or an input or output that cannot be
    used as given (:class:`~owa.data.errors.InvalidInputError`: missing folder, not an Event Dataset, output
    exists without ``--overwrite``)
130 interrupted (Ctrl-C or SIGTERM); ``events`` and ``bin`` leave no partial output folder
==  ==========================================================================================================

Expected errors print one plain line on stderr (``Error: ...``) and no traceback; ``--verbose`` logs it.
"""

# Subcommand modules: each defines its command(s) on `app`. Keep one import per line.
from owa.data.cli import bin as _bin  # noqa: F401
from owa.data.cli import demo as _demo  # noqa: F401
from owa.data.cli import events as _events  # noqa: F401
from owa.data.cli import pack as _pack  # noqa: F401
from owa.data.cli import sample as _sample  # noqa: F401
from owa.data.cli import stats as _stats  # noqa: F401
from owa.data.cli import tokenize as _tokenize  # noqa: F401
from owa.data.cli import view as _view  # noqa: F401
from owa.data.cli.app import (
    EXIT_DATA_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    app,
    exit_code,
    run_single,
)

__all__ = ["EXIT_DATA_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "app", "exit_code", "main", "run_single"]


def main() -> None:
    """The ``owa-data`` console script."""
    app()
