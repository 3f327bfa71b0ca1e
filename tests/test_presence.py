"""Re-identification embeddings, template banks, the spatial prior and the diagnostics file (unit level)."""

import json

import pytest
import torch

from vossegcli.engine.presence import (
    FrameDiagnostics, PresenceState, frame_descriptor, local_maxima, spatial_windows,
)
from vossegcli.engine.reid import BINS, SAMPLES_PER_BIN, TemplateBank, mask_boxes, region_embeddings, roi_weight_maps
from vossegcli.io.diagnostics_file import DIAGNOSTICS_FILE
from vossegcli.run.diagnostics import DiagnosticsLog, read_records, summarize, summary_lines


def _features(seed: int, h: int = 8, w: int = 12):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(120, h, w, generator=g), torch.randn(352, h // 2, w // 2, generator=g)


def test_region_embeddings_are_unit_vectors_and_see_only_their_box():
    s16, s32 = _features(0)
    weights = torch.ones(2, 8, 12)
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 4.0, 4.0]])
    emb = region_embeddings(s16, s32, boxes, weights)
    assert emb.shape == (2, 472)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
    # Changing features outside the box (beyond roi_align's sampling reach) changes nothing.
    s16b, s32b = s16.clone(), s32.clone()
    s16b[:, :, 8:] = torch.randn(120, 8, 4)
    s32b[:, :, 4:] = torch.randn(352, 4, 2)
    assert torch.allclose(region_embeddings(s16b, s32b, boxes, weights), emb, atol=1e-6)
    # ... while changing them inside does.
    s16c = s16.clone()
    s16c[:, :3, :3] = torch.randn(120, 3, 3)
    assert not torch.allclose(region_embeddings(s16c, s32, boxes, weights), emb, atol=1e-3)


def _roi_align_summed_by_hand(f, box, scale):
    """RoIAlign (aligned=True, BINS×BINS bins, SAMPLES_PER_BIN² points each) summed over bins, point by point."""
    c, h, w = f.shape
    x0, y0, x1, y1 = (float(v) * scale - 0.5 for v in box)
    n = BINS * SAMPLES_PER_BIN
    total = torch.zeros(c, dtype=torch.float64)

    def axis(p, size):  # [(index, weight)] of one coordinate, or [] when out of reach
        if p < -1.0 or p > size:
            return []
        p = max(p, 0.0)
        lo = int(p)
        if lo >= size - 1:
            return [(size - 1, 1.0)]
        return [(lo, 1.0 - (p - lo)), (lo + 1, p - lo)]

    for i in range(n):
        for j in range(n):
            y = y0 + (i + 0.5) * (y1 - y0) / n
            x = x0 + (j + 0.5) * (x1 - x0) / n
            for yi, wy in axis(y, h):
                for xi, wx in axis(x, w):
                    total += wy * wx * f[:, yi, xi].double()
    return total / SAMPLES_PER_BIN**2


@pytest.mark.parametrize("box,scale", [
    ((0.0, 0.0, 4.0, 4.0), 1.0), ((1.3, 0.7, 9.2, 5.5), 1.0), ((-3.0, -2.0, 14.0, 11.0), 1.0),
    ((10.5, 6.2, 12.0, 8.0), 1.0), ((2.0, 1.0, 11.0, 7.0), 0.5), ((0.0, 0.0, 12.0, 8.0), 0.5),
])
def test_roi_weight_maps_match_roialign_sampling_point_by_point(box, scale):
    g = torch.Generator().manual_seed(3)
    h, w = (8, 12) if scale == 1.0 else (4, 6)
    f = torch.randn(5, h, w, generator=g)
    maps = roi_weight_maps(torch.tensor([box]), scale, (h, w))
    got = torch.einsum("khw,chw->kc", maps, f)[0].double()
    assert torch.allclose(got, _roi_align_summed_by_hand(f, box, scale), atol=1e-5)


def test_roi_weight_maps_equal_torchvision_roi_align_when_it_is_installed():
    ops = pytest.importorskip("torchvision.ops")
    g = torch.Generator().manual_seed(4)
    f = torch.randn(6, 9, 13, generator=g)
    boxes = torch.tensor([[0.0, 0.0, 13.0, 9.0], [2.2, 1.1, 7.9, 8.4], [-2.0, 3.0, 5.0, 12.0]])
    rois = torch.cat([torch.arange(3.0)[:, None], boxes], dim=1)
    want = ops.roi_align(f[None].expand(3, -1, -1, -1).contiguous(), rois, (BINS, BINS), spatial_scale=1.0,
                         sampling_ratio=SAMPLES_PER_BIN, aligned=True).sum(dim=(2, 3))
    got = torch.einsum("khw,chw->kc", roi_weight_maps(boxes, 1.0, (9, 13)), f)
    assert torch.allclose(got, want, atol=1e-4)


