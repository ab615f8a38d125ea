"""FSLDataset on hand-written token lists (exact ids, masks, positions) and on a tokenized real recording."""

from __future__ import annotations

import logging
import re

import datasets
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from owa.data.episode_tokenizer import EpisodeTokenizer
from owa.data.errors import DatasetError, PackingError, VideoNotFoundError
from owa.data.fsl_dataset import FSLDataset, FSLDatasetConfig
from owa.data.messages import MediaRef, ScreenCaptured, serialize_screen

IMAGE = 99  # the image token id of the hand-written datasets


def screen_ref(pts_ms: int, base_dir: str = "/data/ep") -> str:
    screen = ScreenCaptured(utc_ns=pts_ms, shape=(4, 2), media_ref=MediaRef(uri="v.mkv", pts_ns=pts_ms * 1_000_000))
    return serialize_screen(screen.with_base_dir(base_dir))


def tokenized(events: list[list[int]], episodes: list[str], images: list[list[str]] | None = None) -> datasets.Dataset:
    """A dataset shaped like EpisodeTokenizer.tokenize_event_dataset's output."""
    images = images if images is not None else [[] for _ in events]
    return datasets.Dataset.from_dict(
        {
            "episode_path": episodes,
            "text": ["" for _ in events],
            "token_ids": events,
            "images": images,
            "total_token_count": [len(e) for e in events],
        },
        features=datasets.Features(
            {
                "episode_path": datasets.Value("string"),
                "text": datasets.Value("string"),
                "token_ids": datasets.List(datasets.Value("int32")),
                "images": datasets.List(datasets.Value("string")),
                "total_token_count": datasets.Value("int64"),
            }
        ),
    )


EVENTS = [[1, 2, 3], [4, 5], [6, 7, 8, 9], [10]]
EPISODES = ["a.mcap", "a.mcap", "b.mcap", "b.mcap"]


def test_exact_samples_ids_masks_and_counts() -> None:
    fsl = FSLDataset(tokenized(EVENTS, EPISODES), pad_token_id=0, max_sequence_length=6, log_every=None).prepare()
    assert len(fsl) == 2
    first, second = fsl[0], fsl[1]
    assert first["token_ids"].tolist() == [1, 2, 3, 4, 5, 0]
    assert first["attention_mask"].tolist() == [1, 1, 1, 1, 1, 0]
    assert first["total_token_count"] == 5
    assert first["images"] == []
    assert second["token_ids"].tolist() == [6, 7, 8, 9, 10, 0]
    assert second["attention_mask"].tolist() == [1, 1, 1, 1, 1, 0]
    assert fsl[-1]["token_ids"].tolist() == second["token_ids"].tolist()
    assert fsl[0]["token_ids"].dtype == np.int64


def test_attention_mask_comes_from_lengths_not_from_pad_ids() -> None:
    # The pad id (3) also occurs as a real token: the mask must still cover it.
    fsl = FSLDataset(tokenized([[3, 3], [3]], ["a", "a"]), pad_token_id=3, max_sequence_length=5, log_every=None)
    sample = fsl.prepare()[0]
    assert sample["token_ids"].tolist() == [3, 3, 3, 3, 3]
    assert sample["attention_mask"].tolist() == [1, 1, 1, 0, 0]
    assert sample["total_token_count"] == 3


def test_final_partial_sample_index_errors_and_take() -> None:
    events = [[i] * 2 for i in range(1, 6)]  # five events of 2 tokens
    fsl = FSLDataset(tokenized(events, ["a"] * 5), pad_token_id=0, max_sequence_length=4, log_every=None).prepare()
    assert len(fsl) == 3
    assert fsl[2]["token_ids"].tolist() == [5, 5, 0, 0]
    with pytest.raises(IndexError):
        fsl[3]
    with pytest.raises(IndexError):
        fsl[-4]
    taken = fsl.take(2)
    assert len(taken) == 2
    assert [s["token_ids"].tolist() for s in taken] == [[1, 1, 2, 2], [3, 3, 4, 4]]
    assert len(fsl.take(10)) == 3
    assert [s["total_token_count"] for s in fsl] == [4, 4, 2]


