import math

import pytest
import torch

from vossegcli.engine.memory import SampleMemory


def _memory(capacity=10, eta=0.1):
    return SampleMemory(capacity, (2, 3, 4), (6, 8), learning_rate=eta)


def _sample(value: float, n: int = 1):
    """n objects' features (n, 2, 3, 4) and labels (n, 6, 8) filled with ``value``."""
    return torch.full((n, 2, 3, 4), value), torch.full((n, 6, 8), value)


def _init(mem, k=1, n=1, value=0.0):
    f, l = _sample(value, n)
    weights = torch.ones(n, k)
    weights[:, 0] = 2.0
    mem.add_objects(f[:, None].expand(n, k, 2, 3, 4).clone(), l[:, None].expand(n, k, 6, 8).clone(), weights)


def test_initial_weights_original_counts_twice():
    mem = _memory()
    _init(mem, k=5)
    assert mem.num_samples(0) == 5
    assert math.isclose(mem.weights[0, 0].item(), 2 / 6) and math.isclose(mem.weights[0, 1].item(), 1 / 6)
    assert math.isclose(mem.weights[0].sum().item(), 1.0)


def test_first_insertion_gets_eta_then_each_new_sample_weighs_1_over_1_minus_eta_more():
    mem = _memory(capacity=10, eta=0.1)
    _init(mem, k=1)  # one initial sample, weight 1
    s1 = int(mem.insert(*_sample(1))[0])
    # Before renormalization: old 1/(0.9), new 0.1 → normalized
    assert math.isclose(mem.weights[0, s1].item(), 0.1 / (1 / 0.9 + 0.1), rel_tol=1e-9)
    s2 = int(mem.insert(*_sample(2))[0])
    s3 = int(mem.insert(*_sample(3))[0])
    w = mem.weights[0]
    assert math.isclose((w[s2] / w[s1]).item(), 1 / 0.9, rel_tol=1e-9)
    assert math.isclose((w[s3] / w[s2]).item(), 1 / 0.9, rel_tol=1e-9)
    assert math.isclose(w.sum().item(), 1.0, rel_tol=1e-12)


def test_memory_fills_empty_slots_first_then_evicts_the_lightest():
    mem = _memory(capacity=4)
    _init(mem, k=1)
    slots = [int(mem.insert(*_sample(i))[0]) for i in range(1, 4)]
    assert slots == [1, 2, 3] and mem.num_samples(0) == 4
    # Full: the lightest is the oldest tracked sample (slot 1), not the initial one yet.
    w_before = mem.weights[0].clone()
    slot = int(mem.insert(*_sample(4))[0])
    assert slot == int(torch.argmin(w_before)) == 1
    assert mem.features[0, 1, 0, 0, 0].item() == 4 and mem.labels[0, 1, 0, 0].item() == 4
    assert mem.num_samples(0) == 4


def test_eviction_order_eventually_drops_the_start_frame():
    # As the implementation notes simulate: with 5 initial samples and capacity 80, the original
    # start-frame sample is evicted after roughly 90 insertions, never before the memory is full.
    mem = SampleMemory(80, (1, 1, 1), (1, 1))
    mem.add_objects(torch.zeros(1, 5, 1, 1, 1), torch.full((1, 5, 1, 1), -1.0), torch.tensor([[2.0, 1, 1, 1, 1]]))
    mem.labels[0, 0] = -2.0  # mark the original
    evicted_at = None
    for n in range(1, 150):
        slot = int(mem.insert(torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1), float(n)))[0])
        if n < 76:
            assert slot == 4 + n  # filling empty slots
        if slot == 0 and evicted_at is None:
            evicted_at = n
    assert evicted_at is not None and 85 <= evicted_at <= 100


def test_objects_are_independent_and_a_rejected_sample_changes_nothing():
    mem = _memory(capacity=6)
    _init(mem, k=2, n=2)
    w0 = mem.weights.clone()
    f, l = _sample(7, 2)
    mem.insert(f, l, accept=torch.tensor([True, False]))
    assert torch.equal(mem.weights[1], w0[1]) and mem.num_samples(1) == 2
    assert mem.num_samples(0) == 3 and mem.labels[0, 2, 0, 0].item() == 7 and mem.labels[1, 2, 0, 0].item() == 0
    # object 1's first accepted sample gets η, as if the rejected frame never happened
    mem.insert(f, l)
    assert math.isclose(mem.weights[1, 2].item(), 0.1 / (1 / 0.9 + 0.1), rel_tol=1e-9)


def test_active_returns_the_used_slots_normalized():
    mem = _memory()
    _init(mem, k=2)
    mem.insert(*_sample(5))
    feats, labels, weights = mem.active()
    assert feats.shape == (1, 3, 2, 3, 4) and labels.shape == (1, 3, 6, 8)
    assert math.isclose(weights.sum().item(), 1.0, rel_tol=1e-6)