def test_region_embedding_of_zero_weights_is_zero_and_weights_select_pixels():
    s16, s32 = _features(1)
    box = torch.tensor([[0.0, 0.0, 12.0, 8.0]])
    none = region_embeddings(s16, s32, box, torch.zeros(1, 8, 12))
    assert torch.count_nonzero(none) == 0
    left, right = torch.zeros(1, 8, 12), torch.zeros(1, 8, 12)
    left[..., :6], right[..., 6:] = 1, 1
    a, b = region_embeddings(s16, s32, box, left), region_embeddings(s16, s32, box, right)
    assert float(a[0] @ b[0]) < 0.9


def test_mask_boxes_cover_the_cells_above_threshold_and_the_whole_grid_when_empty():
    w = torch.zeros(2, 6, 10)
    w[0, 2:4, 3:7] = 1
    boxes = mask_boxes(w)
    assert boxes[0].tolist() == [3.0, 2.0, 7.0, 4.0]
    assert boxes[1].tolist() == [0.0, 0.0, 10.0, 6.0]


def test_template_bank_expands_with_novel_views_keeps_the_start_frame_and_round_trips():
    bank = TemplateBank(capacity=3)
    e = torch.eye(4)
    bank.add_objects(e[:1], frame=0)
    assert not bank.expand(0, e[0], frame=5, max_similarity=0.95)  # a duplicate of the start view
    assert bank.expand(0, e[1], frame=10, max_similarity=0.95)
    assert bank.expand(0, e[2], frame=20, max_similarity=0.95)
    assert bank.expand(0, e[3], frame=30, max_similarity=0.95)  # full: the oldest expansion (e1) goes
    held = bank.templates[0]
    assert torch.equal(held[0], e[0]) and torch.equal(held[1], e[2]) and torch.equal(held[2], e[3])
    sims = bank.similarity([0, 0], torch.stack([e[1], e[3]]))
    assert sims.tolist() == [0.0, 1.0]
    again = TemplateBank.from_state_dict(bank.state_dict())
    assert torch.equal(again.templates, bank.templates) and again.count == bank.count and again.added == bank.added


def test_spatial_window_is_one_around_the_moved_box_decays_outside_and_is_off_for_lost_objects():
    boxes = torch.tensor([[2.0, 2.0, 4.0, 4.0], [2.0, 2.0, 4.0, 4.0]])
    velocity = torch.tensor([[3.0, 0.0], [0.0, 0.0]])
    win = spatial_windows(boxes, velocity, torch.tensor([True, False]), (10, 20), margin=1.0, sigma=0.5)
    assert win.shape == (2, 1, 10, 20)
    assert float(win[0, 0, 3, 6]) == 1.0  # the box's centre moved by the velocity
    assert float(win[0, 0, 3, 19]) < 0.01  # far to the right
    assert float(win[0, 0, 3, 12]) < float(win[0, 0, 3, 10]) <= 1.0
    assert torch.equal(win[1], torch.ones(1, 10, 20))


