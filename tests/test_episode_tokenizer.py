"""EpisodeTokenizer: config, prepare_model, exact ids against real tokenizers, episode tokens, decode."""

from __future__ import annotations

import os

import datasets
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owa.data._token_lookup import occurs_in_concatenation
from owa.data.encoders import HierarchicalConfig, JsonConfig
from owa.data.episode_tokenizer import EpisodeTokenizer, EpisodeTokenizerConfig
from owa.data.errors import DatasetError, EncodingError, TokenizerNotPreparedError
from owa.data.messages import McapMessage, MediaRef, ScreenCaptured, deserialize_screen, serialize_screen
from owa.data.testing import event_dataset_from_mcap, qwen25_tokenizer, tiny_bpe_tokenizer

KEY_A = McapMessage(
    topic="keyboard",
    timestamp=1_234_567_890,  # 1.2345... s into a 4 s period: digits 1, 2, 3
    message=b'{"event_type":"press","vk":65}',
    message_type="desktop/KeyboardEvent",
)


@pytest.fixture(scope="module")
def qwen():
    """The real Qwen2.5 tokenizer prepared with the spec's settings (image token ``<image>``); read-only."""
    tokenizer = qwen25_tokenizer()
    event_tokenizer = EpisodeTokenizer(image_token="<image>")
    event_tokenizer.prepare_model(tokenizer=tokenizer)
    return event_tokenizer, tokenizer


@pytest.fixture(scope="module")
def two_episodes(recordings_dir) -> datasets.Dataset:
    first = event_dataset_from_mcap(recordings_dir / "0.5.1.mcap")
    second = event_dataset_from_mcap(recordings_dir / "0.5.1.mcap", episode_path=str(recordings_dir / "copy.mcap"))
    return datasets.concatenate_datasets([first, second])


# ------------------------------------------------------------------------------------------------------------
# Config and preparation
# ------------------------------------------------------------------------------------------------------------


def test_config_defaults_are_the_spec_and_validated() -> None:
    event_tokenizer = EpisodeTokenizer()
    assert event_tokenizer.config == EpisodeTokenizerConfig(
        encoder_type="hierarchical",
        image_token="<IMAGE>",
        image_token_length=64,
        episode_start_token="<EPISODE_START>",
        episode_end_token="<EPISODE_END>",
    )
    custom = EpisodeTokenizer(image_token="<image>", image_token_length=4)
    assert custom.encoder.config.image_token == "<image>"
    assert EpisodeTokenizer.from_config(custom.config).config == custom.config
    with pytest.raises(ValueError, match="image_token_length"):
        EpisodeTokenizer(image_token_length=0)
    with pytest.raises(ValueError, match="must differ"):
        EpisodeTokenizer(episode_end_token="<EPISODE_START>")
    with pytest.raises(ValueError, match="encoder_type"):
        EpisodeTokenizer(encoder_type="yaml")


MOVE = McapMessage(
    topic="mouse",
    timestamp=1_234_567_890,
    message=b'{"event_type":"move","x":1280,"y":720}',
    message_type="desktop/MouseEvent",
)


def test_screen_size_is_an_option_and_changes_the_coordinates_exactly() -> None:
    # (1280, 720) is 2/3 of 1920x1080: floor(4096 * 2/3) = 2730 = <10><10><10> per axis; on 2560x1440 it is the
    # middle: 2048 = <8><0><0>. Digits are interleaved x1 y1 x2 y2 x3 y3.
    start = "<EVENT_START><TIMESTAMP><1><2><3><MOUSE><move>"
    default = EpisodeTokenizer(image_token_length=2)
    wide = EpisodeTokenizer(image_token="<image>", image_token_length=2, screen_size=(2560, 1440))
    assert wide.config.encoder_config == HierarchicalConfig(image_token="<image>", screen_size=(2560, 1440))
    assert wide.encoder.config is wide.config.encoder_config
    tokenizer = tiny_bpe_tokenizer()
    for event_tokenizer, digits in ((default, "<10>" * 6), (wide, "<8><8><0><0><0><0>")):
        event_tokenizer.prepare_model(tokenizer=tokenizer)
        out = event_tokenizer.tokenize(MOVE)
        assert out["text"] == start + digits + "<EVENT_END>"
        assert out["token_ids"] == tokenizer.encode(out["text"], add_special_tokens=False)
    # The same through a config object, and back through its JSON form (saved metadata).
    config = EpisodeTokenizerConfig().with_options(
        image_token="<image>", image_token_length=2, screen_size=(2560, 1440)
    )
    assert config == wide.config == EpisodeTokenizer(config).config == EpisodeTokenizer.from_config(config).config
    assert EpisodeTokenizerConfig.from_json(orjson.loads(orjson.dumps(config.to_json()))) == config
    assert config.to_json()["encoder_config"] == {"image_token": "<image>", "screen_size": [2560, 1440]}


