"""Names of Windows virtual-key codes (the ``vk`` of a :class:`~owa.data.messages.KeyboardEvent`).

Used to describe key tokens in words (e.g. to initialize a new token's embedding from the key's name) and to label
keys for people (``owa-data stats`` and ``view``). Codes that Windows leaves unassigned or reserved have no name.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["VK_NAMES", "vk_label", "vk_name"]


def _names() -> dict[int, str]:
    names = {
        0x01: "left mouse button",
        0x02: "right mouse button",
        0x03: "cancel",
        0x04: "middle mouse button",
        0x05: "back mouse button",
        0x06: "forward mouse button",
        0x08: "backspace",
        0x09: "tab",
        0x0C: "clear",
        0x0D: "enter",
        0x10: "shift",
        0x11: "ctrl",
        0x12: "alt",
        0x13: "pause",
        0x14: "caps lock",
        0x15: "kana",
        0x19: "kanji",
        0x1B: "escape",
        0x20: "space",
        0x21: "page up",
        0x22: "page down",
        0x23: "end",
        0x24: "home",
        0x25: "left arrow",
        0x26: "up arrow",
        0x27: "right arrow",
        0x28: "down arrow",
        0x29: "select",
        0x2A: "print",
        0x2B: "execute",
        0x2C: "print screen",
        0x2D: "insert",
        0x2E: "delete",
        0x2F: "help",
        0x5B: "left windows",
        0x5C: "right windows",
        0x5D: "menu",
        0x5F: "sleep",
        0x6A: "numpad multiply",
        0x6B: "numpad plus",
        0x6C: "numpad separator",
        0x6D: "numpad minus",
        0x6E: "numpad decimal",
        0x6F: "numpad divide",
        0x90: "num lock",
        0x91: "scroll lock",
        0xA0: "left shift",
        0xA1: "right shift",
        0xA2: "left ctrl",
        0xA3: "right ctrl",
        0xA4: "left alt",
        0xA5: "right alt",
        0xA6: "browser back",
        0xA7: "browser forward",
        0xA8: "browser refresh",
        0xA9: "browser stop",
        0xAA: "browser search",
        0xAB: "browser favorites",
        0xAC: "browser home",
        0xAD: "volume mute",
        0xAE: "volume down",
        0xAF: "volume up",
        0xB0: "next track",
        0xB1: "previous track",
        0xB2: "stop media",
        0xB3: "play pause",
        0xB4: "start mail",
        0xB5: "select media",
        0xB6: "start application 1",
        0xB7: "start application 2",
        0xBA: ";",
        0xBB: "=",
        0xBC: ",",
        0xBD: "-",
        0xBE: ".",
        0xBF: "/",
        0xC0: "`",
        0xDB: "[",
        0xDC: "\\",
        0xDD: "]",
        0xDE: "'",
        0xE2: "<>",
        0xE5: "process key",
        0xF6: "attn",
        0xF7: "crsel",
        0xF8: "exsel",
        0xFA: "play",
        0xFB: "zoom",
        0xFE: "clear",
    }
    names.update({0x30 + d: str(d) for d in range(10)})  # the digit keys
    names.update({0x41 + i: chr(ord("A") + i) for i in range(26)})  # the letter keys
    names.update({0x60 + d: f"numpad {d}" for d in range(10)})
    names.update({0x70 + i: f"F{i + 1}" for i in range(24)})  # F1..F24
    return dict(sorted(names.items()))


VK_NAMES: Mapping[int, str] = MappingProxyType(_names())
"""Virtual-key code -> the key's name in words (``65 -> "A"``, ``13 -> "enter"``), read-only."""


def vk_name(vk: int) -> str | None:
    """The name of virtual-key code ``vk`` (``vk_name(65) == "A"``), or None for an unassigned code."""
    return VK_NAMES.get(vk)


def vk_label(vk: int) -> str:
    """A short label for people: the name in capitals with underscores (``LEFT_SHIFT``, ``A``, ``F5``), or
    ``VK_0xNN`` for an unassigned code.

    >>> vk_label(65), vk_label(0xA0), vk_label(0xFF)
    ('A', 'LEFT_SHIFT', 'VK_0xFF')
    """
    name = VK_NAMES.get(vk)
    return name.upper().replace(" ", "_") if name else f"VK_0x{vk:02X}"
