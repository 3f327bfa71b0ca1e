"""RVOS's recurrent instance decoder (engine/rvos.py) and its zero-shot training (train/instances.py)."""

import random

import numpy as np
import torch

from vossegcli.engine.rvos import InstanceConfig, InstanceDecoder, instance_labels, load_instances, save_instances
from vossegcli.train.instances import InstanceTrainConfig, InstanceTrainer, soft_targets, window_loss

SMALL = InstanceConfig(slots=3, hidden=(8, 8, 8))


def _levels(seed: int = 0, b: int = 1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 352, 3, 4, generator=g), torch.randn(b, 120, 6, 8, generator=g),
            torch.randn(b, 48, 12, 16, generator=g))


def test_decoder_gives_each_slot_a_mask_and_a_score_and_carries_its_state_to_the_next_frame():
    torch.manual_seed(0)
    net = InstanceDecoder(SMALL).eval()
    with torch.no_grad():
        logits, scores, state = net.forward_levels(*_levels())
        assert logits.shape == (1, 3, 12, 16) and scores.shape == (1, 3) and state.frame_index == 1
        assert [h.shape for h in state.h] == [(1, 3, 8, 3, 4), (1, 3, 8, 6, 8), (1, 3, 8, 12, 16)]
        again, _, _ = net.forward_levels(*_levels(1), state)
        fresh, _, _ = net.forward_levels(*_levels(1))
    assert not torch.equal(again, fresh)  # the previous frame's states reach this frame
    assert not torch.equal(logits[0, 0], logits[0, 1])  # slot 1 sees slot 0's state: a different output


def test_window_loss_assigns_objects_to_slots_by_soft_iou_and_scores_only_the_assigned_visible_ones():
    t, h, w = 2, 8, 8
    targets = torch.zeros(2, t, h, w)
    targets[0, :, :4, :4] = 1  # object 0 in both frames
    targets[1, 1, 4:, 4:] = 1  # object 1 enters at frame 1
    logits = torch.full((t, 3, h, w), -8.0)
    logits[:, 2][targets[0] > 0] = 8.0  # slot 2 holds object 0, slot 0 holds object 1
    logits[:, 0][targets[1] > 0] = 8.0
    scores = torch.tensor([[-8.0, -8.0, 8.0], [8.0, -8.0, 8.0]])
    good, iou = window_loss(logits, scores, targets)
    assert iou > 0.99 and float(good) < 0.05
    wrong_scores, _ = window_loss(logits, torch.full((t, 3), 8.0), targets)  # slot 1 holds nothing
    assert float(wrong_scores) > float(good) + 1.0
    swapped = logits[:, [2, 1, 0]]
    same, _ = window_loss(swapped, scores[:, [2, 1, 0]], targets)  # any slot may take any object
    assert abs(float(same) - float(good)) < 1e-5


