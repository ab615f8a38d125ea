"""Stage 2, optional: numeric per-bin action columns (``--numeric-actions``), for LeRobot-style training.

Computed from a chunk's bins and their ``desktop/KeyboardEvent`` and ``desktop/MouseEvent`` actions, with the
keyboard and mouse state carried forward within an episode. :mod:`owa.data.binning` calls
:func:`numeric_action_columns` once per output chunk; the column types are
:data:`~owa.data.schema.NUMERIC_ACTION_FEATURES_DICT`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from owa.data.errors import MessageValidationError
from owa.data.schema import KEY_COUNT, MOUSE_BUTTONS

__all__ = ["numeric_action_columns"]

_KEYBOARD_EVENT = "desktop/KeyboardEvent"
_MOUSE_EVENT = "desktop/MouseEvent"


def _parse_actions(
    types: list[str | None], action_messages: pa.Array, locate: Callable[[int], dict[str, Any]]
) -> dict[str, np.ndarray]:
    """Decode keyboard and mouse action payloads into flat arrays (one entry per action)."""
    count = len(types)
    parsed = {
        "kind": np.zeros(count, np.int8),  # 0 other, 1 key, 2 mouse
        "vk": np.zeros(count, np.int64),
        "pressed": np.zeros(count, bool),
        "x": np.zeros(count, np.int64),
        "y": np.zeros(count, np.int64),
        "click": np.full(count, -1, np.int64),  # button index of a press, -1 otherwise
        "scroll_dx": np.zeros(count, np.int64),
        "scroll_dy": np.zeros(count, np.int64),
    }
    wanted = np.fromiter((t in (_KEYBOARD_EVENT, _MOUSE_EVENT) for t in types), dtype=bool, count=count)
    picked = np.flatnonzero(wanted)
    envelopes = action_messages.take(pa.array(picked, type=pa.int64())).to_pylist()
    buttons = {name: i for i, name in enumerate(MOUSE_BUTTONS)}
    for i, envelope in zip(picked.tolist(), envelopes, strict=True):
        try:
            payload = orjson.loads(orjson.loads(envelope)["message"])
            if types[i] == _KEYBOARD_EVENT:
                vk = int(payload["vk"])
                if not 0 <= vk < KEY_COUNT:
                    raise ValueError(f"vk {vk} outside 0..{KEY_COUNT - 1}")
                parsed["kind"][i], parsed["vk"][i] = 1, vk
                parsed["pressed"][i] = payload["event_type"] == "press"
            else:
                parsed["kind"][i] = 2
                parsed["x"][i], parsed["y"][i] = int(payload["x"]), int(payload["y"])
                event_type = payload.get("event_type")
                if event_type == "click" and payload.get("pressed"):
                    parsed["click"][i] = buttons.get(payload.get("button"), -1)
                elif event_type == "scroll":
                    parsed["scroll_dx"][i] = int(payload.get("dx") or 0)
                    parsed["scroll_dy"][i] = int(payload.get("dy") or 0)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise MessageValidationError(f"Cannot read {types[i]} action for numeric columns: {e}", **locate(i)) from e
    return parsed


def _forward_fill(values: np.ndarray, known: np.ndarray, segment_start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the last known ``values`` at or before it within its segment (``segment_start[row]``).

    Returns ``(filled, found)``; works along axis 0 of 1-D or 2-D inputs.
    """
    rows = np.arange(len(values)).reshape((-1,) + (1,) * (values.ndim - 1))
    last = np.maximum.accumulate(np.where(known, rows, -1), axis=0)
    found = last >= segment_start.reshape(rows.shape)
    picked = np.take_along_axis(values, np.maximum(last, 0), axis=0)
    return picked, found


