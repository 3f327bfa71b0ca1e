"""The vosseg commands as a user runs them (in-process through Typer's runner)."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from vossegcli.sample import sample_paths
from support import run_cli




@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "masks"
    report = out.parent / "run.json"
    result = run_cli("segment", "--out", out, "--report", report)
    assert result.exit_code == 0, result.output
    return out, report, result.output


def test_segment_without_input_segments_the_bundled_sample(sample_run):
    out, _, output = sample_run
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(72)]
    with Image.open(pngs[30]) as im:
        assert im.mode == "P"  # palette PNG with ids, what the DAVIS evaluation reads
        ids = set(np.unique(np.array(im)).tolist())
    assert ids == {0, 1, 2}
    assert "object 1" in output and "object 2" in output  # what was understood is printed


def test_segmentation_of_the_sample_scores_well(sample_run, tmp_path):
    out, _, _ = sample_run
    scores = tmp_path / "scores.json"
    result = run_cli("evaluate", out, sample_paths().gt_dir, "--json", scores)
    assert result.exit_code == 0, result.output
    data = json.loads(scores.read_text())
    # Default engine with the shipped refiner: measured 97.5 J&F with refiner v4 (97.2 with v3, 84.9 with --refiner none), so this
    # fails if the refiner is not used or stops helping.
    assert data["global"]["J&F-Mean"] > 0.92


def test_report_has_the_promised_fields(sample_run):
    _, report, _ = sample_run
    data = json.loads(report.read_text())
    for key in ("input", "objects", "frames", "device", "dtype", "resolution", "stage_seconds", "fps", "memory", "weights", "version"):
        assert key in data
    assert data["frames"] == 72 and data["resolution"] == {"width": 320, "height": 240}
    assert [o["id"] for o in data["objects"]] == [1, 2]
    assert len(data["weights"]["backbone"]["sha256"]) == 64
    assert data["fps"] > 0 and data["memory"]["peak_rss_mb"] > 0


def test_refuses_a_non_empty_output_folder_without_force(sample_run):
    out, _, _ = sample_run
    before = sorted(p.name for p in out.iterdir())
    result = run_cli("segment", "--out", out)
    assert result.exit_code == 2
    assert "not empty" in result.output and "--force" in result.output
    assert sorted(p.name for p in out.iterdir()) == before


def test_bad_mask_size_fails_cleanly_and_writes_nothing(tmp_path):
    bad = tmp_path / "small.png"
    Image.fromarray(np.pad(np.ones((10, 10), np.uint8), 20)).save(bad)
    out = tmp_path / "out"
    result = run_cli("segment", sample_paths().video, "--mask", bad, "--out", out)
    assert result.exit_code == 2
    assert "small.png" in result.output
    assert not out.exists()


def test_missing_input_fails_cleanly(tmp_path):
    result = run_cli("segment", tmp_path / "nope.mp4", "--mask", sample_paths().mask, "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "nope.mp4" in result.output
    assert not (tmp_path / "o").exists()


def test_cuda_request_without_cuda_is_a_clear_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run_cli("segment", "--device", "cuda", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "cuda" in result.output.lower() and "--device cpu" in result.output


@pytest.mark.parametrize("command", ["train-target-features", "train-instances"])
def test_trainers_asked_for_cuda_without_cuda_fail_clearly_and_write_nothing(tmp_path, command):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "weights.pt"
    result = run_cli(command, "--data", tmp_path, "--out", out, "--device", "cuda", "--cache", tmp_path / "cache")
    assert result.exit_code != 0
    assert "--device cuda" in result.output and "--device cpu" in result.output
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_object_starting_on_a_later_frame(tmp_path):
    """Frame-folder input with a mask for frame 10 only: earlier frames are background,
    frame 10 is exactly the given mask, later frames carry the objects on."""
    import imageio_ffmpeg

    frames = tmp_path / "frames"
    frames.mkdir()
    gen = imageio_ffmpeg.read_frames(str(sample_paths().video), pix_fmt="rgb24")
    meta = next(gen)
    w, h = meta["size"]
    for i, buf in enumerate(gen):
        if i >= 20:
            break
        Image.fromarray(np.frombuffer(buf, np.uint8).reshape(h, w, 3)).save(frames / f"f{i}.jpg", quality=95)
    gen.close()
    gt10 = sample_paths().gt_dir / "00010.png"
    mask = tmp_path / "f10.png"  # named like frame f10: starts there
    shutil.copy(gt10, mask)
    out = tmp_path / "out"
    result = run_cli("segment", frames, "--mask", mask, "--out", out)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.glob("*.png"))
    assert len(names) == 20 and "f0.png" in names and "f19.png" in names
    for i in range(10):
        assert not np.array(Image.open(out / f"f{i}.png")).any()
    assert np.array_equal(np.array(Image.open(out / "f10.png")), np.array(Image.open(gt10)))
    later = np.array(Image.open(out / "f15.png"))
    assert set(np.unique(later).tolist()) == {0, 1, 2}


def test_overlay_of_the_segmented_sample(sample_run, tmp_path):
    import imageio_ffmpeg

    out, _, _ = sample_run
    video = tmp_path / "overlay.mp4"
    result = run_cli("overlay", sample_paths().video, out, "--out", video, "--contours")
    assert result.exit_code == 0, result.output
    gen = imageio_ffmpeg.read_frames(str(video))
    meta = next(gen)
    n = sum(1 for _ in gen)
    assert n == 72 and tuple(meta["size"]) == (320, 240) and abs(meta["fps"] - 24) < 0.01


def test_info_lists_the_backbone_weights():
    result = run_cli("info", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    backbone = data["weights"][0]
    assert backbone["role"] == "backbone" and len(backbone["sha256"]) == 64
    assert "Apache" in backbone["license"]


def test_benchmark_reports_fps_and_stage_split():
    result = run_cli("benchmark", "--fps", "--frames", "6", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["frames"] == 6 and data["fps"] > 0
    assert set(data["stage_ms_per_frame"]) >= {"backbone", "target_init", "target_score", "merge"}
    assert abs(sum(data["stage_seconds"].values()) - data["seconds"]) < 0.25 * data["seconds"]  # stages cover the run



def test_benchmark_scales_frames_to_max_size_as_segment_does():
    result = run_cli("benchmark", "--frames", "3", "--device", "cpu", "--max-size", "128", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    native, work = data["input_resolution"], data["resolution"]
    assert max(native.values()) > 128 and max(work.values()) == 128
    assert abs(work["width"] / work["height"] - native["width"] / native["height"]) < 0.02
    result = run_cli("benchmark", "--frames", "2", "--device", "cpu", "--max-size", "0", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["resolution"] == native

DAVIS = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data" / "davis16-train"


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.skipif(not (DAVIS / "videos").is_dir(), reason="needs ../shared/data/davis16-train")
def test_segment_a_davis_mp4_and_score_it(tmp_path):
    """The user path on real footage: mp4 + first-frame DAVIS mask → PNGs that score correctly."""
    seq = "soccerball"
    out = tmp_path / seq
    result = run_cli("segment", DAVIS / "videos" / f"{seq}.mp4", "--mask", DAVIS / "masks" / seq / "00000.png", "--out", out)
    assert result.exit_code == 0, result.output
    assert len(list(out.glob("*.png"))) == len(list((DAVIS / "masks" / seq).glob("*.png")))
    scores = tmp_path / "scores.json"
    result = run_cli("evaluate", tmp_path, DAVIS / "masks", "--sequences", seq, "--json", scores)
    assert result.exit_code == 0, result.output
    # Measured 79.5 J&F for soccerball with the default engine and shipped refiner (docs/RESULTS.md).
    assert json.loads(scores.read_text())["global"]["J&F-Mean"] > 0.6


def test_threads_option_sets_torch_threads_and_the_report_records_them():
    result = run_cli("benchmark", "--frames", "3", "--device", "cpu", "--threads", "1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["platform"]["cpu_threads"] == 1


@pytest.mark.parametrize("command", ["segment", "batch", "benchmark", "ablation", "train", "train-primary"])
def test_every_computing_command_takes_threads(command):
    result = run_cli(command, "--help")
    assert result.exit_code == 0 and "--threads" in result.output


def test_a_busy_cpu_prompts_a_note_to_use_fewer_threads(monkeypatch, capsys):
    import torch

    from vossegcli.cli import common as cli
    from vossegcli.engine import device as device_module

    torch.set_num_threads(2)
    monkeypatch.setattr(device_module, "busy_cores", lambda seconds=0.2: 1.0)
    cli._use_threads(0, "cpu")
    assert "--threads 1" in capsys.readouterr().err
    monkeypatch.setattr(device_module, "busy_cores", lambda seconds=0.2: 0.1)
    cli._use_threads(0, "cpu")
    assert capsys.readouterr().err == ""


def _other_video(path, frames=10):
    from vossegcli.io.overlay import encode_mp4

    rng = np.random.default_rng(0)
    encode_mp4(path, ((rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), None) for _ in range(frames)), (320, 240), 24)
    return path


def test_overlay_refuses_masks_made_from_another_video_unless_forced(sample_run, tmp_path):
    out, _, _ = sample_run
    other = _other_video(tmp_path / "other.mp4")
    video = tmp_path / "overlay.mp4"
    result = run_cli("overlay", other, out, "--out", video)
    assert result.exit_code == 2
    assert "made from" in result.output and "sample.mp4" in result.output and "--force" in result.output
    assert not video.exists()
    result = run_cli("overlay", other, out, "--out", video, "--force")
    assert result.exit_code == 0, result.output
    assert video.is_file()


def test_overlay_refuses_a_frame_count_that_differs_from_the_video(sample_run, tmp_path):
    out, _, _ = sample_run
    copied = tmp_path / "masks"  # the masks without their run record: only the count tells
    copied.mkdir()
    for png in out.glob("*.png"):
        shutil.copy(png, copied / png.name)
    other = _other_video(tmp_path / "other.mp4", frames=12)
    result = run_cli("overlay", other, copied, "--out", tmp_path / "o.mp4")
    assert result.exit_code == 2
    assert "72 frame masks" in result.output and "12 frames" in result.output


def test_evaluate_refuses_predictions_that_run_past_the_ground_truth_unless_forced(sample_run, tmp_path):
    out, _, _ = sample_run
    gt = tmp_path / "gt"
    gt.mkdir()
    for png in sorted(sample_paths().gt_dir.glob("*.png"))[:40]:
        shutil.copy(png, gt / png.name)
    result = run_cli("evaluate", out, gt)
    assert result.exit_code == 2
    assert "72 frame masks" in result.output and "--force" in result.output
    forced = run_cli("evaluate", out, gt, "--force")
    assert forced.exit_code == 0, forced.output
    assert "Global" in forced.output


def test_evaluate_shows_a_row_per_object_of_a_multi_object_sequence(sample_run):
    out, _, _ = sample_run
    result = run_cli("evaluate", out, sample_paths().gt_dir)
    assert result.exit_code == 0, result.output
    assert "object 1" in result.output and "object 2" in result.output


def test_help_shows_the_ray_extra_and_the_choices_of_each_option():
    batch = run_cli("batch", "--help").output
    assert 'vosseg[ray]' in batch
    seg = run_cli("segment", "--help").output
    for choices in ("default|fast", "inpaint|gray", "auto|cpu|cuda", "seed|cosnet"):
        assert choices in seg, choices
    bench = run_cli("benchmark", "--help").output
    assert "--fps" not in bench  # hidden (always on), so the examples do not use it
    assert "Examples" in run_cli("info", "--help").output


def test_evaluate_accepts_sparse_ground_truth_that_ends_before_the_predictions(sample_run, tmp_path):
    out, _, _ = sample_run
    gt = tmp_path / "gt"
    gt.mkdir()
    for png in sorted(sample_paths().gt_dir.glob("*.png"))[:60:5]:  # every 5th frame, up to 55 of 72
        shutil.copy(png, gt / png.name)
    result = run_cli("evaluate", out, gt)
    assert result.exit_code == 0, result.output


def test_the_run_options_table_gives_the_flags_the_rerun_command_and_the_batch_columns():
    """run/options.py is the one table: every option is a segment flag, the rerun command of
    non-default values parses back to the same values, defaults add no words, and a batch job's
    columns reach the engine configuration as the flags do."""
    from typer.main import get_command

    from vossegcli.cli import app
    from vossegcli.run.batch import Job, job_config
    from vossegcli.run.options import BATCH_COLUMNS, OPTIONS, engine_config, rerun_words

    values = {"preset": "fast", "augment": 2, "fill": "gray", "update": False, "seed": 3, "refiner": "none",
              "target_features": "none", "max_size": 480, "snap_mask": True, "device": "cpu", "precision": "fp32",
              "deterministic": True, "state_every": 7, "absence": False, "bidirectional": True}
    assert set(values) == set(OPTIONS)
    segment = get_command(app).commands["segment"]
    ctx = segment.make_context("segment", rerun_words(values))
    assert {name: ctx.params[name] for name in values} == values
    assert rerun_words({}) == [] and rerun_words({"seed": 0, "update": True}) == []
    batch = {k: v for k, v in values.items() if k in BATCH_COLUMNS}
    assert "target_features" in batch and "device" not in batch
    assert job_config(Job(1, "in.mp4", [], "out", batch)) == engine_config(values)