def test_episode_aware_and_position_ids_and_segments() -> None:
    ds = tokenized(EVENTS, EPISODES)
    mixed = FSLDataset(
        ds,
        pad_token_id=0,
        max_sequence_length=12,
        return_position_ids=True,
        return_segment_offsets=True,
        log_every=None,
    ).prepare()
    assert len(mixed) == 1
    sample = mixed[0]
    assert sample["token_ids"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 0]
    assert sample["position_ids"].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 0]
    assert sample["segment_offsets"].tolist() == [0, 5, 10]

    aware = FSLDataset(
        ds, pad_token_id=0, max_sequence_length=12, episode_aware=True, return_position_ids=True, log_every=None
    ).prepare()
    assert len(aware) == 2
    assert aware[0]["token_ids"].tolist() == [1, 2, 3, 4, 5] + [0] * 7
    assert aware[1]["position_ids"].tolist() == [0, 1, 2, 3, 4] + [0] * 7
    assert "segment_offsets" not in aware[0]


def test_images_follow_their_events_in_order() -> None:
    refs = [screen_ref(k) for k in range(4)]
    events = [[7, IMAGE, IMAGE, 8], [5], [7, IMAGE, IMAGE, 8], [7, IMAGE, IMAGE, 8, 7, IMAGE, IMAGE, 8]]
    images = [[refs[0]], [], [refs[1]], [refs[2], refs[3]]]
    fsl = FSLDataset(
        tokenized(events, ["a"] * 4, images), pad_token_id=0, max_sequence_length=9, load_images=False, log_every=None
    ).prepare()
    assert len(fsl) == 2
    first, second = fsl[0], fsl[1]
    assert [img.media_ref.pts_ns for img in first["images"]] == [0, 1_000_000]
    assert [img.media_ref.pts_ns for img in second["images"]] == [2_000_000, 3_000_000]
    assert all(isinstance(img, ScreenCaptured) and img.base_dir == "/data/ep" for img in first["images"])
    for sample in (first, second):
        groups = _image_groups(sample["token_ids"][: sample["total_token_count"]], IMAGE, 2)
        assert groups == len(sample["images"])


def _image_groups(token_ids: np.ndarray, image_id: int, group: int) -> int:
    count = int((np.asarray(token_ids) == image_id).sum())
    assert count % group == 0
    return count // group


def test_getitems_matches_getitem() -> None:
    refs = [screen_ref(k) for k in range(3)]
    events = [[7, IMAGE, 8], [7, IMAGE, 8], [4, 4, 4], [7, IMAGE, 8]]
    fsl = FSLDataset(
        tokenized(events, ["a"] * 4, [[refs[0]], [refs[1]], [], [refs[2]]]),
        pad_token_id=0,
        max_sequence_length=4,
        load_images=False,
        log_every=None,
    ).prepare()
    batch = fsl.__getitems__([3, 0, 2])
    for index, sample in zip([3, 0, 2], batch, strict=True):
        single = fsl[index]
        assert sample["token_ids"].tolist() == single["token_ids"].tolist()
        assert sample["images"] == single["images"]


def test_multichunk_and_selected_datasets_read_in_logical_order() -> None:
    parts = [tokenized([[i, i + 1], [i + 2]], ["a", "a"]) for i in range(0, 60, 3)]
    chunked = datasets.concatenate_datasets(parts)
    assert chunked.data.column("token_ids").num_chunks > 1
    expected = [t for row in chunked["token_ids"] for t in row]
    fsl = FSLDataset(chunked, pad_token_id=0, max_sequence_length=7, log_every=None).prepare()
    got = [t for s in fsl for t in s["token_ids"][: s["total_token_count"]].tolist()]
    assert got == expected

    selected = chunked.select([5, 1, 2, 30, 31, 7])  # an indices mapping: logical order differs from storage
    expected = [t for row in selected["token_ids"] for t in row]
    fsl = FSLDataset(selected, pad_token_id=0, max_sequence_length=3, log_every=None).prepare()
    got = [t for s in fsl for t in s["token_ids"][: s["total_token_count"]].tolist()]
    assert got == expected


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lengths=st.lists(st.integers(1, 9), min_size=1, max_size=40),
    limit=st.integers(9, 30),
    episode_aware=st.booleans(),
)
def test_concatenated_samples_equal_concatenated_events(lengths: list[int], limit: int, episode_aware: bool) -> None:
    rng = np.random.default_rng(len(lengths) * 1000 + limit)
    events = [rng.integers(1, 1000, size=n).tolist() for n in lengths]
    episodes = [f"ep{i // 7}" for i in range(len(events))]
    fsl = FSLDataset(
        tokenized(events, episodes),
        pad_token_id=0,
        max_sequence_length=limit,
        episode_aware=episode_aware,
        log_every=None,
    ).prepare()
    samples = list(fsl)
    real = [t for s in samples for t in s["token_ids"][: s["total_token_count"]].tolist()]
    assert real == [t for e in events for t in e]
    for sample in samples:
        assert len(sample["token_ids"]) == limit
        assert sample["attention_mask"].sum() == sample["total_token_count"]
        assert (sample["token_ids"][sample["total_token_count"] :] == 0).all()


