"""``engine="ray"``: stages 1 and 2 on Ray give exactly the local engine's output; lost workers are retried or reported.

One local Ray instance (2 CPUs) serves the module; the last test starts a two-node cluster on this machine.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
import ray.cloudpickle
from datasets import load_from_disk
from typer.testing import CliRunner

from owa.data import events
from owa.data.binning import BinningConfig, build_binned_dataset
from owa.data.cli import app
from owa.data.errors import CorruptRecordingError, ExecutionError
from owa.data.events import EventDatasetConfig, _convert_file, write_event_dataset
from owa.data.executors import LocalExecutor, RayExecutor, TaskFailure, check_engine
from owa.data.recordings.synthetic import SampleConfig, write_sample_corpus


def test_an_unreachable_cluster_fails_at_once(recordings_dir: Path, tmp_path: Path) -> None:
    """Before the module's Ray starts: joining a head node that is not there is an error, not a wait."""
    if ray.is_initialized():
        ray.shutdown()
    with pytest.raises(ExecutionError, match=r"Cannot reach the Ray head node .*address=127.0.0.1:1"):
        RayExecutor("127.0.0.1:1").connect()
    (tmp_path / "in").mkdir()
    shutil.copy(recordings_dir / "0.5.1.mcap", tmp_path / "in" / "a.mcap")
    flags = ["--engine", "ray", "--ray-address", "127.0.0.1:1"]
    result = CliRunner().invoke(
        app, ["events", "--train-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"), *flags]
    )
    assert result.exit_code == 1 and "Error: Cannot reach the Ray head node" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # The fault-injecting task functions below live in this test module, which Ray's workers cannot import.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        yield
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        ray.shutdown()


