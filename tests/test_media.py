"""The media URI policy: a table of URIs and their verdicts, under the default policy and with every opt-in.

Each row is ``(uri, default verdict, opt-in verdict)``. A verdict is either the resolved location (a
template over the recording folder ``{base}`` and its parent ``{parent}``) with its kind, or the
error whose message must contain the given text (for refusals: the option that allows the URI).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from owa.data.errors import UnsafeMediaURIError
from owa.data.media import DEFAULT_MEDIA_POLICY, MediaPolicy, ResolvedMedia
from owa.data.messages import MediaRef, ScreenCaptured

OPT_IN = MediaPolicy(allow_absolute=True, allow_remote=True, allow_data=True)
PNG_BYTES = b"\x89PNG\r\n\x1a\n"
PNG_URI = "data:image/png;base64," + base64.b64encode(PNG_BYTES).decode()


def file(template: str) -> tuple[str, str]:
    return ("file", template)


def refused(text: str) -> tuple[str, str]:
    return ("refused", text)


TABLE = [
    # Relative paths inside the recording's folder: always allowed, normalized.
    ("video.mkv", file("{base}/video.mkv"), file("{base}/video.mkv")),
    ("./sub/../video.mkv", file("{base}/video.mkv"), file("{base}/video.mkv")),
    ("alias.mkv", file("{base}/alias.mkv"), file("{base}/alias.mkv")),  # symlink to a file inside
    # Leaving the folder: through "..", or through a symlink that points outside it.
    ("../escape.mkv", refused("allow_absolute=True"), file("{parent}/escape.mkv")),
    ("sub/../../escape.mkv", refused("allow_absolute=True"), file("{parent}/escape.mkv")),
    ("link.mkv", refused("allow_absolute=True"), file("{base}/link.mkv")),  # symlink to ../outside/secret.mkv
    ("outside_dir/secret.mkv", refused("allow_absolute=True"), file("{base}/outside_dir/secret.mkv")),
    # Absolute paths: POSIX, Windows drives (both slashes, and drive-relative), file://.
    ("/srv/videos/x.mkv", refused("allow_absolute=True"), file("/srv/videos/x.mkv")),
    ("C:/x.mkv", refused("allow_absolute=True"), file("C:/x.mkv")),
    ("C:\\x.mkv", refused("allow_absolute=True"), file("C:\\x.mkv")),
    ("d:x.mkv", refused("allow_absolute=True"), file("d:x.mkv")),
    ("file:///srv/my%20videos/x.mkv", refused("allow_absolute=True"), file("/srv/my videos/x.mkv")),
    # Remote and inline.
    ("http://example.invalid/v.mkv", refused("allow_remote=True"), ("remote", "http://example.invalid/v.mkv")),
    ("https://example.invalid/v.mkv", refused("allow_remote=True"), ("remote", "https://example.invalid/v.mkv")),
    (PNG_URI, refused("allow_data=True"), ("data", PNG_URI)),
    ("data:text/plain,hello", refused("allow_data=True"), refused("Only base64 data: URIs")),
    ("data:image/png;base64,@@@@", refused("allow_data=True"), refused("Malformed base64")),
    # Never allowed.
    ("ftp://example.invalid/v.mkv", refused("Unsupported media URI scheme 'ftp'"), refused("Unsupported")),
    ("", refused("Empty media URI"), refused("Empty media URI")),
]


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    """A recording folder with a video, a symlink to it, and symlinks that lead outside the folder."""
    base = tmp_path / "rec"
    (base / "sub").mkdir(parents=True)
    (base / "video.mkv").write_bytes(b"")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.mkv").write_bytes(b"")
    (base / "alias.mkv").symlink_to("video.mkv")
    (base / "link.mkv").symlink_to(outside / "secret.mkv")
    (base / "outside_dir").symlink_to(outside, target_is_directory=True)
    return base


def check(policy: MediaPolicy, uri: str, base: Path, verdict: tuple[str, str]) -> None:
    kind, expected = verdict
    if kind == "refused":
        with pytest.raises(UnsafeMediaURIError) as info:
            policy.resolve(uri, base)
        assert expected in str(info.value)
        return
    media = policy.resolve(uri, base)
    assert media.kind == kind
    assert media.location == expected.format(base=base, parent=base.parent)
    assert media.data == (PNG_BYTES if kind == "data" else None)


@pytest.mark.parametrize(("uri", "default", "opt_in"), TABLE, ids=[row[0][:40] or "empty" for row in TABLE])
def test_uri_verdicts(recording: Path, uri: str, default: tuple[str, str], opt_in: tuple[str, str]) -> None:
    check(DEFAULT_MEDIA_POLICY, uri, recording, default)
    check(OPT_IN, uri, recording, opt_in)


@pytest.mark.parametrize("option", ["allow_remote", "allow_data"])
def test_each_opt_in_opens_only_its_own_kind(recording: Path, option: str) -> None:
    policy = MediaPolicy(**{option: True})
    with pytest.raises(UnsafeMediaURIError, match="allow_absolute=True"):
        policy.resolve("../escape.mkv", recording)
    with pytest.raises(UnsafeMediaURIError, match="allow_absolute=True"):
        policy.resolve("C:/x.mkv", recording)


def test_a_recording_folder_reached_through_a_symlink_is_still_inside(tmp_path: Path, recording: Path) -> None:
    linked = tmp_path / "linked-rec"
    linked.symlink_to(recording, target_is_directory=True)
    media = DEFAULT_MEDIA_POLICY.resolve("video.mkv", linked)
    assert media == ResolvedMedia(kind="file", location=f"{linked}/video.mkv")  # named as given, not resolved
    with pytest.raises(UnsafeMediaURIError):
        DEFAULT_MEDIA_POLICY.resolve("link.mkv", linked)


def test_without_a_base_dir_relative_uris_resolve_against_the_current_directory(
    monkeypatch: pytest.MonkeyPatch, recording: Path
) -> None:
    monkeypatch.chdir(recording)
    assert DEFAULT_MEDIA_POLICY.resolve("video.mkv", None).location == os.path.join(os.getcwd(), "video.mkv")
    with pytest.raises(UnsafeMediaURIError):
        DEFAULT_MEDIA_POLICY.resolve("../escape.mkv", None)


def test_data_uris_are_capped(recording: Path) -> None:
    policy = MediaPolicy(allow_data=True, max_data_uri_bytes=4)
    with pytest.raises(UnsafeMediaURIError, match="exceeds the limit of 4 bytes"):
        policy.resolve(PNG_URI, recording)


def test_screen_messages_apply_the_policy(recording: Path) -> None:
    screen = ScreenCaptured(media_ref=MediaRef(uri="video.mkv", pts_ns=0)).with_base_dir(recording)
    assert screen.resolve_media() == ResolvedMedia(kind="file", location=f"{recording}/video.mkv")
    escaping = ScreenCaptured(media_ref=MediaRef(uri="link.mkv", pts_ns=0)).with_base_dir(recording)
    with pytest.raises(UnsafeMediaURIError) as info:
        escaping.resolve_media()
    assert info.value.context["uri"] == "link.mkv" and info.value.context["base_dir"] == str(recording)
    assert escaping.resolve_media(OPT_IN).location == f"{recording}/link.mkv"


def test_the_policy_is_still_importable_from_messages() -> None:
    from owa.data import MediaPolicy as from_package
    from owa.data import messages

    assert messages.MediaPolicy is MediaPolicy is from_package
    assert messages.DEFAULT_MEDIA_POLICY is DEFAULT_MEDIA_POLICY and messages.ResolvedMedia is ResolvedMedia
