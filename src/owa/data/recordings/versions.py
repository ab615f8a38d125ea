"""Recorder-version normalization: every known OWAMcap form, rewritten in memory to the current one.

Nothing here touches files. The reader calls :func:`normalize_message_type` once per channel and the
payload normalizer it returns once per message. Current-form payloads come back as the very same
``bytes`` object (no re-serialization), so the common case costs one substring test.

Known forms (see ``OWAMCAP-FORMATS.md``):

======================  =====================================================  ==========================
writer                  schema names                                           screen payload
======================  =====================================================  ==========================
0.1.x - 0.2.x           ``owa_env_desktop.msg.X``, ``owa_env_gst.msg.X``         ``path``, ``pts``, ``utc_ns``
0.3.x                   ``owa.env.desktop.msg.X``, ``owa.env.gst.msg.X``         same
0.4.x                   ``desktop/X``                                          + ``original_shape``, ``shape``
0.5.0                   ``desktop/X``                                          tagged-union ``media_ref``
0.5.1 and later         ``desktop/X``                                          ``media_ref: {uri, pts_ns}``
======================  =====================================================  ==========================

Also: ``keyboard/state`` payloads ``{"pressed_vk_list": [...]}`` (before 0.3.2) become ``{"buttons": [...]}``,
and ``RawMouseEvent`` ``dx``/``dy`` (before 0.5.5) become ``last_x``/``last_y``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["PayloadNormalizer", "normalize_message_type", "payload_normalizer"]

PayloadNormalizer = Callable[[bytes], bytes]

_LEGACY_NAME = re.compile(r"^owa[._]env[._](?:desktop|gst)\.msg\.(?P<name>\w+)$")
_RENAMED = {"ScreenEmitted": "ScreenCaptured"}


@functools.lru_cache(maxsize=256)
def normalize_message_type(schema_name: str) -> str:
    """Map a schema name of any recorder version to the current ``desktop/<Name>`` form.

    Unknown names (other message families) are returned unchanged.

    >>> normalize_message_type("owa.env.gst.msg.ScreenEmitted")
    'desktop/ScreenCaptured'
    """
    match = _LEGACY_NAME.match(schema_name)
    if match is None:
        return schema_name
    name = match["name"]
    return f"desktop/{_RENAMED.get(name, name)}"


def payload_normalizer(message_type: str) -> PayloadNormalizer | None:
    """The payload rewriter for a (normalized) message type, or None when every form is already current."""
    return _NORMALIZERS.get(message_type)


def _screen(data: bytes) -> bytes:
    # Fast path: 0.5.1+ writes `"media_ref":{"uri"...` and never a tagged union `"type"` key.
    if b'"media_ref":{"uri"' in data and b'"type"' not in data:
        return data
    payload: dict[str, Any] = orjson.loads(data)
    media_ref = payload.get("media_ref")
    legacy_keys = {"path", "pts", "original_shape"} & payload.keys()
    if isinstance(media_ref, dict) and "uri" in media_ref and "type" not in media_ref and not legacy_keys:
        return data  # current form, merely written with other spacing or key order
    out: dict[str, Any] = {}
    if "utc_ns" in payload:
        out["utc_ns"] = payload["utc_ns"]
    source_shape = payload.get("source_shape", payload.get("original_shape"))
    if source_shape is not None:
        out["source_shape"] = source_shape
    if payload.get("shape") is not None:
        out["shape"] = payload["shape"]
    if isinstance(media_ref, dict):
        out["media_ref"] = _tagged_media_ref(media_ref)
    elif "path" in payload:
        out["media_ref"] = {"uri": payload["path"], "pts_ns": payload.get("pts")}
        if out["media_ref"]["pts_ns"] is None:
            del out["media_ref"]["pts_ns"]
    return orjson.dumps(out)


def _tagged_media_ref(media_ref: dict[str, Any]) -> dict[str, Any]:
    """0.5.0's tagged union (``external_video`` / ``external_image`` / ``embedded``) to ``{uri, pts_ns}``."""
    kind = media_ref.get("type")
    if kind is None:
        return media_ref
    if kind == "external_video":
        return {"uri": media_ref["path"], "pts_ns": media_ref.get("pts_ns")}
    if kind == "external_image":
        return {"uri": media_ref["path"]}
    if kind == "embedded":
        mime = media_ref.get("format", "png")
        return {"uri": f"data:image/{mime};base64,{media_ref['data']}"}
    raise ValueError(f"Unknown media_ref type {kind!r}; known: external_video, external_image, embedded")


def _keyboard_state(data: bytes) -> bytes:
    if b"pressed_vk_list" not in data:
        return data
    payload = orjson.loads(data)
    return orjson.dumps({"buttons": payload["pressed_vk_list"]})


def _raw_mouse(data: bytes) -> bytes:
    if b'"last_x"' in data:
        return data
    payload = orjson.loads(data)
    if "dx" not in payload:
        return data
    renamed = {"last_x" if k == "dx" else "last_y" if k == "dy" else k: v for k, v in payload.items()}
    return orjson.dumps(renamed)


_NORMALIZERS: dict[str, PayloadNormalizer] = {
    "desktop/ScreenCaptured": _screen,
    "desktop/KeyboardState": _keyboard_state,
    "desktop/RawMouseEvent": _raw_mouse,
}
