"""owa.data.counters: the one mechanism behind every *Stats class, in this process and across processes."""

from __future__ import annotations

import copy
import multiprocessing
import pickle
import subprocess
import sys

import pytest

from owa.data.counters import ERROR_KINDS, Counters
from owa.data.encoders import EncoderStats
from owa.data.errors import EncodingError, FrameOutOfRangeError, MediaError, OWADataError, VideoNotFoundError
from owa.data.frames import DecodeStats
from owa.data.fsl_dataset import ImageStats
from owa.data.transforms import TransformStats


class Local(Counters):
    good: int
    bad: int


class Shared(Counters):
    SHARED = True

    good: int
    bad: int


class Quiet(Counters):
    TRACKS_ERRORS = False

    clamped: int


def add_in_child(counters: Counters) -> None:  # module level: spawned children import it
    counters.add([VideoNotFoundError("gone")], good=2, bad=1)


def test_declared_counters_errors_and_last_error() -> None:
    stats = Local()
    assert Local.COUNTERS == ("good", "bad") and stats.counts() == {"good": 0, "bad": 0}
    stats.good += 3
    stats.add([VideoNotFoundError("first"), FrameOutOfRangeError("second")], bad=2)
    stats.add(error_counts={"VideoNotFoundError": 2}, last_error="third")
    assert (stats.good, stats.bad) == (3, 2)
    assert stats.errors == {"VideoNotFoundError": 3, "FrameOutOfRangeError": 1}
    assert stats.last_error == "third"
    assert stats.as_dict() == {
        "good": 3,
        "bad": 2,
        "errors": {"VideoNotFoundError": 3, "FrameOutOfRangeError": 1},
        "last_error": "third",
    }
    before = stats.counts()
    stats.add(good=4)
    assert stats.since(before) == {"good": 4, "bad": 0}
    stats.reset()
    assert stats.as_dict() == {"good": 0, "bad": 0, "errors": {}, "last_error": None}
    assert Local(good=1, errors={"EncodingError": 2}, last_error="x").as_dict() == {
        "good": 1,
        "bad": 0,
        "errors": {"EncodingError": 2},
        "last_error": "x",
    }
    assert Quiet(clamped=2).as_dict() == {"clamped": 2}


def test_errors_count_under_their_nearest_listed_class() -> None:
    class Unlisted(MediaError):
        pass

    stats = Local()
    stats.add([Unlisted("a"), ValueError("b"), OWADataError("c")])
    assert stats.errors == {"MediaError": 1, "Exception": 1, "OWADataError": 1}
    assert ERROR_KINDS[-1] == "Exception" and "OWADataError" in ERROR_KINDS
    with pytest.raises(KeyError, match="no counter 'ugly'"):
        stats.add(ugly=1)
    with pytest.raises(KeyError, match="Unknown error type 'Nope'"):
        stats.add(error_counts={"Nope": 1})


def test_errors_is_a_live_mutable_view() -> None:
    stats = DecodeStats()
    stats.errors["EncodingError"] = stats.errors.get("EncodingError", 0) + 2  # how the engine merges counts
    assert stats.errors == {"EncodingError": 2} and dict(stats.errors) == {"EncodingError": 2}
    del stats.errors["EncodingError"]
    assert stats.errors == {} and len(stats.errors) == 0
    with pytest.raises(KeyError):
        stats.errors["EncodingError"]


def test_last_error_is_truncated_to_1000_bytes_on_a_character_boundary() -> None:
    for stats in (Local(), Shared()):
        stats.add(last_error="é" * 600)  # 1200 bytes
        assert stats.last_error == "é" * 500


@pytest.mark.parametrize("cls", [Local, Shared])
def test_copies_made_outside_worker_start_are_snapshots(cls: type[Counters]) -> None:
    stats = cls(good=1, errors={"EncodingError": 1}, last_error="x")
    for clone in (pickle.loads(pickle.dumps(stats)), copy.copy(stats), copy.deepcopy(stats)):
        assert clone == stats and clone.shared == stats.shared
        clone.add(good=5)
        assert (clone.good, stats.good) == (6, 1)  # each counts on its own


@pytest.mark.parametrize("start", ["spawn", "fork"])
def test_shared_counters_reach_the_parent_from_started_workers(start: str) -> None:
    """What DataLoader workers do: the counters travel with the process (pickled while spawning, or forked)."""
    shared, local = Shared(), Local()
    for counters in (shared, local):
        child = multiprocessing.get_context(start).Process(target=add_in_child, args=(counters,))
        child.start()
        child.join(timeout=120)
        assert child.exitcode == 0
    assert shared.as_dict() == {"good": 2, "bad": 1, "errors": {"VideoNotFoundError": 1}, "last_error": "gone"}
    assert local.as_dict() == Local().as_dict()  # process-local: the child's counts stay in the child


def test_pool_workers_bring_counts_home_with_since() -> None:
    """What datasets.map(num_proc) workers do: they get a snapshot, and return what they counted."""
    stats = Local(good=1)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        deltas = pool.map(_count_in_pool_worker, [stats, stats, stats])
    for delta in deltas:
        stats.add(**delta)
    assert stats.good == 1 + 3 * 10


def _count_in_pool_worker(stats: Local) -> dict[str, int]:
    before = stats.counts()
    stats.add(good=10)
    return stats.since(before)


def test_every_stats_class_is_built_on_counters() -> None:
    assert all(issubclass(cls, Counters) for cls in (EncoderStats, DecodeStats, TransformStats, ImageStats))
    assert not EncoderStats.SHARED and not DecodeStats.SHARED  # per process / per call
    assert TransformStats.SHARED and ImageStats.SHARED  # shared with DataLoader workers
    assert EncoderStats().as_dict() == {"coordinates_clamped": 0, "coordinates_saturated": 0, "scrolls_clamped": 0}
    stats = DecodeStats()
    stats.record_error(EncodingError("bad"))
    stats.decoded += 1
    assert stats.as_dict() == {"decoded": 1, "skipped": 1, "errors": {"EncodingError": 1}, "last_error": "bad"}


def test_decode_stats_import_paths() -> None:
    from owa.data.frames import DecodeStats as from_package
    from owa.data.frames.engine import DecodeStats as from_engine
    from owa.data.frames.stats import DecodeStats as from_stats

    assert from_package is from_engine is from_stats


def test_fsl_dataset_does_not_import_transforms() -> None:
    """FSLDataset counts images with its own ImageStats: importing it loads neither the transforms nor the engine."""
    code = (
        "import sys, owa.data.fsl_dataset; "
        "print(sorted(m for m in ('owa.data.transforms', 'owa.data.frames', 'owa.data.counters') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert loaded.stdout.strip() == "['owa.data.counters']"
