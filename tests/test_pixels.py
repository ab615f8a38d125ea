"""The fast pixel path against the Hugging Face image processors: decode-to-size tolerance on synthetic 720p video
frames, exact Qwen2-VL patch layout, normalize."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from owa.data.frames import FrameEngine  # noqa: E402
from owa.data.image_layout import ImageLayout  # noqa: E402
from owa.data.pixels import (  # noqa: E402
    UnsupportedProcessorError,
    normalize,
    patchify_qwen2_vl,
    pixel_spec,
    smart_resize,
)
from owa.data.recordings.synthetic import SampleConfig, write_sample_episode  # noqa: E402
from owa.data.testing.vlms import checkpoint_image_processors  # noqa: E402

# Tolerance of decode-to-size (one swscale pass on the video's YUV 4:2:0) against decode to RGB + the processor,
# in units of the 0..255 pixel range: measured mean ~0.8, 99th percentile <= 5, max ~64 at saturated colour edges.
MEAN_TOLERANCE = 2.0
P99_TOLERANCE = 8.0


@pytest.fixture(scope="module")
def video_720p(tmp_path_factory) -> tuple[str, list[int]]:
    folder = tmp_path_factory.mktemp("pixels")
    config = SampleConfig(seconds=1.0, fps=10, width=1280, height=720, variable_frame_rate=False, seed=3)
    episode = write_sample_episode(folder, "ep", config)
    return str(episode.video_path), list(episode.frame_pts_ns)[::3]


@pytest.mark.parametrize("name", ["smolvlm", "internvl"])
def test_decode_to_size_is_within_tolerance_of_the_processor(name: str, video_720p) -> None:
    from PIL import Image

    video, pts = video_720p
    processor = checkpoint_image_processors()[name]
    spec = pixel_spec(processor)
    assert spec.image_size == ImageLayout.preset(name).image_size
    engine = FrameEngine(backend="pyav")
    full = engine.decode([(video, t) for t in pts])
    sized = engine.decode([(video, t) for t in pts], size=spec.image_size, resample=spec.resample)
    engine.close()
    assert all(frame.shape == (*spec.image_size, 3) for frame in sized)
    reference = processor([Image.fromarray(f) for f in full], return_tensors="pt")["pixel_values"]
    reference = reference.reshape(len(pts), 3, *spec.image_size)
    ours = normalize(torch.from_numpy(np.stack(sized)).permute(0, 3, 1, 2), spec)
    diff = (ours - reference).abs() * torch.tensor(spec.image_std).view(3, 1, 1) * 255
    assert diff.mean() < MEAN_TOLERANCE
    assert torch.quantile(diff.flatten()[::7], 0.99) < P99_TOLERANCE


def test_qwen2_vl_patching_equals_the_processor_given_the_same_resized_input() -> None:
    from PIL import Image

    processor = transformers.Qwen2VLImageProcessorPil()
    spec = pixel_spec(processor, image_size=(252, 448))
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (252, 448, 3), dtype=np.uint8) for _ in range(2)]
    reference = processor([Image.fromarray(f) for f in frames], return_tensors="pt")
    images = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
    # Patching is pure data movement: exact on uint8, then normalizing the rows equals the processor.
    ours_uint8 = patchify_qwen2_vl(images)
    ours = normalize(ours_uint8, spec)
    assert ours.shape == reference["pixel_values"].shape == (2 * 18 * 32, 1176)
    assert torch.allclose(ours, reference["pixel_values"], atol=1e-5)
    expected_uint8 = (
        torch.round(
            (
                reference["pixel_values"].view(-1, 3, 392) * torch.tensor(spec.image_std).view(1, 3, 1)
                + torch.tensor(spec.image_mean).view(1, 3, 1)
            )
            * 255
        )
        .to(torch.uint8)
        .view(-1, 1176)
    )
    assert torch.equal(ours_uint8, expected_uint8)
    assert reference["image_grid_thw"].tolist() == [[1, 18, 32]] * 2


def test_smart_resize_and_spec_recognition() -> None:
    assert smart_resize(720, 1280) == (728, 1288)
    assert smart_resize(252, 448) == (252, 448)
    with pytest.raises(UnsupportedProcessorError, match="Qwen2-VL processor would resize"):
        pixel_spec(transformers.Qwen2VLImageProcessorPil(), image_size=(250, 448))
    with pytest.raises(UnsupportedProcessorError, match="do_image_splitting"):
        pixel_spec(transformers.Idefics3ImageProcessorPil(do_image_splitting=True))
    with pytest.raises(UnsupportedProcessorError, match="Supported values"):
        pixel_spec(object())


def test_normalize_forms() -> None:
    pixels = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    out = normalize(pixels, ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)))
    assert out.dtype == torch.float32
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([-1.0, 128 / 127.5 - 1, 1.0]), atol=1e-6)
    layout = ImageLayout.preset("internvl")
    assert torch.allclose(
        normalize(pixels, layout, device="cpu", dtype=torch.bfloat16).float(),
        normalize(pixels, layout).bfloat16().float(),
    )
    with pytest.raises(ValueError, match="layout_or_mean_std"):
        normalize(pixels, ImageLayout.preset("default"))


def test_cpu_normalize_equals_the_torch_arithmetic_on_any_layout() -> None:
    """On the CPU normalize runs in numpy (faster on uint8); it must give torch's float32 arithmetic, for frames
    permuted from (N, H, W, 3), contiguous frames, float input and Qwen2-VL patch rows, in a contiguous result."""
    rng = np.random.default_rng(7)
    frames = torch.from_numpy(rng.integers(0, 256, (3, 28, 56, 3), dtype=np.uint8))
    spec = pixel_spec(transformers.GotOcr2ImageProcessorPil(size={"height": 28, "width": 56}))
    std = torch.tensor(spec.image_std, dtype=torch.float64)
    scale = (spec.rescale_factor / std).float().view(3, 1, 1)
    bias = (-torch.tensor(spec.image_mean, dtype=torch.float64) / std).float().view(3, 1, 1)
    expected = frames.permute(0, 3, 1, 2).float() * scale + bias
    for pixels in (frames.permute(0, 3, 1, 2), frames.permute(0, 3, 1, 2).contiguous()):
        out = normalize(pixels, spec)
        assert out.is_contiguous() and out.dtype == torch.float32
        assert torch.equal(out, expected)
    floats = frames.permute(0, 3, 1, 2).double()
    assert torch.allclose(normalize(floats, spec), expected, atol=1e-6)
    rows = patchify_qwen2_vl(frames.permute(0, 3, 1, 2))
    assert torch.equal(normalize(rows, spec), patchify_qwen2_vl(expected))


def test_decode_size_and_resample_are_validated(video_720p) -> None:
    video, pts = video_720p
    engine = FrameEngine(backend="pyav")
    with pytest.raises(ValueError, match="Invalid size"):
        engine.decode([(video, pts[0])], size=(0, 10))
    with pytest.raises(ValueError, match="Invalid resample"):
        engine.decode([(video, pts[0])], size=(10, 10), resample="nearest")  # type: ignore[arg-type]
    assert engine.decode([(video, pts[0])], size=(36, 64), resample="area")[0].shape == (36, 64, 3)
    assert engine.decode([(video, pts[0])])[0].shape == (720, 1280, 3)  # the default path is unchanged
    engine.close()
