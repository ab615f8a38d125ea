"""Image layouts in EpisodeTokenizer: exact frame tokens per preset on the real processors' tokenizers, exact packing
counts, label masking, the config's JSON form, and every invalid layout."""

from __future__ import annotations

import datasets
import numpy as np
import orjson
import pytest

from owa.data.episode_tokenizer import EpisodeTokenizer, EpisodeTokenizerConfig
from owa.data.errors import ImageLayoutError, OWADataError
from owa.data.fsl_dataset import FSLDataset
from owa.data.image_layout import PRESETS, ImageLayout
from owa.data.messages import McapMessage, MediaRef, ScreenCaptured
from owa.data.testing import event_dataset_from_mcap, tiny_bpe_tokenizer

torch = pytest.importorskip("torch")

VLM_PRESETS = ["smolvlm", "internvl", "qwen2_vl"]
TIME = ["<EVENT_START>", "<TIMESTAMP>", "<0>", "<0>", "<2>"]  # 20 ms into the 4 s period


def screen_event(tmp_path, timestamp_ns: int = 4_020_000_000) -> McapMessage:
    screen = ScreenCaptured(utc_ns=5, shape=(8, 6), media_ref=MediaRef(uri="v.mkv", pts_ns=40_000_000))
    return McapMessage(
        topic="screen",
        timestamp=timestamp_ns,
        message=screen.model_dump_json(exclude_none=True).encode(),
        message_type="desktop/ScreenCaptured",
    ).with_source(tmp_path / "ep.mcap")


def test_image_layout_error_lives_in_errors() -> None:
    import owa.data
    import owa.data.errors
    import owa.data.image_layout

    assert owa.data.image_layout.ImageLayoutError is owa.data.errors.ImageLayoutError is owa.data.ImageLayoutError
    assert "ImageLayoutError" in owa.data.errors.__all__
    assert issubclass(ImageLayoutError, OWADataError) and issubclass(ImageLayoutError, ValueError)


@pytest.mark.parametrize("name", VLM_PRESETS)
def test_preset_frames_are_exactly_the_processors_tokens(name: str, tmp_path) -> None:
    from owa.data.testing.vlms import random_frames, tiny_vlm

    vlm = tiny_vlm(name, fresh=True)
    tokenizer, model = vlm.tokenizer, vlm.model
    own_ids = {token: tokenizer.convert_tokens_to_ids(token) for token in PRESETS[name].new_tokens()}
    own_image_id = model.config.image_token_id
    event_tokenizer = EpisodeTokenizer.from_processor(vlm.processor)
    layout = event_tokenizer.image_layout
    assert layout == ImageLayout.from_processor(vlm.processor) and layout.tokens() == PRESETS[name].tokens()
    event_tokenizer.prepare_model(tokenizer=tokenizer, model=model)

    # The layout's tokens are the model's own: each is one id, unchanged, and the model's config is left alone.
    for token, token_id in own_ids.items():
        assert tokenizer.encode(token, add_special_tokens=False) == [token_id] == [event_tokenizer.token_id(token)]
    assert event_tokenizer.image_token_id == own_image_id == model.config.image_token_id

    out = event_tokenizer.tokenize(screen_event(tmp_path))
    assert out["text"] == "".join(TIME) + layout.text() + "<EVENT_END>"
    assert tokenizer.convert_ids_to_tokens(out["token_ids"]) == [*TIME, *layout.tokens(), "<EVENT_END>"]
    assert out["token_ids"] == tokenizer.encode(out["text"], add_special_tokens=False)
    assert out["total_token_count"] == len(out["token_ids"]) == 6 + len(layout.tokens())
    # The frame's ids are exactly what the model's own processor writes for one image of the layout's size.
    height, width = layout.image_size
    inputs = vlm.processor(
        text=[vlm.image_placeholder], images=random_frames(1, height=height, width=width), add_special_tokens=False
    )
    assert out["token_ids"][5:-1] == list(inputs["input_ids"][0])
    # The image size the pixel path resizes frames to is exposed (fixed for every preset).
    assert event_tokenizer.image_layout.image_size == layout.image_size is not None


