"""torchcodec backend (optional): batched decoding on CPU, or on the GPU with NVDEC when CUDA is present.

torchcodec and torch are imported only when a decoder is created. Frame positions come from the
engine's own packet index, so both backends agree on which frame is played at a time: each target is
asked for at its frame's pts plus half a tick, which torchcodec's played-at lookup maps to exactly
that frame.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from owa.data.errors import FrameDecodeError, VideoNotFoundError
from owa.data.frames.backend import DecoderClosedError, Resample
from owa.data.frames.index import VideoIndex

__all__ = ["TorchCodecDecoder", "resolve_device"]

_INSTALL_HINT = "pip install 'owa-data[torchcodec]'"


def resolve_device(device: str) -> str:
    """``"auto"`` becomes ``"cuda"`` when torch sees a GPU, else ``"cpu"``; other values pass through.

    Called in the process that decodes (e.g. inside a DataLoader worker), never at import time, so a
    forking parent does not initialise CUDA.
    """
    if device != "auto":
        if device != "cpu" and not device.startswith("cuda"):
            raise ValueError(f"Invalid device ({device!r}). Supported values are 'auto', 'cpu', 'cuda', 'cuda:N'.")
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TorchCodecDecoder:
    """An open video decoded with torchcodec. Thread-safe; implements :class:`~owa.data.frames.backend.FrameDecoder`.

    Raises:
        ImportError: torchcodec is not installed (names the install command).
        VideoNotFoundError, FrameDecodeError: the video cannot be opened.
    """

    def __init__(self, location: str, index: VideoIndex, *, device: str = "auto", threads: int = 0) -> None:
        try:
            from torchcodec.decoders import VideoDecoder
        except ImportError as e:
            raise ImportError(f"The torchcodec frame backend needs torchcodec. Install it with: {_INSTALL_HINT}") from e
        except (RuntimeError, OSError) as e:  # installed, but its FFmpeg libraries cannot be loaded
            raise ImportError(f"torchcodec is installed but cannot be loaded: {e}") from e
        self.location = location
        self.index = index
        self.device = resolve_device(device)
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._decoder: Any = VideoDecoder(
                location,
                stream_index=index.stream_index,
                dimension_order="NHWC",
                num_ffmpeg_threads=threads,
                device=self.device,
                seek_mode="exact",
            )
        except FileNotFoundError as e:
            raise VideoNotFoundError(f"Video cannot be opened: {e}", path=location) from e
        except (RuntimeError, ValueError) as e:
            raise FrameDecodeError(f"torchcodec cannot open the video: {e}", path=location) from e
        self._seconds_per_tick = float(index.time_base)  # torchcodec takes float seconds, not ns

    def __repr__(self) -> str:
        return f"TorchCodecDecoder({self.location!r}, device={self.device!r}, frames={self.index.frame_count})"

    def decode(
        self, positions: Sequence[int], *, size: tuple[int, int] | None = None, resample: Resample = "bicubic"
    ) -> list[np.ndarray]:
        """Decode the frames at ``positions`` (ascending, no repeats) to RGB arrays, resized to ``size``
        (``(height, width)``) on the decoding device when given (torch's antialiased filters; ``lanczos`` falls back
        to ``bicubic``)."""
        with self._lock:
            if self._closed:
                raise DecoderClosedError(self.location)
            if not positions:
                return []
            pts = self.index.pts
            # Half a tick past each frame's start: inside that frame whatever the float rounding.
            seconds = [(int(pts[p]) + 0.5) * self._seconds_per_tick for p in positions]
            try:
                batch = self._decoder.get_frames_played_at(seconds=seconds)
            except (RuntimeError, ValueError, IndexError) as e:
                raise FrameDecodeError(
                    f"torchcodec decoding failed: {e}", path=self.location, pts_ns=self.index.pts_ns(positions[0])
                ) from e
            # Never a frame from another time: torchcodec must have returned exactly the frames asked for.
            tick = self._seconds_per_tick
            for position, got in zip(positions, batch.pts_seconds.tolist(), strict=True):
                if abs(got - int(pts[position]) * tick) > tick / 2:
                    raise FrameDecodeError(
                        f"torchcodec returned the frame at {got:.6f} s instead of the one requested",
                        path=self.location,
                        pts_ns=self.index.pts_ns(position),
                    )
            data = batch.data
            if size is not None and tuple(data.shape[1:3]) != size:
                data = _resize(data, size, resample)
            if data.device.type != "cpu":
                data = data.cpu()
            array = data.numpy()
            return [array[i] for i in range(len(positions))]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._decoder = None


def _resize(frames: Any, size: tuple[int, int], resample: Resample) -> Any:
    """Resize ``(N, H, W, 3)`` uint8 frames to ``size`` with torch (antialiased), on their device."""
    import torch.nn.functional as F

    mode = {"bilinear": "bilinear", "bicubic": "bicubic", "lanczos": "bicubic", "area": "area"}[resample]
    x = frames.permute(0, 3, 1, 2).float()
    kwargs = {} if mode == "area" else {"antialias": True, "align_corners": False}
    x = F.interpolate(x, size=size, mode=mode, **kwargs)
    return x.round_().clamp_(0, 255).to(frames.dtype).permute(0, 2, 3, 1).contiguous()