def test_options_override_a_config_and_unknown_ones_are_listed() -> None:
    base = EpisodeTokenizerConfig().with_options(image_token="<image>", screen_size=(800, 600))
    changed = EpisodeTokenizer(base, image_token="<img>", image_token_length=3)
    # image_token is one setting: it reaches the encoder; the encoder's other fields are kept.
    assert changed.config.encoder_config == HierarchicalConfig(image_token="<img>", screen_size=(800, 600))
    assert changed.config.image_token_length == 3 and base.image_token_length == 64
    # Another encoder type starts from that encoder's defaults.
    as_json = EpisodeTokenizer(base, encoder_type="json")
    assert as_json.config.encoder_config == JsonConfig(image_token="<image>")
    assert type(as_json.encoder).__name__ == "JsonEncoder"
    with pytest.raises(TypeError, match=r"screen_sz\. Allowed: encoder_type, image_token, .*screen_size"):
        EpisodeTokenizer(screen_sz=(1, 1))
    with pytest.raises(TypeError, match=r"Unknown EpisodeTokenizer option\(s\): screen_size"):
        EpisodeTokenizer(encoder_type="json", screen_size=(1, 1))  # the json encoder has no screen size
    with pytest.raises(ValueError, match="screen_size"):
        EpisodeTokenizer(screen_size=(0, 1080))
    with pytest.raises(ValueError, match="differs from image_token"):
        EpisodeTokenizerConfig(image_token="<image>", encoder_config=HierarchicalConfig())
    with pytest.raises(ValueError, match="must be a JsonConfig"):
        EpisodeTokenizerConfig(encoder_type="json", encoder_config=HierarchicalConfig())
    with pytest.raises(TypeError, match="EpisodeTokenizerConfig"):
        EpisodeTokenizer("json")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="image_token_length"):
        EpisodeTokenizer(image_token_length=True)


def test_fingerprint_includes_the_encoder_config(recordings_dir) -> None:
    events = event_dataset_from_mcap(recordings_dir / "0.5.1.mcap", episode_path="0.5.1.mcap").select(range(20))
    tokenizer = tiny_bpe_tokenizer()
    fingerprints = []
    for size in ((1920, 1080), (2560, 1440)):
        event_tokenizer = EpisodeTokenizer(image_token_length=2, screen_size=size)
        event_tokenizer.prepare_model(tokenizer=tokenizer)
        fingerprints.append(event_tokenizer.tokenize_event_dataset(events, episode_root=recordings_dir)._fingerprint)
    assert fingerprints[0] != fingerprints[1]


def test_screen_serialization_lives_in_messages_and_is_re_exported() -> None:
    import owa.data.episode_tokenizer as episode_tokenizer
    import owa.data.messages as messages

    assert episode_tokenizer.deserialize_screen is messages.deserialize_screen
    assert episode_tokenizer.serialize_screen is messages.serialize_screen


def test_testing_helpers_need_no_pytest() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from owa.data.testing import tiny_bpe_tokenizer; tiny_bpe_tokenizer(); "
        "assert 'pytest' not in sys.modules, 'owa.data.testing imported pytest'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_everything_needs_prepare_model_first() -> None:
    event_tokenizer = EpisodeTokenizer()
    for call in (
        lambda: event_tokenizer.tokenize(KEY_A),
        lambda: event_tokenizer.tokenize_event_dataset(datasets.Dataset.from_dict({"a": [1]})),
        lambda: event_tokenizer.decode([1, 2]),
        lambda: event_tokenizer.image_token_id,
    ):
        with pytest.raises(TokenizerNotPreparedError, match="prepare_model"):
            call()


