"""Object storage: recordings, videos and datasets at s3:// URLs, against a real S3 server (moto, see s3_server.py).

Nothing in the client library is replaced: every request is HTTP to the server the ``s3`` fixture started,
which counts the bytes it sends (``s3.traffic``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import fsspec
import numpy as np
import pyarrow.ipc
import pytest

from owa.data import storage
from owa.data.dataset_io import save_dataset
from owa.data.episode_paths import episode_base_dir, resolve_episode_path
from owa.data.errors import (
    OutputExistsError,
    RecordingError,
    StorageAccessError,
    UnsafeMediaURIError,
    VideoNotFoundError,
)
from owa.data.frames import decode_screens
from owa.data.media import MediaPolicy
from owa.data.messages import ScreenCaptured
from owa.data.recordings.reader import OWAMcapReader, read_messages
from owa.data.recordings.synthetic import SampleConfig, write_sample_episode
from owa.data.recordings.writer import OWAMcapWriter
from s3_server import REFUSED_KEY, S3Server

logger = logging.getLogger(__name__)


def upload(s3: S3Server, local: Path, key: str) -> str:
    fs, _ = storage.filesystem(s3.url(key), s3.storage_options)
    fs.put_file(str(local), f"{s3.bucket}/{key}")
    return s3.url(key)


@pytest.fixture
def s3_defaults(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """fsspec's default S3 options point at the test server: what frame decoding by URL uses."""
    monkeypatch.setitem(fsspec.config.conf, "s3", dict(s3.storage_options))
    return s3


# -- URLs as strings ---------------------------------------------------------------------------------


def test_urls_and_local_paths_are_told_apart() -> None:
    assert storage.is_url("s3://bucket/a.mcap")
    assert storage.is_url("https://host/a.mkv")
    assert not storage.is_url("/data/a.mcap")
    assert not storage.is_url("C://data/a.mcap")  # a Windows drive, not a scheme
    assert not storage.is_url(Path("s3://bucket"))  # a Path is always local


def test_join_and_dirname_stay_inside_the_bucket() -> None:
    assert storage.join("s3://b/rec", "ep.mkv") == "s3://b/rec/ep.mkv"
    assert storage.join("s3://b/rec/", "./v/../ep.mkv") == "s3://b/rec/ep.mkv"
    assert storage.join("s3://b/rec/day1", "../day2/ep.mkv") == "s3://b/rec/day2/ep.mkv"
    assert storage.join("s3://b", "ep.mkv") == "s3://b/ep.mkv"
    assert storage.join("/data/rec", "../x.mkv") == "/data/x.mkv"
    assert storage.dirname("s3://b/rec/ep.mcap") == "s3://b/rec"
    assert storage.dirname("s3://b/ep.mcap") == "s3://b"
    with pytest.raises(ValueError, match="climbs above s3://b/"):
        storage.join("s3://b/rec", "../../other-bucket/x.mkv")
    with pytest.raises(ValueError, match="absolute"):
        storage.join("s3://b/rec", "/etc/passwd")


def test_episode_paths_of_recordings_at_urls() -> None:
    assert resolve_episode_path("s3://b/rec/ep.mcap", "/elsewhere") == "s3://b/rec/ep.mcap"
    assert resolve_episode_path("day1/ep.mcap", "s3://b/rec") == "s3://b/rec/day1/ep.mcap"
    assert episode_base_dir("s3://b/rec/day1/ep.mcap") == "s3://b/rec/day1"


