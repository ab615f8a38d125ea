"""ImageLayout: exact tokens per preset, layouts read from real processors, and every invalid case."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from owa.data.episode_tokenizer import EpisodeTokenizerConfig
from owa.data.errors import OWADataError
from owa.data.image_layout import PRESETS, ImageLayout, ImageLayoutError, image_layout

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# ------------------------------------------------------------------------------------------------------------
# Presets
# ------------------------------------------------------------------------------------------------------------


def test_preset_tokens_are_exact():
    assert image_layout("default").tokens() == ["<IMAGE>"] * 64
    assert image_layout("smolvlm").tokens() == [
        "<fake_token_around_image>",
        "<global-img>",
        *["<image>"] * 64,
        "<fake_token_around_image>",
    ]
    assert image_layout("internvl").tokens() == ["<img>", *["<IMG_CONTEXT>"] * 256, "</img>"]
    assert image_layout("qwen2_vl").tokens() == ["<|vision_start|>", *["<|image_pad|>"] * 144, "<|vision_end|>"]


def test_preset_new_tokens_and_text():
    assert image_layout("default").new_tokens() == ["<IMAGE>"]
    assert image_layout("smolvlm").new_tokens() == ["<fake_token_around_image>", "<global-img>", "<image>"]
    assert image_layout("internvl").new_tokens() == ["<img>", "<IMG_CONTEXT>", "</img>"]
    assert image_layout("qwen2_vl").new_tokens() == ["<|vision_start|>", "<|image_pad|>", "<|vision_end|>"]
    assert image_layout("internvl").text() == "<img>" + "<IMG_CONTEXT>" * 256 + "</img>"
    for layout in PRESETS.values():
        assert "".join(layout.tokens()) == layout.text()


def test_preset_pixel_fields():
    smolvlm, internvl, qwen = PRESETS["smolvlm"], PRESETS["internvl"], PRESETS["qwen2_vl"]
    assert (smolvlm.image_size, smolvlm.image_mean, smolvlm.image_std) == ((512, 512), (0.5,) * 3, (0.5,) * 3)
    assert (internvl.image_size, internvl.image_mean, internvl.image_std) == (
        (448, 448),
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
    )
    assert (qwen.image_size, qwen.patch_size, qwen.merge_size) == ((252, 448), 14, 2)
    assert (qwen.image_mean, qwen.image_std) == (CLIP_MEAN, CLIP_STD)
    assert PRESETS["default"].image_size is None


def test_default_layout_is_the_episode_tokenizer_default():
    default = ImageLayout()
    assert default == PRESETS["default"] == image_layout(None)
    assert (default.token, default.count, default.prefix, default.suffix) == (
        EpisodeTokenizerConfig.image_token,
        EpisodeTokenizerConfig.image_token_length,
        "",
        "",
    )


def test_qwen2_vl_count_follows_the_frame_size():
    assert ImageLayout.preset("qwen2_vl", image_size=(448, 812)).count == 32 * 58 // 4
    assert ImageLayout.preset("qwen2_vl", image_size=(56, 56)).tokens() == [
        "<|vision_start|>",
        *["<|image_pad|>"] * 4,
        "<|vision_end|>",
    ]
    # merge_size 1: every 14-px patch is a token
    assert ImageLayout.preset("qwen2_vl", image_size=(28, 56), merge_size=1).count == 8
    # an explicit, consistent count is accepted
    assert ImageLayout.preset("qwen2_vl", image_size=(56, 56), count=4).count == 4


def test_custom_layout_and_overrides():
    layout = ImageLayout(prefix="<boi>", token="<slot>", count=3, suffix="<eoi>")
    assert layout.tokens() == ["<boi>", "<slot>", "<slot>", "<slot>", "<eoi>"]
    assert image_layout(layout) is layout
    assert ImageLayout.preset("smolvlm", count=81).count == 81
    assert ImageLayout(token="IMG", count=2).tokens() == ["IMG", "IMG"]  # no angle brackets is one token too
    assert ImageLayout(image_size=[32, 48], image_mean=[0, 0, 0], image_std=[1, 1, 1]).image_size == (32, 48)


def test_layouts_are_frozen_keyword_only_and_presets_read_only():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["default"].count = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        ImageLayout("<image>")  # type: ignore[misc]
    with pytest.raises(TypeError):
        PRESETS["mine"] = ImageLayout()  # type: ignore[index]


# ------------------------------------------------------------------------------------------------------------
# Invalid layouts
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, -1, True, False, 1.5, "64", None])
def test_invalid_count(count):
    with pytest.raises(ImageLayoutError, match=r"Invalid count \(.*\)\. Supported values are positive integers"):
        ImageLayout(count=count)


def test_error_type_is_a_value_error_of_the_package_and_pickles():
    with pytest.raises(ValueError) as info:
        ImageLayout(count=0)
    assert isinstance(info.value, OWADataError)
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is ImageLayoutError and str(copy) == str(info.value)


def test_the_whole_wrapper_string_as_token_is_rejected():
    with pytest.raises(ImageLayoutError) as info:
        ImageLayout(token="<img><IMG_CONTEXT></img>", count=256)
    assert str(info.value) == (
        "Invalid token ('<img><IMG_CONTEXT></img>'). It is several tokens ['<img>', '<IMG_CONTEXT>', '</img>']; the "
        "token is the one repeated per slot. Supported values are one token, with the others in prefix and suffix, "
        "e.g. ImageLayout(prefix='<img>', token='<IMG_CONTEXT>', suffix='</img>', count=...)."
    )


@pytest.mark.parametrize("token", ["", " <image>", "<image> ", "<im age>", "a<b", "<a<b>", 7, None])
def test_invalid_token(token):
    with pytest.raises(ImageLayoutError, match=r"Invalid token \(.*\)\. Supported values are"):
        ImageLayout(token=token)


@pytest.mark.parametrize("field", ["prefix", "suffix"])
@pytest.mark.parametrize("value", ["img", "<img> ", "Image: <img>", "\n<img>", None])
def test_invalid_prefix_and_suffix(field, value):
    with pytest.raises(ImageLayoutError, match=rf"Invalid {field} \(.*\)\. Supported values are '' or a concat"):
        ImageLayout(**{field: value})


def test_token_must_not_be_a_prefix_or_suffix_token():
    with pytest.raises(ImageLayoutError, match=r"Invalid token \('<img>'\)\. It also occurs in prefix"):
        ImageLayout(prefix="<img>", token="<img>")
    with pytest.raises(ImageLayoutError, match=r"Invalid token \('<x>'\)\. It also occurs in prefix"):
        ImageLayout(token="<x>", suffix="<y><x>")


@pytest.mark.parametrize("size", [(0, 10), (10,), (10, 10, 3), (True, 10), (1.5, 2), "64"])
def test_invalid_image_size(size):
    with pytest.raises(ImageLayoutError, match=r"Invalid image_size \(.*\)\. Supported values are None or \(height"):
        ImageLayout(image_size=size)


@pytest.mark.parametrize(
    ("field", "value"),
    [("image_mean", (0.5, 0.5)), ("image_mean", "abc"), ("image_std", (0.5, 0.0, 0.5)), ("image_std", 0.5)],
)
def test_invalid_normalization(field, value):
    with pytest.raises(ImageLayoutError, match=rf"Invalid {field} \(.*\)\. Supported values are None or 3 floats"):
        ImageLayout(**{field: value})


def test_invalid_patching():
    with pytest.raises(ImageLayoutError) as info:
        ImageLayout.preset("qwen2_vl", image_size=(250, 448))
    assert str(info.value) == (
        "Invalid image_size ((250, 448)). With patch_size 14 and merge_size 2, supported values have both sides "
        "multiples of 28, e.g. (252, 448)."
    )
    with pytest.raises(ImageLayoutError, match=r"Invalid count \(100\)\. Frames of 252x448 pixels .* take 144 tokens"):
        ImageLayout.preset("qwen2_vl", count=100)
    with pytest.raises(ImageLayoutError, match=r"Invalid image_size \(None\)\. patch_size and merge_size derive"):
        ImageLayout(patch_size=14, merge_size=2)
    with pytest.raises(ImageLayoutError, match=r"Invalid merge_size \(None\)\. Supported values are positive"):
        ImageLayout(patch_size=14, image_size=(28, 28), count=4)


def test_unknown_preset_field_and_layout():
    with pytest.raises(ImageLayoutError) as info:
        image_layout("llava")
    assert str(info.value) == (
        "Invalid preset ('llava'). Supported values are 'default', 'smolvlm', 'internvl', 'qwen2_vl'."
    )
    with pytest.raises(ImageLayoutError, match=r"Invalid field \(size\)\. Supported values are token, count"):
        ImageLayout.preset("qwen2_vl", size=(1, 2))
    with pytest.raises(ImageLayoutError, match=r"Invalid image layout \(64\)\. Supported values are an ImageLayout"):
        image_layout(64)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------------
# Layouts read from real processors (owa.data.testing.vlms)
# ------------------------------------------------------------------------------------------------------------


def _processor_tokens(vlm, layout: ImageLayout) -> list[str]:
    """The tokens ``vlm.processor`` writes for one image at the layout's frame size, and nothing else."""
    from owa.data.testing.vlms import random_frames

    height, width = layout.image_size
    inputs = vlm.processor(
        text=[vlm.image_placeholder], images=random_frames(1, height=height, width=width), add_special_tokens=False
    )
    return vlm.tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])