def test_soft_targets_average_each_object_over_the_grid_cells():
    labels = torch.zeros(1, 16, 16, dtype=torch.long)
    labels[0, :8, :8] = 1
    labels[0, 8:, 8:12] = 2
    t = soft_targets(labels, [1, 2], (2, 2))
    assert t.shape == (2, 1, 2, 2)
    assert torch.allclose(t[0, 0], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    assert torch.allclose(t[1, 0], torch.tensor([[0.0, 0.0], [0.0, 0.5]]))


def test_instance_labels_write_slot_i_as_id_i_plus_1_and_only_slots_that_score_as_objects():
    logits = torch.full((3, 4, 4), -5.0)
    logits[0, :2] = 5.0
    logits[1, 2:] = 5.0
    logits[2, :, :2] = 6.0  # overlaps both, but scores as no object
    scores = torch.tensor([3.0, 3.0, -3.0])
    labels = instance_labels(logits, scores, (8, 8))
    assert labels.dtype == np.uint8 and set(np.unique(labels).tolist()) == {1, 2}
    assert (labels[:4] == 1).all() and (labels[4:] == 2).all()
    assert set(np.unique(instance_labels(logits, scores, (8, 8), max_objects=1)).tolist()) == {0, 1}


def _toy_clips(count: int = 6, frames: int = 6) -> list[dict]:
    """Two squares moving on a 96×128 frame; the backbone levels carry each object's mask in a
    channel of its own plus noise (a stand-in for distinct looks)."""
    rng = np.random.default_rng(0)
    clips = []
    for c in range(count):
        levels, labels = [], []
        for t in range(frames):
            lab = np.zeros((96, 128), np.uint8)
            lab[10 + 3 * t: 42 + 3 * t, 8 + 4 * t + c: 48 + 4 * t + c] = 1
            lab[50: 86, 110 - 5 * t - c: 126 - 5 * t - c] = 2
            one = torch.from_numpy(lab)
            levels.append({
                name: torch.cat([F_pool((one == 1).float(), s)[None] * 4, F_pool((one == 2).float(), s)[None] * 4,
                                 torch.from_numpy(rng.standard_normal((ch - 2, 96 // s, 128 // s))).float()]).half()
                for name, ch, s in (("s32", 352, 32), ("s16", 120, 16), ("s8", 48, 8))})
            labels.append(one)
        clips.append({"name": f"multi-{c}", "levels": levels, "labels": torch.stack(labels)})
    return clips


def F_pool(mask: torch.Tensor, stride: int) -> torch.Tensor:
    return torch.nn.functional.avg_pool2d(mask[None, None], stride)[0, 0]


def test_training_learns_to_put_two_objects_in_two_slots_and_is_deterministic(tmp_path):
    def trainer():
        t = InstanceTrainer(InstanceTrainConfig(steps=250, batch=2, window=3, lr=3e-3, seed=1), _toy_clips(), log=lambda s: None)
        t.net = InstanceDecoder(SMALL)  # small: a test, not a model
        t.net.set_statistics([torch.stack([c["levels"][0][k] for c in _toy_clips(2)]) for k in ("s32", "s16", "s8")])
        t.optimizer = torch.optim.Adam(t.net.parameters(), lr=3e-3)
        return t

    torch.manual_seed(0)
    a = trainer()
    before = a.item_loss(*a.sample(random.Random(3)))[1]
    a.train()
    after = np.mean([a.item_loss(*a.sample(random.Random(s)))[1] for s in range(4)])
    assert after > 0.6 and after > before + 0.3, (before, after)
    torch.manual_seed(0)
    b = trainer()
    b.train()
    for key, value in a.net.state_dict().items():
        assert torch.equal(value, b.net.state_dict()[key]), key
    path = tmp_path / "instances.pt"
    save_instances(a.net, path, {"note": "test"})
    loaded = load_instances(path)
    levels = _levels(4)
    with torch.no_grad():
        assert torch.equal(loaded.forward_levels(*levels)[0], a.net.eval().forward_levels(*levels)[0])


def test_train_instances_without_data_says_where_to_point_it_and_writes_nothing(tmp_path):
    from support import run_cli

    result = run_cli("train-instances", "--out", tmp_path / "i.pt", "--data", tmp_path / "nothing")
    assert result.exit_code == 2 and "no davis16-train data here" in result.output and "--data" in result.output
    assert not (tmp_path / "i.pt").exists()


def test_training_can_continue_from_trained_weights_with_their_statistics():
    torch.manual_seed(0)
    start = InstanceDecoder(SMALL)
    start.set_statistics([torch.randn(4, c, 2, 2) * 3 + 1 for c in (352, 120, 48)])
    trainer = InstanceTrainer(InstanceTrainConfig(steps=1, batch=1, window=2), _toy_clips(2), log=lambda s: None, init=start)
    assert trainer.net.config == SMALL
    for key, value in start.state_dict().items():
        assert torch.equal(trainer.net.state_dict()[key], value), key
    trainer.train()
    assert not torch.equal(trainer.net.mask_head.weight, start.mask_head.weight)
    assert torch.equal(trainer.net.mean, start.mean)
