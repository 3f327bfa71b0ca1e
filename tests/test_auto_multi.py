"""The auto-multi yardstick: the Hungarian assignment and the DAVIS-2017 unsupervised scoring."""

import itertools

import numpy as np

from vossegcli.eval.assignment import best_assignment
from vossegcli.eval.auto_multi import score_clip
from vossegcli.io.palette import write_label_png


def test_best_assignment_equals_brute_force_on_random_rectangular_scores():
    rng = np.random.default_rng(0)
    for _ in range(200):
        r, c = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        s = rng.random((r, c))
        pairs = best_assignment(s)
        assert len(pairs) == min(r, c)
        assert len({i for i, _ in pairs}) == len(pairs) == len({j for _, j in pairs})
        if r <= c:
            best = max(sum(s[i, p[i]] for i in range(r)) for p in itertools.permutations(range(c), r))
        else:
            best = max(sum(s[p[j], j] for j in range(c)) for p in itertools.permutations(range(r), c))
        assert abs(sum(s[i, j] for i, j in pairs) - best) < 1e-9


def _write(folder, frames):
    folder.mkdir()
    for t, labels in enumerate(frames):
        write_label_png(folder / f"{t:05d}.png", labels.astype(np.uint8))


def test_unsupervised_scoring_matches_ids_over_the_clip_and_counts_missed_objects_as_zero(tmp_path):
    gt, pred = [], []
    for t in range(4):
        g = np.zeros((40, 60), np.uint8)
        g[5:15, 5 + t:15 + t] = 1
        g[25:35, 40:50] = 2
        g[20:24, 20:24] = 3  # an object nobody predicts
        p = np.zeros_like(g)
        p[5:15, 5 + t:15 + t] = 7  # object 1 under another id
        p[25:35, 40:50] = 4  # object 2 under another id
        p[0:3, 55:60] = 9  # a stray prediction matched to nothing useful
        gt.append(g)
        pred.append(p)
    _write(tmp_path / "gt", gt)
    _write(tmp_path / "pred", pred)
    score = score_clip(tmp_path / "pred", tmp_path / "gt")
    assert score.objects == 3 and score.predicted == 3 and score.found == 2
    assert score.j[:2] == [1.0, 1.0] and score.j[2] == 0.0
    assert abs(score.jf - 2 / 3) < 1e-9
