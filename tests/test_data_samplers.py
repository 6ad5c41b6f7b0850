"""Random and identity batch samplers: batch shapes, determinism, sharding across ranks."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from irra.data.samplers import IdentityBatchSampler, RandomBatchSampler


def _pids(seed: int = 0, num_ids: int = 40) -> list[int]:
    """Identities with 1..9 samples each, shuffled into dataset order."""
    rng = random.Random(seed)
    pids = [pid for pid in range(num_ids) for _ in range(rng.randint(1, 9))]
    rng.shuffle(pids)
    return pids


def test_random_sampler_covers_the_epoch_once() -> None:
    sampler = RandomBatchSampler(103, 10, drop_last=False, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 11
    assert [len(b) for b in batches] == [10] * 10 + [3]
    assert sorted(i for b in batches for i in b) == list(range(103))


def test_random_sampler_drop_last_gives_full_batches() -> None:
    batches = list(RandomBatchSampler(103, 10, drop_last=True))
    assert [len(b) for b in batches] == [10] * 10
    assert len({i for b in batches for i in b}) == 100


def test_random_sampler_depends_on_seed_and_epoch_only() -> None:
    a, b = RandomBatchSampler(50, 5, seed=3), RandomBatchSampler(50, 5, seed=3)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    state = a.state_dict()
    c = RandomBatchSampler(50, 5, seed=0)
    c.load_state_dict(state)
    assert list(c) == list(a)


@pytest.mark.parametrize("num_samples", [120, 117])
def test_two_ranks_split_each_global_batch_disjointly(num_samples: int) -> None:
    ranks = [
        list(RandomBatchSampler(num_samples, 6, world_size=2, rank=r, seed=5, drop_last=True))
        for r in range(2)
    ]
    whole = list(RandomBatchSampler(num_samples, 12, world_size=1, seed=5, drop_last=True))
    assert len(ranks[0]) == len(ranks[1]) == len(whole)
    for b0, b1, g in zip(ranks[0], ranks[1], whole, strict=True):
        assert not set(b0) & set(b1)
        assert b0 + b1 == g
    covered = sorted(i for r in ranks for b in r for i in b)
    assert covered == sorted(i for b in whole for i in b)
    assert len(covered) == (num_samples // 12) * 12


def test_two_ranks_without_drop_last_cover_everything_with_equal_batches() -> None:
    n = 113  # 9 full global batches of 12, 5 left -> padded to 6
    ranks = [
        list(RandomBatchSampler(n, 6, world_size=2, rank=r, drop_last=False)) for r in range(2)
    ]
    assert [len(b) for b in ranks[0]] == [len(b) for b in ranks[1]] == [6] * 9 + [3]
    seen = Counter(i for r in ranks for b in r for i in b)
    assert set(seen) == set(range(n))
    assert sum(seen.values()) - n == 1  # one duplicate pads the last global batch


def test_identity_sampler_gives_p_ids_times_k_samples() -> None:
    pids = _pids()
    sampler = IdentityBatchSampler(pids, batch_size=16, num_instances=4, seed=2)
    batches = list(sampler)
    assert len(batches) == len(sampler) > 3
    used = Counter()
    for batch in batches:
        assert len(batch) == 16
        counts = Counter(pids[i] for i in batch)
        assert len(counts) == 4 and set(counts.values()) == {4}
        for pid in counts:
            members = [i for i in batch if pids[i] == pid]
            if pids.count(pid) >= 4:  # drawn without replacement
                assert len(set(members)) == 4
                used.update(members)
    assert max(used.values()) == 1  # no sample repeats within an epoch


def test_identity_sampler_shards_whole_ids_across_ranks() -> None:
    pids = _pids(1)
    ranks = [list(IdentityBatchSampler(pids, 8, 4, world_size=2, rank=r, seed=9)) for r in range(2)]
    whole = list(IdentityBatchSampler(pids, 16, 4, world_size=1, seed=9))
    assert len(ranks[0]) == len(ranks[1]) == len(whole)
    for b0, b1, g in zip(ranks[0], ranks[1], whole, strict=True):
        assert b0 + b1 == g
        assert not {pids[i] for i in b0} & {pids[i] for i in b1}
        assert len(b0) == len(b1) == 8


def test_identity_sampler_epochs_differ_and_repeat() -> None:
    pids = _pids()
    sampler = IdentityBatchSampler(pids, 8, 2, seed=0)
    first = list(sampler)
    sampler.set_epoch(4)
    fourth = list(sampler)
    assert first != fourth
    sampler.set_epoch(0)
    assert list(sampler) == first


def test_identity_sampler_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="multiple of num_instances"):
        IdentityBatchSampler(_pids(), 10, 4)
    with pytest.raises(ValueError, match="identities cannot fill"):
        IdentityBatchSampler([0, 0, 1, 1], 12, 4)


def test_rank_must_be_inside_world() -> None:
    with pytest.raises(ValueError, match="rank"):
        RandomBatchSampler(10, 2, world_size=2, rank=2)
