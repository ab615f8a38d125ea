"""Incremental stage 1 (``--incremental``): only new or changed recordings are converted, and the dataset equals a
full rebuild row for row after files are added, changed or removed, after a settings change, and after an
interrupted run is resumed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import datasets
import pytest
from typer.testing import CliRunner

from owa.data import storage
from owa.data.cli import EXIT_INTERRUPTED, EXIT_OK, app
from owa.data.conversion_report import EventDatasetReport
from owa.data.discovery import hash_split
from owa.data.errors import OutputExistsError
from owa.data.events import REPORT_FILENAME, EventDatasetConfig, build_event_dataset, write_event_dataset
from owa.data.incremental import MANIFEST_FILENAME, WHOLE_FILE_HASH_BYTES, read_version
from owa.data.intervals import Inactivity
from owa.data.recordings.synthetic import SampleConfig, write_sample_corpus
from owa.data.recordings.writer import OWAMcapWriter
from s3_server import S3Server

MAIN = "from owa.data.cli import main; main()"


def episodes(folder: Path, n: int, seed: int) -> None:
    """``n`` short episodes without video (so the media check lists each missing video, which must be reused too)."""
    write_sample_corpus(folder, n, SampleConfig(seconds=1, video=False, seed=seed))


def run(train: Path | str, out: Path | str, **settings: Any) -> EventDatasetReport:
    """An incremental run; a local folder's paths are stored relative to its parent, so splits (a hash of the
    stored path) do not depend on where pytest put the temporary folder."""
    settings.setdefault("test_percent", 0.3)
    if isinstance(train, Path):
        settings.setdefault("relative_to", train.parent)
    return write_event_dataset(EventDatasetConfig(train_dir=train, output_dir=out, incremental=True, **settings))


def rows(out: Path | str, **load: Any) -> dict[str, list[dict[str, Any]]]:
    dataset = datasets.load_from_disk(str(out), **load)
    return {split: dataset[split].to_list() for split in ("train", "test")}


def same_report(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Two saved reports say the same, but for the time taken and the incremental counts."""
    left, right = dict(a), dict(b)
    for report in (left, right):
        report.pop("seconds"), report.pop("incremental")
    assert left == right


def assert_as_full_rebuild(train: Path, out: Path, scratch: Path, **settings: Any) -> None:
    """``out`` equals a fresh incremental build of ``train``, row for row, and so do its report and manifest."""
    fresh = scratch / f"full-{time.monotonic_ns()}"
    full = run(train, fresh, **settings)
    assert full.incremental is not None and full.incremental["reused"] == 0
    assert rows(out) == rows(fresh)
    saved, rebuilt = (json.loads((folder / REPORT_FILENAME).read_text()) for folder in (out, fresh))
    same_report(saved["report"], rebuilt["report"])
    manifests = [json.loads((folder / MANIFEST_FILENAME).read_text()) for folder in (out, fresh)]
    assert [[(r["path"], r["split"], r["rows"], r["fingerprint"]) for r in m["recordings"]] for m in manifests] == [
        [(r["path"], r["split"], r["rows"], r["fingerprint"]) for r in manifests[1]["recordings"]]
    ] * 2
    shutil.rmtree(fresh)


def test_add_change_and_remove_recordings(tmp_path: Path) -> None:
    rec, out = tmp_path / "rec", tmp_path / "out"
    episodes(rec, 6, seed=1)
    report = run(rec, out)
    assert report.incremental == {"converted": 6, "reused": 0, "removed": 0}
    assert report.files == 6 and report.media_totals()["videos_missing"] == 6
    first = rows(out)
    assert first["train"] and first["test"]

    # Nothing changed: everything reused, the same rows.
    report = run(rec, out)
    assert report.incremental == {"converted": 0, "reused": 6, "removed": 0}
    assert rows(out) == first

    # Added: only the new file is converted; no recording moves to another split.
    episodes(rec / "later", 2, seed=2)
    report = run(rec, out)
    assert report.incremental == {"converted": 2, "reused": 6, "removed": 0}
    assert_as_full_rebuild(rec, out, tmp_path)
    grown = rows(out)
    for split in ("train", "test"):
        before = {r["episode_path"] for r in first[split]}
        assert before <= {r["episode_path"] for r in grown[split]}

    # Changed (another episode written over one): reconverted.
    changed = rec / "episode_0002.mcap"
    episodes(tmp_path / "other", 1, seed=9)
    shutil.copy(tmp_path / "other" / "episode_0000.mcap", changed)
    report = run(rec, out)
    assert report.incremental == {"converted": 1, "reused": 7, "removed": 0}
    assert_as_full_rebuild(rec, out, tmp_path)

    # Changed in place, same size, its mtime set back: the fingerprint (the whole file, for a small one) sees it.
    target = rec / "episode_0004.mcap"
    assert target.stat().st_size <= WHOLE_FILE_HASH_BYTES
    before = target.stat()
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    report = run(rec, out)
    assert report.incremental == {"converted": 1, "reused": 7, "removed": 0}
    assert_as_full_rebuild(rec, out, tmp_path)

    # Removed: its rows go, nothing is converted.
    (rec / "episode_0003.mcap").unlink()
    report = run(rec, out)
    assert report.incremental == {"converted": 0, "reused": 7, "removed": 1}
    assert_as_full_rebuild(rec, out, tmp_path)
    assert not any(r["episode_path"] == "rec/episode_0003.mcap" for s in rows(out).values() for r in s)
    assert not list(tmp_path.glob(".out.*"))  # no staging or temporary folder left


