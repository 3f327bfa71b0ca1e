"""real30's folds and per-quarter scores (eval/real30.py); the trainer's --real choice."""
import json

import numpy as np
import pytest

from vossegcli.errors import InputError
from vossegcli.eval.real30 import quarter_means, refiners_for
from vossegcli.datasets.roots import FOLDS, all_sequences, fold_sequences, training_sequences
from support import runner


@pytest.fixture()
def root(tmp_path):
    names = [f"seq{i:02d}" for i in range(30)]
    (tmp_path / "splits.json").write_text(json.dumps({"train": names[:24], "val": names[24:]}))
    return tmp_path


def test_every_sequence_is_held_out_by_exactly_one_fold(root):
    held = [n for k in range(FOLDS) for n in fold_sequences(root, k)]
    assert sorted(held) == all_sequences(root) and len(held) == 30
    assert all(len(fold_sequences(root, k)) == 6 for k in range(FOLDS))


def test_a_fold_refiner_trains_on_the_other_24_sequences(root):
    for k in range(FOLDS):
        train = training_sequences(root, f"fold:{k}")
        assert len(train) == 24 and not set(train) & set(fold_sequences(root, k))
    assert training_sequences(root, "none") == []
    assert training_sequences(root, "train") == [f"seq{i:02d}" for i in range(24)]
    with pytest.raises(InputError, match="fold:K"):
        training_sequences(root, "fold:x")
    with pytest.raises(InputError, match="choose train"):
        training_sequences(root, "everything")


def test_quarter_means_split_the_clip_in_order():
    assert quarter_means(np.arange(8.0)) == [0.5, 2.5, 4.5, 6.5]
    assert quarter_means([1.0, 0.0]) == [1.0, 0.0]


def test_each_sequence_gets_the_refiner_of_the_fold_that_held_it_out(root, tmp_path):
    names = all_sequences(root)
    refiners = tmp_path / "refiners"
    refiners.mkdir()
    with pytest.raises(InputError, match="fold refiner missing"):
        refiners_for("folds", refiners, names)
    for k in range(FOLDS):
        (refiners / f"fold{k}.pt").write_bytes(b"x")
    files = refiners_for("folds", refiners, names)
    for k in range(FOLDS):
        assert {files[n] for n in fold_sequences(root, k)} == {str(refiners / f"fold{k}.pt")}
    with pytest.raises(InputError, match="--real none"):
        refiners_for("synthetic", refiners, names)


DATA = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.shared
@pytest.mark.skipif(not (DATA / "davis16-train" / "splits.json").is_file(), reason="needs ../shared/data/davis16-train")
def test_train_refuses_an_unknown_real_choice_in_one_line(tmp_path):

    from vossegcli.cli import app

    result = runner.invoke(app, ["train", "--data", str(DATA), "--out", str(tmp_path / "run"), "--real", "fold:7",
                                      "--steps", "1"])
    assert result.exit_code == 2
    assert "fold 7: choose 0..4" in result.output and "Traceback" not in result.output
