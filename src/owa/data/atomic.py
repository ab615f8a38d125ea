"""Output folders written atomically: build in a temporary sibling, then rename into place.

A crash, an exception or Ctrl-C inside :func:`atomic_output_dir` removes the temporary folder, so the
output path only ever holds a complete dataset (or whatever was there before).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from owa.data.errors import OutputExistsError

__all__ = ["atomic_output_dir"]


@contextlib.contextmanager
def atomic_output_dir(output_dir: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder next to ``output_dir``; on success it replaces ``output_dir``.

    Raises:
        OutputExistsError: ``output_dir`` exists and ``overwrite`` is False (checked before any work).
    """
    output = Path(os.path.abspath(output_dir))
    if output.exists() and not overwrite:
        raise OutputExistsError(
            "Output folder already exists; pass overwrite=True (--overwrite) to replace it", path=output
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.parent / f".{output.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if output.exists():
            old = output.parent / f".{output.name}.old-{uuid.uuid4().hex[:12]}"
            output.rename(old)
        tmp.rename(output)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