def test_prepare_model_adds_sorted_tokens_with_deterministic_ids() -> None:
    first, second = tiny_bpe_tokenizer(), tiny_bpe_tokenizer()
    base = len(first)
    a, b = EpisodeTokenizer(image_token_length=4), EpisodeTokenizer(image_token_length=4)
    vocab = a.get_vocab()
    assert vocab == sorted(vocab) and "<EPISODE_START>" in vocab and "<IMAGE>" in vocab and "<x2>" in vocab
    assert a.prepare_model(tokenizer=first) == len(vocab)
    b.prepare_model(tokenizer=second)
    assert [a.token_id(t) for t in vocab] == list(range(base, base + len(vocab)))
    assert [b.token_id(t) for t in vocab] == [a.token_id(t) for t in vocab]
    assert first.convert_tokens_to_ids("<EVENT_START>") == a.token_id("<EVENT_START>")
    # Preparing again adds nothing and keeps the ids.
    assert EpisodeTokenizer(image_token_length=4).prepare_model(tokenizer=first) == 0
    assert len(first) == base + len(vocab)


def test_prepare_model_resizes_embeddings() -> None:
    pytest.importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_bpe_tokenizer()
    base = len(tokenizer)
    config = LlamaConfig(
        vocab_size=base,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    model = LlamaForCausalLM(config)
    EpisodeTokenizer().prepare_model(tokenizer=tokenizer, model=model)
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer) > base
    assert model.get_output_embeddings().weight.shape[0] == len(tokenizer)

    big = LlamaForCausalLM(LlamaConfig(**{**config.to_dict(), "vocab_size": 4096}))
    EpisodeTokenizer().prepare_model(tokenizer=tiny_bpe_tokenizer(), model=big)
    assert big.get_input_embeddings().weight.shape[0] == 4096  # a padded, larger vocabulary is kept


# ------------------------------------------------------------------------------------------------------------
# tokenize
# ------------------------------------------------------------------------------------------------------------


def test_tokenize_keyboard_exact() -> None:
    tokenizer = tiny_bpe_tokenizer()
    event_tokenizer = EpisodeTokenizer()
    event_tokenizer.prepare_model(tokenizer=tokenizer)
    out = event_tokenizer.tokenize(KEY_A)
    tokens = ["<EVENT_START>", "<TIMESTAMP>", "<1>", "<2>", "<3>", "<KEYBOARD>", "<65>", "<press>", "<EVENT_END>"]
    assert out["text"] == "".join(tokens)
    assert out["token_ids"] == [event_tokenizer.token_id(t) for t in tokens]
    assert out["token_ids"] == tokenizer.encode(out["text"], add_special_tokens=False)
    assert out["images"] == [] and out["total_token_count"] == 9


def test_tokenize_screen_repeats_the_image_token(tmp_path) -> None:
    tokenizer = tiny_bpe_tokenizer()
    event_tokenizer = EpisodeTokenizer(image_token="<image>", image_token_length=3)
    event_tokenizer.prepare_model(tokenizer=tokenizer)
    screen = ScreenCaptured(utc_ns=5, shape=(8, 6), media_ref=MediaRef(uri="v.mkv", pts_ns=40_000_000))
    message = McapMessage(
        topic="screen",
        timestamp=4_000_000_000 + 20_000_000,  # 20 ms into the period: digits 0, 0, 2
        message=screen.model_dump_json(exclude_none=True).encode(),
        message_type="desktop/ScreenCaptured",
    ).with_source(tmp_path / "ep.mcap")
    out = event_tokenizer.tokenize(message)
    assert out["text"] == "<EVENT_START><TIMESTAMP><0><0><2><image><image><image><EVENT_END>"
    assert out["token_ids"] == tokenizer.encode(out["text"], add_special_tokens=False)
    assert out["token_ids"].count(event_tokenizer.image_token_id) == 3
    [image] = out["images"]
    assert image.media_ref == screen.media_ref and image.base_dir == str(tmp_path)
    assert deserialize_screen(serialize_screen(image)).base_dir == str(tmp_path)


# ------------------------------------------------------------------------------------------------------------
# tokenize_event_dataset on a real recording with the real Qwen2.5 tokenizer
# ------------------------------------------------------------------------------------------------------------


