"""The ``--engine`` and ``--ray-address`` options, shared by every command that can run on Ray (docs/scale.md)."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["EngineOption", "RayAddressOption"]

EngineOption = Annotated[
    str,
    typer.Option(
        "--engine", help="Where the work runs: local (this machine's processes) or ray (a Ray cluster; docs/scale.md)."
    ),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="With --engine ray: the cluster to join (auto: the one `ray start` runs on this machine; host:port or "
        "ray://host:10001). Default: start a local Ray.",
    ),
]
