"""The far-region filter (engine/regions.py): connected parts, predicted boxes, what is removed."""
import torch

from vossegcli.engine.regions import REGION_STRIDE, connected_parts, far_parts_to_remove, predicted_boxes
from vossegcli.engine.reid import TemplateBank, region_embeddings


def test_connected_parts_label_each_8_connected_part_once():
    m = torch.zeros(1, 7, 9, dtype=torch.bool)
    m[0, 0:2, 0:2] = True
    m[0, 2, 2] = True  # touches the first part diagonally: same part
    m[0, 5:7, 5:9] = True
    m[0, 0, 8] = True
    labels = connected_parts(m)[0]
    assert labels[0, 0] == labels[2, 2] != 0
    assert len({int(labels[0, 0]), int(labels[5, 5]), int(labels[0, 8])}) == 3
    assert torch.equal(labels > 0, m[0])
    assert len(torch.unique(labels[5:7, 5:9])) == 1


def test_a_long_snake_is_one_part():
    m = torch.zeros(1, 9, 40, dtype=torch.bool)
    m[0, 0, :] = True
    m[0, :, 39] = True
    m[0, 8, :] = True
    m[0, 4, 0:39] = True
    m[0, 0:5, 0] = True
    labels = connected_parts(m)[0]
    assert len(torch.unique(labels[m[0]])) == 1


def test_predicted_box_moves_with_velocity_grows_by_margin_and_changes_grid():
    (box,) = predicted_boxes([[10.0, 4.0, 14.0, 8.0]], [[2.0, 0.0]], margin=0.5, scale=2.0)
    # x: 10+2 - (0.5*4 + 2) = 8 → 16 on a grid twice as fine; y: 4 - 2 = 2 → 4
    assert box == [16.0, 4.0, 40.0, 20.0]


def _frame(h16=12, w16=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    s16 = torch.randn(16, h16, w16, generator=g)
    s32 = torch.randn(24, (h16 + 1) // 2, (w16 + 1) // 2, generator=g)
    return s16, s32


def test_far_part_unlike_the_object_is_removed_and_the_near_part_stays():
    s16, s32 = _frame()
    h, w = 16 * 12, 16 * 20
    mask = torch.zeros(1, h, w, dtype=torch.bool)
    mask[0, 32:96, 32:96] = True  # the object, where its box predicts
    mask[0, 128:176, 240:300] = True  # a blob far away
    weights = torch.zeros(1, 12, 20)
    weights[0, 2:6, 2:6] = 1
    bank = TemplateBank(4)
    bank.add_objects(region_embeddings(s16, s32, torch.tensor([[2.0, 2.0, 6.0, 6.0]]), weights), 0)
    (box,) = predicted_boxes([[2.0, 2.0, 6.0, 6.0]], [[0.0, 0.0]], 0.5, 16 / REGION_STRIDE)
    removed = far_parts_to_remove(mask, [0], [box], s16, s32, bank, similarity=0.75)
    assert removed[0, 128 // 8:176 // 8, 240 // 8:300 // 8].all()
    assert not removed[0, 32 // 8:96 // 8, 32 // 8:96 // 8].any()


def test_far_part_that_looks_like_the_object_stays():
    s16, s32 = _frame()
    s16[:, 8:11, 15:19] = s16[:, 2:5, 2:6].mean(dim=(1, 2), keepdim=True)  # the far place shows the object's look
    s16[:, 2:6, 2:6] = s16[:, 2:5, 2:6].mean(dim=(1, 2), keepdim=True)
    s32[:, 4:6, 7:10] = s32[:, 1:3, 1:3].mean(dim=(1, 2), keepdim=True)
    s32[:, 1:3, 1:3] = s32[:, 1:3, 1:3].mean(dim=(1, 2), keepdim=True)
    h, w = 16 * 12, 16 * 20
    mask = torch.zeros(1, h, w, dtype=torch.bool)
    mask[0, 32:96, 32:96] = True
    mask[0, 8 * 16:11 * 16, 15 * 16:19 * 16] = True
    weights = torch.zeros(1, 12, 20)
    weights[0, 2:6, 2:6] = 1
    bank = TemplateBank(4)
    bank.add_objects(region_embeddings(s16, s32, torch.tensor([[2.0, 2.0, 6.0, 6.0]]), weights), 0)
    (box,) = predicted_boxes([[2.0, 2.0, 6.0, 6.0]], [[0.0, 0.0]], 0.5, 16 / REGION_STRIDE)
    removed = far_parts_to_remove(mask, [0], [box], s16, s32, bank, similarity=0.75)
    assert not removed.any()


def test_nothing_is_removed_when_no_part_reaches_the_predicted_box():
    s16, s32 = _frame()
    mask = torch.zeros(1, 192, 320, dtype=torch.bool)
    mask[0, 128:176, 240:300] = True
    mask[0, 10:20, 200:220] = True
    bank = TemplateBank(4)
    bank.add_objects(torch.nn.functional.normalize(torch.randn(1, 40), dim=1), 0)
    removed = far_parts_to_remove(mask, [0], [[0.0, 0.0, 4.0, 4.0]], s16, s32, bank, similarity=0.75)
    assert not removed.any()