def test_local_maxima_are_found_best_first_above_each_maps_minimum():
    s = torch.zeros(2, 8, 8)
    s[0, 1, 1], s[0, 5, 6], s[0, 6, 6], s[0, 3, 3] = 0.9, 0.5, 0.7, 0.1
    s[1] = s[0]
    values, index = local_maxima(s, torch.tensor([0.2, 0.8]), k=5)
    found = [[(int(i) // 8, int(i) % 8) for v, i in zip(vs, ix) if v > -float("inf")] for vs, ix in zip(values, index)]
    assert found == [[(1, 1), (6, 6)], [(1, 1)]]  # (5, 6) is beside a higher score; (3, 3) below the minimum
    assert values[0, :2].tolist() == pytest.approx([0.9, 0.7])


def test_frame_descriptor_tells_a_new_scene_from_the_same_scene():
    """Real backbone, real frames: two frames of the bundled sample are closer than either is to a
    different scene (coloured blocks on a gradient)."""
    import numpy as np

    from vossegcli.engine.backbone import Backbone
    from vossegcli.io.video import open_frames
    from vossegcli.sample import sample_paths

    with open_frames(sample_paths().video) as reader:
        frames = [f.image for f in reader][:8]
    h, w = frames[0].shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    other = np.stack([40 + 150 * xx / w, 60 + 120 * yy / h, 200 - 100 * xx / w], axis=-1).astype(np.uint8)
    other[h // 4: h // 2, w // 5: w // 2] = (220, 200, 30)
    other[h // 2: 3 * h // 4, w // 2: 4 * w // 5] = (30, 160, 60)
    backbone = Backbone().eval()
    with torch.no_grad():
        d = [frame_descriptor(backbone(torch.from_numpy(f.copy()).permute(2, 0, 1)[None]).s32[0])
             for f in (frames[0], frames[7], other)]
    same, new = float(d[0] @ d[1]), float(d[0] @ d[2])
    assert same > 0.9 and same - new > 0.3, (same, new)


def test_presence_state_round_trips():
    state = PresenceState()
    state.add_objects(torch.eye(4)[:2], torch.tensor([[0.0, 0, 2, 2], [1, 1, 3, 3]]), [1.0, 0.8], [100.0, 50.0], 0, 4,
                      torch.ones(3) / 3**0.5)
    state.written_area = [100, 50]
    state.descriptor = torch.ones(3)
    again = PresenceState.from_state_dict(state.state_dict())
    assert again.status == state.status and again.boxes == state.boxes and again.peak_ref == state.peak_ref
    assert again.written_area == [100, 50] and torch.equal(again.descriptor, state.descriptor)
    assert torch.equal(again.bank.templates, state.bank.templates) and torch.equal(again.scene, state.scene)


def _diag(frame, statuses, refound=(), cut=False):
    n = len(statuses)
    return FrameDiagnostics(frame, list(range(1, n + 1)), list(statuses), [0 if s in ("lost", "absent") else 100 for s in statuses],
                            [None] * n, [1.0] * n, [0.9] * n, [0.3 if s == "absent" else 0.9 for s in statuses],
                            [i + 1 in refound for i in range(n)], cut)


def test_diagnostics_file_summary_and_terminal_lines(tmp_path):
    log = DiagnosticsLog(tmp_path)
    statuses = ["tracked"] * 3 + ["absent"] * 4 + ["uncertain"] + ["tracked"] * 2
    for t, s in enumerate(statuses):
        log.add(_diag(t, [s, "tracked"], refound={1} if t == 7 else set(), cut=t == 3))
    log.close()
    summary = summarize(tmp_path / DIAGNOSTICS_FILE)
    one = summary["objects"]["1"]
    assert summary["scene_cuts"] == [3]
    assert one["runs"] == [["tracked", 0, 2], ["absent", 3, 6], ["uncertain", 7, 7], ["tracked", 8, 9]]
    assert one["counts"] == {"tracked": 5, "absent": 4, "uncertain": 1} and one["refound"] == [7]
    lines = summary_lines(summary)
    assert lines[0] == "scene cut detected at frame 3"
    assert "object 1: absent at frames 3–6, re-found at 7" in lines[1]
    assert not any(line.startswith("object 2") for line in lines)  # always tracked: nothing to say


def test_diagnostics_log_keeps_only_the_frames_before_a_resume_point(tmp_path):
    log = DiagnosticsLog(tmp_path)
    for t in range(6):
        log.add(_diag(t, ["tracked"]))
    log.close()
    with (tmp_path / DIAGNOSTICS_FILE).open("a") as handle:
        handle.write('{"frame": 6, "obj')  # a line cut short by a kill
    DiagnosticsLog(tmp_path, keep=4).close()
    assert [r["frame"] for r in read_records(tmp_path / DIAGNOSTICS_FILE)] == [0, 1, 2, 3]
    line = (tmp_path / DIAGNOSTICS_FILE).read_text().splitlines()[0]
    assert json.loads(line)["objects"]["1"]["status"] == "tracked"


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])


def test_backward_stretches_end_at_the_best_of_the_first_tracked_frames_and_skip_short_uncertain_runs(tmp_path):
    from vossegcli.run.bidirectional import find_stretches

    log = DiagnosticsLog(tmp_path)
    one = ["tracked", "tracked", "absent", "absent", "lost", "uncertain", "tracked", "tracked", "tracked", "tracked",
           "tracked", "tracked", "tracked"]
    two = ["tracked", "uncertain", "uncertain", "tracked"] + ["tracked"] * 9
    sims = [0.9, 0.9, 0.2, 0.2, 0.6, 0.7, 0.80, 0.95, 0.90, 0.85, 0.85, 0.99, 0.99]
    for t in range(13):
        d = _diag(t, [one[t], two[t]])
        d.similarity = [sims[t], 0.9]
        log.add(d)
    log.close()
    stretches = find_stretches(tmp_path / DIAGNOSTICS_FILE)
    assert [(s.object_id, s.first, s.anchor, s.anchor_similarity) for s in stretches] == [(1, 2, 7, 0.95)]