@pytest.mark.parametrize("name", ["smolvlm", "internvl", "qwen2_vl"])
def test_from_processor_gives_exactly_what_the_processor_inserts(name):
    pytest.importorskip("torch")
    from owa.data.testing.vlms import tiny_vlm

    vlm = tiny_vlm(name)
    layout = ImageLayout.from_processor(vlm.processor)
    assert _processor_tokens(vlm, layout) == layout.tokens()
    # The fixtures use the real token counts, so the layouts' tokens are the presets'.
    assert layout.tokens() == PRESETS[name].tokens()
    layout.validate(vlm.tokenizer)
    PRESETS[name].validate(vlm.tokenizer)


def test_from_processor_reads_pixel_settings():
    pytest.importorskip("torch")
    from owa.data.testing.vlms import tiny_vlm

    smolvlm = ImageLayout.from_processor(tiny_vlm("smolvlm").processor)
    assert (smolvlm.image_size, smolvlm.image_mean, smolvlm.image_std) == ((64, 64), (0.5,) * 3, (0.5,) * 3)
    internvl = ImageLayout.from_processor(tiny_vlm("internvl").processor)
    assert (internvl.image_size, internvl.image_mean) == ((64, 64), (0.485, 0.456, 0.406))
    # The fixture's Qwen2-VL image processor has the real defaults, so the layout is exactly the preset.
    assert ImageLayout.from_processor(tiny_vlm("qwen2_vl").processor) == PRESETS["qwen2_vl"]


