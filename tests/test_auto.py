"""`vosseg segment --auto`: the primary-object network finds and segments an object no mask names."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from vossegcli import sample
from vossegcli.cli import app
from vossegcli.engine.primary import PrimaryObjectNet, load_primary, mask_confidence, save_primary
from vossegcli.eval.metrics import region_similarity
from vossegcli.io.palette import read_label_png
from vossegcli.run.auto import AutoConfig, reference_indices
from vossegcli.run.discovery import DISCOVER_EVERY
from support import runner

FRAMES = 20


def _background(scene, t):
    """The sample's panning background at its frame ``t``, supersampled (float64)."""
    ss = sample.SUPERSAMPLE
    u = t / (sample.NUM_FRAMES - 1)
    ox = int(round(scene.pan[0] * u * ss))
    oy = int(round(scene.pan[1] * (0.5 - 0.5 * math.cos(math.pi * u)) * ss))
    return scene.background[oy:oy + sample.HEIGHT * ss, ox:ox + sample.WIDTH * ss].astype(np.float64)


def _ellipse_clip(folder, poses_of):
    """The sample's panning background with red spotted ellipses posed by ``poses_of(k, pose)`` (the
    sample's own pose of frame 3k in, one pose per ellipse out): 20 frames (every third of the
    sample's 72) as PNGs, and per frame each ellipse's ground truth."""
    scene = sample._Scene(3)
    yy, xx = np.mgrid[0:sample.HEIGHT, 0:sample.WIDTH].astype(np.float64) + 0.5
    frames_dir = folder / "frames"
    frames_dir.mkdir()
    truth = []
    for k, t in enumerate(range(0, 3 * FRAMES, 3)):
        img = _background(scene, t)
        one, _ = scene.poses(t)
        masks = []
        for pose in poses_of(k, one):
            sample._paint_ellipse(img, pose, scene)
            masks.append(sample._ellipse_inside(*sample._local(xx, yy, pose), scene))
        img = img.reshape(sample.HEIGHT, sample.SUPERSAMPLE, sample.WIDTH, sample.SUPERSAMPLE, 3).mean(axis=(1, 3))
        Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8)).save(frames_dir / f"{k:05d}.png")
        truth.append(masks)
    return frames_dir, truth


def _one_object_clip(folder):
    """Only the sample's red spotted ellipse, moving as in the sample, and its ground truth."""
    frames_dir, truth = _ellipse_clip(folder, lambda k, one: [one])
    return frames_dir, [m[0] for m in truth]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return _one_object_clip(tmp_path_factory.mktemp("auto"))


def _ious(out, truth):
    return [region_similarity(read_label_png(out / f"{k:05d}.png") > 0, gt) for k, gt in enumerate(truth)]


