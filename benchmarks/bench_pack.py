"""Benchmark opening a packed dataset (``FSLDataset.load``) of 100M tokens: the goal is under 1 s, O(1) in its size.

    .venv/bin/python -m benchmarks.bench_pack              # 100M tokens (about 0.5 GB on disk under bench-output/)
    .venv/bin/python -m benchmarks.bench_pack --quick      # 200k tokens, exact counts and samples checked
    .venv/bin/python -m benchmarks.bench_pack --tokens 10000000

* **Data**: a tokenized dataset synthesized directly with pyarrow (no tokenizer run): seeded events of 8 to 40
  tokens (mean 24), one image reference every fifth event, 1,000 episodes; packed into 1,024-token samples by
  ``FSLDataset(...).prepare()`` and saved with ``save_packed_dataset`` (cached under ``bench-output/`` by size).
* **Timed**: in a fresh process (imports done first and not counted), ``FSLDataset.load(DIR, load_images=False)``
  for every split, then reading the first and last samples; the process's resident memory (``VmRSS``) before and
  after is the memory it costs. Opened at two sizes (``--tokens`` and a tenth of it) to show it does not grow with
  the size.
* **Baseline, same run**: what a start costs without a saved plan, also in a fresh process:
  ``FSLDataset(load_from_disk(DIR)[split], ...).prepare()`` (reads the columns and plans again).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "bench-output"
GOAL_SECONDS = 1.0
SEQUENCE_LENGTH = 1024
EPISODES = 1_000
IMAGE_EVERY = 5
SEED = 11
QUICK_TOKENS = 200_000
# What --quick must build: the seeded synthesis of 200k tokens, packed into 1,024-token samples.
QUICK_COUNTS = {"tokens": 199_985, "events": 8_308, "images": 1_662, "samples": 198}

# Run in a fresh interpreter: prints one JSON line {"seconds", "rss_mb", "anon_mb", "samples", "tokens"}: the growth
# of resident memory (VmRSS: private memory plus mapped file pages) and of private memory alone (RssAnon).
_OPEN = r"""
import json, sys, time
from owa.data.fsl_dataset import FSLDataset
import datasets

def rss_mb():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["RssAnon"].split()[0]) / 1024

path, how = sys.argv[1], sys.argv[2]
(before, anon_before) = rss_mb()
started = time.perf_counter()
if how == "load":
    splits = FSLDataset.load(path, load_images=False)
    splits = splits if isinstance(splits, dict) else {"data": splits}
else:
    info = json.load(open(f"{path}/packing.json"))
    loaded = datasets.load_from_disk(path)
    splits = {
        name: FSLDataset(loaded[name], pad_token_id=info["pad_token_id"],
                         max_sequence_length=info["max_sequence_length"], load_images=False).prepare()
        for name in info["splits"]
    }
samples = tokens = 0
for fsl in splits.values():
    samples += len(fsl)
    tokens += int(fsl[0]["total_token_count"]) + int(fsl[len(fsl) - 1]["total_token_count"])
seconds = time.perf_counter() - started
after, anon_after = rss_mb()
print(json.dumps({"seconds": seconds, "rss_mb": after - before, "anon_mb": anon_after - anon_before,
                  "samples": samples, "tokens": tokens}))