def test_from_processor_qwen2_vl_frame_sizes():
    pytest.importorskip("torch")
    from owa.data.testing.vlms import tiny_vlm

    vlm = tiny_vlm("qwen2_vl")
    layout = ImageLayout.from_processor(vlm.processor, image_size=(84, 140))
    assert layout.count == 15 and layout.image_size == (84, 140)
    assert _processor_tokens(vlm, layout) == layout.tokens()

    with pytest.raises(ImageLayoutError, match=r"Invalid image_size \(\(80, 140\)\)\. With patch_size 14"):
        ImageLayout.from_processor(vlm.processor, image_size=(80, 140))
    with pytest.raises(ImageLayoutError) as info:
        ImageLayout.from_processor(vlm.processor, image_size=(28, 56))
    assert str(info.value) == (
        "Invalid image_size ((28, 56)). Qwen2VLProcessor resizes frames to between 3136 and 1003520 pixels, so it "
        "would change this size. Supported values are sizes whose height * width is within that range."
    )


def test_from_processor_qwen2_5_vl():
    pytest.importorskip("torch")
    from transformers import Qwen2_5_VLProcessor

    from owa.data.testing.vlms import tiny_vlm, without_video_processor

    parts = tiny_vlm("qwen2_vl").processor
    processor = without_video_processor(Qwen2_5_VLProcessor)(
        image_processor=parts.image_processor, tokenizer=parts.tokenizer, video_processor=None
    )
    assert ImageLayout.from_processor(processor) == PRESETS["qwen2_vl"]


def test_from_processor_rejects_image_splitting():
    pytest.importorskip("torch")
    from owa.data.testing.vlms import tiny_vlm

    smolvlm = tiny_vlm("smolvlm", fresh=True).processor
    smolvlm.image_processor.do_image_splitting = True
    with pytest.raises(ImageLayoutError) as info:
        ImageLayout.from_processor(smolvlm)
    assert str(info.value) == (
        "Invalid processor (Idefics3Processor with do_image_splitting=True). Image splitting gives a frame a "
        "variable number of tiles. Supported values are processors with it off: set "
        "processor.image_processor.do_image_splitting = False."
    )

    internvl = tiny_vlm("internvl", fresh=True).processor
    internvl.images_kwargs = {"crop_to_patches": True}  # InternVLProcessor's own default
    with pytest.raises(ImageLayoutError, match=r"Invalid processor \(InternVLProcessor with crop_to_patches=True\)"):
        ImageLayout.from_processor(internvl)
    # the processor really does tile: a 16:9 frame becomes 2 tiles and a thumbnail, 3 * 256 tokens
    inputs = internvl(text=["<IMG_CONTEXT>"], images=tiny_frames_16x9(), add_special_tokens=False)
    assert inputs["input_ids"][0].count(internvl.image_token_id) == 3 * 256