@pytest.fixture(scope="module")
def recordings(recordings_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real recordings with their videos, synthetic ones in a subfolder, a damaged one and one that is not an mcap."""
    root = tmp_path_factory.mktemp("ray-recordings")
    for name in ("0.3.2", "0.4.2", "0.5.1"):
        for suffix in (".mcap", ".mkv"):
            shutil.copy(recordings_dir / f"{name}{suffix}", root / f"{name}{suffix}")
    shutil.copy(recordings_dir / "ztype-no-video.mcap", root / "ztype-no-video.mcap")
    write_sample_corpus(root / "nested", 4, SampleConfig(seconds=1, video=False, seed=3))
    data = (recordings_dir / "0.5.1.mcap").read_bytes()
    (root / "truncated.mcap").write_bytes(data[: len(data) // 2])
    (root / "garbage.mcap").write_bytes(b"not an mcap at all")
    return root


def assert_same_folders(local: Path, other: Path) -> int:
    """Every file byte for byte, except the run-specific fields: the report's seconds, the config's engine and
    output folder (in the report and owa_data.json), and ``datasets``' random fingerprint."""
    names = sorted(p.relative_to(local) for p in local.rglob("*"))
    assert names == sorted(p.relative_to(other) for p in other.rglob("*"))
    compared = 0
    for name in names:
        a, b = local / name, other / name
        if a.is_dir():
            continue
        if name.name == "state.json":
            sa, sb = json.loads(a.read_text()), json.loads(b.read_text())
            assert sa.pop("_fingerprint") and sb.pop("_fingerprint")
            assert sa == sb, name
        elif name.name == events.REPORT_FILENAME or (
            name.name == "owa_data.json" and b'"stage": "events"' in a.read_bytes()
        ):
            ra, rb = json.loads(a.read_text()), json.loads(b.read_text())  # the run's config, and the report
            ca, cb = (r["config"]["events"] if "stage" in r else r["config"] for r in (ra, rb))
            assert ca.pop("engine") == "local" and cb.pop("engine") == "ray"
            assert "ray_address" not in cb  # where the cluster was says nothing about the dataset
            ca.pop("output_dir"), cb.pop("output_dir")
            if "report" in ra:
                ra["report"].pop("seconds"), rb["report"].pop("seconds")
            assert ra == rb
        else:
            assert a.read_bytes() == b.read_bytes(), name
        compared += 1
    return compared


def test_stage_1_on_ray_is_identical_to_local(
    local_ray: None, recordings: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "_SHARD_MAX_FILES", 2)  # several shards per split, so their order is tested too
    monkeypatch.setattr(events, "_RAY_TASK_INPUT_BYTES", 1)  # one task per recording (small ones are grouped)
    base = EventDatasetConfig(train_dir=recordings, test_percent=0.3, seed=2, num_workers=2)
    seen: list[str] = []
    local = write_event_dataset(dataclasses.replace(base, output_dir=tmp_path / "local"))
    on_ray = write_event_dataset(
        dataclasses.replace(base, output_dir=tmp_path / "ray", engine="ray"), on_file=lambda r: seen.append(r.path)
    )
    assert assert_same_folders(tmp_path / "local", tmp_path / "ray") >= 8
    assert len(list((tmp_path / "ray" / "train").glob("*.arrow"))) >= 3
    # The bad files are reported, by either engine, like any bad file; every recording is accounted for.
    assert local.files == on_ray.files == len(seen) == 10
    assert (on_ray.files_skipped, on_ray.files_salvaged) == (local.files_skipped, local.files_salvaged) == (1, 1)
    assert sorted(seen) == sorted(str(p) for p in recordings.rglob("*.mcap"))
    saved = load_from_disk(str(tmp_path / "ray"))
    assert sum(len(split) for split in saved.values()) == sum(on_ray.events_kept.values()) > 0


def test_incremental_stage_1_on_ray_is_identical_to_local(local_ray: None, recordings: Path, tmp_path: Path) -> None:
    """Incremental runs (one shard per recording, reused on the next run) give the same folder on either engine."""
    for engine in ("local", "ray"):
        config = EventDatasetConfig(
            train_dir=recordings,
            output_dir=tmp_path / engine,
            incremental=True,
            engine=engine,  # type: ignore[arg-type]
        )
        assert write_event_dataset(config).incremental["converted"] == 10
        assert write_event_dataset(config).incremental == {"converted": 0, "reused": 10, "removed": 0}
    assert assert_same_folders(tmp_path / "local", tmp_path / "ray") >= 10


def test_stage_2_on_ray_is_identical_to_local(local_ray: None, recordings: Path, tmp_path: Path) -> None:
    write_event_dataset(EventDatasetConfig(train_dir=recordings, output_dir=tmp_path / "events", num_workers=2))
    config = BinningConfig(fps=10, numeric_actions=True)
    for engine in ("local", "ray"):  # small chunks: several blocks (Ray tasks) per split
        build_binned_dataset(
            tmp_path / "events", config, output_dir=tmp_path / engine, chunk_events=2_000, engine=engine
        )
    assert assert_same_folders(tmp_path / "local", tmp_path / "ray") == 8  # 2 splits of 3 files, the dict, metadata
    # In memory too (no output folder), and a single Dataset rather than a dict.
    split = load_from_disk(str(tmp_path / "events"))["train"]
    in_memory = build_binned_dataset(split, config, chunk_events=2_000, engine="ray")
    assert in_memory.data.table.equals(load_from_disk(str(tmp_path / "local"))["train"].data.table)


def test_strict_error_from_a_ray_task_is_the_local_one(local_ray: None, recordings_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(recordings_dir / "0.4.2.mcap", folder / "a.mcap")
    data = (recordings_dir / "0.5.1.mcap").read_bytes()
    (folder / "b.mcap").write_bytes(data[: len(data) // 2])
    raised = []
    for engine in ("local", "ray"):
        config = EventDatasetConfig(
            train_dir=folder,
            output_dir=tmp_path / engine,
            strict=True,
            test_percent=0,
            engine=engine,
            check_media=False,
        )
        with pytest.raises(CorruptRecordingError) as info:
            write_event_dataset(config)
        raised.append(info.value)
        assert not (tmp_path / engine).exists()
    one, two = raised
    assert (type(one), str(one), vars(one)) == (type(two), str(two), vars(two))


def test_interrupted_ray_run_leaves_nothing(local_ray: None, recordings: Path, tmp_path: Path) -> None:
    def interrupt(result: Any) -> None:
        raise KeyboardInterrupt

    config = EventDatasetConfig(train_dir=recordings, output_dir=tmp_path / "out", engine="ray")
    with pytest.raises(KeyboardInterrupt):
        write_event_dataset(config, on_file=interrupt)
    assert list(tmp_path.iterdir()) == []
    assert write_event_dataset(config).files == 10  # Ray is still usable


# --- lost workers ----------------------------------------------------------------------------------


def die_once(marker: str, task: Any) -> Any:
    """Kill this worker process on the first call (any task), then convert normally."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return _convert_file(task)
    os._exit(1)


def die_on(victim: str, task: Any) -> Any:
    """Kill the worker on every try of one recording."""
    if task[0] == victim:
        os._exit(1)
    return _convert_file(task)


def stage_1_tasks(folder: Path) -> list[tuple[str, str, str, EventDatasetConfig]]:
    config = EventDatasetConfig(train_dir=folder, test_percent=0)
    return [(str(p), str(p), "train", config) for p in sorted(folder.rglob("*.mcap"))]


def comparable(result: Any) -> Any:
    """A FileResult as plain data (its media problems hold exceptions, which compare by identity)."""
    table = result.table
    fields = dataclasses.asdict(dataclasses.replace(result, table=None, media_problems=[]))
    return fields, [p.to_json() for p in result.media_problems], None if table is None else table.to_pylist()


def test_a_killed_worker_is_retried_and_nothing_is_lost(local_ray: None, recordings: Path, tmp_path: Path) -> None:
    tasks = stage_1_tasks(recordings)
    expected = [comparable(r) for r in LocalExecutor(1).map(_convert_file, tasks)]
    results = list(RayExecutor(max_retries=2).map(functools.partial(die_once, str(tmp_path / "died")), tasks))
    assert (tmp_path / "died").exists()  # a worker really died
    assert [comparable(r) for r in results] == expected


def test_a_task_that_kills_every_worker_is_reported_in_place(local_ray: None, recordings: Path) -> None:
    tasks = stage_1_tasks(recordings)
    victim = 3
    results = list(RayExecutor(max_retries=1).map(functools.partial(die_on, tasks[victim][0]), tasks))
    assert len(results) == len(tasks)
    failure = results[victim]
    assert isinstance(failure, TaskFailure) and failure.index == victim and "2 tries" in failure.reason
    assert [r.path for i, r in enumerate(results) if i != victim] == [t[0] for i, t in enumerate(tasks) if i != victim]


def die_on_group(victim: str, files: Any) -> Any:
    """Kill the worker on every try of any task holding one recording."""
    if any(file[0] == victim for file in files):
        os._exit(1)
    return [_convert_file(file) for file in files]


def test_a_group_that_kills_its_worker_is_rerun_one_recording_per_task(local_ray: None, recordings: Path) -> None:
    """Small recordings share a task; when it dies on every try, only the recording that kills it is lost."""
    tasks = stage_1_tasks(recordings)
    victim = tasks[4][0]
    groups = [tasks[i : i + 3] for i in range(0, len(tasks), 3)]
    results = list(events._results_on_ray(RayExecutor(max_retries=0), groups, functools.partial(die_on_group, victim)))
    expected = [comparable(r) for r in LocalExecutor(1).map(_convert_file, tasks)]
    assert [r.path for r in results] == [t[0] for t in tasks]
    lost = results[4]
    assert lost.skipped and lost.problem is not None and lost.problem.startswith("task failed: its Ray worker died")
    assert [comparable(r) for i, r in enumerate(results) if i != 4] == [e for i, e in enumerate(expected) if i != 4]
    assert len(events._ray_task_groups(tasks)) == 1  # all small: one task (the 2 MB default)
    assert len(events._ray_task_groups([(str(recordings / "none.mcap"), "", "train", tasks[0][3])] * 2)) == 2


# --- options and the command line ---------------------------------------------------------------------


def test_engine_options_are_checked() -> None:
    assert check_engine("ray", "auto") == "ray"
    with pytest.raises(ValueError, match=r"Invalid engine \('spark'\). Supported values are 'local', 'ray'"):
        EventDatasetConfig(train_dir=Path("."), engine="spark")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs engine 'ray'"):
        EventDatasetConfig(train_dir=Path("."), ray_address="auto")
    with pytest.raises(ValueError, match="Invalid engine"):
        build_binned_dataset("nowhere", engine="dask")  # type: ignore[arg-type]
    saved = EventDatasetConfig(train_dir=Path("."), engine="ray", ray_address="10.0.0.1:6379").to_json()
    assert saved["engine"] == "ray" and "ray_address" not in saved


@pytest.mark.parametrize("command", ["events", "bin"])
def test_cli_rejects_a_bad_engine_in_one_line(command: str, tmp_path: Path) -> None:
    inputs = ["--train-dir", str(tmp_path)] if command == "events" else ["--input-dir", str(tmp_path)]
    result = CliRunner().invoke(app, [command, *inputs, "--output-dir", str(tmp_path / "o"), "--engine", "spark"])
    assert result.exit_code == 2 and "Invalid engine ('spark')" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()


def test_cli_events_and_bin_on_ray(local_ray: None, recordings: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    events_dir, bins_dir = tmp_path / "events", tmp_path / "bins"
    result = runner.invoke(
        app, ["events", "--train-dir", str(recordings), "--output-dir", str(events_dir), "--engine", "ray"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((events_dir / events.REPORT_FILENAME).read_text())["config"]["engine"] == "ray"
    result = runner.invoke(
        app, ["bin", "--input-dir", str(events_dir), "--output-dir", str(bins_dir), "--engine", "ray"]
    )
    assert result.exit_code == 0, result.output
    assert len(load_from_disk(str(bins_dir))["train"]) > 0


def test_benchmark_ray_quick_mode(local_ray: None) -> None:
    from benchmarks import bench_events

    figures = bench_events.main(["--quick", "--engine", "ray"])
    assert figures["ray_events"] == figures["local_events"] > 0
    assert figures["ray_events_per_s_1"] > 0 and figures["ray_events_per_s_2"] > 0 and figures["local_events_per_s"] > 0
    assert figures["ray_vs_local"] > 0 and figures["ray_startup_seconds"] >= 0


# --- a two-node cluster on one machine -------------------------------------------------------------------


def test_two_node_cluster(recordings: Path, tmp_path: Path) -> None:
    """Stage 1 on a head node and a worker node of 1 CPU each, joined by address, as on a real cluster."""
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        config = EventDatasetConfig(train_dir=recordings, test_percent=0.3, num_workers=2)
        local = write_event_dataset(dataclasses.replace(config, output_dir=tmp_path / "local"))
        on_ray = write_event_dataset(
            dataclasses.replace(config, output_dir=tmp_path / "ray", engine="ray", ray_address=cluster.address)
        )
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        assert on_ray.files == local.files == 10
        assert assert_same_folders(tmp_path / "local", tmp_path / "ray") >= 7
    finally:
        ray.shutdown()
        cluster.shutdown()