"""


def synthesize(tokens: int) -> tuple[object, dict[str, int]]:
    """A tokenized dataset (the columns tokenize_event_dataset writes) of about ``tokens`` tokens, and its counts."""
    import datasets
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(SEED)
    counts = rng.integers(8, 41, size=tokens // 24 + 1, dtype=np.int64)
    cut = int(np.searchsorted(np.cumsum(counts), tokens, side="right"))
    counts = counts[:cut]  # the whole events that fit in `tokens`
    n = len(counts)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    values = rng.integers(0, 150_000, size=int(offsets[-1]), dtype=np.int32)
    has_image = np.arange(n) % IMAGE_EVERY == 0
    image_offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(has_image, out=image_offsets[1:])
    episode = np.arange(n) * EPISODES // max(n, 1)
    paths = pa.array([f"/data/recordings/episode_{e:05d}.mcap" for e in range(EPISODES)]).take(pa.array(episode))
    refs = pa.array(
        [
            # what serialize_screen writes
            f'{{"utc_ns":{i},"shape":[1280,720],"media_ref":{{"uri":"episode.mkv","pts_ns":{i * 50_000_000}}},'
            '"base_dir":"/data/r"}'
            for i in np.flatnonzero(has_image).tolist()
        ],
        type=pa.string(),
    )
    table = pa.table(
        {
            "episode_path": paths,
            "text": pa.array([""] * n, type=pa.string()),
            "token_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values)),
            "images": pa.ListArray.from_arrays(pa.array(image_offsets), refs),
            "total_token_count": pa.array(counts),
        }
    )
    list_type = getattr(datasets, "List", datasets.Sequence)
    features = datasets.Features(
        {
            "episode_path": datasets.Value("string"),
            "text": datasets.Value("string"),
            "token_ids": list_type(datasets.Value("int32")),
            "images": list_type(datasets.Value("string")),
            "total_token_count": datasets.Value("int64"),
        }
    )
    dataset = datasets.Dataset(table.cast(features.arrow_schema), split=datasets.NamedSplit("train"))
    return dataset, {"events": n, "tokens": int(offsets[-1]), "images": int(has_image.sum())}


def build(tokens: int, folder: Path) -> dict[str, int]:
    """Synthesize, pack and save (once per size); the expected counts."""
    import numpy as np

    from owa.data.episode_tokenizer import EpisodeTokenizer
    from owa.data.fsl_dataset import FSLDataset
    from owa.data.packed import save_packed_dataset
    from owa.data.packing import plan_packing
    from owa.data.testing import tiny_bpe_tokenizer

    stamp = folder / "bench-counts.json"
    if stamp.is_file():
        return json.loads(stamp.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    dataset, counts = synthesize(tokens)
    fsl = FSLDataset(dataset, pad_token_id=0, max_sequence_length=SEQUENCE_LENGTH, load_images=False).prepare()
    token_counts = dataset.data.column("total_token_count").to_numpy()
    expected = plan_packing(token_counts, max_sequence_length=SEQUENCE_LENGTH)
    assert np.array_equal(fsl.plan.event_offsets, expected.event_offsets)
    counts["samples"] = len(expected)
    episode_tokenizer = EpisodeTokenizer()  # recorded in the metadata; the synthetic ids are not its own
    episode_tokenizer.prepare_model(tokenizer=tiny_bpe_tokenizer())
    save_packed_dataset({"train": fsl}, folder, episode_tokenizer=episode_tokenizer, created_by="bench_pack")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    counts["bytes"] = size
    stamp.write_text(json.dumps(counts))
    print(
        f"built {folder.name}: {counts['tokens']:,} tokens, {counts['events']:,} events, {counts['samples']:,} "
        f"samples, {size / 1e6:,.0f} MB, in {time.perf_counter() - started:.1f}s"
    )
    return counts


def open_in_fresh_process(folder: Path, how: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", _OPEN, str(folder), how], capture_output=True, text=True, env=env, timeout=3600
    )
    if result.returncode:
        raise RuntimeError(f"opening {folder} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=100_000_000, help="tokens in the large dataset")
    parser.add_argument("--quick", action="store_true", help="200k tokens; exact counts and samples checked")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="where the datasets are kept")
    args = parser.parse_args(argv)
    tokens = QUICK_TOKENS if args.quick else args.tokens
    free = shutil.disk_usage(args.output if args.output.exists() else args.output.parent).free
    if tokens * 6 > free:  # about 5 bytes per token on disk, with room to spare
        raise SystemExit(f"Not enough disk for {tokens:,} tokens ({free / 1e9:.1f} GB free); pass a smaller --tokens")

    results: dict[str, float] = {}
    rows = []
    for size in (tokens // 10, tokens):
        folder = args.output / f"packed-{size}"
        counts = build(size, folder)
        opened = open_in_fresh_process(folder, "load")
        baseline = open_in_fresh_process(folder, "prepare")
        assert opened["samples"] == baseline["samples"] == counts["samples"], (opened, baseline, counts)
        assert opened["tokens"] == baseline["tokens"]
        rows.append((size, counts, opened, baseline))
        results[f"load_s_{size}"] = opened["seconds"]
        results[f"prepare_s_{size}"] = baseline["seconds"]
        results[f"load_rss_mb_{size}"] = opened["rss_mb"]
        results.update({f"{key}_{size}": counts[key] for key in ("tokens", "events", "images", "samples")})

    print("\nRSS +: growth of resident memory (private + mapped file pages); private +: of private memory alone")
    header = f"{'tokens':>13} {'samples':>10} {'on disk':>9} | {'load':>8} {'RSS +':>7} {'private +':>9} |"
    print(f"{header} {'prepare':>8} {'RSS +':>7} {'private +':>9}")
    for _size, counts, opened, baseline in rows:
        print(
            f"{counts['tokens']:>13,} {counts['samples']:>10,} {counts['bytes'] / 1e6:>7,.0f}MB | "
            f"{opened['seconds']:>7.3f}s {opened['rss_mb']:>5.0f}MB {opened['anon_mb']:>7.0f}MB | "
            f"{baseline['seconds']:>7.3f}s {baseline['rss_mb']:>5.0f}MB {baseline['anon_mb']:>7.0f}MB"
        )
    small, large = rows[0][2]["seconds"], rows[1][2]["seconds"]
    print(
        f"load at {tokens:,} tokens: {large:.3f}s (goal < {GOAL_SECONDS:.0f}s); 10x the size took {large / small:.1f}x "
        f"the time; a start with prepare() instead: {rows[1][3]['seconds']:.3f}s"
    )

    assert large < GOAL_SECONDS or not args.quick, f"opening took {large:.3f}s, over the {GOAL_SECONDS}s goal"
    if args.quick:
        counts = rows[1][1]
        assert {key: counts[key] for key in QUICK_COUNTS} == QUICK_COUNTS, counts
        check_quick(args.output / f"packed-{tokens}")
    return results


def check_quick(folder: Path) -> None:
    """Every sample of the saved dataset equals what prepare() gives on its tokenized dataset."""
    import datasets
    import numpy as np

    from owa.data.fsl_dataset import FSLDataset

    loaded = FSLDataset.load(folder, load_images=False)["train"]
    tokenized = datasets.load_from_disk(str(folder))["train"]
    expected = FSLDataset(tokenized, pad_token_id=0, max_sequence_length=SEQUENCE_LENGTH, load_images=False).prepare()
    assert len(loaded) == len(expected)
    for index in range(len(expected)):
        got, want = loaded[index], expected[index]
        assert np.array_equal(got["token_ids"], want["token_ids"]), index
        assert np.array_equal(got["attention_mask"], want["attention_mask"]), index
        assert got["images"] == want["images"], index
    print(f"quick: all {len(expected):,} samples equal prepare()'s")


if __name__ == "__main__":
    main()
