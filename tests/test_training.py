"""Collation into tensors, the distributed sampler (sharding, shuffling, resume) and DataLoader workers."""

from __future__ import annotations

import pickle

import datasets
import numpy as np
import pytest

from owa.data.fsl_dataset import FSLDataset
from owa.data.training import IGNORE_INDEX, DistributedFSLSampler, FSLCollator, collate_fsl

torch = pytest.importorskip("torch")


def _sample(ids: list[int], total: int, images: list[object], **extra: list[int]) -> dict:
    sample = {
        "token_ids": np.array(ids, dtype=np.int64),
        "attention_mask": np.array([1] * total + [0] * (len(ids) - total), dtype=np.int64),
        "total_token_count": total,
        "images": images,
    }
    sample.update({k: np.array(v, dtype=np.int64) for k, v in extra.items()})
    return sample


def test_collate_exact_tensors_and_labels() -> None:
    samples = [
        _sample([5, 9, 9, 6, 0, 0], 4, ["img-a"], position_ids=[0, 1, 2, 3, 0, 0]),
        _sample([7, 8, 9, 9, 6, 7], 6, ["img-b"], position_ids=[0, 1, 0, 1, 2, 3]),
    ]
    batch = collate_fsl(samples, image_token_id=9)
    assert batch["input_ids"].dtype == torch.int64
    assert batch["input_ids"].tolist() == [[5, 9, 9, 6, 0, 0], [7, 8, 9, 9, 6, 7]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]
    assert batch["labels"].tolist() == [[5, -100, -100, 6, -100, -100], [7, 8, -100, -100, 6, 7]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0, 0], [0, 1, 0, 1, 2, 3]]
    assert batch["total_token_count"].tolist() == [4, 6]
    assert batch["images"] == [["img-a"], ["img-b"]]
    assert "segment_offsets" not in batch


def test_collate_masks_padding_by_length_even_when_pad_id_is_real() -> None:
    # Pad id 7 is also a real token; only the padded tail is ignored.
    batch = FSLCollator()([_sample([7, 7, 7, 7], 2, [], segment_offsets=[0, 1, 2])])
    assert batch["labels"].tolist() == [[7, 7, IGNORE_INDEX, IGNORE_INDEX]]
    assert [t.tolist() for t in batch["segment_offsets"]] == [[0, 1, 2]]
    assert "position_ids" not in batch


def test_collate_rejects_bad_batches() -> None:
    with pytest.raises(ValueError, match="empty"):
        collate_fsl([])
    with pytest.raises(ValueError, match="lengths"):
        collate_fsl([_sample([1, 2], 2, []), _sample([1, 2, 3], 3, [])])


def test_sampler_shards_cover_everything_disjointly() -> None:
    world = 3
    samplers = [DistributedFSLSampler(10, num_replicas=world, rank=r, seed=4) for r in range(world)]
    shards = [list(s) for s in samplers]
    assert all(len(shard) == 4 == len(s) for shard, s in zip(shards, samplers, strict=True))
    flat = [i for shard in shards for i in shard]
    assert sorted(set(flat)) == list(range(10))
    assert len(flat) == 12  # padded by wrapping around: two indices repeat
    # Each rank takes its slice of one shared permutation.
    permutation = np.random.default_rng([4, 0]).permutation(10).tolist()
    padded = permutation + permutation[:2]
    for rank in range(world):
        assert shards[rank] == padded[rank::world]

    dropped = [list(DistributedFSLSampler(10, num_replicas=world, rank=r, drop_last=True)) for r in range(world)]
    assert [len(s) for s in dropped] == [3, 3, 3]
    assert len({i for s in dropped for i in s}) == 9


def test_sampler_is_deterministic_per_seed_and_epoch() -> None:
    a = DistributedFSLSampler(50, num_replicas=1, rank=0, seed=1)
    b = DistributedFSLSampler(50, num_replicas=1, rank=0, seed=1)
    assert list(a) == list(b)
    first_epoch = list(a)
    a.set_epoch(1)
    second_epoch = list(a)
    assert sorted(second_epoch) == sorted(first_epoch) == list(range(50))
    assert second_epoch != first_epoch
    assert list(DistributedFSLSampler(50, num_replicas=1, rank=0, seed=2)) != first_epoch
    assert list(DistributedFSLSampler(5, num_replicas=1, rank=0, shuffle=False)) == [0, 1, 2, 3, 4]


def test_sampler_resumes_from_a_saved_position() -> None:
    sampler = DistributedFSLSampler(20, num_replicas=2, rank=1, seed=7)
    sampler.set_epoch(3)
    full = sampler.indices().tolist()
    iterator = iter(sampler)
    seen = [next(iterator) for _ in range(4)]
    state = pickle.loads(pickle.dumps(sampler.state_dict()))
    assert state["epoch"] == 3 and state["position"] == 4

    resumed = DistributedFSLSampler(20, num_replicas=2, rank=1, seed=7)
    resumed.load_state_dict(state)
    resumed.set_epoch(3)  # the training loop sets the epoch again: the position must survive
    assert len(resumed) == 6
    rest = list(resumed)
    assert seen + rest == full
    assert list(resumed) == full  # the next pass over the same epoch starts over

    # The position the training loop reports wins over what was prefetched.
    explicit = DistributedFSLSampler(20, num_replicas=2, rank=1, seed=7)
    explicit.load_state_dict(sampler.state_dict(consumed=2))
    assert list(explicit) == full[2:]
    resumed.set_epoch(4)
    assert len(resumed) == 10


