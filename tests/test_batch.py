"""`vosseg batch`: a jobs file of three tiny clips, one with a broken mask (issue 13, local execution)."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vossegcli.cli import app
from vossegcli.io.palette import read_label_png
from vossegcli.io.video import open_frames
from vossegcli.run.batch import read_jobs
from vossegcli.sample import sample_paths
from support import runner



def _clips(tmp_path):
    """Two 5-frame folders cut from the sample (frames 0-4 and 10-14) with their masks, and a third
    whose mask has the wrong size; a CSV naming all three."""
    with open_frames(sample_paths().video) as reader:
        frames = [f.image for f in reader][:15]
    gt = sample_paths().gt_dir
    for name, first in (("a", 0), ("b", 10), ("c", 0)):
        folder = tmp_path / name
        folder.mkdir()
        for k in range(5):
            Image.fromarray(frames[first + k]).save(folder / f"{k:05d}.png")
        mask = Image.open(gt / f"{first:05d}.png")
        (mask.resize((100, 80)) if name == "c" else mask).save(tmp_path / f"{name}.png")
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("input,mask,preset\na,a.png,fast\nb,b.png,fast\nc,c.png,fast\n")
    return jobs


def test_batch_runs_good_jobs_records_the_bad_one_and_skips_finished_work_on_a_rerun(tmp_path):
    jobs = _clips(tmp_path)
    out = tmp_path / "out"
    first = runner.invoke(app, ["batch", str(jobs), "--out-root", str(out), "--report", str(tmp_path / "r.json")])
    assert first.exit_code == 2, first.output
    report = json.loads((tmp_path / "r.json").read_text())
    status = {row["row"]: row for row in report["jobs"]}
    assert status[2]["status"] == "done" and status[3]["status"] == "done" and status[2]["frames"] == 5
    assert status[4]["status"] == "failed" and "c.png" in status[4]["error"] and not (out / "c").exists()
    # the masks are those `vosseg segment` writes for the same clip and options
    single = runner.invoke(app, ["segment", str(tmp_path / "b"), "--mask", str(tmp_path / "b.png"), "--out",
                                 str(tmp_path / "single"), "--preset", "fast"])
    assert single.exit_code == 0, single.output
    for k in range(5):
        assert np.array_equal(read_label_png(out / "b" / f"{k:05d}.png"), read_label_png(tmp_path / "single" / f"{k:05d}.png"))
    again = runner.invoke(app, ["batch", str(jobs), "--out-root", str(out), "--json"])
    blob = json.loads(again.output[again.output.index("{"):])
    assert [r["status"] for r in blob["jobs"]] == ["skipped", "skipped", "failed"] and blob["done"] == 0


@pytest.mark.slow
def test_two_workers_write_the_masks_one_worker_writes(tmp_path):
    """Two processes with one torch thread each: the same masks up to floating-point summation order
    (a different thread count reorders reductions), so compared by IoU."""
    jobs = _clips(tmp_path)
    jobs.write_text("input,mask,preset\na,a.png,fast\nb,b.png,fast\n")
    one, two = tmp_path / "one", tmp_path / "two"
    assert runner.invoke(app, ["batch", str(jobs), "--out-root", str(one)]).exit_code == 0
    result = runner.invoke(app, ["batch", str(jobs), "--out-root", str(two), "--workers", "2"])
    assert result.exit_code == 0, result.output
    for name in ("a", "b"):
        for k in range(5):
            x, y = read_label_png(one / name / f"{k:05d}.png"), read_label_png(two / name / f"{k:05d}.png")
            for obj in (1, 2):
                union = np.count_nonzero((x == obj) | (y == obj))
                assert union and np.count_nonzero((x == obj) & (y == obj)) / union > 0.97, (name, k, obj)


def test_jobs_file_problems_are_all_listed_before_anything_runs(tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"input": "x.mp4", "mask": ["m.png", "40:late.png"], "seed": 3}\n'
                    'not json\n'
                    '{"input": "y.mp4"}\n'
                    '{"input": "z.mp4", "mask": "z.png", "colour": "red"}\n'
                    '{"input": "w.mp4", "mask": "w.png", "update": "maybe"}\n')
    found, problems = read_jobs(jobs, tmp_path / "out")
    assert len(found) == 1 and found[0].options == {"seed": 3}
    assert found[0].masks == [str(tmp_path / "m.png"), f"40:{tmp_path / 'late.png'}"]
    assert found[0].out == str(tmp_path / "out" / "x")
    assert [p.split(":")[1] for p in problems] == ["2", "3", "4", "5"]
    assert "unknown column(s) colour" in problems[2] and "update='maybe'" in problems[3]


def test_batch_on_a_local_ray_instance_writes_the_masks_and_records_the_bad_job(tmp_path):
    import pytest

    pytest.importorskip("ray")
    jobs = _clips(tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(app, ["batch", str(jobs), "--out-root", str(out), "--ray", "local", "--json"])
    assert result.exit_code == 2, result.output
    blob = json.loads(result.output[result.output.index("{"):])
    assert [r["status"] for r in blob["jobs"]] == ["done", "done", "failed"] and "c.png" in blob["jobs"][2]["error"]
    gt = sample_paths().gt_dir
    for name, first in (("a", 0), ("b", 10)):
        for k in range(1, 5):
            pred, truth = read_label_png(out / name / f"{k:05d}.png"), read_label_png(gt / f"{first + k:05d}.png")
            union = np.count_nonzero((pred > 0) | (truth > 0))
            assert np.count_nonzero((pred > 0) & (truth > 0)) / union > 0.8


def test_ray_missing_says_what_to_install(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("no ray")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    jobs = _clips(tmp_path)
    result = runner.invoke(app, ["batch", str(jobs), "--out-root", str(tmp_path / "o"), "--ray", "local"])
    assert result.exit_code == 2 and 'pip install "vosseg[ray]"' in result.output


@pytest.mark.slow
def test_ctrl_c_stops_a_two_worker_batch_and_a_rerun_resumes_the_interrupted_videos(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    for name in ("a", "b"):
        (tmp_path / f"{name}.mp4").symlink_to(sample_paths().video)
        (tmp_path / f"{name}.png").symlink_to(sample_paths().mask)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "vossegcli.cli", "batch", str(tmp_path), "--out-root", str(out), "--workers", "2"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("*/00003.png")):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)  # to the parent only: it stops its workers itself
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "run the same command again" in err
    written = {name: len(list((out / name).glob("*.png"))) for name in ("a", "b")}
    assert any(n < 72 for n in written.values()), written  # stopped part-way, not run to the end
    again = subprocess.run(args + ["--json"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    blob = json.loads(again.stdout[again.stdout.index("{"):])
    for row in blob["jobs"]:
        name = Path(row["input"]).stem
        assert len(list((out / name).glob("*.png"))) == 72
        assert row["status"] == ("skipped" if written[name] == 72 else "done")
        if written[name] < 72:
            assert row["frames"] < 72  # continued, not started over


def test_batch_auto_rows_need_no_mask_and_match_segment_auto(tmp_path):
    _clips(tmp_path)
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"input": "a", "auto": True, "objects": "all", "preset": "fast"}) + "\n"
                    + json.dumps({"input": "b", "auto": "yes", "mask": "b.png"}) + "\n"
                    + json.dumps({"input": "b", "auto": True, "objects": "many", "out": "b2"}) + "\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["batch", str(jobs), "--out-root", str(out), "--report", str(tmp_path / "r.json")])
    assert result.exit_code == 2  # two bad rows, listed; the good one ran
    assert "jobs.jsonl:2: auto=true finds the objects itself" in result.output
    assert "objects='many'" in result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["jobs"][0]["status"] == "done" and report["jobs"][0]["frames"] == 5
    single = runner.invoke(app, ["segment", str(tmp_path / "a"), "--auto", "--objects", "all", "--preset", "fast",
                                 "--out", str(tmp_path / "single")])
    assert single.exit_code == 0, single.output
    for k in range(5):
        assert np.array_equal(read_label_png(out / "a" / f"{k:05d}.png"), read_label_png(tmp_path / "single" / f"{k:05d}.png"))
    again = runner.invoke(app, ["batch", str(jobs), "--out-root", str(out), "--json"])
    blob = json.loads(again.output[again.output.index("{"):])
    assert blob["jobs"][0]["status"] == "skipped"  # a finished --auto run is not redone