@pytest.mark.parametrize("name", ["smolvlm", "internvl"])
def test_the_tiny_model_runs_on_a_tokenized_screen_event(name: str, tmp_path) -> None:
    from owa.data.testing.vlms import random_frames, tiny_vlm

    vlm = tiny_vlm(name, fresh=True)
    event_tokenizer = EpisodeTokenizer.from_processor(vlm.processor)
    event_tokenizer.prepare_model(tokenizer=vlm.tokenizer, model=vlm.model)
    ids = event_tokenizer.tokenize(screen_event(tmp_path))["token_ids"]
    pixels = vlm.processor.image_processor(random_frames(1), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        logits = vlm.model(input_ids=torch.tensor([ids]), pixel_values=pixels).logits
    assert logits.shape == (1, len(ids), len(vlm.tokenizer))


def test_a_layout_with_other_tokens_points_the_model_at_them(tmp_path) -> None:
    from owa.data.testing.vlms import random_frames, tiny_vlm

    vlm = tiny_vlm("smolvlm", fresh=True)
    event_tokenizer = EpisodeTokenizer(image_token_length=64)  # <IMAGE> x 64, not SmolVLM's own <image>
    event_tokenizer.prepare_model(tokenizer=vlm.tokenizer, model=vlm.model)
    new_id = event_tokenizer.image_token_id
    assert new_id != vlm.tokenizer.convert_tokens_to_ids("<image>")
    assert vlm.model.config.image_token_id == new_id == vlm.model.model.image_token_id
    ids = event_tokenizer.tokenize(screen_event(tmp_path))["token_ids"]
    pixels = vlm.processor.image_processor(random_frames(1), return_tensors="pt")["pixel_values"]
    with torch.no_grad():  # the vision features go to the <IMAGE> slots: 64 of them, as the model makes
        assert vlm.model(input_ids=torch.tensor([ids]), pixel_values=pixels).logits.shape[1] == len(ids)

    qwen = tiny_vlm("qwen2_vl", fresh=True)
    custom = ImageLayout(prefix="<frame>", token="<slot>", count=144, suffix="</frame>")
    qwen_tokenizer = EpisodeTokenizer(image_layout=custom)
    qwen_tokenizer.prepare_model(tokenizer=qwen.tokenizer, model=qwen.model)
    config = qwen.model.config
    assert config.image_token_id == qwen_tokenizer.token_id("<slot>")
    assert config.vision_start_token_id == qwen_tokenizer.token_id("<frame>")
    assert config.vision_end_token_id == qwen_tokenizer.token_id("</frame>")


@pytest.mark.parametrize("name", VLM_PRESETS)
def test_packing_counts_every_frame_token_exactly(name: str, recordings_dir) -> None:
    tokenizer = tiny_bpe_tokenizer()
    event_tokenizer = EpisodeTokenizer(image_layout=name)
    event_tokenizer.prepare_model(tokenizer=tokenizer)
    layout = event_tokenizer.image_layout
    events = datasets.concatenate_datasets(
        [
            event_dataset_from_mcap(recordings_dir / "0.5.1.mcap"),
            event_dataset_from_mcap(recordings_dir / "0.5.1.mcap", episode_path=str(recordings_dir / "again.mcap")),
        ]
    )
    tokenized = event_tokenizer.tokenize_event_dataset(events)
    token_ids = tokenized["token_ids"]
    assert tokenized["total_token_count"] == [len(ids) for ids in token_ids]
    for ids, text, images in zip(token_ids, tokenized["text"], tokenized["images"], strict=True):
        assert ids == tokenizer.encode(text, add_special_tokens=False)
        assert text.count(layout.text()) == len(images)
        assert sum(ids.count(i) for i in event_tokenizer.image_token_ids) == len(images) * len(layout.tokens())

    fsl = FSLDataset(tokenized, pad_token_id=0, max_sequence_length=1024, load_images=False, log_every=None).prepare()
    assert np.diff(fsl.plan.token_offsets).tolist() == [len(ids) for ids in token_ids]
    samples = list(fsl)
    assert [s["total_token_count"] for s in samples] == fsl.plan.token_counts.tolist()
    assert sum(s["total_token_count"] for s in samples) == sum(map(len, token_ids))
    real = [t for s in samples for t in s["token_ids"][: s["total_token_count"]].tolist()]
    assert real == [t for ids in token_ids for t in ids]
    for sample in samples:
        frame_tokens = np.isin(sample["token_ids"][: sample["total_token_count"]], event_tokenizer.image_token_ids)
        assert int(frame_tokens.sum()) == len(sample["images"]) * len(layout.tokens())


def test_labels_mask_every_token_of_a_frame(tmp_path) -> None:
    from owa.data.training import FSLCollator

    tokenizer = tiny_bpe_tokenizer()
    layout = ImageLayout(prefix="<boi>", token="<slot>", count=3, suffix="<eoi>")
    event_tokenizer = EpisodeTokenizer(image_layout=layout)
    event_tokenizer.prepare_model(tokenizer=tokenizer)
    ids = event_tokenizer.tokenize(screen_event(tmp_path))["token_ids"]
    assert event_tokenizer.image_token_ids == tuple(
        sorted(event_tokenizer.token_id(t) for t in ("<boi>", "<slot>", "<eoi>"))
    )
    sample = {
        "token_ids": np.array([*ids, 0], dtype=np.int64),
        "attention_mask": np.array([1] * len(ids) + [0], dtype=np.int64),
        "total_token_count": len(ids),
        "images": [None],
    }
    labels = FSLCollator(image_token_ids=event_tokenizer.image_token_ids)([sample])["labels"][0].tolist()
    # <EVENT_START><TIMESTAMP><0><0><2> <boi> <slot>x3 <eoi> <EVENT_END> <pad>
    assert labels == [*ids[:5], *[-100] * 5, ids[-1], -100]
    only_slots = FSLCollator(image_token_id=event_tokenizer.image_token_id)([sample])["labels"][0].tolist()
    assert only_slots == [*ids[:6], -100, -100, -100, *ids[-2:], -100]


def test_layout_config_round_trips_and_is_in_the_fingerprint(recordings_dir) -> None:
    config = EpisodeTokenizerConfig(image_layout="qwen2_vl")
    assert config.image_layout == PRESETS["qwen2_vl"]
    assert (config.image_token, config.image_token_length) == ("<|image_pad|>", 144)
    assert config.encoder_config.image_token == "<|image_pad|>"
    assert EpisodeTokenizerConfig.from_json(orjson.loads(orjson.dumps(config.to_json()))) == config
    assert config.to_json()["image_layout"]["image_size"] == [252, 448]
    # The spec's call keeps its meaning: <image> repeated 64 times, no layout object stored.
    spec = EpisodeTokenizer(image_token="<image>")
    assert spec.config.image_layout is None and spec.image_layout == ImageLayout(token="<image>", count=64)
    assert EpisodeTokenizerConfig.from_json(spec.config.to_json()) == spec.config
    # Switching layouts through options; dropping one keeps a plain token.
    assert EpisodeTokenizer(config, image_layout="internvl").config.image_token == "<IMG_CONTEXT>"
    plain = EpisodeTokenizer(config, image_layout=None, image_token="<x>")
    assert plain.image_layout == ImageLayout(token="<x>", count=144)

    events = event_dataset_from_mcap(recordings_dir / "0.5.1.mcap").select(range(30))
    fingerprints = set()
    for layout in ("smolvlm", ImageLayout.preset("smolvlm", count=16), ImageLayout(token="<image>", count=64)):
        event_tokenizer = EpisodeTokenizer(image_layout=layout)
        event_tokenizer.prepare_model(tokenizer=tiny_bpe_tokenizer())
        fingerprints.add(event_tokenizer.tokenize_event_dataset(events)._fingerprint)
    assert len(fingerprints) == 3


def test_invalid_layouts_are_clear_errors() -> None:
    with pytest.raises(ImageLayoutError, match=r"Invalid image_token \('<fake_token_around_image><image>'\)"):
        EpisodeTokenizer(image_token="<fake_token_around_image><image>")  # a wrapper is not one new token
    with pytest.raises(ImageLayoutError, match=r"Invalid count \(0\)"):
        EpisodeTokenizer(image_layout=ImageLayout(token="<image>", count=0))
    with pytest.raises(ImageLayoutError, match=r"prefix/suffix token \('<EVENT_START>'\)"):
        EpisodeTokenizer(image_layout=ImageLayout(prefix="<EVENT_START>", token="<image>"))
    with pytest.raises(ImageLayoutError, match=r"prefix/suffix token \('<KEYBOARD>'\)"):
        EpisodeTokenizer(image_layout=ImageLayout(suffix="<KEYBOARD>", token="<image>"))
    with pytest.raises(ImageLayoutError, match=r"prefix/suffix token \('<EPISODE_END>'\)"):
        EpisodeTokenizer(image_layout=ImageLayout(suffix="<EPISODE_END>", token="<image>"))
    with pytest.raises(ImageLayoutError, match=r"Invalid preset \('llava'\)"):
        EpisodeTokenizer(image_layout="llava")
    with pytest.raises(ImageLayoutError, match=r"Invalid image_token \('<x>'\) with image_layout"):
        EpisodeTokenizer(image_layout="smolvlm", image_token="<x>")
    with pytest.raises(ImageLayoutError, match=r"Invalid image_token_length \(3\) with image_layout"):
        EpisodeTokenizerConfig(image_layout="smolvlm", image_token_length=3)

    # A token the tokenizer would split: caught by prepare_model, before anything is added.
    tokenizer = tiny_bpe_tokenizer()
    tokenizer.add_tokens(["IMG"])
    size = len(tokenizer)
    with pytest.raises(ImageLayoutError, match=r"Invalid token \('IMG_CONTEXT'\)\. The tokenizer splits it"):
        EpisodeTokenizer(image_layout=ImageLayout(token="IMG_CONTEXT")).prepare_model(tokenizer=tokenizer)
    assert len(tokenizer) == size


@pytest.mark.parametrize("name", VLM_PRESETS)
def test_fixture_tokenizers_keep_the_image_token_one_id(name: str) -> None:
    from owa.data.testing.vlms import tiny_vlm

    tokenizer = tiny_vlm(name, fresh=True).tokenizer
    event_tokenizer = EpisodeTokenizer(image_layout=name)
    event_tokenizer.prepare_model(tokenizer=tokenizer)
    for token in event_tokenizer.image_layout.new_tokens():
        assert tokenizer.encode(token, add_special_tokens=False) == [event_tokenizer.token_id(token)]
    frame = event_tokenizer.image_layout.text()
    assert tokenizer.convert_ids_to_tokens(tokenizer.encode(frame, add_special_tokens=False)) == (
        event_tokenizer.image_layout.tokens()
    )