def test_sampler_resumes_exactly_after_two_interruptions() -> None:
    """The documented loop: consumed=(step + 1) * batch_size, counted from each (re)start."""
    batch = 8
    uninterrupted = DistributedFSLSampler(64, seed=3).indices().tolist()
    trained: list[int] = []
    state = None
    for stop_after in (3, 2, None):
        sampler = DistributedFSLSampler(64, seed=3)
        if state is not None:
            sampler.load_state_dict(state)
        order = list(sampler)  # what a DataLoader would fetch (possibly ahead of training)
        batches = [order[i : i + batch] for i in range(0, len(order), batch)]
        for step, indices in enumerate(batches):
            trained.extend(indices)
            state = sampler.state_dict(consumed=(step + 1) * batch)
            if stop_after is not None and step + 1 == stop_after:
                break
    assert trained == uninterrupted


def test_sampler_refuses_a_state_from_another_setup() -> None:
    state = DistributedFSLSampler(20, num_replicas=2, rank=0, seed=7).state_dict()
    with pytest.raises(ValueError, match="seed"):
        DistributedFSLSampler(20, num_replicas=2, rank=0, seed=8).load_state_dict(state)
    with pytest.raises(ValueError, match="num_replicas"):
        DistributedFSLSampler(20, num_replicas=4, rank=0, seed=7).load_state_dict(state)
    with pytest.raises(ValueError, match="rank"):
        DistributedFSLSampler(20, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="consumed"):
        DistributedFSLSampler(20, num_replicas=2, rank=0).state_dict(consumed=11)


def test_sampler_defaults_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    sampler = DistributedFSLSampler(list(range(8)), shuffle=False)
    assert (sampler.num_replicas, sampler.rank) == (4, 2)
    assert list(sampler) == [2, 6]


def _fsl() -> FSLDataset:
    events = [[i, i + 1, 99, 99] if i % 3 == 0 else [i] * (1 + i % 4) for i in range(1, 80)]
    ds = datasets.Dataset.from_dict(
        {
            "episode_path": [f"ep{i // 20}" for i in range(len(events))],
            "token_ids": events,
            "images": [[] for _ in events],
            "total_token_count": [len(e) for e in events],
        }
    )
    return FSLDataset(ds, pad_token_id=0, max_sequence_length=16, return_position_ids=True, log_every=5).prepare()


def test_prepared_dataset_pickles_for_spawned_workers() -> None:
    fsl = _fsl()
    copy = pickle.loads(pickle.dumps(fsl))
    assert len(copy) == len(fsl)
    for index in (0, len(fsl) // 2, -1):
        assert copy[index]["token_ids"].tolist() == fsl[index]["token_ids"].tolist()
        assert copy[index]["position_ids"].tolist() == fsl[index]["position_ids"].tolist()


def test_dataloader_with_two_workers_matches_direct_reads() -> None:
    from torch.utils.data import DataLoader

    fsl = _fsl()
    sampler = DistributedFSLSampler(len(fsl), num_replicas=2, rank=1, seed=3)
    collate = FSLCollator(image_token_id=99)
    loader = DataLoader(fsl, batch_size=4, sampler=sampler, num_workers=2, collate_fn=collate)
    batches = list(loader)
    order = sampler.indices().tolist()
    assert sum(len(b["input_ids"]) for b in batches) == len(order)
    for k, batch in enumerate(batches):
        expected = collate([fsl[i] for i in order[4 * k : 4 * k + 4]])
        for key in ("input_ids", "attention_mask", "labels", "position_ids", "total_token_count"):
            assert torch.equal(batch[key], expected[key]), key
        assert (batch["labels"][batch["input_ids"] == 99] == IGNORE_INDEX).all()


def test_dataloader_workers_decode_real_frames(recordings_dir) -> None:
    from torch.utils.data import DataLoader

    from owa.data.episode_tokenizer import EpisodeTokenizer
    from owa.data.testing import event_dataset_from_mcap, tiny_bpe_tokenizer

    tokenizer = tiny_bpe_tokenizer()
    event_tokenizer = EpisodeTokenizer(image_token_length=4)
    event_tokenizer.prepare_model(tokenizer=tokenizer)
    tokenized = event_tokenizer.tokenize_event_dataset(event_dataset_from_mcap(recordings_dir / "0.5.1.mcap"))
    fsl = FSLDataset(tokenized, pad_token_id=tokenizer.pad_token_id, max_sequence_length=128, log_every=None)
    fsl.prepare()
    collate = FSLCollator(image_token_id=event_tokenizer.image_token_id)
    loader = DataLoader(fsl, batch_size=3, shuffle=False, num_workers=2, collate_fn=collate)
    images = [np.asarray(image) for batch in loader for sample_images in batch["images"] for image in sample_images]
    expected = [np.asarray(image) for sample in fsl for image in sample["images"]]
    assert len(images) == len(expected) == 17
    assert all(np.array_equal(a, b) for a, b in zip(images, expected, strict=True))


def test_rank_and_world_size_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from owa.data.distributed import rank_and_world_size

    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert rank_and_world_size() == (0, 1)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert rank_and_world_size() == (2, 4)
    sampler = DistributedFSLSampler(10)  # its defaults come from the same function
    assert (sampler.rank, sampler.num_replicas) == (2, 4)
    monkeypatch.setenv("RANK", "first")
    with pytest.raises(ValueError, match=r"Invalid \$RANK \('first'\)"):
        rank_and_world_size()


def test_data_modules_import_without_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None; "  # any 'import torch' now fails
        "import owa.data.fsl_dataset, owa.data.training, owa.data.distributed; "
        "assert owa.data.distributed.rank_and_world_size()[1] >= 1"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