def test_real_recording_ids_equal_tokenizer_encode(qwen, two_episodes, recordings_dir) -> None:
    event_tokenizer, tokenizer = qwen
    assert event_tokenizer._lookup.is_exact  # the fast path is the one under test
    out = event_tokenizer.tokenize_event_dataset(two_episodes)
    assert out.column_names == ["episode_path", "text", "token_ids", "images", "total_token_count"]
    assert out.features["token_ids"].feature.dtype == "int32"
    assert out.features["total_token_count"].dtype == "int64"
    assert len(out) == len(two_episodes) == 2 * 255
    texts, token_ids = out["text"], out["token_ids"]
    for text, ids in zip(texts, token_ids, strict=True):
        assert ids == tokenizer.encode(text, add_special_tokens=False)
    assert out["total_token_count"] == [len(ids) for ids in token_ids]

    # Texts are the encoder's, image token repeated 64 times, episode tokens on each episode's first and last event.
    encoder = event_tokenizer.encoder
    n = len(two_episodes) // 2
    for row, (path, message) in enumerate(zip(two_episodes["episode_path"], two_episodes["mcap_message"], strict=True)):
        text, images = encoder.encode_serialized(message, episode_path=path)
        expected = text.replace("<image>", "<image>" * 64)
        if row % n == 0:
            expected = "<EPISODE_START>" + expected
        if row % n == n - 1:
            expected += "<EPISODE_END>"
        assert texts[row] == expected
        refs = [deserialize_screen(r) for r in out[row]["images"]]
        assert [r.media_ref for r in refs] == [i.media_ref for i in images]
        assert all(r.base_dir == str(recordings_dir) for r in refs)
        assert token_ids[row].count(event_tokenizer.image_token_id) == 64 * len(refs)
    assert sum(t.count("<EPISODE_START>") for t in texts) == sum(t.count("<EPISODE_END>") for t in texts) == 2
    assert texts[-1].endswith("<EPISODE_END>")  # the final episode is closed too


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_lookup_equals_qwen_encode_on_any_token_sequence(qwen, data: st.DataObject) -> None:
    event_tokenizer, tokenizer = qwen
    vocab = event_tokenizer.get_vocab()
    tokens = data.draw(st.lists(st.sampled_from(vocab), min_size=1, max_size=40))
    text = "".join(tokens)
    assert event_tokenizer._lookup.ids([text])[0] == tokenizer.encode(text, add_special_tokens=False)


def test_json_encoder_texts_go_through_the_tokenizer(recordings_dir) -> None:
    tokenizer = tiny_bpe_tokenizer()
    event_tokenizer = EpisodeTokenizer(encoder_type="json", image_token_length=2)
    event_tokenizer.prepare_model(tokenizer=tokenizer)
    events = event_dataset_from_mcap(recordings_dir / "0.5.1.mcap").select(range(40))
    out = event_tokenizer.tokenize_event_dataset(events)
    assert out[0]["text"].startswith('<EPISODE_START><EVENT_START>{"type":')
    for row in out:
        assert row["token_ids"] == tokenizer.encode(row["text"], add_special_tokens=False)


def test_a_conflicting_added_token_turns_the_lookup_off() -> None:
    tokenizer = tiny_bpe_tokenizer()
    from tokenizers import AddedToken

    # A token spanning two of ours, matched on the raw text like ours: lookup per piece would be wrong.
    tokenizer.add_tokens([AddedToken("<1><2>", normalized=False)])
    foreign = tokenizer.convert_tokens_to_ids("<1><2>")
    event_tokenizer = EpisodeTokenizer()
    event_tokenizer.prepare_model(tokenizer=tokenizer)
    assert not event_tokenizer._lookup.is_exact
    out = event_tokenizer.tokenize(KEY_A)
    assert out["token_ids"] == tokenizer.encode(out["text"], add_special_tokens=False)
    assert foreign in out["token_ids"]


def test_occurs_in_concatenation() -> None:
    tokens = {"<1>", "<2>", "<12>", "<EVENT_END>", "<image>"}
    for text in ("<1><2>", "1><2", "><", "2><E", "ENT", "<1", "2>", "<image><1>", "mage><12><E"):
        assert occurs_in_concatenation(text, tokens), text
    for text in ("<3>", "<1><3>", "1>x", "12><3", "<1>>", "abc", "<image_pad>", "", "x<1>"):
        assert not occurs_in_concatenation(text, tokens), text


