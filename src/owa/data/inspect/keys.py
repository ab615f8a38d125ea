"""Names of Windows virtual-key codes, for people reading stats and timelines (``65`` is ``A``)."""

from __future__ import annotations

__all__ = ["vk_name"]

_NAMED: dict[int, str] = {
    0x01: "LBUTTON", 0x02: "RBUTTON", 0x04: "MBUTTON", 0x05: "XBUTTON1", 0x06: "XBUTTON2",
    0x08: "BACKSPACE", 0x09: "TAB", 0x0D: "ENTER", 0x10: "SHIFT", 0x11: "CTRL", 0x12: "ALT", 0x13: "PAUSE",
    0x14: "CAPSLOCK", 0x15: "KANA/HANGUL", 0x19: "HANJA", 0x1B: "ESC", 0x20: "SPACE", 0x21: "PAGEUP",
    0x22: "PAGEDOWN", 0x23: "END", 0x24: "HOME", 0x25: "LEFT", 0x26: "UP", 0x27: "RIGHT", 0x28: "DOWN",
    0x2C: "PRINTSCREEN", 0x2D: "INSERT", 0x2E: "DELETE", 0x5B: "LWIN", 0x5C: "RWIN", 0x5D: "APPS",
    0x6A: "NUM*", 0x6B: "NUM+", 0x6D: "NUM-", 0x6E: "NUM.", 0x6F: "NUM/", 0x90: "NUMLOCK", 0x91: "SCROLLLOCK",
    0xA0: "LSHIFT", 0xA1: "RSHIFT", 0xA2: "LCTRL", 0xA3: "RCTRL", 0xA4: "LALT", 0xA5: "RALT",
    0xAD: "VOLUME_MUTE", 0xAE: "VOLUME_DOWN", 0xAF: "VOLUME_UP", 0xB0: "MEDIA_NEXT", 0xB1: "MEDIA_PREV",
    0xB2: "MEDIA_STOP", 0xB3: "MEDIA_PLAY_PAUSE",
    0xBA: ";", 0xBB: "=", 0xBC: ",", 0xBD: "-", 0xBE: ".", 0xBF: "/", 0xC0: "`", 0xDB: "[", 0xDC: "\\", 0xDD: "]",
    0xDE: "'", 0xE5: "PROCESSKEY",
}  # fmt: skip


def vk_name(vk: int) -> str:
    """A short name for Windows virtual-key code ``vk``: ``A``, ``7``, ``F5``, ``NUM3``, ``SPACE``, or ``VK_0xNN``.

    >>> vk_name(65), vk_name(0x74), vk_name(0x20), vk_name(0xFF)
    ('A', 'F5', 'SPACE', 'VK_0xFF')
    """
    if 0x30 <= vk <= 0x39 or 0x41 <= vk <= 0x5A:
        return chr(vk)
    if 0x60 <= vk <= 0x69:
        return f"NUM{vk - 0x60}"
    if 0x70 <= vk <= 0x87:
        return f"F{vk - 0x6F}"
    return _NAMED.get(vk, f"VK_0x{vk:02X}")
