"""Backends behind the FrameDecoder interface: keyframe flag checks (PyAV), backend choice, optional torchcodec."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from frame_videos import KEYINT, MS, PTS_MS, Video, markers
from owa.data.frames import FrameEngine
from owa.data.frames import backend as backend_module
from owa.data.frames.backend import resolve_backend
from owa.data.frames.engine import BACKEND_ENV_VAR


def remux_flagging_every_packet_as_keyframe(source: Path, target: Path) -> None:
    with av.open(str(source)) as src, av.open(str(target), "w", format="matroska") as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.pts is None:
                continue
            packet.is_keyframe = True
            packet.stream = stream
            dst.mux(packet)


@pytest.mark.parametrize("name", ["hevc", "hevc-bframes"])
def test_false_keyframe_flags_are_caught(tmp_path: Path, videos: dict[str, Video], name: str) -> None:
    from owa.data.frames._pyav import PyAVDecoder

    video = videos[name]
    lying_file = tmp_path / "lying.mkv"
    remux_flagging_every_packet_as_keyframe(video.path, lying_file)
    with av.open(str(lying_file)) as container:
        assert all(p.is_keyframe for p in container.demux(video=0) if p.pts is not None)
    engine = FrameEngine(backend="pyav")
    try:
        # The index checks flagged packets against the bitstream: only the real keyframes stay.
        index = engine.index(str(lying_file))
        assert index.keyframe_positions.tolist() == list(range(0, len(PTS_MS), KEYINT))
        frames = engine.decode([(str(lying_file), PTS_MS[i] * MS) for i in (24, 10, 29, 3)])
        assert markers(frames) == [24, 10, 29, 3]
    finally:
        engine.close()
    # Without that check (an index that believes the flags), seeking finds out and stops using them.
    lying_index = dataclasses.replace(index, keyframe_positions=np.arange(index.frame_count))
    decoder = PyAVDecoder(str(lying_file), index=lying_index)
    try:
        for position in (24, 10, 29, 3):
            (frame,) = decoder.decode([position])
            np.testing.assert_array_equal(frame, video.frames[position])
        assert 0 < len(decoder._keys) < len(PTS_MS)
    finally:
        decoder.close()


def test_keyframe_flags_are_checked_against_the_bitstream() -> None:
    from owa.data.frames._pyav import _h264_random_access, _hevc_random_access, _nal_units

    def length_prefixed(*nals: bytes) -> bytes:
        return b"".join(len(n).to_bytes(4, "big") + n for n in nals)

    aud, idr_w_radl, cra, trail_r = b"\x46\x01\x10", b"\x26\x01\xaf", b"\x2a\x01\xaf", b"\x02\x01\xd0"
    assert _hevc_random_access(_nal_units(length_prefixed(aud, idr_w_radl), 4)) is True
    assert _hevc_random_access(_nal_units(length_prefixed(aud, cra), 4)) is True
    assert _hevc_random_access(_nal_units(length_prefixed(aud, trail_r), 4)) is False
    assert _hevc_random_access(_nal_units(b"\x00\x00\x00\x01" + aud + b"\x00\x00\x01" + trail_r, 0)) is False
    # H.264 slice headers: first_mb_in_slice = ue(0) = "1", then slice_type as ue(v).
    idr, i_slice, p_slice = b"\x65\x88", b"\x21\x88", b"\x21\x98"  # slice_type 7 (I), 5 (P)
    assert _h264_random_access(_nal_units(length_prefixed(idr), 4)) is True
    assert _h264_random_access(_nal_units(length_prefixed(i_slice), 4)) is True
    assert _h264_random_access(_nal_units(length_prefixed(p_slice), 4)) is False
    assert _h264_random_access(_nal_units(length_prefixed(b"\x06\x06\x01\xc4\x80", p_slice), 4)) is True
    with pytest.raises(ValueError):
        list(_nal_units(b"\x00\x00\x00\x09\x02", 4))


# --------------------------------------------------------------------------------------------------
# Backend selection
# --------------------------------------------------------------------------------------------------


def test_backend_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BACKEND_ENV_VAR, raising=False)
    monkeypatch.setattr(backend_module, "_torchcodec_available", lambda: False)
    assert resolve_backend() == "pyav"
    assert resolve_backend("auto") == "pyav"
    assert FrameEngine.from_env().backend == "pyav"
    with pytest.raises(ImportError, match=r"pip install 'owa-data\[torchcodec\]'"):
        resolve_backend("torchcodec")
    monkeypatch.setenv(BACKEND_ENV_VAR, "torchcodec")
    with pytest.raises(ImportError):
        FrameEngine.from_env()
    assert FrameEngine.from_env(backend="pyav").backend == "pyav"  # the argument wins over the environment
    assert FrameEngine().backend == "pyav"  # the constructor never reads the environment ("auto" here)
    monkeypatch.setenv(BACKEND_ENV_VAR, "gstreamer")
    with pytest.raises(ValueError, match="OWA_FRAMES_BACKEND"):
        FrameEngine.from_env()
    with pytest.raises(ValueError, match="Supported values are 'auto', 'pyav', 'torchcodec'"):
        resolve_backend("ffmpeg")
    with pytest.raises(ValueError, match=r"Invalid backend \('ffmpeg'\)"):
        FrameEngine(backend="ffmpeg")  # type: ignore[arg-type]

    monkeypatch.setattr(backend_module, "_torchcodec_available", lambda: True)
    monkeypatch.delenv(BACKEND_ENV_VAR)
    assert resolve_backend() == "torchcodec"
    assert FrameEngine.from_env().backend == "torchcodec"
    monkeypatch.setenv(BACKEND_ENV_VAR, "PyAV ")
    assert FrameEngine.from_env().backend == "pyav"


@pytest.mark.skipif(backend_module._torchcodec_available(), reason="torchcodec is installed")
def test_auto_backend_falls_back_to_pyav_when_torchcodec_cannot_load(
    monkeypatch: pytest.MonkeyPatch, videos: dict[str, Video]
) -> None:
    # The probe says torchcodec is there (as when its package is installed but broken); importing it fails.
    monkeypatch.setattr(backend_module, "_torchcodec_available", lambda: True)
    monkeypatch.delenv(BACKEND_ENV_VAR, raising=False)
    engine = FrameEngine.from_env()
    assert engine.backend == "torchcodec"
    try:
        frames = engine.decode([(str(videos["hevc"].path), PTS_MS[i] * MS) for i in (4, 2)])
        assert markers(frames) == [4, 2]
        assert engine.backend == "pyav"
    finally:
        engine.close()
    explicit = FrameEngine(backend="torchcodec")
    with pytest.raises(ImportError, match="pip install"):
        explicit.decode([(str(videos["hevc"].path), PTS_MS[0] * MS)])


@pytest.mark.skipif(backend_module._torchcodec_available(), reason="torchcodec is installed")
def test_torchcodec_backend_without_torchcodec_names_the_install(videos: dict[str, Video]) -> None:
    from owa.data.frames import _pyav, _torchcodec

    index = _pyav.read_index(str(videos["h264"].path))
    with pytest.raises(ImportError, match=r"pip install 'owa-data\[torchcodec\]'"):
        _torchcodec.TorchCodecDecoder(str(videos["h264"].path), index, device="cpu")
    with pytest.raises(ValueError, match="Supported values"):
        _torchcodec.resolve_device("tpu")
    assert _torchcodec.resolve_device("cuda:1") == "cuda:1"


def test_importing_frames_loads_neither_torch_nor_torchcodec() -> None:
    code = "import sys, owa.data.frames; print(sorted(m for m in ('torch', 'torchcodec') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