def test_more_processes_give_the_same_dataset(recordings_dir) -> None:
    tokenizer = tiny_bpe_tokenizer()
    event_tokenizer = EpisodeTokenizer(image_token_length=4)
    event_tokenizer.prepare_model(tokenizer=tokenizer)
    events = event_dataset_from_mcap(recordings_dir / "0.5.1.mcap")
    one = event_tokenizer.tokenize_event_dataset(events, num_proc=1, batch_size=50)
    two = event_tokenizer.tokenize_event_dataset(events, num_proc=2, batch_size=50)
    assert one.to_dict() == two.to_dict()
    assert one[0]["text"].startswith("<EPISODE_START>") and one[-1]["text"].endswith("<EPISODE_END>")
    assert sum(t.count("<EPISODE_END>") for t in one["text"]) == 1  # batch edges are not episode edges


def test_bad_event_datasets(recordings_dir) -> None:
    tokenizer = tiny_bpe_tokenizer()
    event_tokenizer = EpisodeTokenizer()
    event_tokenizer.prepare_model(tokenizer=tokenizer)
    events = event_dataset_from_mcap(recordings_dir / "0.5.1.mcap").select(range(6))
    with pytest.raises(DatasetError, match="mcap_message"):
        event_tokenizer.tokenize_event_dataset(events.remove_columns(["mcap_message"]))
    interleaved = events.map(lambda row, i: {"episode_path": "a" if i % 2 else "b"}, with_indices=True)
    with pytest.raises(DatasetError, match="not contiguous"):
        event_tokenizer.tokenize_event_dataset(interleaved)
    with_window = event_dataset_from_mcap(recordings_dir / "0.5.1.mcap", topics=("mouse", "window"))
    window_row = with_window["topic"].index("window")
    with pytest.raises(EncodingError, match="window") as info:
        event_tokenizer.tokenize_event_dataset(with_window)
    assert info.value.row == window_row and info.value.path == str(recordings_dir / "0.5.1.mcap")


# ------------------------------------------------------------------------------------------------------------
# decode
# ------------------------------------------------------------------------------------------------------------


def test_decode_round_trips_a_real_episode(qwen, recordings_dir) -> None:
    event_tokenizer, tokenizer = qwen
    events = event_dataset_from_mcap(recordings_dir / "0.5.1.mcap")
    timestamps = np.array(events["timestamp_ns"])
    assert (np.diff(timestamps) < 4_000_000_000).all()  # unwrapping needs gaps under the 4 s period
    out = event_tokenizer.tokenize_event_dataset(events)
    ids = [t for row in out["token_ids"] for t in row] + [tokenizer.pad_token_id] * 5
    refs = [deserialize_screen(r) for row in out["images"] for r in row]
    decoded = event_tokenizer.decode(ids, start_timestamp_ns=int(timestamps[0]), images=refs)

    assert len(decoded) == len(events)
    encoder = event_tokenizer.encoder
    for message, original, path in zip(decoded, events["mcap_message"], events["episode_path"], strict=True):
        original = McapMessage.model_validate_json(original)
        assert message.topic == original.topic and message.message_type == original.message_type
        assert message.timestamp == original.timestamp - original.timestamp % 10_000_000
        text, images = encoder.encode_serialized(original.model_dump_json(), episode_path=path)
        assert orjson.loads(message.message) == orjson.loads(encoder.decode(text, images=images).message)
        if original.topic == "keyboard":
            assert orjson.loads(message.message) == orjson.loads(original.message)


def test_decode_incomplete_generation(qwen) -> None:
    event_tokenizer, _ = qwen
    ids = event_tokenizer.tokenize(KEY_A)["token_ids"]
    cut = ids + ids[:4]  # a generation stopped mid-event
    with pytest.raises(EncodingError, match="Incomplete"):
        event_tokenizer.decode(cut)
    [message] = event_tokenizer.decode(cut, on_error="skip")
    assert message.topic == "keyboard" and message.timestamp == 1_230_000_000
    with pytest.raises(ValueError, match="on_error"):
        event_tokenizer.decode(ids, on_error="ignore")  # type: ignore[arg-type]


def test_relative_episode_paths_resolve_against_episode_root(recordings_dir) -> None:
    tokenizer = tiny_bpe_tokenizer()
    event_tokenizer = EpisodeTokenizer(image_token_length=2)
    event_tokenizer.prepare_model(tokenizer=tokenizer)
    events = event_dataset_from_mcap(recordings_dir / "0.5.1.mcap", episode_path="0.5.1.mcap")
    out = event_tokenizer.tokenize_event_dataset(events, episode_root=recordings_dir)
    assert set(out["episode_path"]) == {"0.5.1.mcap"}  # the stored value is kept
    refs = [deserialize_screen(r) for row in out["images"] for r in row]
    assert len(refs) == 17 and {r.base_dir for r in refs} == {str(recordings_dir)}