def test_media_policy_confines_relative_uris_to_the_recordings_prefix() -> None:
    policy = MediaPolicy()
    resolved = policy.resolve("video/ep.mkv", "s3://b/rec")
    assert (resolved.kind, resolved.location) == ("remote", "s3://b/rec/video/ep.mkv")
    assert policy.resolve("a/../ep.mkv", "s3://b/rec/").location == "s3://b/rec/ep.mkv"
    for escaping in ("../ep.mkv", "..\\ep.mkv", "a/../../ep.mkv"):
        with pytest.raises(UnsafeMediaURIError, match="escapes the recording's prefix"):
            policy.resolve(escaping, "s3://b/rec")
    # allow_absolute lets a URI leave the recording's prefix, never the bucket.
    assert MediaPolicy(allow_absolute=True).resolve("../shared/ep.mkv", "s3://b/rec").location == "s3://b/shared/ep.mkv"
    with pytest.raises(UnsafeMediaURIError, match="leaves the storage root"):
        MediaPolicy(allow_absolute=True).resolve("../../other/ep.mkv", "s3://b/rec")
    # An s3:// URI written in the recording is remote media, opened only on request.
    with pytest.raises(UnsafeMediaURIError, match="Remote media URIs are disabled"):
        policy.resolve("s3://other/ep.mkv", "s3://b/rec")
    assert MediaPolicy(allow_remote=True).resolve("s3://other/ep.mkv", None).location == "s3://other/ep.mkv"


# -- reading objects ---------------------------------------------------------------------------------


def test_listing_is_recursive_sorted_and_respects_the_prefix(s3: S3Server, tmp_path: Path) -> None:
    blob = tmp_path / "x"
    blob.write_bytes(b"x")
    for key in ("list/b.mcap", "list/a/c.mcap", "list/a/c.mkv", "list/z/y/d.mcap", "list-old/e.mcap"):
        upload(s3, blob, key)
    expected = [s3.url(k) for k in ("list/a/c.mcap", "list/b.mcap", "list/z/y/d.mcap")]
    assert storage.list_recordings(s3.url("list"), s3.storage_options) == expected
    assert storage.list_recordings(s3.url("list/"), s3.storage_options) == expected
    assert storage.list_recordings(s3.url("nothing-here"), s3.storage_options) == []
    assert storage.exists(s3.url("list/a"), s3.storage_options)
    assert storage.exists(s3.url("list/b.mcap"), s3.storage_options)
    assert not storage.exists(s3.url("list/b"), s3.storage_options)
    with pytest.raises(ValueError, match="object-store prefixes"):
        storage.list_recordings(str(tmp_path))


def test_stat_gives_size_mtime_and_etag(s3: S3Server, tmp_path: Path) -> None:
    local = tmp_path / "blob.bin"
    local.write_bytes(b"0123456789")
    url = upload(s3, local, "stat/blob.bin")
    info = storage.stat(url, s3.storage_options)
    assert (info.url, info.size) == (url, 10)
    assert info.etag == '"781e5e245d69b566979b86e28d23f2c7"'  # the MD5 of the bytes, as S3 computes it
    assert info.mtime_ns is not None and info.mtime_ns > 0
    assert storage.stat(local).size == 10 and storage.stat(local).etag is None


def test_a_missing_object_names_its_url(s3: S3Server) -> None:
    url = s3.url("nowhere/ep.mcap")
    with pytest.raises(FileNotFoundError) as caught:
        storage.open_input(url, s3.storage_options)
    assert caught.value.filename == url
    with pytest.raises(RecordingError, match="Cannot open recording") as error:
        OWAMcapReader(url, storage_options=s3.storage_options)
    assert error.value.path == url


@pytest.mark.parametrize("who", ["unknown key", "user without permissions"])
def test_denied_credentials_are_a_clear_error(s3: S3Server, tmp_path: Path, who: str) -> None:
    local = tmp_path / "ep.mcap"
    with OWAMcapWriter(local) as writer:
        writer.write_raw("window", "test/Blob", b"{}", timestamp_ns=1)
    url = upload(s3, local, "denied/ep.mcap")
    options = s3.options_with("AKIAUNKNOWN000000000", "wrong") if who == "unknown key" else s3.denied_options
    with pytest.raises(StorageAccessError) as error:
        OWAMcapReader(url, storage_options=options)
    message = str(error.value)
    assert message.startswith("Access denied by the object store (403")
    assert "check storage_options" in message and f"file={url}" in message
    assert error.value.__cause__ is None and error.value.__suppress_context__  # no botocore traceback
    with pytest.raises(StorageAccessError):
        storage.list_recordings(s3.url("denied"), options)


