"""FSLCollator with a processor: batches that the real (tiny) SmolVLM, InternVL and Qwen2-VL models' forward accepts.

Samples are built with the exact token layout each model expects for a frame (``ImageLayout.from_processor``:
prefix + image token * count + suffix) around ordinary text, padded like FSLDataset's, and carry frames as PIL
images, decoded-to-size uint8 arrays or None (a skipped frame). Every batch goes through the model's forward, which
checks that image features and image tokens agree. The end-to-end tests take the intended path instead: recordings
→ Event Dataset → ``EpisodeTokenizer.from_processor`` → FSLDataset → ``FSLCollator.for_tokenizer`` → DataLoader.
"""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from owa.data.image_layout import ImageLayout  # noqa: E402
from owa.data.pixels import pixel_spec  # noqa: E402
from owa.data.testing.vlms import VLM_PRESETS, random_frames, tiny_vlm  # noqa: E402
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


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    """Three episodes' events: ``ep`` (real video), ``text`` (ep's keyboard and mouse rows only: samples without
    images) and ``gone`` (its video was never written: every frame is skipped)."""
    import datasets

    from owa.data.recordings.synthetic import SampleConfig, write_sample_episode
    from owa.data.testing import event_dataset_from_mcap

    root = tmp_path_factory.mktemp("vlm-corpus")
    config = SampleConfig(seconds=2.0, fps=5, width=160, height=96, seed=4)
    episode = write_sample_episode(root, "ep", config)
    gone = write_sample_episode(root, "gone", dataclasses.replace(config, video=False, seed=5))
    with_video = event_dataset_from_mcap(episode.mcap_path)
    text = with_video.filter(lambda row: row["topic"] != "screen")
    text = text.map(lambda row: {"episode_path": str(root / "text.mcap")})
    events = datasets.concatenate_datasets([with_video, text, event_dataset_from_mcap(gone.mcap_path)])
    return {
        "events": events,
        "ep": str(episode.mcap_path),
        "text": str(root / "text.mcap"),
        "gone": str(gone.mcap_path),
    }


# Per preset: max_sequence_length (a frame is 67, 258 and 10 tokens) and Qwen2-VL's frame size (8 slots + markers).
E2E_LENGTH = {"smolvlm": 256, "internvl": 832, "qwen2_vl": 128}