def numeric_action_columns(
    action_types: list[str | None],
    action_messages: pa.Array,
    action_offsets: np.ndarray,
    bin_episode: np.ndarray,
    locate: Callable[[int], dict[str, Any]],
) -> dict[str, pa.Array]:
    """Per-bin keys held, mouse position/motion, clicks and scroll (``docs/binning.md`` has the rules).

    Args:
        action_types: ``message_type`` of each action, in bin then time order. Only ``desktop/KeyboardEvent``
            and ``desktop/MouseEvent`` actions count; others are skipped.
        action_messages: the ``McapMessage`` JSON of each action (binary), same order.
        action_offsets: the actions of output bin ``i`` are ``[action_offsets[i], action_offsets[i + 1])``.
        bin_episode: the episode number of each output bin; values carry forward within an episode only.
        locate: the error context (``path``, ``topic``, ``timestamp_ns``, ``row``) of action ``i``.

    Returns:
        The :data:`~owa.data.schema.NUMERIC_ACTION_FEATURES_DICT` columns, one value per bin.

    Raises:
        MessageValidationError: an unreadable keyboard or mouse action, named by ``locate``.
    """
    parsed = _parse_actions(action_types, action_messages, locate)
    n_bins = len(action_offsets) - 1
    per_bin = np.diff(action_offsets)
    action_bin = np.repeat(np.arange(n_bins), per_bin)
    # First output bin of each bin's episode: values carry forward within an episode only.
    new_episode = np.concatenate(([True], bin_episode[1:] != bin_episode[:-1])) if n_bins else np.empty(0, bool)
    episode_first_bin = np.maximum.accumulate(np.where(new_episode, np.arange(n_bins), 0)) if n_bins else new_episode

    # Keys held at bin end: the last press/release of each key so far in the episode (unknown = not held).
    key_state = np.full((n_bins, KEY_COUNT), -1, np.int8)
    is_key = parsed["kind"] == 1
    if is_key.any():
        key_bins, key_vks, key_pressed = action_bin[is_key], parsed["vk"][is_key], parsed["pressed"][is_key]
        flat = key_bins * KEY_COUNT + key_vks
        _, last_in_reverse = np.unique(flat[::-1], return_index=True)
        latest = len(flat) - 1 - last_in_reverse  # the last event of each (bin, key)
        key_state[key_bins[latest], key_vks[latest]] = key_pressed[latest]
    held, found = _forward_fill(key_state, key_state >= 0, episode_first_bin)
    keys_held = (held == 1) & found

    # Mouse position at bin end, and motion over the bin: end minus the position at its start (the last
    # mouse event before the bin, else the first one inside it). No carry-over between episodes.
    x, y = parsed["x"], parsed["y"]
    mouse_actions = len(x)
    end_mouse = start_mouse = np.full(n_bins, -1, np.int64)
    if mouse_actions and (parsed["kind"] == 2).any():
        is_mouse = parsed["kind"] == 2
        mouse_seen = np.maximum.accumulate(np.where(is_mouse, np.arange(mouse_actions), -1))

        def latest_mouse(before: np.ndarray) -> np.ndarray:  # last mouse action among actions [0, before)
            seen = np.where(before > 0, mouse_seen[np.maximum(before - 1, 0)], -1)
            same_episode = (seen >= 0) & (action_bin[np.maximum(seen, 0)] >= episode_first_bin)
            return np.where(same_episode, seen, -1)

        end_mouse = latest_mouse(action_offsets[1:])
        start_mouse = latest_mouse(action_offsets[:-1])
        next_mouse = np.minimum.accumulate(np.where(is_mouse, np.arange(mouse_actions), mouse_actions)[::-1])[::-1]
        first_inside = next_mouse[np.minimum(action_offsets[:-1], mouse_actions - 1)]
        inside = (start_mouse < 0) & (first_inside < action_offsets[1:])
        start_mouse = np.where(inside, first_inside, start_mouse)
    end_found = end_mouse >= 0
    end_at, start_at = np.maximum(end_mouse, 0), np.maximum(start_mouse, 0)
    if mouse_actions:
        dx = np.where(end_found, x[end_at] - x[start_at], 0)
        dy = np.where(end_found, y[end_at] - y[start_at], 0)
        mouse_x, mouse_y = np.where(end_found, x[end_at], 0), np.where(end_found, y[end_at], 0)
    else:
        dx = dy = mouse_x = mouse_y = np.zeros(n_bins, np.int64)

    clicks = np.zeros((n_bins, len(MOUSE_BUTTONS)), np.int16)
    pressed = parsed["click"] >= 0
    np.add.at(clicks, (action_bin[pressed], parsed["click"][pressed]), 1)
    scroll_dx = np.bincount(action_bin, weights=parsed["scroll_dx"], minlength=n_bins).astype(np.int32)
    scroll_dy = np.bincount(action_bin, weights=parsed["scroll_dy"], minlength=n_bins).astype(np.int32)
    return {
        "keys_held": pa.FixedSizeListArray.from_arrays(pa.array(keys_held.reshape(-1)), KEY_COUNT),
        "mouse_x": pa.array(mouse_x.astype(np.int32), mask=~end_found),
        "mouse_y": pa.array(mouse_y.astype(np.int32), mask=~end_found),
        "mouse_dx": pa.array(dx.astype(np.int32)),
        "mouse_dy": pa.array(dy.astype(np.int32)),
        "mouse_clicks": pa.FixedSizeListArray.from_arrays(pa.array(clicks.reshape(-1)), len(MOUSE_BUTTONS)),
        "scroll_dx": pa.array(scroll_dx),
        "scroll_dy": pa.array(scroll_dy),
    }