def tiny_frames_16x9():
    from owa.data.testing.vlms import random_frames

    return random_frames(1, height=72, width=128)


def test_from_processor_rejects_other_processors_and_fixed_sizes():
    pytest.importorskip("torch")
    from owa.data.testing.vlms import tiny_vlm

    vlm = tiny_vlm("smolvlm")
    with pytest.raises(ImageLayoutError) as info:
        ImageLayout.from_processor(vlm.model)
    assert str(info.value) == (
        "Invalid processor (Idefics3ForConditionalGeneration). Supported values are Idefics3Processor, "
        "SmolVLMProcessor, InternVLProcessor, Qwen2VLProcessor, Qwen2_5_VLProcessor; for another model build "
        "ImageLayout(prefix=..., token=..., count=..., suffix=...) by hand."
    )
    with pytest.raises(ImageLayoutError, match=r"Invalid image_size \(\(32, 32\)\)\. Idefics3Processor resizes every"):
        ImageLayout.from_processor(vlm.processor, image_size=(32, 32))
    assert ImageLayout.from_processor(vlm.processor, image_size=(64, 64)).image_size == (64, 64)


# ------------------------------------------------------------------------------------------------------------
# validate
# ------------------------------------------------------------------------------------------------------------


def test_validate_new_tokens_and_event_tokens():
    from owa.data.encoders import create_encoder
    from owa.data.testing import tiny_bpe_tokenizer

    tokenizer = tiny_bpe_tokenizer()
    vocab_before = len(tokenizer)
    event_tokens = create_encoder("hierarchical", image_token="<IMG_CONTEXT>").get_vocab()
    assert "<IMG_CONTEXT>" in event_tokens  # the encoder's vocabulary holds its image token: that is allowed
    for layout in PRESETS.values():
        layout.validate(tokenizer, event_tokens=event_tokens)  # new tokens: each will be one token once added
    assert len(tokenizer) == vocab_before  # nothing was added

    with pytest.raises(ImageLayoutError) as info:
        ImageLayout(prefix="<EVENT_START>", token="<image>").validate(tokenizer, event_tokens=event_tokens)
    assert str(info.value) == (
        "Invalid prefix/suffix token ('<EVENT_START>'). It is also an event token, so events and frames could not "
        "be told apart. Supported values are tokens that no event encoder or episode uses."
    )
    with pytest.raises(ImageLayoutError, match=r"Invalid prefix/suffix token \('<EPISODE_END>'\)"):
        ImageLayout(suffix="<EPISODE_END>").validate(tokenizer, event_tokens=["<EPISODE_START>", "<EPISODE_END>"])


def test_validate_rejects_a_token_the_tokenizer_splits():
    from owa.data.testing import tiny_bpe_tokenizer

    tokenizer = tiny_bpe_tokenizer()
    tokenizer.add_tokens(["IMG"])
    ImageLayout(token="IMG").validate(tokenizer)
    with pytest.raises(ImageLayoutError) as info:
        ImageLayout(token="IMG_CONTEXT").validate(tokenizer)
    message = str(info.value)
    assert message.startswith("Invalid token ('IMG_CONTEXT'). The tokenizer splits it into ")
    assert "it contains the tokenizer's own token(s) ['IMG']. Supported values are single tokens" in message


def test_validate_with_the_real_qwen_tokenizer():
    pytest.importorskip("torch")
    from owa.data.testing.vlms import tiny_vlm

    tokenizer = tiny_vlm("qwen2_vl").tokenizer  # the real Qwen2.5 tokenizer; validate modifies nothing
    PRESETS["qwen2_vl"].validate(tokenizer)  # Qwen2.5 has these three tokens already
    ids = tokenizer.encode(PRESETS["qwen2_vl"].text(), add_special_tokens=False)
    assert tokenizer.convert_ids_to_tokens(ids) == PRESETS["qwen2_vl"].tokens()
    with pytest.raises(ImageLayoutError, match=r"Invalid tokenizer \(str\)\. Pass a Hugging Face tokenizer"):
        PRESETS["qwen2_vl"].validate("qwen")