def test_auto_finds_and_segments_the_one_salient_moving_object(clip, tmp_path):
    frames, truth = clip
    out = tmp_path / "auto"
    report = tmp_path / "run.json"
    result = runner.invoke(app, ["segment", str(frames), "--auto", "--out", str(out), "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert "seeded at frame" in result.output
    ious = _ious(out, truth)
    assert len(ious) == FRAMES
    assert np.mean(ious) > 0.75, ious
    assert min(ious) > 0.5, ious
    auto = json.loads(report.read_text())["auto"]
    assert auto["mode"] == "seed"
    assert 0 <= auto["seed_frame"] < 10 and 0 < auto["confidence"] <= 1
    assert auto["references"] == reference_indices(FRAMES, 5)
    # the seed mask is kept for --resume; every frame's PNG holds only object 1
    assert (out / ".vosseg-auto-seed.png").is_file()
    assert set(np.unique(read_label_png(out / "00010.png")).tolist()) <= {0, 1}


def test_auto_cosnet_mode_segments_every_frame_against_references(clip, tmp_path):
    frames, truth = clip
    out = tmp_path / "cosnet"
    result = runner.invoke(app, ["segment", str(frames), "--auto", "--auto-mode", "cosnet", "--references", "2",
                                 "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report["auto"]["mode"] == "cosnet" and report["auto"]["references"] == [0, FRAMES - 1]
    assert np.mean(_ious(out, truth)) > 0.6


def test_auto_dry_run_writes_the_proposed_mask_and_the_command_to_use_it(clip, tmp_path):
    frames, truth = clip
    out = tmp_path / "proposal"
    result = runner.invoke(app, ["segment", str(frames), "--auto", "--dry-run", "--out", str(out)])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "proposal.json").read_text())
    proposal = read_label_png(out / "proposal.png") > 0
    assert region_similarity(proposal, truth[meta["seed_frame"]]) > 0.7
    assert "--mask" in result.output and "proposal.png" in result.output
    assert not list(out.glob("0*.png"))  # nothing segmented
    # the printed command works: the proposal is a valid mask for the normal mode
    mask_arg = f"{meta['seed_frame']}:{out / 'proposal.png'}" if meta["seed_frame"] else str(out / "proposal.png")
    result = runner.invoke(app, ["segment", str(frames), "--mask", mask_arg, "--out", str(out / "masks"),
                                 "--augment", "0"])
    assert result.exit_code == 0, result.output


def test_auto_refuses_a_mask_and_dry_run_without_auto(clip, tmp_path):
    frames, _ = clip
    result = runner.invoke(app, ["segment", str(frames), "--auto", "--mask", "x.png", "--out", str(tmp_path / "a")])
    assert result.exit_code == 2 and "drop --mask" in result.output
    result = runner.invoke(app, ["segment", str(frames), "--dry-run", "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "--auto" in result.output
    result = runner.invoke(app, ["segment", str(frames), "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and "--auto" in result.output  # the no-mask error points to --auto
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_auto_on_a_featureless_video_says_no_object_was_found(tmp_path):
    frames = tmp_path / "gray"
    frames.mkdir()
    for k in range(4):
        Image.fromarray(np.full((96, 128, 3), 128, np.uint8)).save(frames / f"{k:05d}.png")
    out = tmp_path / "out"
    result = runner.invoke(app, ["segment", str(frames), "--auto", "--out", str(out)])
    assert result.exit_code == 2
    assert "no primary object found" in result.output and "--mask" in result.output


def test_reference_frames_are_spread_uniformly_over_the_whole_video():
    assert reference_indices(100, 5) == [0, 25, 50, 74, 99]
    assert reference_indices(3, 5) == [0, 1, 2]
    assert reference_indices(10, 0) == []


def test_auto_config_rejects_unknown_modes():
    with pytest.raises(Exception, match="choose one of seed, cosnet"):
        AutoConfig(mode="crf")


def test_mask_confidence_prefers_crisp_masks_to_faint_ones():
    crisp = np.zeros((40, 40), np.float32)
    crisp[10:30, 10:30] = 0.98
    faint = np.where(crisp > 0, 0.6, 0.4).astype(np.float32)
    assert mask_confidence(crisp) > 0.9 > mask_confidence(faint)
    assert mask_confidence(np.full((8, 8), 0.2, np.float32)) == 0.0


def test_co_attention_summarizes_the_reference_and_is_symmetric():
    torch.manual_seed(0)
    net = PrimaryObjectNet().eval()
    va, vb = torch.randn(1, 128, 6, 8), torch.randn(1, 128, 5, 7)
    za, zb = net.summary(va, vb)
    assert za.shape == va.shape and zb.shape == vb.shape
    # one reference through the inference path gives the training path's summary
    assert torch.allclose(net.summary_of(va, vb), za, atol=1e-5)
    # swapping the frames swaps the summaries (W = PᵀDP is symmetric)
    zb2, za2 = net.summary(vb, va)
    assert torch.allclose(za2, za, atol=1e-5) and torch.allclose(zb2, zb, atol=1e-5)
    # N references: the mean of the N gated summaries
    refs = torch.cat([vb[..., :5, :7], torch.randn(1, 128, 5, 7)])
    mean = (net.summary(va, refs[:1])[0] + net.summary(va, refs[1:])[0]) / 2
    assert torch.allclose(net.summary_of(va, refs), mean, atol=1e-5)


def test_primary_weights_round_trip(tmp_path):
    net = PrimaryObjectNet()
    path = tmp_path / "p.pt"
    save_primary(net, path)
    back = load_primary(path)
    v = torch.randn(1, 128, 4, 4)
    assert torch.equal(back(v, None), net.eval()(v, None))


def test_auto_resume_of_a_complete_run_says_so_and_keeps_the_masks(clip, tmp_path):
    frames, _ = clip
    out = tmp_path / "auto"
    assert runner.invoke(app, ["segment", str(frames), "--auto", "--out", str(out)]).exit_code == 0
    before = (out / "00012.png").read_bytes()
    result = runner.invoke(app, ["segment", str(frames), "--auto", "--out", str(out), "--resume"])
    assert result.exit_code == 0, result.output
    assert "already complete" in result.output
    assert (out / "00012.png").read_bytes() == before
    # a different --auto run into the same folder is refused, not mixed
    result = runner.invoke(app, ["segment", str(frames), "--auto", "--references", "2", "--out", str(out), "--resume"])
    assert result.exit_code == 2 and "another --auto run" in result.output


def test_info_lists_the_shipped_primary_weights_with_a_matching_sha256():
    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    weights = {w["role"]: w for w in json.loads(result.stdout)["weights"]}
    primary = weights["primary object (--auto)"]
    assert primary["manifest_sha256_matches"] is True
    assert primary["file"].endswith("primary.pt")


SHARED = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "duts-tr").is_dir(), reason="needs ../shared/data (ECSSD, DUTS-TR)")
def test_common_object_pairs_share_the_target_and_nothing_else():
    import random

    from vossegcli.train.data import ObjectPool
    from vossegcli.train.primary import PAIR_SIZE, common_object_pair, saliency_images

    pool = ObjectPool(SHARED, ("ecssd", "duts"))
    rng = random.Random(1)
    for _ in range(3):
        ia, fa, ib, fb = common_object_pair(pool, saliency_images(SHARED), rng)
        assert ia.shape == ib.shape == PAIR_SIZE + (3,) and fa.shape == fb.shape == PAIR_SIZE
        assert fa.any() and fb.any()  # the target is in both frames
        # the target's colours are the same object's in both frames (mean colour within 25 levels)
        assert np.abs(ia[fa].mean(0) - ib[fb].mean(0)).max() < 25


def test_auto_resume_restores_the_masks_before_the_seed_frame_and_starts_fresh_folders(clip, tmp_path):
    frames, truth = clip
    out = tmp_path / "fresh"
    # --resume into a folder that does not exist yet simply runs (scripts may always pass it)
    report = tmp_path / "r.json"
    result = runner.invoke(app, ["segment", str(frames), "--auto", "--resume", "--out", str(out), "--report", str(report)])
    assert result.exit_code == 0, result.output
    seed = json.loads(report.read_text())["auto"]["seed_frame"]
    assert seed > 0  # this clip's most confident early frame is not the first
    # killed after the engine finished but before the early frames got their co-attention masks:
    from vossegcli.io.palette import davis_palette, write_label_png

    for k in range(seed):
        write_label_png(out / f"{k:05d}.png", np.zeros_like(truth[k], np.uint8), davis_palette())
    result = runner.invoke(app, ["segment", str(frames), "--auto", "--resume", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert min(_ious(out, truth)[:seed]) > 0.5


def test_auto_resume_refuses_a_folder_of_a_normal_run(clip, tmp_path):
    frames, truth = clip
    out = tmp_path / "normal"
    mask = tmp_path / "m.png"
    from vossegcli.io.palette import davis_palette, write_label_png

    write_label_png(mask, truth[0].astype(np.uint8), davis_palette())
    assert runner.invoke(app, ["segment", str(frames), "--mask", str(mask), "--out", str(out), "--augment", "0"]).exit_code == 0
    for mode in ("seed", "cosnet"):
        result = runner.invoke(app, ["segment", str(frames), "--auto", "--auto-mode", mode, "--resume", "--out", str(out)])
        assert result.exit_code == 2 and "no --auto run" in result.output, result.output


def test_auto_dry_run_json_is_the_only_thing_on_stdout(clip, tmp_path):
    frames, _ = clip
    result = runner.invoke(app, ["segment", str(frames), "--auto", "--dry-run", "--json", "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["proposal"].endswith("proposal.png") and 0 <= data["seed_frame"] < 10


def _two_object_clip(folder):
    """Two red spotted ellipses moving apart (look-alikes that the primary-object network marks
    both): 20 frames as PNGs and per frame each ellipse's ground truth (left one first)."""
    return _ellipse_clip(folder, lambda k, one: [replace(one, cx=110 - 2 * k, cy=90 - k),
                                                 replace(one, cx=210 + 2 * k, cy=150 + k)])


def test_auto_objects_all_finds_two_separate_objects_and_keeps_their_ids(tmp_path):
    frames, truth = _two_object_clip(tmp_path)
    out = tmp_path / "auto"
    result = runner.invoke(app, ["segment", str(frames), "--auto", "--objects", "all", "--out", str(out),
                                 "--report", str(tmp_path / "run.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "run.json").read_text())
    assert len(report["auto"]["objects"]) == 2
    seed = report["auto"]["seed_frame"]
    first = read_label_png(out / f"{seed:05d}.png")
    # ids follow the objects: whichever id took the left ellipse keeps it on every frame
    left_id = int(np.bincount(first[truth[seed][0]], minlength=3)[1:].argmax()) + 1
    right_id = 3 - left_id
    ious = {left_id: [], right_id: []}
    for k, (left, right) in enumerate(truth):
        labels = read_label_png(out / f"{k:05d}.png")
        # never swapped: each id overlaps its own ellipse more than the other one, on every frame
        assert region_similarity(labels == left_id, left) > region_similarity(labels == left_id, right), k
        assert region_similarity(labels == right_id, right) > region_similarity(labels == right_id, left), k
        ious[left_id].append(region_similarity(labels == left_id, left))
        ious[right_id].append(region_similarity(labels == right_id, right))
    assert min(np.mean(v) for v in ious.values()) > 0.7


def _entering_clip(folder, frames=30, enter=6):
    """The sample's red spotted ellipse drifting on the left, and its teal pentagon entering from
    the right edge at frame ``enter`` (fully inside from frame ``enter`` + 5): PNGs and per frame the
    two objects' ground truth (ellipse, pentagon)."""
    scene = sample._Scene(3)
    yy, xx = np.mgrid[0:sample.HEIGHT, 0:sample.WIDTH].astype(np.float64) + 0.5
    frames_dir = folder / "frames"
    frames_dir.mkdir()
    truth = []
    for k in range(frames):
        img = _background(scene, 3 * k)
        one, two = scene.poses(3 * k)
        ellipse = replace(one, cx=100 + k, cy=110)
        pentagon = replace(two, cx=max(230, sample.WIDTH + 60 - max(0, k - enter) * 18), cy=150)
        sample._paint_ellipse(img, ellipse, scene)
        sample._paint_pentagon(img, pentagon, scene)
        inside_e = sample._ellipse_inside(*sample._local(xx, yy, ellipse), scene)
        inside_p = sample._pentagon_inside(*sample._local(xx, yy, pentagon), scene)
        img = img.reshape(sample.HEIGHT, sample.SUPERSAMPLE, sample.WIDTH, sample.SUPERSAMPLE, 3).mean(axis=(1, 3))
        Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8)).save(frames_dir / f"{k:05d}.png")
        truth.append((inside_e, inside_p & ~inside_e))
    return frames_dir, truth


def test_auto_objects_all_finds_an_object_entering_later_and_keeps_both_ids(tmp_path, monkeypatch):
    """The ellipse is the only object on the seed frame; the pentagon enters after it, and the
    ellipse's target model starts spreading onto it: the next discovery gives it its own id, and
    from then on each id covers its own object (IoU > 0.7 on every frame). The instance decoder is
    loaded once for the seed frame and every later look."""
    import vossegcli.engine.rvos as rvos

    loads = []
    load = rvos.load_instances
    monkeypatch.setattr(rvos, "load_instances", lambda *a, **k: loads.append(a) or load(*a, **k))
    frames, truth = _entering_clip(tmp_path)
    out = tmp_path / "auto"
    result = runner.invoke(app, ["segment", str(frames), "--auto", "--objects", "all", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(loads) == 1
    assert "object 2 found entering at frame" in result.output
    found = int(result.output.split("object 2 found entering at frame")[1].split()[0])
    assert found <= 6 + 5 + 10  # within one discovery interval of the pentagon being fully inside
    for k, (ellipse, pentagon) in enumerate(truth):
        labels = read_label_png(out / f"{k:05d}.png")
        assert set(np.unique(labels).tolist()) <= {0, 1, 2}, k
        if k < found:
            continue
        assert region_similarity(labels == 1, ellipse) > 0.7, k
        assert region_similarity(labels == 2, pentagon) > 0.7, k


def test_untracked_parts_catches_a_tracked_object_spreading_onto_a_separate_newcomer():
    from vossegcli.run.discovery import untracked_parts

    parts = np.zeros((60, 80), np.uint8)
    parts[5:20, 5:20] = 1  # object 1's home
    parts[30:55, 50:75] = 2  # a newcomer far from it
    previous = np.zeros((60, 80), np.uint8)
    previous[5:20, 5:20] = 1
    previous[30:45, 50:75] = 1  # object 1 has spread over 60 % of the newcomer
    (new,) = untracked_parts(parts, previous, min_area=10)
    assert (new == (parts == 2)).all()  # the whole part, carved out of object 1
    previous[5:20, 5:20] = 0  # object 1 lives only on part 2 now: part 2 is its home, and not new
    (new,) = untracked_parts(parts, previous, min_area=10)
    assert (new == (parts == 1)).all()  # (part 1, untracked now, is)


def test_untracked_parts_never_splits_an_object_the_proposer_cut_in_two():
    from vossegcli.run.discovery import untracked_parts

    parts = np.zeros((60, 80), np.uint8)
    parts[10:40, 10:30] = 1
    parts[10:40, 30:45] = 2  # the same object's other half, touching it
    previous = np.zeros((60, 80), np.uint8)
    previous[10:40, 10:45] = 1
    assert untracked_parts(parts, previous, min_area=10) == []


def test_untracked_parts_joins_touching_new_parts_and_keeps_apart_ones_apart():
    from vossegcli.run.discovery import untracked_parts

    parts = np.zeros((60, 80), np.uint8)
    parts[10:30, 10:20] = 1
    parts[10:30, 20:28] = 2  # touches part 1: one new object
    parts[40:55, 60:75] = 3  # apart: another
    parts[0:2, 78:80] = 4  # a speck
    found = untracked_parts(parts, np.zeros((60, 80), np.uint8), min_area=10)
    assert sorted(tuple(np.unique(parts[f]).tolist()) for f in found) == [(1, 2), (3,)]
    assert all((f == np.isin(parts, np.unique(parts[f]))).all() for f in found)  # whole parts


def test_objects_goes_with_auto_and_takes_a_number_or_all(tmp_path):
    result = runner.invoke(app, ["segment", "--objects", "2", "--out", str(tmp_path / "a")])
    assert result.exit_code == 2 and "--objects goes with --auto" in result.output
    for bad in ("many", "0", "33"):
        result = runner.invoke(app, ["segment", "--auto", "--objects", bad, "--out", str(tmp_path / "b")])
        assert result.exit_code == 2 and f"--objects {bad}" in result.output, bad
    with pytest.raises(Exception, match="--auto-mode seed"):
        AutoConfig(mode="cosnet", objects=2)


def test_split_objects_numbers_separate_parts_largest_first_and_drops_specks():
    from vossegcli.engine.mask_shape import split_objects

    mask = np.zeros((40, 60), bool)
    mask[2:10, 2:10] = True  # 64 px
    mask[20:36, 30:50] = True  # 320 px
    mask[38, 58] = True  # a speck
    ids = split_objects(mask, 0, min_area=10)
    assert (ids[25, 40], ids[5, 5], ids[38, 58]) == (1, 2, 0)
    assert set(np.unique(split_objects(mask, 1, min_area=10)).tolist()) == {0, 1}


def test_objects_discovery_adds_untracked_parts_every_few_frames_within_the_limit(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from vossegcli.run import auto as auto_module

    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(3):
        Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(frames / f"{k:05d}.png")
    foreground = np.zeros((40, 60), bool)
    foreground[5:15, 5:15] = True  # already tracked as object 1
    foreground[20:35, 40:55] = True  # new
    fake = SimpleNamespace(predict=lambda image, refs: SimpleNamespace(mask=foreground), instances=None)
    monkeypatch.setattr(auto_module, "collect_references", lambda *a, **k: (None, []))
    previous = np.zeros((40, 60), np.uint8)
    previous[5:15, 5:15] = 1
    image = np.zeros((40, 60, 3), np.uint8)
    every = DISCOVER_EVERY
    discover = auto_module._discoverer(frames, AutoConfig(objects=0, proposer="parts"), fake, None, 1, 3, None)
    assert discover(3 + every - 1, image, previous, [1]) is None  # not a discovery frame
    new = discover(3 + every, image, previous, [1])
    assert set(np.unique(new).tolist()) == {0, 2} and new[25, 45] == 2 and new[8, 8] == 0
    assert discover(3 + every, image, previous, [1, 7]) [25, 45] == 8  # ids never reused
    covered = previous.copy()
    covered[20:35, 40:55] = 1
    assert discover(3 + every, image, covered, [1]) is None  # everything is tracked already
    limited = auto_module._discoverer(frames, AutoConfig(objects=1, proposer="parts"), fake, None, 1, 3, None)
    assert limited(3 + every, image, previous, [1]) is None


def test_objects_discovery_with_the_instance_decoder_adds_its_untracked_objects(tmp_path, monkeypatch):
    import torch
    from types import SimpleNamespace

    from vossegcli.run import auto as auto_module

    logits = torch.full((1, 5, 5, 8), -9.0)  # stride-8 grid of a 40x64 frame
    logits[0, 0, 0:2, 0:2] = 9.0  # slot 0: the tracked object
    logits[0, 1, 3:5, 5:8] = 9.0  # slot 1: a new one
    scores = torch.tensor([[5.0, 5.0, -5.0, -5.0, -5.0]])
    fake = SimpleNamespace(features=lambda image: None, device="cpu",
                           instances=lambda feats, state=None: (logits, scores, None))
    previous = np.zeros((40, 64), np.uint8)
    previous[0:16, 0:16] = 1
    every = DISCOVER_EVERY
    discover = auto_module._discoverer(tmp_path, AutoConfig(objects=0), fake, None, 1, 0, None)
    new = discover(every, np.zeros((40, 64, 3), np.uint8), previous, [1])
    assert set(np.unique(new).tolist()) == {0, 2} and new[35, 60] == 2 and new[4, 4] == 0


def _fake_samples(n, seed):
    from vossegcli.train.primary import Sample

    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        target = torch.zeros(1, 1, 6, 8)
        target[..., 2:5, 3:6] = 1.0
        out.append(Sample(torch.randn(1, 120, 6, 8, generator=g).half(), torch.randn(1, 352, 3, 4, generator=g).half(),
                          target.half()))
    return out


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])
def test_primary_trainer_trains_on_the_device_it_is_given(tmp_path, device):
    """train-primary --device: the network lives on that device, steps change its weights, and the
    saved file loads on the CPU."""
    from vossegcli.engine.primary import load_primary
    from vossegcli.train.primary import PrimaryTrainConfig, PrimaryTrainer

    cfg = PrimaryTrainConfig(steps=2, saliency_batch=2, pair_batch=1, synthetic_batch=0)
    trainer = PrimaryTrainer(tmp_path, tmp_path / "out", cfg, tmp_path / "cache", log=lambda m: None, device=device)
    trainer.saliency = _fake_samples(4, 0)
    trainer.videos = {"a": _fake_samples(3, 1), "b": _fake_samples(3, 2)}
    trainer.val = {"v": _fake_samples(5, 3)}
    before = {k: v.clone() for k, v in trainer.net.state_dict().items()}
    trainer.train()
    assert next(trainer.net.parameters()).device.type == device
    after = trainer.net.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())
    path = trainer.save({})
    assert load_primary(path).config.channels == trainer.net.config.channels


@pytest.mark.slow
def test_auto_objects_resumed_after_a_discovery_writes_what_an_uninterrupted_run_writes(tmp_path, monkeypatch):
    """--auto --objects all, stopped by Ctrl-C after an object entering later was discovered: --resume
    keeps it (its id and model come back with the engine state), goes on discovering, and every
    PNG equals a run that was never stopped. (The discovery itself is stood in for by a fixed region
    that appears on frame seed + DISCOVER_EVERY: what is tested is the resume around it.)"""
    from vossegcli.engine.segmenter import Segmenter
    from vossegcli.run import auto as auto_module

    frames, _ = _one_object_clip(tmp_path)
    entering = np.zeros((sample.HEIGHT, sample.WIDTH), bool)
    entering[150:200, 240:300] = True

    def fake_discoverer(input_path, auto, seg, max_size, seeded, seed_frame, notify):
        def discover(index, image, previous, ids):
            if index == seed_frame + DISCOVER_EVERY and len(ids) < 2:
                return np.where(entering & (previous == 0), max(ids) + 1, 0).astype(np.uint8)
            return None
        return discover

    monkeypatch.setattr(auto_module, "_discoverer", fake_discoverer)
    args = ["segment", str(frames), "--auto", "--objects", "all", "--seed-window", "3"]  # seed frame 0..2
    whole = tmp_path / "whole"
    assert runner.invoke(app, args + ["--out", str(whole), "--report", str(tmp_path / "whole.json")]).exit_code == 0
    expected = {p.name: p.read_bytes() for p in whole.glob("[0-9]*.png")}
    assert len(expected) == FRAMES
    discovered_at = json.loads((tmp_path / "whole.json").read_text())["auto"]["seed_frame"] + DISCOVER_EVERY

    step = Segmenter.step
    stop_at = FRAMES - 4
    assert discovered_at < stop_at  # the run stops after the discovery ...
    # ... and the discovered object is still written after the stop, so the resumed part must carry it
    # (a region of plain background: the engine lets it fade, but not before frame stop_at)
    assert any((read_label_png(whole / f"{t:05d}.png") == 2).any() for t in range(stop_at, FRAMES))


    def interrupted(self, state, frame, new_masks=None, **kwargs):
        if state.frame_index == stop_at:
            raise KeyboardInterrupt
        return step(self, state, frame, new_masks, **kwargs)

    stopped = tmp_path / "stopped"
    monkeypatch.setattr(Segmenter, "step", interrupted)
    assert runner.invoke(app, args + ["--out", str(stopped)]).exit_code == 130
    assert len(list(stopped.glob("[0-9]*.png"))) < FRAMES and (stopped / ".vosseg-state.pt").is_file()
    monkeypatch.setattr(Segmenter, "step", step)
    result = runner.invoke(app, args + ["--out", str(stopped), "--resume"])
    assert result.exit_code == 0, result.output
    assert "resuming exactly" in result.output
    assert {p.name: p.read_bytes() for p in stopped.glob("[0-9]*.png")} == expected


def test_proposer_option_needs_objects_and_an_existing_file_and_is_recorded(tmp_path):
    frames, _ = _two_object_clip(tmp_path)
    alone = runner.invoke(app, ["segment", str(frames), "--auto", "--proposer", "parts", "--out", str(tmp_path / "a")])
    assert alone.exit_code == 2 and "--proposer chooses how the objects of --objects" in alone.output
    missing = runner.invoke(app, ["segment", str(frames), "--auto", "--objects", "all", "--proposer",
                                  str(tmp_path / "no.pt"), "--out", str(tmp_path / "b")])
    assert missing.exit_code == 2 and "no.pt: no such file" in missing.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    out = tmp_path / "c"
    done = runner.invoke(app, ["segment", str(frames), "--auto", "--objects", "all", "--proposer", "parts",
                               "--preset", "fast", "--out", str(out)])
    assert done.exit_code == 0, done.output
    record = json.loads((out / ".vosseg-auto.json").read_text())
    assert record["identity"]["auto"]["proposer"] == "parts" and "instances_sha256" not in record["identity"]
    assert "--proposer parts" in json.loads((out / ".vosseg-run.json").read_text())["command"]