def test_state_dict_round_trip_is_exact():
    mem = _memory(capacity=8)
    _init(mem, k=3, n=2)
    for i in range(4):
        mem.insert(*_sample(float(i) + 0.5, 2), accept=torch.tensor([True, i % 2 == 0]))
    copy = SampleMemory.from_state_dict(mem.state_dict())
    for name in ("features", "labels", "weights", "previous"):
        assert torch.equal(getattr(copy, name), getattr(mem, name))
    assert copy.filled == mem.filled
    a = mem.insert(*_sample(9.0, 2))
    b = copy.insert(*_sample(9.0, 2))
    assert torch.equal(a, b) and torch.equal(mem.weights, copy.weights)


def test_storage_is_fixed_at_capacity():
    mem = SampleMemory(80, (30, 54, 96), (120, 214))
    mem.add_objects(torch.zeros(1, 5, 30, 54, 96), torch.zeros(1, 5, 120, 214), torch.ones(1, 5))
    assert mem.nbytes == 80 * (96 * 30 * 54 + 120 * 214) * 4
    before = mem.nbytes
    for _ in range(100):
        mem.insert(torch.zeros(1, 30, 54, 96), torch.zeros(1, 120, 214))
    assert mem.nbytes == before and mem.features.shape[1] == 80


def test_rejects_bad_parameters():
    with pytest.raises(ValueError):
        SampleMemory(0, (1, 1, 1), (1, 1))
    with pytest.raises(ValueError):
        SampleMemory(4, (1, 1, 1), (1, 1), learning_rate=1.0)


def test_anchor_floor_keeps_the_start_samples_share_and_they_are_never_evicted():
    mem = SampleMemory(6, (2, 3, 4), (6, 8), learning_rate=0.1, anchor_weight=0.3)
    _init(mem, k=2)
    for i in range(1, 40):  # far past the capacity: tracked samples cycle through the free slots
        mem.insert(*_sample(i))
    w = mem.weights[0]
    assert math.isclose(w[:2].sum().item(), 0.3, rel_tol=1e-9)  # recency alone would leave ~0.0x
    assert math.isclose(w.sum().item(), 1.0, rel_tol=1e-12)
    assert torch.all(mem.features[0, :2] == 0) and math.isclose((w[0] / w[1]).item(), 2.0)  # both anchors kept, 2 : 1
    newest = int(mem.previous[0])
    others = [s for s in range(2, 6) if s != newest]
    assert all(w[newest] > w[s] for s in others)  # recency order among tracked samples is kept


def test_without_anchor_floor_the_start_samples_fade_and_get_evicted():
    mem = SampleMemory(6, (2, 3, 4), (6, 8), learning_rate=0.1)
    _init(mem, k=2)
    for i in range(1, 40):
        mem.insert(*_sample(i))
    assert not torch.any(mem.features[0, :2] == 0)  # overwritten by tracked samples


def test_anchor_floor_survives_a_state_round_trip():
    mem = SampleMemory(6, (2, 3, 4), (6, 8), learning_rate=0.1, anchor_weight=0.25)
    _init(mem, k=2)
    for i in range(1, 10):
        mem.insert(*_sample(i))
    copy = SampleMemory.from_state_dict(mem.state_dict())
    for m in (mem, copy):
        m.insert(*_sample(99.0))
    assert torch.equal(copy.weights, mem.weights) and torch.equal(copy.anchor, mem.anchor)


def test_an_anchor_drops_the_tracked_samples_and_weighs_as_much_as_the_earlier_anchors():
    mem = SampleMemory(12, (2, 3, 4), (6, 8), learning_rate=0.1, anchor_weight=0.5)
    _init(mem, k=3, value=0.0)  # start frame: 2 : 1 : 1
    for v in (1.0, 2.0, 3.0):
        mem.insert(*_sample(v))
    assert mem.num_samples(0) == 6
    f, l = _sample(9.0)
    weights = torch.tensor([[2.0, 1.0]])
    mem.add_anchor([0], f[:, None].expand(1, 2, 2, 3, 4).clone(), l[:, None].expand(1, 2, 6, 8).clone(), weights)
    assert mem.num_samples(0) == 5  # 3 start-frame anchors + 2 new ones; the 3 tracked samples dropped
    w = mem.weights[0]
    new = mem.features[0, :, 0, 0, 0] == 9.0
    assert math.isclose(w.sum().item(), 1.0)
    assert math.isclose(w[new].sum().item(), 0.5) and math.isclose(w[mem.anchor[0] & ~new].sum().item(), 0.5)
    assert bool(mem.anchor[0][w > 0].all())
    assert int(mem.previous[0]) == -1  # recency weighting starts again
    slot = int(mem.insert(*_sample(4.0))[0])
    assert not bool(mem.anchor[0, slot]) and math.isclose(mem.weights[0, slot].item(), 0.1 / (1 / 0.9 + 0.1) * 1.0, rel_tol=0.2)