def test_event_longer_than_max_sequence_length_fails_at_prepare() -> None:
    fsl = FSLDataset(tokenized([[1, 2], [3, 4, 5, 6, 7]], ["a.mcap", "b.mcap"]), pad_token_id=0, max_sequence_length=4)
    with pytest.raises(PackingError) as info:
        fsl.prepare()
    assert info.value.row == 1 and info.value.path == "b.mcap"


def test_usage_errors() -> None:
    ds = tokenized(EVENTS, EPISODES)
    fsl = FSLDataset(ds, pad_token_id=0, max_sequence_length=8)
    with pytest.raises(PackingError, match="prepare"):
        len(fsl)
    with pytest.raises(ValueError, match="pad_token_id"):
        FSLDataset(ds, pad_token_id=None, max_sequence_length=8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_sequence_length"):
        FSLDataset(ds, pad_token_id=0, max_sequence_length=0)
    with pytest.raises(ValueError, match="on_image_error"):
        FSLDataset(ds, pad_token_id=0, max_sequence_length=8, on_image_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match="tokenize_event_dataset"):
        FSLDataset(ds.remove_columns(["images"]), pad_token_id=0, max_sequence_length=8).prepare()
    broken = ds.map(lambda row: {"total_token_count": row["total_token_count"] + (row["episode_path"] == "b.mcap")})
    with pytest.raises(DatasetError, match="differs") as info:
        FSLDataset(broken, pad_token_id=0, max_sequence_length=8).prepare()
    assert info.value.row == 2 and info.value.path == "b.mcap"


def test_config_and_keywords_build_the_same_dataset() -> None:
    ds = tokenized(EVENTS, EPISODES)
    options = {"pad_token_id": 0, "max_sequence_length": 6, "episode_aware": True, "return_position_ids": True}
    config = FSLDatasetConfig(**options, log_every=None)
    by_keywords = FSLDataset(ds, **options, log_every=None).prepare()
    by_config = FSLDataset(ds, config=config).prepare()
    positional = FSLDataset(ds, config).prepare()
    assert by_keywords.config == by_config.config == positional.config == config
    assert by_config.max_sequence_length == 6 and by_config.episode_aware and by_config.log_every is None
    for a, b in zip(by_keywords, by_config, strict=True):
        assert a["token_ids"].tolist() == b["token_ids"].tolist()
        assert a["position_ids"].tolist() == b["position_ids"].tolist()
    assert [s["token_ids"].tolist() for s in by_config] == [[1, 2, 3, 4, 5, 0], [6, 7, 8, 9, 10, 0]]
    # Keywords override the config's fields (documented rule), and the override is validated like the config.
    longer = FSLDataset(ds, config, max_sequence_length=12, episode_aware=False).prepare()
    assert longer.config == FSLDatasetConfig(
        pad_token_id=0, max_sequence_length=12, return_position_ids=True, log_every=None
    )
    assert len(longer) == 1 and longer[0]["total_token_count"] == 10
    with pytest.raises(ValueError, match="max_sequence_length"):
        FSLDataset(ds, config, max_sequence_length=0)
    assert FSLDatasetConfig(pad_token_id=np.int64(3), max_sequence_length=np.int32(8), log_every=0) == FSLDatasetConfig(
        pad_token_id=3, max_sequence_length=8, log_every=None
    )


@pytest.mark.parametrize("length", [True, False, 0, -1, 8.0, "8", None])
def test_max_sequence_length_must_be_a_positive_integer(length: object) -> None:
    with pytest.raises(ValueError, match=r"Invalid max_sequence_length .*positive integer"):
        FSLDataset(tokenized(EVENTS, EPISODES), pad_token_id=0, max_sequence_length=length)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_sequence_length"):
        FSLDatasetConfig(pad_token_id=0, max_sequence_length=length)  # type: ignore[arg-type]


def test_config_usage_errors() -> None:
    ds = tokenized(EVENTS, EPISODES)
    with pytest.raises(ValueError, match="pad_token_id"):
        FSLDataset(ds, pad_token_id=True, max_sequence_length=8)
    with pytest.raises(ValueError, match="log_every"):
        FSLDatasetConfig(pad_token_id=0, max_sequence_length=8, log_every=-1)
    with pytest.raises(TypeError, match=r"Unknown FSLDataset option\(s\): max_seq_len\. Allowed: pad_token_id, "):
        FSLDataset(ds, pad_token_id=0, max_seq_len=8)
    with pytest.raises(TypeError, match="max_sequence_length"):
        FSLDataset(ds, pad_token_id=0)
    with pytest.raises(TypeError, match="FSLDatasetConfig"):
        FSLDataset(ds, {"pad_token_id": 0, "max_sequence_length": 8})  # type: ignore[arg-type]


LOG_LINE = re.compile(
    r"^FSL\[(\d+)\] \| Total: [\d.]+s/s, [\d,]+t/s, [\d.]+i/s, [\d.]+MB/s \| EMA: [\d.]+s/s, [\d,]+t/s, [\d.]+i/s, "
    r"[\d.]+MB/s$"
)


def test_throughput_is_logged_every_n_samples(caplog: pytest.LogCaptureFixture) -> None:
    events = [[i] for i in range(1, 11)]
    fsl = FSLDataset(tokenized(events, ["a"] * 10), pad_token_id=0, max_sequence_length=1, log_every=3).prepare()
    with caplog.at_level(logging.INFO, logger="owa.data.fsl_dataset"):
        for _ in fsl.take(7):
            pass
    lines = [r.getMessage() for r in caplog.records if r.name == "owa.data.fsl_dataset"]
    assert [LOG_LINE.match(line).group(1) for line in lines] == ["3", "6"]  # type: ignore[union-attr]


def test_throughput_logging_off_and_off_rank(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    events = [[i] for i in range(1, 11)]
    off = FSLDataset(tokenized(events, ["a"] * 10), pad_token_id=0, max_sequence_length=1, log_every=None).prepare()
    monkeypatch.setenv("RANK", "1")
    other_rank = FSLDataset(tokenized(events, ["a"] * 10), pad_token_id=0, max_sequence_length=1, log_every=2)
    other_rank.prepare()
    with caplog.at_level(logging.INFO, logger="owa.data.fsl_dataset"):
        list(off)
        list(other_rank)
    assert not [r for r in caplog.records if r.name == "owa.data.fsl_dataset" and r.levelno >= logging.INFO]


# ------------------------------------------------------------------------------------------------------------
# A tokenized real recording
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_tokenized(recordings_dir):
    from owa.data.testing import event_dataset_from_mcap, tiny_bpe_tokenizer

    tokenizer = tiny_bpe_tokenizer()
    event_tokenizer = EpisodeTokenizer(image_token_length=8)
    event_tokenizer.prepare_model(tokenizer=tokenizer)
    events = datasets.concatenate_datasets(
        [
            event_dataset_from_mcap(recordings_dir / "0.5.1.mcap"),
            event_dataset_from_mcap(recordings_dir / "0.5.1.mcap", episode_path=str(recordings_dir / "again.mcap")),
        ]
    )
    return event_tokenizer, tokenizer, event_tokenizer.tokenize_event_dataset(events)


@pytest.mark.parametrize("episode_aware", [False, True])
def test_real_recording_packs_every_event_once(real_tokenized, episode_aware: bool) -> None:
    event_tokenizer, tokenizer, ds = real_tokenized
    fsl = FSLDataset(
        ds,
        pad_token_id=tokenizer.pad_token_id,
        max_sequence_length=256,
        load_images=False,
        episode_aware=episode_aware,
        log_every=None,
    ).prepare()
    samples = list(fsl)
    real = [t for s in samples for t in s["token_ids"][: s["total_token_count"]].tolist()]
    assert real == [t for row in ds["token_ids"] for t in row]
    refs = [img for s in samples for img in s["images"]]
    assert len(refs) == sum(len(row) for row in ds["images"]) == 34  # 17 screens per copy
    image_id = event_tokenizer.image_token_id
    for sample in samples:
        groups = _image_groups(sample["token_ids"][: sample["total_token_count"]], image_id, 8)
        assert groups == len(sample["images"])
    if episode_aware:
        start = event_tokenizer.token_id("<EPISODE_START>")
        # The second episode starts a sample.
        assert sum(s["token_ids"][0] == start for s in samples) == 2


def test_real_recording_images_decode_in_order(real_tokenized) -> None:
    from PIL import Image

    from owa.data.frames import decode_screens
    from owa.data.messages import deserialize_screen

    _, _, ds = real_tokenized
    first_episode = ds.select(range(len(ds) // 2))
    lazy = FSLDataset(first_episode, pad_token_id=0, max_sequence_length=256, load_images=False, log_every=None)
    loaded = FSLDataset(first_episode, pad_token_id=0, max_sequence_length=256, log_every=None)
    lazy.prepare(), loaded.prepare()
    refs = [deserialize_screen(r) for row in first_episode["images"] for r in row]
    expected = decode_screens(refs)
    got = [image for sample in loaded for image in sample["images"]]
    assert len(got) == len(expected) == 17
    assert all(isinstance(image, Image.Image) and image.mode == "RGB" for image in got)
    for image, frame in zip(got, expected, strict=True):
        assert np.array_equal(np.asarray(image), frame)
    assert [s.media_ref for sample in lazy for s in sample["images"]] == [s.media_ref for s in refs]


def test_missing_video_raises_or_is_skipped_and_counted(tmp_path) -> None:
    from owa.data.errors import VideoNotFoundError

    refs = [screen_ref(0, base_dir=str(tmp_path)), screen_ref(50, base_dir=str(tmp_path))]
    ds = tokenized([[7, IMAGE, 8], [7, IMAGE, 8]], ["a", "a"], [[refs[0]], [refs[1]]])
    with pytest.raises(VideoNotFoundError, match=r"v\.mkv"):
        FSLDataset(ds, pad_token_id=0, max_sequence_length=8, log_every=None).prepare()[0]
    skipping = FSLDataset(ds, pad_token_id=0, max_sequence_length=8, on_image_error="skip", log_every=None).prepare()
    assert skipping[0]["images"] == [None, None]  # still one entry per image
    assert skipping.image_stats.images_skipped == 2


def test_bench_fsl_quick_runs() -> None:
    from benchmarks.bench_fsl import main

    results = main(["--quick"])  # raises if the row-by-row baseline read other tokens or images than ours
    for part in ("text", "images"):  # reading every sample gives back every event's tokens and images
        assert results[f"{part}_packed_events"] == results[f"{part}_events"] > 0
        assert results[f"{part}_tokens"] == results[f"{part}_expected_tokens"] > 0
        assert results[f"{part}_images"] == results[f"{part}_expected_images"] > 0
        assert results[f"{part}_samples"] >= results[f"{part}_min_samples"]
    assert results["text_samples_per_s"] > 0 and results["images_images_per_s"] > 0
    assert results["images_mb_per_s"] > 0  # frames were decoded with load_images=True


# ------------------------------------------------------------------------------------------------------------
# The spec's snippets, as written (a local tokenizer folder and dataset folder in place of the hub name and paths)
# ------------------------------------------------------------------------------------------------------------

QUICK_START_STEP_4 = """
from datasets import load_from_disk
from transformers import AutoTokenizer
from owa.data.episode_tokenizer import EpisodeTokenizer
from owa.data.fsl_dataset import FSLDataset, FSLDatasetConfig

event_dataset = load_from_disk('$EVENT_DATASET_DIR')
tokenizer = AutoTokenizer.from_pretrained('HuggingFaceTB/SmolVLM2-2.2B-Base')
event_tokenizer = EpisodeTokenizer(image_token='<image>')
event_tokenizer.prepare_model(tokenizer=tokenizer)

for split, ds in event_dataset.items():
    event_dataset[split] = event_tokenizer.tokenize_event_dataset(ds)

fsl_dataset = FSLDataset(event_dataset['train'], pad_token_id=tokenizer.pad_token_id, max_sequence_length=1024)
fsl_dataset.prepare()

for sample in fsl_dataset.take(1):
    print(f'{sample=}')
"""

COMPLETE_EXAMPLE = """
from datasets import load_from_disk
from tqdm import tqdm
from transformers import AutoTokenizer

from owa.data.episode_tokenizer import EpisodeTokenizer
from owa.data.fsl_dataset import FSLDataset, FSLDatasetConfig

# Load event dataset
event_dataset = load_from_disk("/mnt/raid12/datasets/owa/data/super-hexagon-event")
tokenizer = AutoTokenizer.from_pretrained("HuggingFaceTB/SmolVLM2-2.2B-Base")

print("[!] Printing raw event dataset...")
for sample in event_dataset["train"].take(5):
    print(f"{sample=}")

event_tokenizer = EpisodeTokenizer(image_token="<image>")
event_tokenizer.prepare_model(tokenizer=tokenizer)

for split, dataset in event_dataset.items():
    tokenized = event_tokenizer.tokenize_event_dataset(dataset)
    event_dataset[split] = tokenized

print("[!] Printing tokenized event dataset...")
for sample in event_dataset["train"].take(5):
    print(f"{sample=}")


dataset = FSLDataset(event_dataset["train"], pad_token_id=tokenizer.pad_token_id, max_sequence_length=1024)
dataset.prepare()

print("[!] Printing FSL dataset...")
for sample in dataset.take(1):
    print(f"{sample=}")

for sample in tqdm(dataset.take(30)):
    ...
"""


@pytest.fixture(scope="module")
def spec_folders(recordings_dir, tmp_path_factory):
    """A saved Event DatasetDict (real recording) and a saved local Qwen2.5 tokenizer folder."""
    from owa.data.testing import event_dataset_from_mcap, qwen25_tokenizer

    root = tmp_path_factory.mktemp("spec")
    events = datasets.DatasetDict(
        {
            "train": event_dataset_from_mcap(recordings_dir / "0.5.1.mcap"),
            "test": event_dataset_from_mcap(recordings_dir / "0.5.1.mcap").select(range(40)),
        }
    )
    events.save_to_disk(root / "event")
    qwen25_tokenizer().save_pretrained(root / "tokenizer")
    return root / "event", root / "tokenizer"


def test_spec_quick_start_step_4_runs_as_written(spec_folders) -> None:
    import subprocess
    import sys

    event_dir, tokenizer_dir = spec_folders
    code = QUICK_START_STEP_4.replace("$EVENT_DATASET_DIR", str(event_dir)).replace(
        "HuggingFaceTB/SmolVLM2-2.2B-Base", str(tokenizer_dir)
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("sample={'token_ids': array([")
    assert "'attention_mask': array([1, 1," in done.stdout and "'total_token_count': " in done.stdout
    assert "'images': [<PIL.Image.Image image mode=RGB size=" in done.stdout


def test_spec_complete_example_runs_as_written(spec_folders, capsys: pytest.CaptureFixture[str]) -> None:
    event_dir, tokenizer_dir = spec_folders
    code = COMPLETE_EXAMPLE.replace("/mnt/raid12/datasets/owa/data/super-hexagon-event", str(event_dir)).replace(
        "HuggingFaceTB/SmolVLM2-2.2B-Base", str(tokenizer_dir)
    )
    exec(compile(code, "complete_example", "exec"), {})
    out = capsys.readouterr().out
    assert out.count("sample={'episode_path': ") == 10  # raw rows, then tokenized rows
    assert "'token_ids': [" in out and "[!] Printing FSL dataset..." in out
    assert out.rstrip().endswith("}") and "'images': [<PIL.Image.Image image mode=RGB" in out


def test_stage_one_output_of_every_recording_end_to_end(recordings_dir, caplog: pytest.LogCaptureFixture) -> None:
    """Stage 1 over every real recording (all recorder versions, one without its video) → tokens → samples."""
    from owa.data.events import EventDatasetConfig, build_event_dataset
    from owa.data.testing import tiny_bpe_tokenizer

    event_dataset = build_event_dataset(EventDatasetConfig(train_dir=recordings_dir, test_percent=0.0, num_workers=1))
    tokenizer = tiny_bpe_tokenizer()
    event_tokenizer = EpisodeTokenizer(image_token="<image>", image_token_length=4)
    event_tokenizer.prepare_model(tokenizer=tokenizer)
    for split, ds in event_dataset.items():
        event_dataset[split] = event_tokenizer.tokenize_event_dataset(ds)
    assert len(event_dataset["test"]) == 0  # an empty split tokenizes to an empty dataset
    assert len(FSLDataset(event_dataset["test"], pad_token_id=0, max_sequence_length=64).prepare()) == 0

    train = event_dataset["train"]
    texts = train["text"]
    assert sum(t.startswith("<EPISODE_START>") for t in texts) == sum(t.endswith("<EPISODE_END>") for t in texts) == 4
    for text, ids in zip(texts, train["token_ids"], strict=True):
        assert ids == tokenizer.encode(text, add_special_tokens=False)

    fsl = FSLDataset(
        train,
        pad_token_id=tokenizer.pad_token_id,
        max_sequence_length=256,
        episode_aware=True,
        on_image_error="skip",
        log_every=None,
    ).prepare()
    with caplog.at_level(logging.WARNING):
        samples = list(fsl)
    images = [(sample["token_ids"][0], image) for sample in samples for image in sample["images"]]
    screens = sum(len(row) for row in train["images"])
    assert len(images) == screens
    missing = [image for _, image in images if image is None]
    assert fsl.image_stats.images_skipped == len(missing) > 0  # ztype-no-video's frames, counted
    assert fsl.image_stats.errors == {"VideoNotFoundError": len(missing)}
    assert "example.mkv" in fsl.image_stats.last_error
    assert all(image.mode == "RGB" for _, image in images if image is not None)

    # DataLoader workers count into the same stats.
    from torch.utils.data import DataLoader

    in_workers = FSLDataset(
        train, pad_token_id=tokenizer.pad_token_id, max_sequence_length=256, on_image_error="skip", log_every=None
    ).prepare()
    for _ in DataLoader(in_workers, batch_size=4, num_workers=2, collate_fn=list):
        pass
    assert in_workers.image_stats.images_skipped == len(missing)
    assert in_workers.image_stats.images_decoded == screens - len(missing)

    # In raise mode the error names the sample, the event row and the episode.
    raising = FSLDataset(train, pad_token_id=tokenizer.pad_token_id, max_sequence_length=256, log_every=None).prepare()
    bad_sample = next(i for i, sample in enumerate(samples) if any(image is None for image in sample["images"]))
    with pytest.raises(VideoNotFoundError) as info:
        raising[bad_sample]
    context = info.value.context
    assert context["sample"] == bad_sample and context["episode"].endswith("ztype-no-video.mcap")
    assert train[info.value.row]["episode_path"] == context["episode"] and "example.mkv" in str(info.value)


def test_missing_values_are_named() -> None:
    ds = tokenized(EVENTS, EPISODES)
    holes = ds.cast_column("token_ids", datasets.List(datasets.Value("int64"))).map(
        lambda row, i: {"token_ids": None if i == 2 else row["token_ids"]}, with_indices=True
    )
    with pytest.raises(DatasetError, match="'token_ids' has missing values") as info:
        FSLDataset(holes, pad_token_id=0, max_sequence_length=8).prepare()
    assert info.value.row == 2
