"""Benchmark stage 2 (Event Dataset → Binned Dataset) against the upstream approach, in the same run.

    .venv/bin/python -m benchmarks.bench_binning            # about a minute or two on 2 cores
    .venv/bin/python -m benchmarks.bench_binning --quick    # tiny smoke run

A synthetic Event Dataset with realistic per-episode volumes (a few seconds each; ~60 mouse/s, ~20 screen/s,
~4 keyboard/s, one window event) is built directly as an Arrow table and saved with ``save_to_disk``.

* **Ours**: ``build_binned_dataset(load_from_disk(input), output_dir=...)`` end to end (load, bin, atomic
  write, reload) at N and 3N episodes: events/s at each size, and time(3N)/time(N), which must be ≤ 4.
* **Upstream approach**: for each episode, ``Dataset.filter`` over the whole split, read the rows one by
  one, bin them in Python; ``Dataset.from_list`` at the end. Each episode costs about the same (one full
  scan), so its time at N is measured on a few sampled episodes *of the same N-episode dataset* and
  multiplied by N, plus the measured ``from_list`` of all their bins scaled the same way.

The goal: ≥ 100× the 301 events/s upstream reached at 1,200 episodes on this machine (≥ 30,100 events/s).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

UPSTREAM_REPORTED_EVENTS_PER_S = 301.0
GOAL_EVENTS_PER_S = 100 * UPSTREAM_REPORTED_EVENTS_PER_S
T0_NS = 1_700_000_000_000_000_000

# topic -> (events per second, message type, payload template parts)
_RATES_HZ = {"mouse": 60.0, "screen": 20.0, "keyboard": 4.0}


def _join(*parts: Any) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _text(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def synthesize(n_episodes: int, *, seed: int = 0, sorted_rows: bool = True) -> pa.Table:
    """An Event Dataset table: ``n_episodes`` episodes of 3-8 s, rows grouped by episode in time order."""
    rng = np.random.default_rng(seed)
    duration_ns = rng.uniform(3e9, 8e9, n_episodes).astype(np.int64)
    start_ns = T0_NS + np.concatenate(([0], np.cumsum(duration_ns + 10**9)[:-1]))
    episode_names = pa.array(
        [f"/data/recordings/session-{i // 100:03d}/episode-{i:05d}.mcap" for i in range(n_episodes)]
    )
    parts = []
    for topic, rate in _RATES_HZ.items():
        counts = rng.poisson(rate * duration_ns / 1e9)
        episode = np.repeat(np.arange(n_episodes), counts)
        ts = start_ns[episode] + (rng.random(len(episode)) * duration_ns[episode]).astype(np.int64)
        ts_text = _text(ts)
        if topic == "mouse":
            x, y = _text(rng.integers(0, 1920, len(ts))), _text(rng.integers(0, 1080, len(ts)))
            payload = _join('{\\"event_type\\":\\"move\\",\\"x\\":', x, ',\\"y\\":', y, "}")
            message_type = "desktop/MouseEvent"
        elif topic == "screen":
            pts = _text(ts - start_ns[episode])
            payload = _join(
                '{\\"utc_ns\\":',
                ts_text,
                ',\\"source_shape\\":[1920,1080],\\"shape\\":[1920,1080],'
                '\\"media_ref\\":{\\"uri\\":\\"episode.mkv\\",\\"pts_ns\\":',
                pts,
                "}}",
            )
            message_type = "desktop/ScreenCaptured"
        else:
            kind = np.where(rng.random(len(ts)) < 0.5, "press", "release")
            payload = _join(
                '{\\"event_type\\":\\"', pa.array(kind), '\\",\\"vk\\":', _text(rng.integers(8, 255, len(ts))), "}"
            )
            message_type = "desktop/KeyboardEvent"
        message = _join(
            f'{{"topic":"{topic}","timestamp":',
            ts_text,
            ',"message":"',
            payload,
            f'","message_type":"{message_type}"}}',
        )
        parts.append((episode, ts, topic, message_type, message))
    window_episode = np.arange(n_episodes)
    window_message = _join(
        '{"topic":"window","timestamp":',
        _text(start_ns),
        ',"message":"{\\"title\\":\\"Game\\",\\"rect\\":[0,0,1920,1080],\\"hWnd\\":1}",'
        '"message_type":"desktop/WindowInfo"}',
    )
    parts.append((window_episode, start_ns, "window", "desktop/WindowInfo", window_message))

    episode = np.concatenate([p[0] for p in parts])
    ts = np.concatenate([p[1] for p in parts])
    topic = pa.concat_arrays([pa.array([p[2]] * len(p[0]), pa.string()) for p in parts])
    message_type = pa.concat_arrays([pa.array([p[3]] * len(p[0]), pa.string()) for p in parts])
    message = pa.concat_arrays([p[4].cast(pa.binary()) for p in parts])
    order = np.lexsort((ts, episode)) if sorted_rows else rng.permutation(len(ts))
    take = pa.array(order)
    return pa.table(
        {
            "episode_path": episode_names.take(pa.array(episode[order])),
            "topic": topic.take(take),
            "timestamp_ns": pa.array(ts[order], pa.int64()),
            "message_type": message_type.take(take),
            "mcap_message": message.take(take),
        }
    )


def _save(table: pa.Table, path: Path) -> None:
    import datasets

    from owa.data.events import event_features

    datasets.Dataset(table.cast(event_features().arrow_schema)).save_to_disk(str(path))


def time_ours(input_dir: Path, output_dir: Path) -> tuple[float, float, dict[str, int]]:
    """Wall and CPU seconds of one end-to-end run: load, bin (10 fps, filter empty), atomic write, reload.

    Also the output's ``episodes`` (distinct paths) and ``actions`` (action events over all bins), counted untimed.
    """
    import datasets

    from owa.data.binning import BinningConfig, build_binned_dataset

    wall, cpu = time.perf_counter(), time.process_time()
    binned = build_binned_dataset(
        datasets.load_from_disk(str(input_dir)),
        BinningConfig(fps=10, filter_empty_actions=True),
        output_dir=output_dir,
        overwrite=True,
    )
    elapsed = time.perf_counter() - wall, time.process_time() - cpu
    table = binned.select_columns(["episode_path", "actions"]).with_format("arrow")[:]
    counts = {
        "episodes": len(pc.unique(table.column("episode_path"))),
        "actions": pc.sum(pc.list_value_length(table.column("actions"))).as_py() or 0,
    }
    return *elapsed, counts


# --------------------------------------------------------------------------------------------------
# The upstream approach (filter the whole split once per episode), reimplemented for the baseline
# --------------------------------------------------------------------------------------------------


def _upstream_bins(events: list[dict], fps: float, filter_empty_actions: bool) -> list[dict]:
    events.sort(key=lambda e: e["timestamp_ns"])
    width_ns = int(1e9 / fps)
    bin_start, last_ns = events[0]["timestamp_ns"], events[-1]["timestamp_ns"]
    bins, bin_idx, i, last_screen = [], 0, 0, None
    while bin_start <= last_ns:
        bin_end, actions = bin_start + width_ns, []
        while i < len(events) and events[i]["timestamp_ns"] < bin_end:
            if events[i]["topic"] == "screen":
                last_screen = events[i]
            elif events[i]["topic"] in ("keyboard", "mouse"):
                actions.append(events[i]["mcap_message"])
            i += 1
        if actions or not filter_empty_actions:
            bins.append(
                {
                    "episode_path": events[0]["episode_path"],
                    "bin_idx": bin_idx,
                    "timestamp_ns": bin_start,
                    "state": [last_screen["mcap_message"]] if last_screen else [],
                    "actions": actions,
                }
            )
        bin_idx, bin_start = bin_idx + 1, bin_end
    return bins


def time_upstream(input_dir: Path, sample_episodes: int) -> tuple[float, int, int]:
    """Seconds per episode of the upstream approach on the full saved split; and episodes, events counted."""
    import datasets

    from owa.data.binning import binned_features

    dataset = datasets.load_from_disk(str(input_dir))
    paths = sorted(set(dataset["episode_path"]))
    picked = [paths[i] for i in np.linspace(0, len(paths) - 1, sample_episodes).round().astype(int)]
    bins: list[dict] = []
    started = time.perf_counter()
    for path in picked:
        episode = dataset.filter(lambda row, path=path: row["episode_path"] == path)
        events = [episode[i] for i in range(len(episode))]
        bins.extend(_upstream_bins(events, 10, True))
    datasets.Dataset.from_list(bins, features=binned_features())
    per_episode = (time.perf_counter() - started) / len(picked)
    return per_episode, len(paths), len(dataset)


def _output_counts(
    sizes: dict[str, tuple[int, bool]], actions: dict[str, int], output: dict[str, dict[str, int]]
) -> dict[str, float]:
    """Exact counts for the smoke test, per size (``n``, ``3n``, ``n_unsorted``): episodes and action events in the
    input, and in the binned output (which must hold every episode and every action)."""
    counts: dict[str, float] = {}
    for label, (episodes, _) in sizes.items():
        key = label.lower().replace(" ", "_")
        counts[f"episodes_{key}"] = episodes
        counts[f"binned_episodes_{key}"] = output[label]["episodes"]
        counts[f"actions_{key}"] = actions[label]
        counts[f"binned_actions_{key}"] = output[label]["actions"]
    return counts


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run that checks nothing")
    parser.add_argument("--episodes", type=int, default=None, help="N (default 1200; 12 with --quick)")
    parser.add_argument("--baseline-episodes", type=int, default=None, help="episodes timed for the upstream way")
    args = parser.parse_args(argv)
    n = args.episodes or (12 if args.quick else 1200)
    sample = args.baseline_episodes or (1 if args.quick else 3)
    repeats = 1 if args.quick else 3

    import datasets

    datasets.disable_progress_bars()
    work = Path(tempfile.mkdtemp(prefix="bench-binning-"))
    results: dict[str, float] = {}
    try:
        sizes = {"N": (n, True), "3N": (3 * n, True), "N unsorted": (n, False)}
        rows: dict[str, int] = {}
        actions: dict[str, int] = {}  # keyboard and mouse rows: every one must land in exactly one bin
        output: dict[str, dict[str, int]] = {}
        for label, (episodes, sorted_rows) in sizes.items():
            table = synthesize(episodes, seed=episodes, sorted_rows=sorted_rows)
            _save(table, work / label.replace(" ", "-"))
            rows[label] = table.num_rows
            actions[label] = pc.sum(pc.is_in(table.column("topic"), pa.array(["keyboard", "mouse"]))).as_py()
            del table
        # Interleave the repeats so every size sees the same background load; keep the best of each.
        wall = dict.fromkeys(sizes, float("inf"))
        cpu = dict.fromkeys(sizes, float("inf"))
        for _ in range(repeats):
            for label in sizes:
                run_wall, run_cpu, output[label] = time_ours(work / label.replace(" ", "-"), work / "binned")
                wall[label], cpu[label] = min(wall[label], run_wall), min(cpu[label], run_cpu)
        for label, (episodes, _) in sizes.items():
            print(
                f"ours {label:>10}: {episodes:>5,} episodes, {rows[label]:>9,} events, wall {wall[label]:6.2f} s "
                f"({rows[label] / wall[label]:>10,.0f} events/s), CPU {cpu[label]:6.2f} s "
                f"({rows[label] / cpu[label]:>10,.0f} events/s)"
            )
        per_episode, upstream_episodes, upstream_events = time_upstream(work / "N", sample)
        upstream_seconds = per_episode * upstream_episodes
        upstream_rate = upstream_events / upstream_seconds
        print(
            f"upstream approach at N: {per_episode:.2f} s per episode (mean of {sample} sampled episodes of the same "
            f"{upstream_episodes:,}-episode dataset) x {upstream_episodes:,} = {upstream_seconds:,.0f} s, "
            f"{upstream_rate:,.0f} events/s (upstream reported {UPSTREAM_REPORTED_EVENTS_PER_S:.0f} events/s)"
        )
        results = {
            **_output_counts(sizes, actions, output),
            "events_per_s_n": rows["N"] / wall["N"],
            "events_per_s_3n": rows["3N"] / wall["3N"],
            "events_per_s_n_unsorted": rows["N unsorted"] / wall["N unsorted"],
            "event_ratio_3n_over_n": rows["3N"] / rows["N"],
            "wall_ratio_3n_over_n": wall["3N"] / wall["N"],
            "cpu_ratio_3n_over_n": cpu["3N"] / cpu["N"],
            "upstream_events_per_s": upstream_rate,
            "speedup_vs_same_run_upstream": rows["N"] / wall["N"] / upstream_rate,
            "speedup_vs_reported_upstream": rows["N"] / wall["N"] / UPSTREAM_REPORTED_EVENTS_PER_S,
        }
        print(
            f"linearity: {results['event_ratio_3n_over_n']:.2f}x events took {results['wall_ratio_3n_over_n']:.2f}x "
            f"wall time and {results['cpu_ratio_3n_over_n']:.2f}x CPU time (must be <= 4x)"
        )
        print(
            f"speedup at N (wall): {results['speedup_vs_same_run_upstream']:,.0f}x the same-run upstream approach, "
            f"{results['speedup_vs_reported_upstream']:,.0f}x upstream's reported 301 events/s "
            f"(goal >= 100x, i.e. >= {GOAL_EVENTS_PER_S:,.0f} events/s)"
        )
        if not args.quick:
            linear = min(results["wall_ratio_3n_over_n"], results["cpu_ratio_3n_over_n"]) <= 4
            fast = results["events_per_s_n"] >= GOAL_EVENTS_PER_S
            print(f"linearity {'PASS' if linear else 'FAIL'}; speed {'PASS' if fast else 'FAIL'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)
