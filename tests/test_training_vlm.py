"""FSLCollator with a processor: batches that the real (tiny) SmolVLM, InternVL and Qwen2-VL models' forward accepts.

Samples are built with the exact token layout each model expects for a frame (``ImageLayout.from_processor``:
prefix + image token * count + suffix) around ordinary text, padded like FSLDataset's, and carry frames as PIL
images, decoded-to-size uint8 arrays or None (a skipped frame). Every batch goes through the model's forward, which
checks that image features and image tokens agree.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tests.vlm_fixtures import VLM_PRESETS, random_frames, tiny_vlm  # noqa: E402

from owa.data.image_layout import ImageLayout  # noqa: E402
from owa.data.pixels import pixel_spec  # noqa: E402
from owa.data.training import IGNORE_INDEX, FSLCollator  # noqa: E402

# Short samples: Qwen's 151,665-id vocabulary makes the logits of long ones the slowest part of a forward.
LENGTH = {"smolvlm": 256, "internvl": 832, "qwen2_vl": 96}
QWEN_SIZE = (56, 112)  # 32 patches, 8 tokens per frame: a fast forward


def _layout(name: str):
    vlm = tiny_vlm(name)
    return ImageLayout.from_processor(vlm.processor, **({"image_size": QWEN_SIZE} if name == "qwen2_vl" else {}))


def _collator(name: str, **kwargs) -> FSLCollator:
    return FSLCollator(
        processor=tiny_vlm(name).processor, **({"image_size": QWEN_SIZE} if name == "qwen2_vl" else {}), **kwargs
    )


def _sample(name: str, images: list, *, text: str = "hello world ") -> dict:
    """One FSLDataset-shaped sample: text, then per image its layout tokens and more text, then padding."""
    vlm = tiny_vlm(name)
    tokenizer = vlm.tokenizer
    frame_ids = tokenizer.convert_tokens_to_ids(_layout(name).tokens())
    ids = list(tokenizer.encode(text, add_special_tokens=False))
    for _ in images:
        ids += frame_ids + list(tokenizer.encode(text, add_special_tokens=False))
    assert len(ids) <= LENGTH[name]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    token_ids = np.full(LENGTH[name], pad, dtype=np.int64)
    token_ids[: len(ids)] = ids
    mask = np.zeros(LENGTH[name], dtype=np.int64)
    mask[: len(ids)] = 1
    return {"token_ids": token_ids, "attention_mask": mask, "total_token_count": len(ids), "images": list(images)}


def _forward(name: str, batch: dict) -> torch.Tensor:
    model = tiny_vlm(name).model
    with torch.no_grad():
        out = model(**FSLCollator.model_inputs(batch))
    assert torch.isfinite(out.loss)
    return out.loss


@pytest.mark.parametrize("name", VLM_PRESETS)
def test_normal_batch_passes_forward_and_keeps_text_tensors(name: str) -> None:
    frames = random_frames(3, seed=1)
    samples = [_sample(name, frames[:2]), _sample(name, frames[2:])]
    collator = _collator(name)
    batch = collator(samples)
    plain = FSLCollator(image_token_id=collator.image_token_id)(samples)
    for key in ("input_ids", "attention_mask", "labels"):
        assert torch.equal(batch[key], plain[key])
    assert "images" not in batch
    if name == "smolvlm":
        assert batch["pixel_values"].shape == (2, 2, 3, 64, 64)
        assert batch["pixel_attention_mask"][1, 1].sum() == 0  # the padding slot
        assert torch.all(batch["pixel_values"][1, 1] == 0)
    elif name == "internvl":
        assert batch["pixel_values"].shape == (3, 3, 64, 64)
    else:
        assert batch["pixel_values"].shape == (3 * 4 * 8, 1176)
        assert batch["image_grid_thw"].tolist() == [[1, 4, 8]] * 3
    _forward(name, batch)
    assert collator.stats.as_dict() == {"batches": 1, "images": 3, "blank_images": 0, "batches_without_images": 0}


@pytest.mark.parametrize("name", VLM_PRESETS)
def test_skipped_frame_is_blank_masked_and_counted(name: str) -> None:
    frames = random_frames(2, seed=2)
    samples = [_sample(name, [frames[0], None]), _sample(name, [frames[1]])]
    collator = _collator(name)
    batch = collator(samples)
    _forward(name, batch)
    assert collator.stats.blank_images == 1
    layout = _layout(name)
    tokenizer = tiny_vlm(name).tokenizer
    frame_ids = tokenizer.convert_tokens_to_ids(layout.tokens())
    ids = batch["input_ids"][0].tolist()
    starts = [i for i in range(len(ids)) if ids[i : i + len(frame_ids)] == frame_ids]
    assert len(starts) == 2
    labels = batch["labels"][0]
    skipped = slice(starts[1], starts[1] + len(frame_ids))
    assert torch.all(labels[skipped] == IGNORE_INDEX)  # the skipped frame's markers too
    kept = [
        i for i in range(starts[0], starts[0] + len(frame_ids)) if frame_ids[i - starts[0]] != collator.image_token_id
    ]
    assert all(labels[i] != IGNORE_INDEX for i in kept)  # the decoded frame's markers still train


@pytest.mark.parametrize("name", VLM_PRESETS)
def test_all_frames_skipped_and_no_frames(name: str) -> None:
    collator = _collator(name)
    blank = collator([_sample(name, [None]), _sample(name, [None, None])])
    assert "pixel_values" in blank  # blank frames keep image features and image tokens in step
    _forward(name, blank)
    text_only = collator([_sample(name, []), _sample(name, [])])
    assert not {"pixel_values", "pixel_attention_mask", "image_grid_thw"} & set(text_only)
    _forward(name, text_only)
    assert collator.stats.blank_images == 3
    assert collator.stats.batches_without_images == 1


@pytest.mark.parametrize("name", VLM_PRESETS)
def test_fast_pixels_match_the_processor(name: str) -> None:
    """Same PIL input: the fast path (PIL resize, SmolVLM's twice as its processor, + torch normalize + patching)
    equals the HF image processor's output, up to float rounding."""
    frames = random_frames(3, seed=3)
    samples = [_sample(name, frames[:2]), _sample(name, frames[2:])]
    fast = _collator(name)(samples)
    reference = _collator(name, pixels="processor")(samples)
    assert set(fast) == set(reference)
    diff = (fast["pixel_values"] - reference["pixel_values"]).abs()
    assert diff.max() < 1e-4  # float32 rounding only
    for key in ("pixel_attention_mask", "image_grid_thw"):
        if key in fast:
            assert torch.equal(fast[key], reference[key])


@pytest.mark.parametrize("name", VLM_PRESETS)
def test_uint8_batch_normalized_on_device_equals_collator_normalization(name: str) -> None:
    size = pixel_spec(tiny_vlm(name).processor, **({"image_size": QWEN_SIZE} if name == "qwen2_vl" else {}))
    h, w = size.image_size
    rng = np.random.default_rng(4)
    arrays = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(3)]
    samples = [_sample(name, arrays[:2]), _sample(name, [arrays[2], None])]
    normalized = _collator(name)(samples)
    lazy = _collator(name, normalize=False)
    raw = lazy(samples)
    assert raw["pixel_values"].dtype == torch.uint8
    moved = lazy.to_device(raw, "cpu")
    assert torch.allclose(moved["pixel_values"], normalized["pixel_values"], atol=1e-5)
    _forward(name, moved)


