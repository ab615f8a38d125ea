"""EpisodeTokenizer.prepare_model with a model: any call order, embedding resizing on both sides, mean and semantic
initialization of the new rows (input and untied output embeddings), and the token descriptions behind them."""

from __future__ import annotations

import pytest

from owa.data.encoders import create_encoder
from owa.data.encoders.vk_names import VK_NAMES
from owa.data.episode_tokenizer import EpisodeTokenizer
from owa.data.testing import tiny_bpe_tokenizer

torch = pytest.importorskip("torch")

BUTTONS = {
    "<left>": "left mouse button",
    "<right>": "right mouse button",
    "<middle>": "middle mouse button",
    "<unknown>": "unknown mouse button",
    "<x1>": "back mouse button",
    "<x2>": "forward mouse button",
}


def tiny_qwen2(vocab_size: int, *, tied: bool):
    """A 1-layer Qwen2 language model, its weights from a fixed seed (the global RNG untouched)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=tied,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Qwen2ForCausalLM(config)


def embeddings(model) -> tuple[torch.Tensor, torch.Tensor]:
    return model.get_input_embeddings().weight.detach(), model.get_output_embeddings().weight.detach()


def described_mean(matrix: torch.Tensor, tokenizer, words: str) -> torch.Tensor:
    return matrix[tokenizer.encode(words, add_special_tokens=False)].mean(dim=0)


# ------------------------------------------------------------------------------------------------------------
# Descriptions
# ------------------------------------------------------------------------------------------------------------


def test_every_token_has_its_meaning_in_words() -> None:
    descriptions = EpisodeTokenizer().token_descriptions()
    assert set(descriptions) == set(EpisodeTokenizer().get_vocab())
    assert descriptions["<KEYBOARD>"] == "keyboard" and descriptions["<MOUSE>"] == "mouse"
    assert descriptions["<press>"] == "press" and descriptions["<release>"] == "release"
    assert descriptions["<EVENT_START>"] == "event start" and descriptions["<EPISODE_END>"] == "episode end"
    assert descriptions["<IMAGE>"] == "image"
    # Every mouse button token names its button (x1/x2 are the back/forward side buttons).
    assert {token: descriptions[token] for token in BUTTONS} == BUTTONS
    # Every digit value is the digit: <0>..<15> are time digits, mouse position digits (base 16) and scrolls.
    for value in range(16):
        assert descriptions[f"<{value}>"] == str(value)
    for value in range(-10, 0):
        assert descriptions[f"<{value}>"] == str(value)
    # Above 15 a number token is only ever a key code: the key's name, or the number for unassigned codes.
    for vk in range(16, 256):
        assert descriptions[f"<{vk}>"] == VK_NAMES.get(vk, str(vk))
    assert (descriptions["<65>"], descriptions["<90>"], descriptions["<48>"]) == ("A", "Z", "0")
    assert (descriptions["<32>"], descriptions["<160>"], descriptions["<112>"]) == ("space", "left shift", "F1")
    assert descriptions["<200>"] == "200"  # unassigned

    layout = EpisodeTokenizer(image_layout="smolvlm").token_descriptions()
    assert layout["<image>"] == "image"
    assert layout["<fake_token_around_image>"] == "image end"  # the suffix token (also the first prefix token)
    assert layout["<global-img>"] == "image start"
    qwen = EpisodeTokenizer(image_layout="qwen2_vl").token_descriptions()
    assert (qwen["<|vision_start|>"], qwen["<|image_pad|>"], qwen["<|vision_end|>"]) == (
        "image start",
        "image",
        "image end",
    )
    assert create_encoder("json").token_descriptions() == {
        "<EVENT_START>": "event start",
        "<EVENT_END>": "event end",
        "<IMAGE>": "image",
    }


# ------------------------------------------------------------------------------------------------------------
# Resizing and initialization on a tiny Qwen2 language model
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tied", [True, False])
def test_semantic_init_sets_both_embedding_sides(tied: bool) -> None:
    tokenizer = tiny_bpe_tokenizer()
    base = len(tokenizer)
    model = tiny_qwen2(base, tied=tied)
    before_in, before_out = (m.clone() for m in embeddings(model))
    event_tokenizer = EpisodeTokenizer()
    added = event_tokenizer.prepare_model(tokenizer=tokenizer, model=model, init="semantic")
    inputs, outputs = embeddings(model)
    assert added == len(event_tokenizer.get_vocab()) and inputs.shape[0] == outputs.shape[0] == len(tokenizer)
    assert model.config.vocab_size == len(tokenizer)
    assert (inputs.data_ptr() == outputs.data_ptr()) is tied
    # Existing rows are untouched.
    assert torch.equal(inputs[:base], before_in[:base]) and torch.equal(outputs[:base], before_out[:base])

    descriptions = event_tokenizer.token_descriptions()
    checked = ["<KEYBOARD>", "<press>", "<65>", "<EVENT_START>", *BUTTONS, *(f"<{d}>" for d in range(16))]
    for token in checked:
        token_id = event_tokenizer.token_id(token)
        words = descriptions[token]
        assert torch.allclose(inputs[token_id], described_mean(before_in, tokenizer, words), atol=1e-6), token
        assert torch.allclose(outputs[token_id], described_mean(before_out, tokenizer, words), atol=1e-6), token
    if not tied:  # the output side is computed from the output matrix, not copied from the input side
        key = event_tokenizer.token_id("<KEYBOARD>")
        assert not torch.allclose(inputs[key], outputs[key])
    # Buttons and digits get distinct rows: each means something else.
    rows = {tuple(inputs[event_tokenizer.token_id(t)].tolist()) for t in [*BUTTONS, *(f"<{d}>" for d in range(10))]}
    assert len(rows) == len(BUTTONS) + 10


@pytest.mark.parametrize("tied", [True, False])
def test_mean_init_is_the_mean_of_the_existing_rows(tied: bool) -> None:
    tokenizer = tiny_bpe_tokenizer()
    base = len(tokenizer)
    model = tiny_qwen2(base, tied=tied)
    before_in, before_out = (m.clone() for m in embeddings(model))
    event_tokenizer = EpisodeTokenizer()
    event_tokenizer.prepare_model(tokenizer=tokenizer, model=model, init="mean")
    inputs, outputs = embeddings(model)
    new_ids = [event_tokenizer.token_id(t) for t in event_tokenizer.get_vocab()]
    assert sorted(new_ids) == list(range(base, len(tokenizer)))
    for matrix, before in ((inputs, before_in), (outputs, before_out)):
        expected = before[:base].mean(dim=0)
        assert torch.allclose(matrix[new_ids], expected.expand(len(new_ids), -1), atol=1e-6)


@pytest.mark.parametrize("order", ["one call", "tokenizer first", "model first"])
def test_any_call_order_gives_the_same_model(order: str) -> None:
    reference_tokenizer = tiny_bpe_tokenizer()
    reference = tiny_qwen2(len(reference_tokenizer), tied=False)
    EpisodeTokenizer(image_layout="internvl").prepare_model(
        tokenizer=reference_tokenizer, model=reference, init="semantic"
    )

    tokenizer = tiny_bpe_tokenizer()
    model = tiny_qwen2(len(tokenizer), tied=False)
    event_tokenizer = EpisodeTokenizer(image_layout="internvl")
    if order == "one call":
        event_tokenizer.prepare_model(tokenizer=tokenizer, model=model, init="semantic")
    elif order == "tokenizer first":
        event_tokenizer.prepare_model(tokenizer=tokenizer)
        event_tokenizer.prepare_model(model=model, init="semantic")
    else:
        assert event_tokenizer.prepare_model(model=model, init="semantic") == 0
        assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)  # nothing to fit to yet
        event_tokenizer.prepare_model(tokenizer=tokenizer)
    assert tokenizer.get_vocab() == reference_tokenizer.get_vocab()
    for ours, theirs in zip(embeddings(model), embeddings(reference), strict=True):
        assert torch.equal(ours, theirs)


def test_prepare_model_usage_errors() -> None:
    event_tokenizer = EpisodeTokenizer()
    with pytest.raises(TypeError, match=r"tokenizer=\.\.\., model=\.\.\."):
        event_tokenizer.prepare_model()
    with pytest.raises(ValueError, match=r"Invalid init \('zeros'\)"):
        event_tokenizer.prepare_model(tokenizer=tiny_bpe_tokenizer(), init="zeros")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Hugging Face tokenizer"):
        event_tokenizer.prepare_model(tokenizer="qwen")  # type: ignore[arg-type]


def test_a_padded_vocabulary_is_kept_and_its_rows_initialized() -> None:
    tokenizer = tiny_bpe_tokenizer()
    base = len(tokenizer)
    model = tiny_qwen2(base + 1024, tied=False)  # room for every new token, like Qwen's 151,936 rows
    event_tokenizer = EpisodeTokenizer()
    event_tokenizer.prepare_model(tokenizer=tokenizer, model=model, init="mean")
    inputs, _ = embeddings(model)
    assert inputs.shape[0] == base + 1024
    expected = inputs[:base].mean(dim=0)  # rows past the tokenizer (padding) are not part of the mean
    assert torch.allclose(inputs[event_tokenizer.token_id("<KEYBOARD>")], expected, atol=1e-6)


# ------------------------------------------------------------------------------------------------------------
# The tiny VLM fixtures: untied (SmolVLM, Qwen2-VL) and tied (InternVL) embeddings
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["smolvlm", "internvl", "qwen2_vl"])
def test_semantic_init_on_the_tiny_vlms(name: str) -> None:
    from owa.data.testing.vlms import tiny_vlm

    vlm = tiny_vlm(name, fresh=True)
    tokenizer, model = vlm.tokenizer, vlm.model
    tied = embeddings(model)[0].data_ptr() == embeddings(model)[1].data_ptr()
    assert tied is (name == "internvl")
    before_in, before_out = (m.clone() for m in embeddings(model))
    own_image_id = model.config.image_token_id
    event_tokenizer = EpisodeTokenizer.from_processor(vlm.processor)
    event_tokenizer.prepare_model(tokenizer=tokenizer, model=model, init="semantic")
    inputs, outputs = embeddings(model)
    assert inputs.shape[0] == outputs.shape[0] == len(tokenizer) > before_in.shape[0]
    assert model.config.image_token_id == own_image_id  # the layout is the model's own
    # The model's own image tokens were not added, so their rows are untouched.
    image_id = event_tokenizer.image_token_id
    assert torch.equal(inputs[image_id], before_in[image_id]) and torch.equal(outputs[image_id], before_out[image_id])
    for token, words in (("<KEYBOARD>", "keyboard"), ("<65>", "A"), ("<x2>", "forward mouse button")):
        token_id = event_tokenizer.token_id(token)
        assert torch.allclose(inputs[token_id], described_mean(before_in, tokenizer, words), atol=1e-6)
        assert torch.allclose(outputs[token_id], described_mean(before_out, tokenizer, words), atol=1e-6)