def test_an_unreachable_endpoint_is_a_storage_access_error() -> None:
    options = {"endpoint_url": "http://127.0.0.1:9", "key": "k", "secret": "s", "config_kwargs": {"retries": {}}}
    options["config_kwargs"] = {"retries": {"max_attempts": 1}, "connect_timeout": 2}
    with pytest.raises(StorageAccessError, match="Object store request failed"):
        storage.stat("s3://bucket/ep.mcap", options)


def _many_chunks(path: Path, messages: int) -> None:
    """A recording of ``messages`` 1 KB payloads (random hex, so they barely compress) in ~64 KiB chunks."""
    rng = np.random.default_rng(3)
    with OWAMcapWriter(path, chunk_size=64 * 1024) as writer:
        for i in range(messages):
            payload = b'{"blob":"' + rng.bytes(500).hex().encode() + b'"}'
            writer.write_raw("window" if i % 2 else "blob", "test/Blob", payload, timestamp_ns=1_000_000 * (i + 1))


def test_a_filtered_read_fetches_only_the_chunks_it_needs(s3: S3Server, tmp_path: Path) -> None:
    local = tmp_path / "long.mcap"
    _many_chunks(local, 8000)
    url = upload(s3, local, "ranges/long.mcap")
    size = local.stat().st_size
    window = {"start_time_ns": 4_000_000_000, "end_time_ns": 4_100_000_000}  # 100 of 8000 messages
    expected = list(read_messages(local, "window", **window))
    assert len(expected) == 50

    before, requests_before = s3.traffic.snapshot()
    with OWAMcapReader(url, storage_options=s3.storage_options) as reader:
        assert reader.report.had_summary
        got = list(reader.iter_messages("window", **window))
        client_bytes = reader._file.cache.total_requested_bytes  # fsspec's own count of what it fetched
    after, requests_after = s3.traffic.snapshot()
    assert got == expected
    fetched = after - before
    logger.info("filtered read: %d of %d bytes, %d requests", fetched, size, requests_after - requests_before)
    assert fetched == client_bytes
    assert fetched < size / 10

    # The whole file, for comparison, is fetched once (plus the read-ahead slack of a few requests).
    before, _ = s3.traffic.snapshot()
    assert list(read_messages(url, storage_options=s3.storage_options)) == list(read_messages(local))
    whole = s3.traffic.snapshot()[0] - before
    assert size <= whole < size * 1.2


# -- frames from videos in the bucket ----------------------------------------------------------------


@pytest.fixture(scope="module")
def episode(tmp_path_factory: pytest.TempPathFactory):
    return write_sample_episode(tmp_path_factory.mktemp("ep"), "ep", SampleConfig(seconds=2, codec="h264", seed=5))


def _screens(path: str | Path, **options) -> list[ScreenCaptured]:
    screens = []
    for message in read_messages(path, "screen", **options):
        decoded = message.to_mcap_message(path).decoded
        assert isinstance(decoded, ScreenCaptured)
        screens.append(decoded)
    return screens


def test_frames_decode_from_videos_in_the_bucket(s3_defaults: S3Server, episode) -> None:
    s3 = s3_defaults
    url = upload(s3, episode.mcap_path, "frames/day1/ep.mcap")
    upload(s3, episode.video_path, "frames/day1/ep.mkv")
    remote = _screens(url, storage_options=s3.storage_options)
    local = _screens(episode.mcap_path)
    assert len(remote) == len(local) > 10
    assert remote[0].base_dir == "s3://owa-test/frames/day1"
    assert remote[0].resolve_media().location == "s3://owa-test/frames/day1/ep.mkv"
    expected = decode_screens(local)
    for i in (0, len(local) // 2, len(local) - 1):
        assert np.array_equal(remote[i].to_rgb_array(), expected[i])
    got = decode_screens(remote)
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))


def test_a_missing_video_object_is_video_not_found(s3_defaults: S3Server, episode) -> None:
    url = upload(s3_defaults, episode.mcap_path, "frames-lost/ep.mcap")  # the .mkv never uploaded
    screen = _screens(url, storage_options=s3_defaults.storage_options)[0]
    with pytest.raises(VideoNotFoundError, match="Video object not found") as error:
        screen.to_rgb_array()
    assert error.value.path == "s3://owa-test/frames-lost/ep.mkv"
    assert decode_screens([screen], on_error="skip") == [None]