def test_dataloader_with_two_workers() -> None:
    from torch.utils.data import DataLoader

    name = "internvl"
    frames = random_frames(4, seed=5)
    samples = [_sample(name, [frames[0]]), _sample(name, [None]), _sample(name, []), _sample(name, frames[1:])]
    collator = _collator(name)
    assert pickle.loads(pickle.dumps(collator)).image_token_id == collator.image_token_id
    loader = DataLoader(samples, batch_size=2, num_workers=2, collate_fn=collator)
    batches = list(loader)
    assert len(batches) == 2
    for batch in batches:
        _forward(name, batch)
    assert collator.stats.as_dict() == {"batches": 2, "images": 5, "blank_images": 1, "batches_without_images": 0}


def test_token_count_mismatch_is_a_clear_error() -> None:
    name = "internvl"
    sample = _sample(name, random_frames(1))
    sample["images"] = random_frames(2)
    with pytest.raises(ValueError, match="image tokens"):
        _collator(name)([sample])


def test_fsl_dataset_decoded_to_size_trains_internvl_end_to_end(tmp_path) -> None:
    """A synthetic recording → Event Dataset → EpisodeTokenizer with InternVL's image token and count → FSLDataset
    decoding straight to the model's 64x64 → DataLoader (2 workers) with the collator → the model's forward."""
    import logging
    import time

    import datasets
    from torch.utils.data import DataLoader

    from owa.data.episode_tokenizer import EpisodeTokenizer
    from owa.data.fsl_dataset import FSLDataset
    from owa.data.recordings.synthetic import SampleConfig, write_sample_episode
    from owa.data.testing import event_dataset_from_mcap

    vlm = tiny_vlm("internvl", fresh=True)
    layout = _layout("internvl")
    config = SampleConfig(seconds=2.0, fps=10, width=320, height=180, seed=4)
    episode = write_sample_episode(tmp_path, "ep", config)
    events = datasets.concatenate_datasets([event_dataset_from_mcap(episode.mcap_path)])
    tokenizer = EpisodeTokenizer(image_token=layout.token, image_token_length=layout.count)
    tokenizer.prepare_model(tokenizer=vlm.tokenizer, model=vlm.model)
    tokenized = tokenizer.tokenize_event_dataset(events)
    spec = pixel_spec(vlm.processor)
    fsl = FSLDataset(
        tokenized,
        pad_token_id=vlm.tokenizer.pad_token_id,
        max_sequence_length=1024,
        image_size=spec.image_size,
        image_resample=spec.resample,
        log_every=None,
    ).prepare()
    sample = fsl[0]
    assert all(isinstance(image, np.ndarray) and image.shape == (64, 64, 3) for image in sample["images"])
    collator = FSLCollator(processor=vlm.processor)
    assert collator.image_token_id == tokenizer.image_token_id
    loader = DataLoader(fsl, batch_size=2, num_workers=2, collate_fn=collator)
    start = time.perf_counter()
    batches = list(loader)
    loader_s = time.perf_counter() - start
    images = collator.stats.images
    assert images == sum(len(fsl[i]["images"]) for i in range(len(fsl))) > 0
    start = time.perf_counter()
    with torch.no_grad():
        for batch in batches[:3]:
            assert torch.isfinite(vlm.model(**FSLCollator.model_inputs(batch)).loss)
    forward_s = (time.perf_counter() - start) * len(batches) / min(3, len(batches))
    logging.getLogger(__name__).info(
        "internvl 64px: loader %.0f images/s, loader + forward %.0f images/s",
        images / loader_s,
        images / (loader_s + forward_s),
    )