def test_fingerprint_tells_episode_roots_and_vocabularies_apart(recordings_dir, tmp_path) -> None:
    """datasets caches map() results by fingerprint: different content must never share one."""
    events = event_dataset_from_mcap(recordings_dir / "0.5.1.mcap", episode_path="0.5.1.mcap")
    event_tokenizer = EpisodeTokenizer(image_token_length=2)
    event_tokenizer.prepare_model(tokenizer=tiny_bpe_tokenizer())
    here = event_tokenizer.tokenize_event_dataset(events, episode_root=recordings_dir)
    there = event_tokenizer.tokenize_event_dataset(events, episode_root=tmp_path)
    assert here["images"] != there["images"]
    assert here._fingerprint != there._fingerprint
    other = EpisodeTokenizer(image_token_length=2)
    other.prepare_model(tokenizer=qwen25_tokenizer())
    assert other.tokenize_event_dataset(events, episode_root=recordings_dir)._fingerprint != here._fingerprint


def test_bench_tokenize_quick_runs() -> None:
    from benchmarks.bench_tokenize import main

    results = main(["--quick"])  # raises if the ids of ours and of both baselines differ
    # Every message the generator wrote was tokenized, each of the 2 episodes got its start token, and the token
    # count is what the ids add up to (the --quick run: 2 episodes, image token repeated 64 times).
    assert results["rows"] == results["tokenized_rows"] == results["messages_written"] > 0
    assert results["episode_starts"] == results["episodes"] == 2
    assert results["tokens"] >= 9 * results["rows"]  # an event is at least 9 tokens (keyboard), screens 70
    assert results["ours_rows_per_s"] > 0 and results["ratio_vs_encode"] > 0


def test_deserialize_screen_rejects_garbage() -> None:
    from owa.data.errors import MessageValidationError

    for text in ("not json", "[1, 2]", '{"media_ref": {"uri": 3}, "base_dir": null}'):
        with pytest.raises(MessageValidationError, match="ScreenCaptured"):
            deserialize_screen(text)
    bare = ScreenCaptured(media_ref=MediaRef(uri="v.mkv"))
    assert serialize_screen(bare) == '{"media_ref":{"uri":"v.mkv"},"base_dir":null}'
    assert serialize_screen(ScreenCaptured()) == '{"base_dir":null}'
    assert deserialize_screen(serialize_screen(ScreenCaptured())).media_ref is None


def test_clamp_counts_come_back_from_worker_processes() -> None:
    rows = [
        McapMessage(
            topic="mouse",
            timestamp=1_000_000_000 + i,
            message=b'{"event_type":"move","x":3000,"y":-5}',
            message_type="desktop/MouseEvent",
        )
        .model_dump_json()
        .encode()
        for i in range(40)
    ]
    events = datasets.Dataset.from_dict(
        {"episode_path": ["/nowhere/a.mcap"] * 40, "mcap_message": rows},
        features=datasets.Features(
            {"episode_path": datasets.Value("string"), "mcap_message": datasets.Value("binary")}
        ),
    )
    counts = []
    for num_proc in (1, 2):
        event_tokenizer = EpisodeTokenizer(image_token_length=2)
        event_tokenizer.prepare_model(tokenizer=tiny_bpe_tokenizer())
        out = event_tokenizer.tokenize_event_dataset(events, num_proc=num_proc, batch_size=10)
        assert out.column_names == ["episode_path", "text", "token_ids", "images", "total_token_count"]
        counts.append(event_tokenizer.encoder.stats.coordinates_clamped)
    assert counts == [80, 80]  # x and y of every move


def _keyboard_row(episode: str, timestamp_ns: int, payload: bytes) -> dict:
    message = McapMessage(
        topic="keyboard", timestamp=timestamp_ns, message=payload, message_type="desktop/KeyboardEvent"
    )
    return {"episode_path": episode, "mcap_message": message.model_dump_json().encode()}


