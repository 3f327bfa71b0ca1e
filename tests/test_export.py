"""vosseg export: RGBA frames, a ProRes 4444 video with alpha, matte videos, COCO RLE and boxes,
each read back and compared with the masks they were made from."""

import csv
import json

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from vossegcli.io.export import decode_rle, encode_rle, rle_counts
from vossegcli.io.palette import write_label_png
from support import run_cli

W, H = 96, 64
FRAMES = 6


def test_coco_rle_string_follows_the_format_by_hand():
    """Column-major runs from background: 100 off, 3 on, 40 off, 2 on → counts [100, 3, 40, 2]; the 4th is
    stored as 2 − 3 = −1. 100 = 4 + 3·32 → 'T' (4 | more) then '3'; 3 → '3'; 40 = 8 + 1·32 → 'X', '1';
    −1 → 31 with the sign bit → 'O'."""
    flat = np.zeros(145, bool)
    flat[100:103] = True
    flat[143:145] = True
    mask = flat.reshape((5, 29), order="F")
    assert rle_counts(mask) == [100, 3, 40, 2]
    assert encode_rle(mask) == {"size": [5, 29], "counts": "T33X1O"}
    assert np.array_equal(decode_rle(encode_rle(mask)), mask)
    full = np.ones((3, 4), bool)
    assert rle_counts(full) == [0, 12] and encode_rle(full)["counts"] == "0<"


def test_coco_rle_round_trips_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = rng.random((rng.integers(1, 40), rng.integers(1, 40))) < rng.random()
        assert np.array_equal(decode_rle(encode_rle(mask)), mask)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A small video and a mask folder with two moving objects (object 2 leaves on the last frame)."""
    root = tmp_path_factory.mktemp("export")
    video = root / "clip.mp4"
    writer = imageio_ffmpeg.write_frames(str(video), (W, H), fps=10, macro_block_size=1, ffmpeg_log_level="error")
    writer.send(None)
    rng = np.random.default_rng(1)
    for _ in range(FRAMES):
        writer.send(rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
    writer.close()
    masks = root / "masks"
    masks.mkdir()
    truth = []
    for k in range(FRAMES):
        labels = np.zeros((H, W), np.uint8)
        labels[10:30, 5 + 3 * k:25 + 3 * k] = 1
        if k < FRAMES - 1:
            labels[35:60, 60:90] = 2
        write_label_png(masks / f"{k:05d}.png", labels)
        truth.append(labels)
    return video, masks, truth


def test_rgba_frames_carry_the_masks_as_alpha_and_the_frames_as_colour(run, tmp_path):
    video, masks, truth = run
    result = run_cli("export", masks, "--as", "rgba", "--input", video, "--out", tmp_path / "rgba", "--object", "1")
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "rgba").glob("*.png"))
    assert [f.stem for f in files] == [f"{k:05d}" for k in range(FRAMES)]
    for f, labels in zip(files, truth):
        rgba = np.asarray(Image.open(f))
        assert rgba.shape == (H, W, 4)
        assert np.array_equal(rgba[..., 3] == 255, labels == 1) and set(np.unique(rgba[..., 3])) <= {0, 255}
    soft = run_cli("export", masks, "--as", "rgba", "--input", video, "--out", tmp_path / "soft", "--feather", "2")
    assert soft.exit_code == 0, soft.output
    alpha = np.asarray(Image.open(tmp_path / "soft" / "00000.png"))[..., 3]
    assert ((alpha > 0) & (alpha < 255)).any()  # feathered edges


def test_prores_video_keeps_the_alpha(run, tmp_path):
    import av

    video, masks, truth = run
    out = tmp_path / "cut.mov"
    result = run_cli("export", masks, "--as", "prores", "--input", video, "--out", out)
    assert result.exit_code == 0, result.output
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "prores" and "yuva" in stream.codec_context.pix_fmt
        alphas = [f.to_ndarray(format="rgba")[..., 3] for f in container.decode(stream)]
    assert len(alphas) == FRAMES
    for alpha, labels in zip(alphas, truth):
        assert ((alpha > 127) == (labels > 0)).mean() > 0.999


def test_mattes_are_one_white_on_black_video_per_object(run, tmp_path):
    video, masks, truth = run
    result = run_cli("export", masks, "--as", "alpha", "--out", tmp_path / "mattes")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "mattes").iterdir()) == ["object-1.mp4", "object-2.mp4"]
    gen = imageio_ffmpeg.read_frames(str(tmp_path / "mattes" / "object-2.mp4"))
    meta = next(gen)
    frames = [np.frombuffer(b, np.uint8).reshape(meta["size"][1], meta["size"][0], 3)[:H, :W, 0] for b in gen]
    assert len(frames) == FRAMES
    for matte, labels in zip(frames, truth):
        assert ((matte > 127) == (labels == 2)).mean() > 0.995


def test_rle_and_boxes_match_the_masks(run, tmp_path):
    video, masks, truth = run
    assert run_cli("export", masks, "--as", "rle", "--out", tmp_path / "m.rle.jsonl").exit_code == 0
    lines = [json.loads(line) for line in (tmp_path / "m.rle.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(FRAMES))
    for line, labels in zip(lines, truth):
        ids = sorted(int(i) for i in line["objects"])
        assert ids == sorted(set(np.unique(labels).tolist()) - {0})
        for i in ids:
            assert np.array_equal(decode_rle(line["objects"][str(i)]), labels == i)
    assert run_cli("export", masks, "--as", "boxes", "--out", tmp_path / "b.csv").exit_code == 0
    rows = list(csv.DictReader((tmp_path / "b.csv").open()))
    assert len(rows) == 2 * FRAMES - 1  # object 2 is gone on the last frame
    for row in rows:
        on = truth[int(row["frame"])] == int(row["object"])
        ys, xs = np.nonzero(on)
        assert (int(row["x"]), int(row["y"])) == (xs.min(), ys.min())
        assert (int(row["width"]), int(row["height"]), int(row["area"])) == (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1, on.sum())


def test_export_errors_name_the_fix(run, tmp_path):
    video, masks, _ = run
    bad = run_cli("export", masks, "--as", "gif", "--out", tmp_path / "x")
    assert bad.exit_code == 2 and "--as gif" in bad.output
    no_input = run_cli("export", masks, "--as", "rgba", "--out", tmp_path / "y")
    assert no_input.exit_code == 2 and "--input" in no_input.output and not (tmp_path / "y").exists()
    missing = run_cli("export", masks, "--as", "boxes", "--object", "9", "--out", tmp_path / "z.csv")
    assert missing.exit_code == 2 and "no object 9" in missing.output and "1, 2" in missing.output
    assert not (tmp_path / "z.csv").exists()  # nothing written
    nothing = run_cli("export", tmp_path / "nope", "--as", "rle")
    assert nothing.exit_code == 2 and "no such mask folder" in nothing.output