def test_splits_are_a_hash_of_the_stored_path(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    episodes(rec, 8, seed=3)
    report = run(rec, tmp_path / "out", seed=5, relative_to=tmp_path)
    dataset = datasets.load_from_disk(str(tmp_path / "out"))
    for split in ("train", "test"):
        for path in set(dataset[split]["episode_path"]):
            assert hash_split(path, seed=5, test_percent=0.3) == split
    assert report.rows_per_split["train"] > 0


def test_a_settings_change_reconverts_everything(tmp_path: Path) -> None:
    rec, out = tmp_path / "rec", tmp_path / "out"
    episodes(rec, 3, seed=4)
    run(rec, out)
    report = run(rec, out, rates_hz={"mouse": 5})
    assert report.incremental == {"converted": 3, "reused": 0, "removed": 0}
    assert_as_full_rebuild(rec, out, tmp_path, rates_hz={"mouse": 5})


def test_with_a_test_folder_the_rows_are_a_plain_runs(tmp_path: Path) -> None:
    episodes(tmp_path / "train", 3, seed=5)
    episodes(tmp_path / "test", 2, seed=6)
    settings = {"train_dir": tmp_path / "train", "test_dir": tmp_path / "test", "relative_to": tmp_path}
    run(tmp_path / "train", tmp_path / "inc", test_dir=tmp_path / "test")
    plain = build_event_dataset(EventDatasetConfig(**settings))
    assert rows(tmp_path / "inc") == {split: plain[split].to_list() for split in ("train", "test")}


def test_an_existing_plain_dataset_needs_overwrite(tmp_path: Path) -> None:
    rec, out = tmp_path / "rec", tmp_path / "out"
    episodes(rec, 2, seed=7)
    write_event_dataset(EventDatasetConfig(train_dir=rec, output_dir=out))
    with pytest.raises(OutputExistsError, match="not an incremental dataset"):
        run(rec, out)
    report = run(rec, out, overwrite=True)
    assert report.incremental == {"converted": 2, "reused": 0, "removed": 0}
    with pytest.raises(ValueError, match="incremental"):
        build_event_dataset(EventDatasetConfig(train_dir=rec, incremental=True))


def _write_blob_recording(path: Path, first_ns: int) -> None:
    """An uncompressed recording of ~1.5 MB whose size does not depend on ``first_ns`` (timestamps are fixed-width)."""
    payload = b'{"blob":"' + b"x" * 1000 + b'"}'
    with OWAMcapWriter(path, compression="none") as writer:
        for i in range(1500):
            writer.write_raw("window", "test/Blob", payload, timestamp_ns=first_ns + i * 1_000_000)


def test_large_recordings_are_fingerprinted_by_their_summary(tmp_path: Path) -> None:
    a, b = tmp_path / "a.mcap", tmp_path / "b.mcap"
    _write_blob_recording(a, 1_000)
    _write_blob_recording(b, 2_000)
    assert a.stat().st_size == b.stat().st_size > WHOLE_FILE_HASH_BYTES
    va, vb = read_version(a), read_version(b)
    assert va.fingerprint.startswith("summary:") and va.fingerprint != vb.fingerprint
    shutil.copy(a, tmp_path / "copy.mcap")
    assert read_version(tmp_path / "copy.mcap").fingerprint == va.fingerprint
    cut = tmp_path / "cut.mcap"  # a crashed recorder's file: no summary, hashed whole
    cut.write_bytes(a.read_bytes()[: WHOLE_FILE_HASH_BYTES + 10])
    assert read_version(cut).fingerprint.startswith("sha256:")


def test_an_interrupted_run_resumes(recordings_dir: Path, tmp_path: Path) -> None:
    rec, out = tmp_path / "rec", tmp_path / "out"
    rec.mkdir()
    shutil.copy(recordings_dir / "0.5.1.mkv", rec / "0.5.1.mkv")
    for i in range(300):  # distinct files (not links: those would be one recording)
        shutil.copy(recordings_dir / "0.5.1.mcap", rec / f"r{i:03d}.mcap")
    progress = tmp_path / ".out.incremental" / "progress.jsonl"

    def completed() -> int:
        return len(progress.read_text().splitlines()) if progress.exists() else 0

    args = ["events", "--train-dir", str(rec), "--output-dir", str(out), "--incremental", "--num-workers", "1"]
    args += ["--relative-to", str(tmp_path)]
    process = subprocess.Popen(
        [sys.executable, "-c", MAIN, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while completed() < 5 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert not out.exists()
    done = completed()
    assert 5 <= done < 300

    result = CliRunner().invoke(app, args)
    assert result.exit_code == EXIT_OK, result.output
    report = json.loads((out / REPORT_FILENAME).read_text())["report"]
    assert report["incremental"]["reused"] >= done
    assert report["incremental"]["converted"] == 300 - report["incremental"]["reused"]
    assert f"incremental: {report['incremental']['converted']:,} converted" in result.output
    assert not progress.parent.exists()
    assert_as_full_rebuild(rec, out, tmp_path, test_percent=0.2)


def test_incremental_on_s3_uses_etags_and_keeps_unchanged_shards(s3: S3Server, tmp_path: Path) -> None:
    local = tmp_path / "rec"
    episodes(local, 4, seed=8)
    fs, _ = storage.filesystem(s3.url("inc"), s3.storage_options)

    def put(path: Path) -> None:
        fs.put_file(str(path), f"{s3.bucket}/inc/rec/{path.relative_to(local).as_posix()}")
        fs.invalidate_cache()

    for path in sorted(local.glob("*.mcap")):
        put(path)
    source, out = s3.url("inc/rec"), s3.url("inc/events")
    options = {"storage_options": s3.storage_options}
    first = run(source, out, **options)
    assert first.incremental == {"converted": 4, "reused": 0, "removed": 0}
    manifest = json.loads(fs.cat_file(f"{s3.bucket}/inc/events/{MANIFEST_FILENAME}"))
    assert all(r["fingerprint"] == f"etag:{r['etag']}" for r in manifest["recordings"])
    shards_before = set(fs.find(f"{s3.bucket}/inc/events"))

    episodes(local / "more", 1, seed=9)
    put(local / "more" / "episode_0000.mcap")
    fs.rm_file(f"{s3.bucket}/inc/rec/episode_0001.mcap")
    fs.invalidate_cache()
    report = run(source, out, **options)
    assert report.incremental == {"converted": 1, "reused": 3, "removed": 1}
    fs.invalidate_cache()
    shards_after = set(fs.find(f"{s3.bucket}/inc/events"))
    kept = {p for p in shards_before & shards_after if p.endswith(".arrow")}
    assert len(kept) >= 2  # unchanged recordings' shards stayed where they were, not uploaded again
    listed = {
        f"{s3.bucket}/inc/events/{split}/{f['filename']}"
        for split in ("train", "test")
        for f in json.loads(fs.cat_file(f"{s3.bucket}/inc/events/{split}/state.json"))["_data_files"]
    }
    assert {p for p in shards_after if p.endswith(".arrow")} == listed  # the removed recording's shard is gone

    full = run(source, s3.url("inc/full"), **options)
    same_report(report.to_json(), full.to_json())
    # Read back in a fresh cache folder each (load_from_disk copies a URL dataset locally).
    got = rows(out, storage_options=s3.storage_options)
    assert got == rows(s3.url("inc/full"), storage_options=s3.storage_options)
    assert sum(len(v) for v in got.values()) > 0


def test_intervals_are_kept_through_reuse(tmp_path: Path) -> None:
    """With an interval selector, reused recordings keep their interval column and their interval report."""
    rec, out = tmp_path / "rec", tmp_path / "out"
    episodes(rec, 3, seed=5)
    selector = Inactivity(screen_gap_s=0.2, input_gap_s=0.2)
    run(rec, out, interval=selector)
    episodes(rec / "more", 1, seed=6)
    report = run(rec, out, interval=selector)
    assert report.incremental == {"converted": 1, "reused": 3, "removed": 0}
    loaded = datasets.load_from_disk(str(out))
    assert all("interval" in split.column_names for split in loaded.values())
    saved = json.loads((out / REPORT_FILENAME).read_text())["report"]
    assert len(saved["intervals"]) == 4  # one interval summary per recording, reused ones included
    assert_as_full_rebuild(rec, out, tmp_path, interval=selector)
    assert run(rec, out).incremental == {"converted": 4, "reused": 0, "removed": 0}  # another selector: all again
