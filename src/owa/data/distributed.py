"""Which process this is in a distributed run (rank and world size), without importing torch.

``torch.distributed`` can only be initialized if the application imported torch, so torch is looked up in
``sys.modules`` and never imported here: :mod:`owa.data.fsl_dataset` stays importable without torch.
"""

from __future__ import annotations

import os
import sys

__all__ = ["rank_and_world_size"]


def rank_and_world_size() -> tuple[int, int]:
    """``(rank, world_size)`` of this process.

    From ``torch.distributed`` when it is initialized, else from the ``$RANK`` and ``$WORLD_SIZE`` environment
    variables (as ``torchrun`` sets them), else ``(0, 1)``.

    Raises:
        ValueError: ``$RANK`` or ``$WORLD_SIZE`` is not an integer.
    """
    torch = sys.modules.get("torch")
    if torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return int(value)
    except ValueError as e:
        raise ValueError(f"Invalid ${name} ({value!r}). It must be an integer, as torchrun sets it.") from e
