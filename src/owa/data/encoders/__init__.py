"""Event encoders: one keyboard, mouse or screen event ↔ text for a language model.

>>> from owa.data.encoders import create_encoder
>>> encoder = create_encoder("hierarchical", image_token="<image>")
>>> text, images = encoder.encode(mcap_message)  # doctest: +SKIP

Formats are plugins behind :class:`EventEncoder`: a new one is a module with a subclass decorated with
:func:`register_encoder` and one import line below. ``docs/encoders.md`` describes the formats.
"""

from __future__ import annotations

from owa.data.encoders.base import (
    EncoderConfig,
    EncoderStats,
    EventEncoder,
    available_encoders,
    create_encoder,
    encoder_class,
    register_encoder,
)
from owa.data.encoders.hierarchical import HierarchicalConfig, HierarchicalEncoder, unwrap_timestamps
from owa.data.encoders.json import JsonConfig, JsonEncoder

# isort: off
from owa.data.encoders.factorized import FactorizedConfig, FactorizedEncoder  # after json: registration order
# isort: on

__all__ = [
    "EncoderConfig",
    "EncoderStats",
    "EventEncoder",
    "FactorizedConfig",
    "FactorizedEncoder",
    "HierarchicalConfig",
    "HierarchicalEncoder",
    "JsonConfig",
    "JsonEncoder",
    "available_encoders",
    "create_encoder",
    "encoder_class",
    "register_encoder",
    "unwrap_timestamps",
]