@pytest.mark.parametrize("name", VLM_PRESETS)
def test_episode_tokenizer_layout_to_model_forward_end_to_end(name: str, corpus: dict) -> None:
    """The intended path: EpisodeTokenizer.from_processor → prepare_model(tokenizer, model) → tokenize an Event
    Dataset → FSLDataset decoding straight to ``image_layout.image_size`` → FSLCollator.for_tokenizer → DataLoader
    (2 workers) → the model's forward, which checks image features against image tokens itself. Batches: one with a
    skipped frame (its video file is missing), one without images, one whose frames were all skipped."""
    from torch.utils.data import DataLoader

    from owa.data.episode_tokenizer import EpisodeTokenizer
    from owa.data.fsl_dataset import FSLDataset

    vlm = tiny_vlm(name, fresh=True)
    processor = vlm.processor
    episode_tokenizer = EpisodeTokenizer.from_processor(
        processor, **({"image_size": QWEN_SIZE} if name == "qwen2_vl" else {})
    )
    episode_tokenizer.prepare_model(tokenizer=processor.tokenizer, model=vlm.model)
    layout = episode_tokenizer.image_layout
    assert layout.image_size == ((64, 64) if name != "qwen2_vl" else QWEN_SIZE)
    assert episode_tokenizer.image_token_id == vlm.model.config.image_token_id  # the model's own token
    tokenized = episode_tokenizer.tokenize_event_dataset(corpus["events"])
    # One frame of `ep` whose video cannot be opened: skipped on its own, among decoded frames.
    screens = [
        i
        for i, (path, images) in enumerate(zip(tokenized["episode_path"], tokenized["images"], strict=True))
        if images and path == corpus["ep"]
    ]
    broken = screens[2]
    tokenized = tokenized.map(
        lambda row, i: (
            {"images": [image.replace('"ep.mkv"', '"missing.mkv"') for image in row["images"]]} if i == broken else {}
        ),
        with_indices=True,
    )
    fsl = FSLDataset(
        tokenized,
        pad_token_id=processor.tokenizer.pad_token_id,
        max_sequence_length=E2E_LENGTH[name],
        episode_aware=True,
        image_size=layout.image_size,
        image_resample=pixel_spec(processor).resample,
        on_image_error="skip",
        log_every=None,
    ).prepare()

    paths, images = tokenized["episode_path"], tokenized["images"]
    samples: dict[str, list[int]] = {"broken": [], "ep": [], "text": [], "gone": []}
    frames = []
    for k in range(len(fsl)):
        rows = range(*fsl.plan.event_range(k))
        frames.append(sum(len(images[row]) for row in rows))
        if broken in rows:
            samples["broken"].append(k)
        elif frames[k]:
            samples[next(key for key in ("ep", "gone") if paths[rows[0]] == corpus[key])].append(k)
        elif paths[rows[0]] == corpus["text"]:
            samples["text"].append(k)
    batches = [samples["broken"] + samples["ep"][:1], samples["text"][:2], samples["gone"][:2]]
    assert all(batches) and len(batches[0]) == 2

    decoded = fsl[samples["ep"][0]]["images"]
    assert all(isinstance(image, np.ndarray) and image.shape == (*layout.image_size, 3) for image in decoded)
    collator = FSLCollator.for_tokenizer(episode_tokenizer, processor)
    assert collator.image_token_id == episode_tokenizer.image_token_id
    loader = DataLoader(fsl, batch_sampler=batches, num_workers=2, collate_fn=collator)
    losses = []
    for index, batch in enumerate(loader):
        image_tokens = int((batch["input_ids"] == collator.image_token_id).sum())
        assert image_tokens == sum(frames[k] for k in batches[index]) * layout.count
        frame_ids = torch.tensor(episode_tokenizer.image_token_ids)
        on_frames = torch.isin(batch["input_ids"], frame_ids)
        assert torch.all(batch["labels"][on_frames] == IGNORE_INDEX)  # every frame token, decoded or skipped
        text = (batch["attention_mask"] == 1) & ~on_frames
        assert torch.equal(batch["labels"][text], batch["input_ids"][text])
        if index == 1:
            assert not {"pixel_values", "pixel_attention_mask", "image_grid_thw"} & set(batch)
        else:
            assert "pixel_values" in batch
        if name == "qwen2_vl" and index != 1:
            assert int(batch["mm_token_type_ids"].sum()) == image_tokens
        losses.append(_forward_with(vlm.model, batch))
    assert len(losses) == 3
    skipped = 1 + sum(frames[k] for k in batches[2])
    assert fsl.image_stats.images_skipped == skipped
    assert collator.stats.as_dict() == {
        "batches": 3,
        "images": sum(frames[k] for batch in batches for k in batch),  # blank frames included
        "blank_images": skipped,
        "batches_without_images": 1,
    }


def _forward_with(model, batch: dict) -> float:
    with torch.no_grad():
        loss = model(**FSLCollator.model_inputs(batch)).loss
    assert torch.isfinite(loss)
    return float(loss)


def test_for_tokenizer_uses_the_tokenizer_layout_not_the_processor_default() -> None:
    """A layout other than the processor's (SmolVLM with plain ``<image>`` x 64, no markers): the collator takes
    the tokenizer's token and markers, and the model (its image token id is the same) accepts the batch."""
    from owa.data.episode_tokenizer import EpisodeTokenizer

    vlm = tiny_vlm("smolvlm", fresh=True)
    episode_tokenizer = EpisodeTokenizer(image_layout=ImageLayout(token="<image>", count=64))
    episode_tokenizer.prepare_model(tokenizer=vlm.tokenizer, model=vlm.model)
    collator = FSLCollator.for_tokenizer(episode_tokenizer, vlm.processor)
    assert collator.image_layout == episode_tokenizer.image_layout
    assert collator.image_token_ids == episode_tokenizer.image_token_ids == (vlm.model.config.image_token_id,)
    ids = vlm.tokenizer.convert_tokens_to_ids(["<image>"] * 64) + vlm.tokenizer.encode("hi", add_special_tokens=False)
    sample = {
        "token_ids": np.asarray(ids, dtype=np.int64),
        "attention_mask": np.ones(len(ids), dtype=np.int64),
        "total_token_count": len(ids),
        "images": [None],
    }
    batch = collator([sample])
    assert collator.stats.blank_images == 1
    assert torch.all(batch["labels"][0, :64] == IGNORE_INDEX)
    assert torch.equal(batch["labels"][0, 64:], batch["input_ids"][0, 64:])  # no marker to mask: the text trains
    _forward_with(vlm.model, batch)