def test_on_error_skip_drops_counts_and_keeps_episode_tokens(caplog: pytest.LogCaptureFixture) -> None:
    good = b'{"event_type":"press","vk":65}'
    no_vk = b'{"event_type":"press"}'
    string_vk = b'{"event_type":"press","vk":"65"}'
    rows = [
        _keyboard_row("a.mcap", 0, no_vk),  # first of episode a: dropped, leaves <EPISODE_START> alone
        _keyboard_row("a.mcap", 1_234_567_890, good),
        _keyboard_row("a.mcap", 1_234_567_890, string_vk),
        _keyboard_row("a.mcap", 1_234_567_890, good),
        _keyboard_row("b.mcap", 1_234_567_890, good),
        _keyboard_row("b.mcap", 1_234_567_890, no_vk),  # last of episode b: leaves <EPISODE_END> alone
    ]
    events = datasets.Dataset.from_dict(
        {k: [r[k] for r in rows] for k in rows[0]},
        features=datasets.Features(
            {"episode_path": datasets.Value("string"), "mcap_message": datasets.Value("binary")}
        ),
    )
    key = "<EVENT_START><TIMESTAMP><1><2><3><KEYBOARD><65><press><EVENT_END>"
    for num_proc, batch_size in ((1, 100), (2, 2)):
        event_tokenizer = EpisodeTokenizer(image_token_length=2)
        event_tokenizer.prepare_model(tokenizer=tiny_bpe_tokenizer())
        with pytest.raises(EncodingError, match="vk") as info:
            event_tokenizer.tokenize_event_dataset(events, num_proc=num_proc, batch_size=batch_size)
        # The encoder names the recording it opened (the row's path resolved); the row names the dataset row.
        assert info.value.row == 0 and info.value.path == os.path.abspath("a.mcap")
        with caplog.at_level("WARNING", logger="owa.data.episode_tokenizer"):
            out = event_tokenizer.tokenize_event_dataset(
                events, num_proc=num_proc, batch_size=batch_size, on_error="skip"
            )
        assert out["text"] == [
            "<EPISODE_START>",
            key,
            key + "<EPISODE_END>",
            "<EPISODE_START>" + key,
            "<EPISODE_END>",
        ]
        assert out["episode_path"] == ["a.mcap"] * 3 + ["b.mcap"] * 2
        assert out.column_names == ["episode_path", "text", "token_ids", "images", "total_token_count"]
        stats = event_tokenizer.last_tokenize_stats
        assert (stats.rows, stats.events_skipped, stats.errors) == (6, 3, {"EncodingError": 3})
        assert "row=5" in stats.last_error and "b.mcap" in stats.last_error
        assert any("skipped 3 of 6 rows" in r.getMessage() for r in caplog.records)
        caplog.clear()
    with pytest.raises(ValueError, match="on_error"):
        event_tokenizer.tokenize_event_dataset(events, on_error="ignore")  # type: ignore[arg-type]


def test_on_error_skip_a_batch_of_only_bad_rows_still_reports_its_count() -> None:
    no_vk = b'{"event_type":"press"}'
    good = b'{"event_type":"press","vk":65}'
    rows = [_keyboard_row("a.mcap", 0, good)] + [_keyboard_row("a.mcap", 0, no_vk)] * 4
    rows += [_keyboard_row("a.mcap", 0, good)]
    events = datasets.Dataset.from_dict(
        {k: [r[k] for r in rows] for k in rows[0]},
        features=datasets.Features(
            {"episode_path": datasets.Value("string"), "mcap_message": datasets.Value("binary")}
        ),
    )
    event_tokenizer = EpisodeTokenizer(image_token_length=2)
    event_tokenizer.prepare_model(tokenizer=tiny_bpe_tokenizer())
    out = event_tokenizer.tokenize_event_dataset(events, num_proc=2, batch_size=2, on_error="skip")
    assert len(out) == 2 and out[0]["text"].startswith("<EPISODE_START>") and out[1]["text"].endswith("<EPISODE_END>")
    assert event_tokenizer.last_tokenize_stats.events_skipped == 4


def test_tokenize_stats_are_counters_and_keep_their_attributes() -> None:
    from owa.data.counters import Counters
    from owa.data.episode_tokenizer import TokenizeStats

    stats = TokenizeStats(rows=6)
    assert isinstance(stats, Counters) and not stats.shared
    stats.add(events_skipped=2, error_counts={"EncodingError": 2}, last_error="row=5")
    assert (stats.rows, stats.events_skipped, stats.errors, stats.last_error) == (6, 2, {"EncodingError": 2}, "row=5")
    assert stats.as_dict() == {
        "rows": 6,
        "events_skipped": 2,
        "errors": {"EncodingError": 2},
        "last_error": "row=5",
    }
