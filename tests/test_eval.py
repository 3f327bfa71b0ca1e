"""DAVIS J&F evaluation: hand-computed measures, protocol details, errors, brute-force cross-checks.

Geometry used below: under the DAVIS boundary rule a filled rectangle with rows a..b and
columns c..d has as boundary the 1-pixel outline of the rectangle rows a-1..b, columns
c-1..d (shifted half a pixel towards the origin). A 10x10 square therefore has a 40-pixel
boundary: the outline of an 11x11 square.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from vossegcli.errors import InputError, MaskError, VossegError
from vossegcli.eval.davis import (
    EvalResult,
    ObjectScore,
    evaluate,
    evaluate_sequence,
    frame_statistics,
    read_id_png,
    render_table,
)
from vossegcli.eval.metrics import (
    boundary_measure,
    boundary_tolerance,
    dilate,
    disk,
    region_similarity,
    seg_to_boundary,
)
from vossegcli.io.palette import write_label_png


def rect(shape, rows, cols):
    """Boolean mask with the rectangle rows[0]..rows[1], cols[0]..cols[1] (inclusive) set."""
    m = np.zeros(shape, dtype=bool)
    m[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1] = True
    return m


# ----------------------------------------------------------------------------- J


def test_region_similarity_of_shifted_squares():
    gt = rect((20, 20), (0, 9), (0, 9))
    pred = rect((20, 20), (0, 9), (2, 11))
    # intersection 10 x 8 = 80, union 100 + 100 - 80 = 120
    assert region_similarity(pred, gt) == pytest.approx(80 / 120)
    assert region_similarity(gt, gt) == 1.0


def test_region_similarity_edge_cases():
    empty = np.zeros((5, 5), bool)
    full = np.ones((5, 5), bool)
    assert region_similarity(empty, empty) == 1.0  # empty union
    assert region_similarity(empty, full) == 0.0
    assert region_similarity(full, empty) == 0.0


# ----------------------------------------------------------------------------- boundaries


def test_seg_to_boundary_of_a_2x2_block():
    seg = np.zeros((5, 5), bool)
    seg[1:3, 1:3] = True
    expected = np.array(
        [
            [1, 1, 1, 0, 0],
            [1, 0, 1, 0, 0],
            [1, 1, 1, 0, 0],
            [0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0],
        ],
        dtype=bool,
    )
    np.testing.assert_array_equal(seg_to_boundary(seg), expected)


def test_seg_to_boundary_last_row_column_and_corner_rules():
    # One pixel in the bottom-right corner: (1,1) sees it bottom-right, (1,2) (last column)
    # sees it below, (2,1) (last row) sees it on the right, the corner itself is forced to 0.
    seg = np.zeros((3, 3), bool)
    seg[2, 2] = True
    expected = np.array([[0, 0, 0], [0, 1, 1], [0, 1, 0]], dtype=bool)
    np.testing.assert_array_equal(seg_to_boundary(seg), expected)
    # The image border is not an edge: a full mask has no boundary.
    assert not seg_to_boundary(np.ones((4, 6), bool)).any()


def test_seg_to_boundary_of_a_square_is_the_shifted_outline():
    b = seg_to_boundary(rect((30, 30), (10, 19), (10, 19)))
    outline = rect((30, 30), (9, 19), (9, 19)) & ~rect((30, 30), (10, 18), (10, 18))
    np.testing.assert_array_equal(b, outline)
    assert b.sum() == 40


def test_disk_matches_skimage_semantics():
    expected = np.array(
        [
            [0, 0, 1, 0, 0],
            [0, 1, 1, 1, 0],
            [1, 1, 1, 1, 1],
            [0, 1, 1, 1, 0],
            [0, 0, 1, 0, 0],
        ],
        dtype=np.uint8,
    )
    np.testing.assert_array_equal(disk(2), expected)
    np.testing.assert_array_equal(disk(0), [[1]])
    assert disk(8).sum() == 197  # number of integer points with x² + y² <= 64
    with pytest.raises(ValueError):
        disk(2.5)


def test_dilate_a_single_pixel_gives_the_disk_clipped_at_the_border():
    m = np.zeros((9, 9), bool)
    m[4, 4] = True
    np.testing.assert_array_equal(dilate(m, 3)[1:8, 1:8], disk(3).astype(bool))
    assert dilate(m, 3).sum() == disk(3).sum()
    corner = np.zeros((4, 4), bool)
    corner[0, 0] = True
    expected = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(dilate(corner, 2), expected)


def test_boundary_tolerance():
    assert boundary_tolerance((480, 854)) == 8  # ceil(0.008 * 979.6)
    assert boundary_tolerance((50, 100)) == 1  # ceil(0.008 * 111.8)
    assert boundary_tolerance((100, 200)) == 2  # ceil(0.008 * 223.6)
    assert boundary_tolerance((50, 100), bound_th=3) == 3


# ----------------------------------------------------------------------------- F, by hand
# 50x100 frames: tolerance 1 px, disk(1) = the 4-neighbourhood.
# 100x200 frames: tolerance 2 px, disk(2) also reaches the diagonal neighbours.
# GT: square rows 10..19, cols 10..19 -> boundary = outline of rows 9..19 x cols 9..19.


def _square(shape, dy=0, dx=0):
    return rect(shape, (10 + dy, 19 + dy), (10 + dx, 19 + dx))


def test_f_shift_by_one_within_tolerance_is_perfect():
    gt, pred = _square((50, 100)), _square((50, 100), dx=1)
    # Every outline pixel of one square is 0 or 1 px (horizontally) from the other outline.
    assert boundary_measure(pred, gt) == pytest.approx(1.0)
    assert region_similarity(pred, gt) == pytest.approx(90 / 110)


def test_f_shift_by_two_outside_tolerance():
    gt, pred = _square((50, 100)), _square((50, 100), dx=2)
    # Pred outline: rows 9..19 x cols 11..21 (40 px). Matched within 1 px (4-neighbourhood):
    #   top and bottom rows, cols 11..20 (col 21 is 2 px from GT col 19):     10 + 10
    #   left column (col 11), rows 10 and 18 (1 px from GT top/bottom rows):  2
    #   left column rows 11..17 (2 px from GT col 9 and rows 9/19): unmatched 7
    #   right column (col 21) rows 10..18: 2 px from GT col 19: unmatched    (9 + corners)
    # P = 22/40; by mirror symmetry R = 22/40; F = 0.55.
    assert boundary_measure(pred, gt) == pytest.approx(0.55)
    assert region_similarity(pred, gt) == pytest.approx(80 / 120)
    # With a 2 px tolerance every pixel matches (GT col 9 <-> pred col 11, 19 <-> 21).
    assert boundary_measure(_square((100, 200), dx=2), _square((100, 200))) == pytest.approx(1.0)


def test_f_diagonal_shift_tests_the_disk_shape():
    gt, pred = _square((50, 100)), _square((50, 100), dy=1, dx=1)
    # Pred outline rows/cols 10..20. Every pixel has a GT outline pixel 0 or 1 px away
    # horizontally or vertically, except the pred corner (20, 20), whose nearest GT pixel
    # (19, 19) is diagonal (sqrt 2 > 1). Same for the GT corner (9, 9). P = R = 39/40.
    assert boundary_measure(pred, gt) == pytest.approx(39 / 40)
    # A square 3x3 kernel would have matched the corners; disk(2) does.
    assert boundary_measure(_square((100, 200), dy=1, dx=1), _square((100, 200))) == pytest.approx(1.0)


def test_f_edge_cases():
    empty = np.zeros((50, 100), bool)
    full = np.ones((50, 100), bool)
    square = _square((50, 100))
    assert boundary_measure(empty, empty) == 1.0  # both boundaries empty
    assert boundary_measure(empty, square) == 0.0  # P = 1, R = 0
    assert boundary_measure(square, empty) == 0.0  # P = 0, R = 1
    # Boundaries, not masks, decide: full masks have empty boundaries.
    assert boundary_measure(full, full) == 1.0
    assert boundary_measure(full, square) == 0.0
    # Disjoint far-apart squares: P = R = 0 -> F = 0.
    assert boundary_measure(_square((50, 100), dx=50), square) == 0.0


# ----------------------------------------------------------------------------- brute force


def _brute_dilate(mask, r):
    h, w = mask.shape
    out = np.zeros_like(mask)
    for y in range(h):
        for x in range(w):
            for yy in range(max(0, y - r), min(h, y + r + 1)):
                for xx in range(max(0, x - r), min(w, x + r + 1)):
                    if mask[yy, xx] and (yy - y) ** 2 + (xx - x) ** 2 <= r * r:
                        out[y, x] = True
    return out


def _brute_boundary(seg):
    # Independent formulation: a neighbour outside the frame takes the pixel's own value.
    h, w = seg.shape
    out = np.zeros_like(seg)
    for y in range(h):
        for x in range(w):
            for dy, dx in ((0, 1), (1, 0), (1, 1)):
                yy, xx = min(y + dy, h - 1), min(x + dx, w - 1)  # edge replication
                if seg[y, x] != seg[yy, xx]:
                    out[y, x] = True
    return out


def _brute_f(pred, gt, r):
    pb, gb = np.argwhere(seg_to_boundary(pred)), np.argwhere(seg_to_boundary(gt))
    if len(pb) == 0 and len(gb) == 0:
        return 1.0
    if len(pb) == 0 or len(gb) == 0:
        return 0.0
    d2 = ((pb[:, None, :] - gb[None, :, :]) ** 2).sum(-1)
    p = (d2.min(axis=1) <= r * r).mean()
    rc = (d2.min(axis=0) <= r * r).mean()
    return 0.0 if p + rc == 0 else 2 * p * rc / (p + rc)


def _random_mask(rng, shape):
    kind = rng.integers(4)
    if kind == 0:  # noise; sparse on big frames to keep the brute force small
        return rng.random(shape) < (0.2 if shape[0] * shape[1] < 1000 else 0.005)
    if kind == 1:  # a small blob somewhere, possibly touching the border
        h, w = shape
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        y1, x1 = min(h - 1, y0 + rng.integers(0, 6)), min(w - 1, x0 + rng.integers(0, 6))
        return rect(shape, (y0, y1), (x0, x1))
    if kind == 2:
        return np.zeros(shape, bool)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cy, cx, rad = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(1, 8)
    return (yy - cy) ** 2 + (xx - cx) ** 2 < rad**2


def test_dilate_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(25):
        shape = tuple(rng.integers(1, 14, size=2))
        m = rng.random(shape) < rng.uniform(0, 0.15)
        r = int(rng.integers(0, 5))
        np.testing.assert_array_equal(dilate(m, r), _brute_dilate(m, r))


def test_seg_to_boundary_matches_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(40):
        shape = tuple(rng.integers(1, 12, size=2))
        m = rng.random(shape) < 0.5
        np.testing.assert_array_equal(seg_to_boundary(m), _brute_boundary(m))


def test_boundary_measure_matches_brute_force_on_random_masks():
    rng = np.random.default_rng(2)
    for i in range(60):
        shape = [(50, 100), (100, 200), (24, 31), (7, 9)][i % 4]
        pred, gt = _random_mask(rng, shape), _random_mask(rng, shape)
        if i % 5 == 0:
            gt = np.roll(pred, int(rng.integers(-3, 4)), axis=int(rng.integers(2)))
        r = boundary_tolerance(shape)
        assert boundary_measure(pred, gt) == pytest.approx(_brute_f(pred, gt, r)), i
        assert boundary_measure(pred, gt, bound_th=3) == pytest.approx(_brute_f(pred, gt, 3)), i


# ----------------------------------------------------------------------------- statistics


def test_frame_statistics_mean_recall_decay():
    m, r, d = frame_statistics([1.0, 1.0, 0.5, 0.0, 0.0])
    # 5 frames: bin edges round(linspace(1, 5, 5)) - 1 = 0, 1, 2, 3, 4;
    # first bin frames 0..1, last bin frames 3..4.
    assert (m, r, d) == (pytest.approx(0.5), pytest.approx(0.4), pytest.approx(1.0))
    # 10 frames: edges 1, 3.25, 5.5, 7.75, 10 -> 1, 3, 6, 8, 10 -> 0, 2, 5, 7, 9:
    # first bin frames 0..2 (mean 0.1), last bin 7..9 (mean 0.8).
    assert frame_statistics(np.arange(10) / 10)[2] == pytest.approx(0.1 - 0.8)
    # 3 frames: edges 0, 1, 1, 2, 2 -> first bin frames 0..1, last bin frame 2.
    assert frame_statistics([1.0, 1.0, 0.0])[2] == pytest.approx(1.0)
    assert frame_statistics([0.7])[2] == 0.0


def test_frame_statistics_decay_beyond_256_frames():
    # The official uint8 bin edges wrap for > 256 frames (last edge 299 -> 43, empty bin,
    # NaN decay). Edges here: 0, 75, 150, 224, 299.
    v = np.linspace(1.0, 0.0, 300)
    decay = frame_statistics(v)[2]
    assert decay == pytest.approx(v[:76].mean() - v[224:].mean())


# ----------------------------------------------------------------------------- sequences

SHAPE = (20, 30)  # tolerance ceil(0.008 * 36.06) = 1 px


def write_seq(folder, frames):
    folder.mkdir(parents=True, exist_ok=True)
    for i, labels in enumerate(frames):
        write_label_png(folder / f"{i:05d}.png", np.asarray(labels, dtype=np.uint8))


def three_object_gt():
    gt = np.zeros(SHAPE, np.uint8)
    gt[rect(SHAPE, (2, 5), (2, 5))] = 1
    gt[rect(SHAPE, (2, 5), (10, 13))] = 2
    gt[rect(SHAPE, (10, 13), (2, 5))] = 3
    return gt


def three_object_pred(frame):
    pred = np.zeros(SHAPE, np.uint8)
    pred[rect(SHAPE, (2, 5), (2, 5))] = 1  # object 1: exact
    if frame != 3:
        pred[rect(SHAPE, (2, 5), (10, 13))] = 2  # object 2: lost in frame 3
    pred[rect(SHAPE, (10, 13), (3, 6))] = 3  # object 3: one column to the right
    return pred


@pytest.fixture
def two_sequences(tmp_path):
    """Sequence "alpha": 3 objects, 5 frames; sequence "beta": 1 object, 4 frames."""
    gt_root, pred_root = tmp_path / "gt", tmp_path / "pred"
    gt = three_object_gt()
    write_seq(gt_root / "alpha", [gt] * 5)
    rng = np.random.default_rng(0)
    garbage_first = np.full(SHAPE, 7, np.uint8)  # an id the GT does not have: an error if read
    garbage_last = rng.integers(0, 4, SHAPE).astype(np.uint8)
    middle = [three_object_pred(f) for f in (1, 2, 3)]
    write_seq(pred_root / "alpha", [garbage_first, *middle, garbage_last])
    beta = np.zeros(SHAPE, np.uint8)
    beta[rect(SHAPE, (5, 15), (5, 20))] = 1
    write_seq(gt_root / "beta", [beta] * 4)
    write_seq(pred_root / "beta", [np.zeros(SHAPE, np.uint8)] * 4)  # object never found
    return pred_root, gt_root


def test_sequence_scores_skip_first_and_last_frames(two_sequences):
    pred_root, gt_root = two_sequences
    scores = evaluate_sequence(pred_root / "alpha", gt_root / "alpha")
    assert [s.key for s in scores] == ["alpha_1", "alpha_2", "alpha_3"]
    assert all(s.frames == ("00001.png", "00002.png", "00003.png") for s in scores)
    o1, o2, o3 = scores
    assert (o1.j_mean, o1.f_mean, o1.j_decay) == (1.0, 1.0, 0.0)
    # Object 2: J = F = 1, 1, 0 (empty prediction in frame 3).
    assert o2.j_per_frame == (1.0, 1.0, 0.0) and o2.f_per_frame == (1.0, 1.0, 0.0)
    assert o2.j_mean == pytest.approx(2 / 3) and o2.j_recall == pytest.approx(2 / 3)
    assert o2.j_decay == pytest.approx(1.0)  # bins: frames {1, 2} vs {3}
    # Object 3: a 4x4 square shifted by one column: J = 12/20; F = 1 (within 1 px).
    assert o3.j_per_frame == pytest.approx((0.6,) * 3)
    assert o3.f_mean == pytest.approx(1.0) and o3.j_recall == 1.0


def test_garbage_inside_the_evaluated_frames_does_count(two_sequences):
    pred_root, gt_root = two_sequences
    write_label_png(pred_root / "alpha" / "00002.png", np.full(SHAPE, 7, np.uint8))
    with pytest.raises(MaskError, match="00002.png: holds object id 7 but the ground truth of alpha has 3"):
        evaluate_sequence(pred_root / "alpha", gt_root / "alpha")


def test_aggregation_weighs_every_object_equally(two_sequences):
    pred_root, gt_root = two_sequences
    calls = []
    result = evaluate(pred_root, gt_root, progress=lambda done, total: calls.append((done, total)))
    assert [o.key for o in result.objects] == ["alpha_1", "alpha_2", "alpha_3", "beta_1"]
    # Object J means 1, 2/3, 0.6, 0 -> 2.2667 / 4; F means 1, 2/3, 1, 0 -> 2.6667 / 4.
    assert result.j_mean == pytest.approx((1 + 2 / 3 + 0.6 + 0) / 4)
    assert result.f_mean == pytest.approx((1 + 2 / 3 + 1 + 0) / 4)
    assert result.jf_mean == pytest.approx(((1 + 2 / 3 + 0.6) / 4 + (1 + 2 / 3 + 1) / 4) / 2)
    assert result.j_recall == pytest.approx((1 + 2 / 3 + 1 + 0) / 4)
    assert result.j_decay == pytest.approx(1 / 4)
    per_seq = result.per_sequence()
    j_alpha, f_alpha = (1 + 2 / 3 + 0.6) / 3, (1 + 2 / 3 + 1) / 3
    assert per_seq["alpha"] == pytest.approx((j_alpha, f_alpha, (j_alpha + f_alpha) / 2))
    assert per_seq["beta"] == (0.0, 0.0, 0.0)
    # (The mean of the sequence rows, (0.8222 + 0) / 2, is not the global J&F of 0.6167.)
    assert calls == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]  # 3 + 2 evaluated frames


def test_to_dict_and_table(two_sequences):
    pred_root, gt_root = two_sequences
    result = evaluate(pred_root, gt_root)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["global"]["J&F-Mean"] == pytest.approx(result.jf_mean)
    assert data["scale"] == "fraction in [0, 1]"
    assert set(data["sequences"]) == {"alpha", "beta"} and data["sequences"]["alpha"]["num_objects"] == 3
    assert data["objects"]["alpha_2"]["J-Mean"] == pytest.approx(2 / 3)
    assert data["objects"]["beta_1"]["num_frames"] == 2
    console = Console(record=True, width=160)
    console.print(render_table(result))
    text = console.export_text()
    assert "Global" in text and "alpha" in text and "beta" in text
    assert f"{100 * result.jf_mean:.1f}" in text  # 61.7


def test_single_sequence_layouts(two_sequences):
    pred_root, gt_root = two_sequences
    direct = evaluate(pred_root / "alpha", gt_root / "alpha")
    nested = evaluate(pred_root, gt_root / "alpha")  # predictions in PRED/alpha
    assert [o.j_mean for o in direct.objects] == [o.j_mean for o in nested.objects]
    assert direct.sequences == ["alpha"]
    only_beta = evaluate(pred_root, gt_root, sequences=["beta"])
    assert only_beta.sequences == ["beta"]


def test_void_is_background_and_first_last_predictions_are_optional(tmp_path):
    gt = np.zeros(SHAPE, np.uint8)
    gt[rect(SHAPE, (4, 9), (4, 9))] = 1
    gt[0, :] = 255  # void: treated as background
    write_seq(tmp_path / "gt", [gt] * 4)
    pred = np.where(gt == 1, 1, 0).astype(np.uint8)
    write_seq(tmp_path / "pred", [pred] * 4)
    (tmp_path / "pred" / "00000.png").unlink()
    (tmp_path / "pred" / "00003.png").unlink()
    [score] = evaluate_sequence(tmp_path / "pred", tmp_path / "gt")
    assert (score.j_mean, score.f_mean, score.num_frames) == (1.0, 1.0, 2)


def test_objects_appearing_after_the_first_frame(tmp_path):
    one = rect(SHAPE, (2, 6), (2, 6))
    two = rect(SHAPE, (10, 14), (10, 14))
    gt_frames, pred_frames = [], []
    for t in range(6):
        g = np.zeros(SHAPE, np.uint8)
        g[one] = 1
        if t >= 2:  # object 2 enters at frame 2 (its reference frame)
            g[two] = 2
        gt_frames.append(g)
        p = np.zeros(SHAPE, np.uint8)
        p[one] = 1
        if t >= 3:  # and is tracked from frame 3 on; frame 2 (empty) must not count
            p[two] = 2
        pred_frames.append(p)
    write_seq(tmp_path / "gt", gt_frames)
    write_seq(tmp_path / "pred", pred_frames)
    o1, o2 = evaluate_sequence(tmp_path / "pred", tmp_path / "gt")
    assert o1.frames == ("00001.png", "00002.png", "00003.png", "00004.png")
    assert o2.frames == ("00003.png", "00004.png") and o2.j_mean == 1.0 and o2.f_mean == 1.0
    # Official rule: objects are the ids of the first GT frame; a predicted id 2 is an error.
    with pytest.raises(MaskError, match="holds object id 2 but the ground truth of gt has 1 object"):
        evaluate_sequence(tmp_path / "pred", tmp_path / "gt", objects="first-frame")


def test_ids_in_the_first_frame_follow_the_official_rule(tmp_path):
    # First GT frame holds ids 1 and 3 -> objects 1, 2, 3 on every evaluated frame, id 2
    # included (both masks empty -> J = F = 1). Id 5 appears later, id 4 never.
    g = np.zeros(SHAPE, np.uint8)
    g[rect(SHAPE, (2, 6), (2, 6))] = 1
    g[rect(SHAPE, (10, 14), (10, 14))] = 3
    late = g.copy()
    late[rect(SHAPE, (2, 6), (20, 25))] = 5
    write_seq(tmp_path / "gt", [g, late, late, late, late])
    write_seq(tmp_path / "pred", [g] * 5)
    notes = []
    scores = evaluate_sequence(tmp_path / "pred", tmp_path / "gt", warn=notes.append)
    assert [s.object_id for s in scores] == [1, 2, 3, 5]
    assert scores[1].j_mean == 1.0 and scores[1].num_frames == 3
    assert scores[3].frames == ("00002.png", "00003.png") and scores[3].j_mean == 0.0
    assert notes == ["gt: object id(s) 4 never appear in the ground truth; not evaluated"]
    strict = evaluate_sequence(tmp_path / "pred", tmp_path / "gt", objects="first-frame")
    assert [s.object_id for s in strict] == [1, 2, 3]


# ----------------------------------------------------------------------------- errors


def test_binary_0_255_prediction_is_explained(tmp_path):
    gt = np.zeros(SHAPE, np.uint8)
    gt[rect(SHAPE, (4, 9), (4, 9))] = 1
    write_seq(tmp_path / "gt", [gt] * 3)
    binary = np.where(gt == 1, 255, 0).astype(np.uint8)
    (tmp_path / "pred").mkdir()
    for i in range(3):
        Image.fromarray(binary, mode="L").save(tmp_path / "pred" / f"{i:05d}.png")
    with pytest.raises(VossegError) as info:
        evaluate(tmp_path / "pred", tmp_path / "gt")
    message = str(info.value)
    assert "00001.png" in message and "binary 0/255 mask" in message and "1..1" in message
    assert "\n" not in message


def test_missing_predicted_frame_names_the_file(two_sequences):
    pred_root, gt_root = two_sequences
    missing = pred_root / "alpha" / "00002.png"
    missing.unlink()
    with pytest.raises(MaskError, match="predicted mask missing") as info:
        evaluate(pred_root, gt_root)
    assert str(missing) in str(info.value)


def test_missing_sequence_folder_and_bad_inputs(two_sequences, tmp_path):
    pred_root, gt_root = two_sequences
    (pred_root / "beta" / "00000.png").rename(tmp_path / "x.png")
    for f in (pred_root / "beta").iterdir():
        f.unlink()
    (pred_root / "beta").rmdir()
    with pytest.raises(InputError, match="no prediction folder for ground-truth sequence beta"):
        evaluate(pred_root, gt_root)
    with pytest.raises(InputError, match="not found"):
        evaluate(pred_root, tmp_path / "nowhere")
    with pytest.raises(MaskError, match="at least 3"):
        evaluate_sequence(pred_root / "alpha", _two_frame_gt(tmp_path))


def _two_frame_gt(tmp_path):
    folder = tmp_path / "short"
    write_seq(folder, [three_object_gt()] * 2)
    return folder


def test_rgb_and_wrong_size_predictions(two_sequences):
    pred_root, gt_root = two_sequences
    target = pred_root / "alpha" / "00001.png"
    Image.new("RGB", (SHAPE[1], SHAPE[0])).save(target)
    with pytest.raises(MaskError, match="RGB image"):
        evaluate_sequence(pred_root / "alpha", gt_root / "alpha")
    write_label_png(target, np.zeros((10, 10), np.uint8))
    with pytest.raises(MaskError, match="predicted mask is 10x10"):
        evaluate_sequence(pred_root / "alpha", gt_root / "alpha")


def test_read_id_png_modes(tmp_path):
    Image.fromarray(np.array([[0, 1], [1, 0]], bool)).save(tmp_path / "b.png")  # mode "1"
    np.testing.assert_array_equal(read_id_png(tmp_path / "b.png"), [[0, 1], [1, 0]])
    with pytest.raises(MaskError, match="not found"):
        read_id_png(tmp_path / "none.png", "predicted")


def test_result_object_types():
    score = ObjectScore("s", 1, 0.5, 1.0, 0.0, 0.7, 1.0, 0.0, 3)
    result = EvalResult([score])
    assert score.key == "s_1" and score.jf_mean == pytest.approx(0.6)
    assert result.per_sequence() == {"s": pytest.approx((0.5, 0.7, 0.6))}


def _reference_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    """The DAVIS boundary F-measure written from its published definition with OpenCV's dilation
    and scikit-image's disk, as the official evaluation computes it (independent of our code)."""
    import cv2
    from skimage.morphology import disk

    def boundary(seg):
        seg = seg.astype(bool)
        e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
        e[:, :-1], s[:-1, :], se[:-1, :-1] = seg[:, 1:], seg[1:, :], seg[1:, 1:]
        b = (seg ^ e) | (seg ^ s) | (seg ^ se)
        b[-1, :], b[:, -1] = seg[-1, :] ^ e[-1, :], seg[:, -1] ^ s[:, -1]
        b[-1, -1] = False
        return b

    radius = bound_th if bound_th >= 1 else int(np.ceil(bound_th * np.linalg.norm(pred.shape)))
    fb, gb = boundary(pred), boundary(gt)
    fd = cv2.dilate(fb.astype(np.uint8), disk(radius).astype(np.uint8)) > 0
    gd = cv2.dilate(gb.astype(np.uint8), disk(radius).astype(np.uint8)) > 0
    n_f, n_g = fb.sum(), gb.sum()
    if n_f == 0 and n_g == 0:
        p = r = 1.0
    elif n_f == 0:
        p, r = 1.0, 0.0
    elif n_g == 0:
        p, r = 0.0, 1.0
    else:
        p, r = (fb & gd).sum() / n_f, (gb & fd).sum() / n_g
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def test_j_and_f_match_the_official_formulas_on_real_masks():
    pytest.importorskip("cv2")
    pytest.importorskip("skimage")
    from vossegcli.eval.metrics import boundary_measure, region_similarity
    from vossegcli.io.palette import read_label_png
    from vossegcli.sample import sample_paths

    gt_dir = sample_paths().gt_dir
    pairs = [(read_label_png(gt_dir / f"{i:05d}.png"), read_label_png(gt_dir / f"{i + d:05d}.png"))
             for i, d in ((0, 1), (10, 5), (30, 12), (50, 20))]
    checked = 0
    for a, b in pairs:
        for obj in (1, 2):
            pred, gt = a == obj, b == obj
            union = (pred | gt).sum()
            assert region_similarity(pred, gt) == pytest.approx((pred & gt).sum() / union if union else 1.0, abs=1e-12)
            assert boundary_measure(pred, gt) == pytest.approx(_reference_f(pred, gt), abs=1e-12)
            checked += 1
    empty = np.zeros_like(pairs[0][0], dtype=bool)
    assert boundary_measure(empty, pairs[0][0] == 1) == pytest.approx(_reference_f(empty, pairs[0][0] == 1))
    assert checked == 8
