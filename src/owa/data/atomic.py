"""Output folders written atomically: build in a temporary sibling, then rename into place.

A crash, an exception or Ctrl-C inside :func:`atomic_output_dir` removes the temporary folder, so the
output path only ever holds a complete dataset (or whatever was there before).

An output that cannot be written (permission denied, a path under a file, a name too long, a full disk, a
read-only file system) is an :class:`~owa.data.errors.OutputWriteError` naming the output and the reason,
whether creating, writing (in this process or a worker's) or renaming failed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from owa.data.errors import OutputExistsError, OutputWriteError

__all__ = ["atomic_output_dir", "output_write_errors"]

# The temporary folder's name keeps this much of the output's, so a name near the file system's limit
# (255 bytes on most) still leaves room for the suffix.
_TMP_STEM_CHARS = 64


@contextlib.contextmanager
def output_write_errors(
    output: str | os.PathLike[str], *, within: str | os.PathLike[str] | None = None
) -> Iterator[None]:
    """Turn an OSError raised in the block into :class:`OutputWriteError` naming ``output``.

    With ``within``, only errors about files under that folder (or naming no file, as a failed write does) are
    converted; others (an input that vanished) pass unchanged.
    """
    try:
        yield
    except OSError as e:
        if within is not None and e.filename is not None and not _is_under(str(e.filename), within):
            raise
        cause = e
        if isinstance(e, FileExistsError) and e.filename is not None and not os.path.isdir(e.filename):
            # mkdir(parents=True) says "File exists" where a file stands in the path: say what is wrong.
            cause = NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), e.filename)
        raise OutputWriteError.from_os_error(cause, path=output) from e


@contextlib.contextmanager
def atomic_output_dir(output_dir: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder next to ``output_dir``; on success it replaces ``output_dir``.

    OSErrors raised in the block about files inside the temporary folder, or naming no file (a failed write, a
    full disk), become :class:`OutputWriteError` naming ``output_dir``, as do failures to create or rename.

    Raises:
        OutputExistsError: ``output_dir`` exists and ``overwrite`` is False (checked before any work).
        OutputWriteError: the output cannot be created, written or renamed into place.
    """
    output = Path(os.path.abspath(output_dir))
    with output_write_errors(output):
        if output.exists() and not overwrite:
            raise OutputExistsError(
                "Output folder already exists; pass overwrite=True (--overwrite) to replace it", path=output
            )
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.parent / f".{output.name[:_TMP_STEM_CHARS]}.tmp-{uuid.uuid4().hex[:12]}"
        tmp.mkdir()
    try:
        with output_write_errors(output, within=tmp):
            yield tmp
        old = None
        with output_write_errors(output):
            if output.exists():
                old = output.parent / f".{output.name[:_TMP_STEM_CHARS]}.old-{uuid.uuid4().hex[:12]}"
                output.rename(old)
            try:
                tmp.rename(output)
            except OSError:
                if old is not None:  # put the previous output back where it was
                    old.rename(output)
                raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _is_under(path: str, folder: str | os.PathLike[str]) -> bool:
    folder = os.path.abspath(folder)
    return os.path.commonpath([os.path.abspath(path), folder]) == folder
