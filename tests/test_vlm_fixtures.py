"""The tiny VLM fixtures are real: each processor's image tokens match what its model computes from the pixels."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from owa.data.testing.vlms import VLM_PRESETS, random_frames, tiny_vlm  # noqa: E402

# Per preset: pixel inputs the model takes for two 72x128 frames, and image tokens per frame.
EXPECTED = {
    "smolvlm": ({"pixel_values": (1, 2, 3, 64, 64), "pixel_attention_mask": (1, 2, 64, 64)}, 64),
    "internvl": ({"pixel_values": (2, 3, 64, 64)}, 256),
    # 72x128 -> smart_resize -> 84x140 (multiples of 28): 6x10 patches of 14 px, each 3*2*14*14 values; 3x5 tokens.
    "qwen2_vl": ({"pixel_values": (2 * 60, 1176), "image_grid_thw": (2, 3)}, 15),
}


@pytest.mark.parametrize("name", VLM_PRESETS)
def test_processor_output_runs_through_the_model_with_a_finite_loss(name):
    vlm = tiny_vlm(name)
    text = f"frame {vlm.image_placeholder} then {vlm.image_placeholder} end"
    inputs = vlm.processor(text=[text], images=random_frames(2), return_tensors="pt")

    pixel_shapes, tokens_per_image = EXPECTED[name]
    for key, shape in pixel_shapes.items():
        assert tuple(inputs[key].shape) == shape, key
    image_token_id = vlm.model.config.image_token_id
    assert int((inputs["input_ids"] == image_token_id).sum()) == 2 * tokens_per_image

    labels = inputs["input_ids"].clone()
    with torch.no_grad():
        out = vlm.model(**inputs, labels=labels)
    assert out.logits.shape[:2] == inputs["input_ids"].shape
    assert math.isfinite(out.loss.item())


@pytest.mark.parametrize("name", VLM_PRESETS)
def test_one_image_token_too_few_is_rejected_by_the_model(name):
    """The model's own count check is live: dropping one image token makes the forward pass fail."""
    vlm = tiny_vlm(name)
    inputs = vlm.processor(text=[f"a {vlm.image_placeholder} b"], images=random_frames(1), return_tensors="pt")
    ids = inputs["input_ids"][0]
    keep = torch.ones_like(ids, dtype=torch.bool)
    keep[int((ids == vlm.model.config.image_token_id).nonzero()[0])] = False
    inputs["input_ids"] = ids[keep][None]
    inputs["attention_mask"] = inputs["attention_mask"][0][keep][None]
    inputs.pop("mm_token_type_ids", None)
    with torch.no_grad(), pytest.raises((ValueError, RuntimeError), match=r"[Ii]mage features and image tokens"):
        vlm.model(**inputs)


def test_fresh_objects_are_independent_and_deterministic():
    shared = tiny_vlm("smolvlm")
    fresh = tiny_vlm("smolvlm", fresh=True)
    assert fresh.model is not shared.model and fresh.tokenizer is not shared.tokenizer
    assert tiny_vlm("smolvlm") is shared
    fresh.tokenizer.add_tokens(["<only_in_fresh>"])
    assert "<only_in_fresh>" not in shared.tokenizer.get_vocab()
    for a, b in zip(shared.model.parameters(), fresh.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_unknown_preset():
    with pytest.raises(ValueError, match=r"Invalid preset \('llava'\)\. Supported values are smolvlm"):
        tiny_vlm("llava")