def test_denied_credentials_for_a_video_are_a_clear_error(
    s3: S3Server, episode, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = upload(s3, episode.mcap_path, "frames-denied/ep.mcap")
    upload(s3, episode.video_path, "frames-denied/ep.mkv")
    screen = _screens(url, storage_options=s3.storage_options)[0]
    monkeypatch.setitem(fsspec.config.conf, "s3", dict(s3.denied_options))
    with pytest.raises(StorageAccessError, match="Access denied") as error:
        screen.to_rgb_array()
    assert error.value.path == "s3://owa-test/frames-denied/ep.mkv"


# -- datasets written to the bucket ------------------------------------------------------------------


def _small_dataset_dict():
    import datasets

    return datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"episode_path": ["s3://b/a.mcap"] * 3, "timestamp_ns": [1, 2, 3]}),
            "test": datasets.Dataset.from_dict({"episode_path": [], "timestamp_ns": []}),
        }
    )


def test_a_dataset_saved_to_a_url_loads_with_load_from_disk(s3: S3Server) -> None:
    import datasets

    url = s3.url("datasets/events")
    dataset = _small_dataset_dict()
    save_dataset(dataset, url, storage_options=s3.storage_options)
    loaded = datasets.load_from_disk(url, storage_options=s3.storage_options)
    assert isinstance(loaded, datasets.DatasetDict)
    assert loaded["train"].to_dict() == dataset["train"].to_dict()
    assert len(loaded["test"]) == 0
    one_split = datasets.load_from_disk(f"{url}/train", storage_options=s3.storage_options)
    assert one_split["timestamp_ns"] == [1, 2, 3]

    with pytest.raises(OutputExistsError, match="already exists") as error:
        save_dataset(dataset, url, storage_options=s3.storage_options)
    assert error.value.path == url
    smaller = datasets.DatasetDict({"train": dataset["train"].select([0])})
    save_dataset(smaller, url, storage_options=s3.storage_options, overwrite=True)
    # Read back from the bucket itself: load_from_disk would reuse this process's download of the URL.
    fs, root = storage.filesystem(url, s3.storage_options)
    fs.invalidate_cache()
    assert json.loads(fs.cat_file(f"{root}/dataset_dict.json")) == {"splits": ["train"]}
    assert not fs.exists(f"{root}/test")  # the old dataset's files went with it
    with fs.open(f"{root}/train/data-00000-of-00001.arrow", "rb") as shard:
        assert pyarrow.ipc.open_stream(shard).read_all().column("timestamp_ns").to_pylist() == [1]

    single = s3.url("datasets/single")
    save_dataset(dataset["train"], single, storage_options=s3.storage_options)
    assert datasets.load_from_disk(single, storage_options=s3.storage_options)["timestamp_ns"] == [1, 2, 3]


def test_an_upload_that_fails_at_its_last_file_leaves_nothing(s3: S3Server) -> None:
    """The server refuses the top-level marker (an IAM deny on that one key): the upload fails after every
    other file went up, and what it wrote is removed, so the URL never held a loadable dataset."""
    url = s3.url(REFUSED_KEY.rsplit("/", 1)[0])
    with pytest.raises(StorageAccessError, match="Access denied") as error:
        save_dataset(_small_dataset_dict(), url, storage_options=s3.storage_options)
    assert error.value.path == url
    fs, root = storage.filesystem(url, s3.storage_options)
    fs.invalidate_cache()
    assert fs.find(root) == []


def test_uploads_with_denied_credentials_write_nothing(s3: S3Server) -> None:
    url = s3.url("datasets/denied")
    with pytest.raises(StorageAccessError):
        save_dataset(_small_dataset_dict(), url, storage_options=s3.denied_options)
    fs, root = storage.filesystem(url, s3.storage_options)
    assert fs.find(root) == []
