"""``vosseg segment INPUT --auto``: no mask given; find and segment the video's primary object.

The primary-object network (:mod:`vossegcli.engine.primary`, COSNet) reads the video in two
streaming passes, so memory stays flat in the video's length:

1. **references**: N frames sampled uniformly over the whole video (COSNet's "global uniform
   sampling") are decoded and embedded; only their N stride-16 embeddings are kept;
2. **segmentation**, in one of two modes (``AutoConfig.mode``):

   * ``"seed"`` (auto-seeding, the default — chosen by measurement, docs/RESULTS.md): the first
     ``seed_window`` frames are segmented by co-attention with the references; the frame whose
     mask is most confident (:func:`~vossegcli.engine.primary.mask_confidence`) seeds the
     semi-supervised engine (target model + refiner), which then segments the video as
     ``vosseg segment --mask K:seed.png`` would. Frames before the seed frame keep their
     co-attention masks. The seed mask is kept in the output folder (``.vosseg-auto-seed.png``)
     so ``--resume`` continues the same run;
   * ``"cosnet"``: every frame is segmented by co-attention with the references (COSNet as
     published, without its CRF).

:func:`propose` alone is ``--auto --dry-run``: the seed frame's mask as a PNG a user can check or
edit, and the command that runs the normal mode with it.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from vossegcli.engine.backbone import Backbone
from vossegcli.engine.device import configure_process, resolve_device, resolve_precision
from vossegcli.engine.mask_shape import label_parts, split_objects
from vossegcli.engine.primary import PrimarySegmenter, load_primary
from vossegcli.engine.refiner import load_refiner
from vossegcli.engine.weights import shipped_path, weights_file
from vossegcli.files import sha256_of
from vossegcli.engine.segmenter import Segmenter
from vossegcli.engine.config import SegmenterConfig
from vossegcli.engine.objects import MAX_OBJECTS
from vossegcli.errors import InputError, Interrupted, OutputError, VossegError
from vossegcli.files import atomic_write, write_json_atomic
from vossegcli.io.palette import davis_palette, write_label_png
from vossegcli.io.video import open_frames
from vossegcli.run.discovery import MIN_AREA_FRACTION, discoverer
from vossegcli.run.inputs import FrameSource, resize_labels
from vossegcli.run.options import DEFAULT_MAX_SIZE
from vossegcli.run.outputs import (
    MaskWriteError, MaskWriter, describe_written, interrupted, out_of_memory, prepare_output_dir, write_error_message,
)
from vossegcli.run.report import SegmentationRun, environment_info, peak_memory_mb
from vossegcli.io.run_folder import AUTO_EARLY_DIR, AUTO_FILE, AUTO_SEED_FILE, RunFolder

AUTO_MODES = ("seed", "cosnet")
#: The seed mask and what chose it, kept in the output folder of a seed-mode run (for --resume).
#: The co-attention masks of the frames before the seed frame (copied over the engine's empty ones).
NO_OBJECT_HINT = "give the object's mask with --mask instead"


@dataclass(frozen=True)
class AutoConfig:
    """How ``--auto`` finds the primary object."""

    mode: str = "seed"
    #: N reference frames for the co-attention (0: the single-frame saliency head only).
    references: int = 5
    #: Seed mode: the seed frame is the most confident of the first ``seed_window`` frames (later
    #: frames are searched only when none of these shows an object).
    seed_window: int = 10
    #: The primary-object weights: "default" (shipped) or a path.
    weights: str = "default"
    #: Seed mode: 1 = the primary object as one object (id 1); N > 1 = its separate parts on the seed
    #: frame as up to N objects, largest first (ids 1..N), and parts entering later as new ones;
    #: 0 = all (up to the engine's MAX_OBJECTS).
    objects: int = 1
    #: With ``objects`` != 1, what proposes the seed frame's objects: "default" (the shipped RVOS
    #: instance decoder, :mod:`vossegcli.engine.rvos`: auto-multi 42.43 against 35.80 for parts),
    #: a file of it, or "parts" (the primary-object mask's separate parts).
    proposer: str = "default"

    def __post_init__(self) -> None:
        if self.mode not in AUTO_MODES:
            raise VossegError(f"auto mode {self.mode!r}: choose one of {', '.join(AUTO_MODES)}")
        if self.references < 0 or self.references > 20:
            raise VossegError(f"--references {self.references}: choose 0 (saliency only) to 20")
        if self.seed_window < 1:
            raise VossegError(f"--seed-window {self.seed_window}: must be at least 1")
        if not 0 <= self.objects <= MAX_OBJECTS:
            raise VossegError(f"--objects {self.objects}: choose 1 to {MAX_OBJECTS}, or all")
        if self.proposer not in ("default", "parts") and not Path(self.proposer).expanduser().is_file():
            raise VossegError(f"--proposer {self.proposer}: no such file; give default, parts or a file written by "
                              "vosseg train-instances")
        if self.objects != 1 and self.mode != "seed":
            raise VossegError("--objects needs --auto-mode seed (cosnet mode segments one primary object)")

    def as_dict(self) -> dict:
        return asdict(self)


def primary_weights_file(spec: str) -> Path:
    """The primary-object weights a spec names; VossegError with the fix when missing."""
    if spec in ("", "default"):
        path = shipped_path("primary")
        if path is None:
            raise VossegError("no primary-object weights are installed (weights/manifest.json lists none); reinstall vosseg")
        return path
    path = Path(spec).expanduser()
    if not path.is_file():
        raise VossegError(f"{path}: primary-object weights not found; pass a file written by the primary trainer")
    return path


def load_primary_segmenter(auto: AutoConfig, device: torch.device | str = "cpu",
                           precision: str = "auto", backbone: Backbone | None = None) -> PrimarySegmenter:
    """Backbone (``backbone``: one already loaded, e.g. the tracker's) + the primary-object network +
    the shipped refiner as decoder, on ``device``."""
    path = primary_weights_file(auto.weights)
    try:
        net = load_primary(path, device)
    except Exception as exc:  # unreadable or not ours
        raise VossegError(f"{path}: cannot load primary-object weights ({type(exc).__name__}); reinstall vosseg") from exc
    refiner_path = shipped_path("refiner")
    refiner = load_refiner(refiner_path, device) if refiner_path is not None else None
    device = torch.device(device)
    return PrimarySegmenter(net, refiner, backbone, device=device, dtype=resolve_precision(precision, device),
                            instances=_load_instance_decoder(auto, device))


def _load_instance_decoder(auto: AutoConfig, device: torch.device):
    """RVOS's instance decoder when ``auto`` proposes several objects with it (None otherwise)."""
    weights = instance_weights(auto) if auto.objects != 1 else None
    if weights is None:
        return None
    from vossegcli.engine.rvos import load_instances

    try:
        return load_instances(weights, device)
    except Exception as exc:  # unreadable or not ours
        raise VossegError(f"{weights}: cannot load instance-decoder weights ({type(exc).__name__}); give a file "
                          "written by vosseg train-instances, or --proposer parts") from exc


def reference_indices(num_frames: int, n: int) -> list[int]:
    """N frames spread uniformly over 0..num_frames-1 (fewer if the video is shorter)."""
    if n <= 0 or num_frames <= 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, num_frames - 1, min(n, num_frames))})


def collect_references(seg: PrimarySegmenter, source: FrameSource, n: int,
                       total: int) -> tuple[torch.Tensor | None, list[int]]:
    """Pass 1: decode the video once, embed the N reference frames of its ``total`` frames
    (``reader.count_frames()``) at the engine's size → ((N, C, h, w), their indices)."""
    reader = source.reader
    if n <= 0:
        return None, []
    wanted = reference_indices(total, n) or [0]
    embeddings: dict[int, torch.Tensor] = {}
    last: tuple[int, np.ndarray] | None = None
    frames = source.frames(0)
    try:
        for frame in frames:
            if frame.index in wanted:
                embeddings[frame.index] = seg.reference(frame.image)
            last = (frame.index, frame.image)
            if frame.index >= wanted[-1]:
                break
    finally:
        frames.close()
    if last is None:
        raise InputError(f"{reader.path}: no frames could be decoded; re-encode the video (e.g. as H.264 mp4)")
    if not embeddings or max(embeddings) < last[0] and last[0] not in embeddings:
        # the video ended before the packet count said: the last decoded frame stands in
        embeddings[last[0]] = seg.reference(last[1])
    used = sorted(embeddings)
    return torch.cat([embeddings[i] for i in used]), used


@dataclass
class Proposal:
    """The seed chosen by :func:`propose`."""

    frame: int
    name: str
    confidence: float
    mask: np.ndarray  # (H, W) uint8 object ids at the input size (1 for the primary object)
    references: list[int]
    #: (frame, confidence, area fraction) of every frame examined
    candidates: list[tuple[int, float, float]] = field(default_factory=list)
    #: co-attention masks (engine size, bool) of the frames before the seed frame
    early: dict[int, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> dict:
        return {
            "seed_frame": self.frame, "seed_frame_name": self.name, "confidence": round(self.confidence, 4),
            "area_fraction": round(float((self.mask > 0).mean()), 5), "references": self.references,
            "objects": [{"id": int(i), "area_fraction": round(float((self.mask == i).mean()), 5)}
                        for i in np.unique(self.mask) if i],
            "candidates": [{"frame": f, "confidence": round(c, 4), "area_fraction": round(a, 5)} for f, c, a in self.candidates],
            "seconds": round(self.seconds, 3),
        }


def _to_input_size(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) bool or uint8 ids at the engine's size → uint8 ids at the input ``size``."""
    return resize_labels(mask.astype(np.uint8), size)


def _seed_objects(mask: np.ndarray, objects: int) -> np.ndarray:
    """The seed frame's foreground (bool, engine size) → uint8 ids: one object, or its separate parts
    as up to ``objects`` objects (0: all) — parts smaller than MIN_AREA_FRACTION of the frame dropped."""
    if objects == 1:
        return mask.astype(np.uint8)
    ids = split_objects(mask, objects or MAX_OBJECTS, max(1, int(MIN_AREA_FRACTION * mask.size)))
    return ids if ids.any() else mask.astype(np.uint8)


def instance_weights(auto: AutoConfig) -> Path | None:
    """The instance-decoder file ``auto.proposer`` names (None: "parts", or "default" with none shipped)."""
    if auto.proposer == "parts":
        return None
    path, _ = weights_file("instances", auto.proposer, with_sha256=False)
    return path


def _instance_seed(source: FrameSource, best: int, auto: AutoConfig, seg: PrimarySegmenter) -> np.ndarray:
    """The seed frame's objects from RVOS's instance decoder (``seg.instances``) run over frames
    0..``best`` (its recurrence): uint8 ids at the engine's size, largest first, at most
    ``auto.objects`` (0: all), parts under MIN_AREA_FRACTION of the frame dropped. (Splitting the
    primary-object network's foreground by the decoder's slots instead measured lower: docs/RESULTS.md.)"""
    from vossegcli.engine.rvos import instance_labels

    net = seg.instances
    state, labels = None, None
    frames = source.frames(0)
    try:
        with torch.inference_mode():
            for frame in frames:
                logits, scores, state = net(seg.features(frame.image), state)
                if frame.index >= best:
                    labels = instance_labels(logits[0], scores[0], frame.image.shape[:2])
                    break
    finally:
        frames.close()
    if labels is None:
        return np.zeros((1, 1), np.uint8)
    min_area = max(1, int(MIN_AREA_FRACTION * labels.size))
    areas = sorted(((int((labels == i).sum()), i) for i in np.unique(labels) if i), reverse=True)
    keep = [i for a, i in areas if a >= min_area][: auto.objects or MAX_OBJECTS]
    out = np.zeros_like(labels)
    for new, old in enumerate(keep, start=1):
        out[labels == old] = new
    return out


def _like_seed(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """An early frame's foreground (bool) → ids: each of its parts takes the seed id it overlaps most
    (parts that overlap no seed object are dropped)."""
    if seed.max() <= 1:
        return mask.astype(np.uint8)
    labels = label_parts(mask)
    out = np.zeros(mask.shape, np.uint8)
    for value in np.unique(labels[mask]):
        part = labels == value
        ids = np.bincount(seed[part], minlength=256)
        ids[0] = 0
        if ids.any():
            out[part] = int(ids.argmax())
    return out


def propose(input_path: Path, auto: AutoConfig, *, seg: PrimarySegmenter, max_size: int | None = DEFAULT_MAX_SIZE,
            notify: Callable[[str], None] | None = None) -> Proposal:
    """Pick the seed frame and its primary-object mask (two streaming passes over the video).

    Raises VossegError when no frame of the video shows a primary object.
    """
    t0 = time.perf_counter()
    source = FrameSource.open(input_path, max_size)
    reader = source.reader
    try:
        info = reader.info
        refs, used = collect_references(seg, source, auto.references, reader.count_frames())
        if notify:
            notify(f"reference frames: {', '.join(map(str, used)) if used else 'none (saliency only)'}")
        candidates: list[tuple[int, float, float]] = []
        masks: dict[int, np.ndarray] = {}
        best: int | None = None
        frames = source.frames(0)
        try:
            for frame in frames:
                pred = seg.predict(frame.image, refs)
                candidates.append((frame.index, pred.confidence, float(pred.mask.mean())))
                masks[frame.index] = pred.mask
                if pred.mask.mean() >= MIN_AREA_FRACTION and (best is None or pred.confidence > candidates[best][1]):
                    best = frame.index
                if frame.index + 1 >= auto.seed_window and best is not None:
                    break
                if best is None and frame.index + 1 > auto.seed_window:
                    masks.pop(frame.index)  # searching on: only the window's masks are kept
        finally:
            frames.close()
        if best is None:
            raise VossegError(f"{input_path}: no primary object found in any of its {len(candidates)} frames; {NO_OBJECT_HINT}")
        size = (info.width, info.height)
        if auto.objects != 1 and seg.instances is not None:
            seed = _instance_seed(source, best, auto, seg)
            if not seed.any():  # the decoder proposes nothing there: the primary object's parts
                seed = _seed_objects(masks[best], auto.objects)
        else:
            seed = _seed_objects(masks[best], auto.objects)
        return Proposal(
            frame=best, name=reader.frame_name(best), confidence=candidates[best][1],
            mask=_to_input_size(seed, size), references=used, candidates=candidates,
            early={i: _like_seed(m, seed) for i, m in masks.items() if i < best}, seconds=time.perf_counter() - t0,
        )
    finally:
        reader.close()


def write_proposal(proposal: Proposal, out_dir: Path, force: bool = False) -> Path:
    """``--dry-run``: ``<out>/proposal.png`` (the objects on the seed frame, ids 1..) and ``proposal.json``."""
    out_dir = Path(out_dir)
    prepare_output_dir(out_dir, force)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "proposal.png"
        write_label_png(path, proposal.mask.astype(np.uint8), davis_palette())
        write_json_atomic(out_dir / "proposal.json", proposal.summary())
    except OSError as exc:
        raise OutputError(write_error_message(out_dir, exc)) from exc
    return path


def dry_run(input_path: Path, auto: AutoConfig, out_dir: Path, *, device: str = "auto", precision: str = "auto",
            max_size: int | None = DEFAULT_MAX_SIZE, force: bool = False,
            notify: Callable[[str], None] | None = None) -> tuple[Proposal, Path, list[str]]:
    """``--auto --dry-run``: propose the objects, write ``<out>/proposal.png`` and ``proposal.json``, and
    return (the proposal, the PNG, the words of the ``vosseg segment`` command that segments with it)."""
    from vossegcli.engine.device import resolve_device
    from vossegcli.run.options import rerun_words

    prepare_output_dir(out_dir, force)  # before the work, not after
    seg = load_primary_segmenter(auto, resolve_device(device), precision)
    proposal = propose(input_path, auto, seg=seg, max_size=max_size, notify=notify)
    path = write_proposal(proposal, out_dir, force=True)
    frame = "" if proposal.frame == 0 else f"{proposal.frame}:"
    use = ["vosseg", "segment", str(input_path), "--mask", f"{frame}{path}", "--out", str(Path(out_dir) / "masks")]
    return proposal, path, use + rerun_words({"max_size": max_size, "device": device})


# -- the two modes ---------------------------------------------------------------------------------
def _auto_identity(input_path: Path, auto: AutoConfig) -> dict:
    weights = primary_weights_file(auto.weights)
    path = Path(input_path).expanduser().resolve()
    decoder = instance_weights(auto) if auto.objects != 1 else None
    return {"input": str(path), "bytes": path.stat().st_size if path.is_file() else None, "auto": auto.as_dict(),
            "primary_sha256": sha256_of(weights), **({"instances_sha256": sha256_of(decoder)} if decoder else {})}


def _holds_other_files(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds anything but an --auto run's own hidden files (seed, record, early masks)."""
    try:
        return any(p.name not in (AUTO_SEED_FILE, AUTO_FILE, AUTO_EARLY_DIR) for p in Path(out_dir).iterdir())
    except OSError:
        return False


def segment_auto(
    input_path: Path,
    out_dir: Path,
    auto: AutoConfig,
    *,
    device: str = "auto",
    config: SegmenterConfig | None = None,
    precision: str = "auto",
    force: bool = False,
    resume: bool = False,
    max_size: int | None = DEFAULT_MAX_SIZE,
    progress: Callable[[int, "int | None"], None] | None = None,
    notify: Callable[[str], None] | None = None,
    command: str | None = None,
    **segment_kwargs,
) -> SegmentationRun:
    """Segment the primary object of ``input_path`` into ``out_dir`` (object id 1).

    Seed mode runs :func:`vossegcli.run.segment.segment` from the proposed seed (``segment_kwargs``
    go to it: ``bidirectional``, ``state_every``, ...); cosnet mode segments every frame by
    co-attention. The report's ``auto`` field says which frame seeded the object, how confident
    the network was, and which frames were references.
    """
    out_dir = Path(out_dir)
    config = config or SegmenterConfig()
    if resume and force:
        raise VossegError("resume=True and force=True: choose one (resume=True continues the run in out_dir, force=True starts over)")
    identity = _auto_identity(input_path, auto)
    record = _read_auto_record(out_dir) if resume else None
    if resume and record is not None and record.get("identity") != identity:
        raise OutputError(f"{out_dir}: holds another --auto run (other input or settings); choose another --out or start over with --force")
    if resume and record is None and _holds_other_files(out_dir):
        raise OutputError(f"{out_dir}: holds no --auto run to resume; choose another --out or start over with --force")
    if not resume:
        prepare_output_dir(out_dir, force)
    torch_device = resolve_device(device)
    if auto.mode == "cosnet":
        seg = load_primary_segmenter(auto, torch_device, precision)
        return _segment_cosnet(input_path, out_dir, auto, seg, identity, resume=resume, max_size=max_size,
                               progress=progress, notify=notify)
    # seed mode: the tracker and the primary-object network share one backbone. The refiner is
    # tuned only on masks a user gives: a proposal is a guess, and tuning would learn its mistakes
    # (not measured with --auto).
    config = replace(config, refiner_tuning_steps=0)
    configure_process(torch_device, segment_kwargs.get("deterministic", False))
    tracker = Segmenter(config, device=torch_device)
    seg = load_primary_segmenter(auto, torch_device, precision, backbone=tracker.backbone)
    from vossegcli.run.segment import segment

    if record is not None and "seed" in record and RunFolder(out_dir).auto_seed_file.is_file():
        seed = record["seed"]
        if notify:
            notify(f"resuming the --auto run seeded at frame {seed['seed_frame']} (confidence {seed['confidence']:.2f})")
    else:
        proposal = propose(input_path, auto, seg=seg, max_size=max_size, notify=notify)
        seed = proposal.summary()
        if notify:
            found = seed["objects"]
            what = "primary object" if len(found) == 1 else f"{len(found)} objects (ids 1–{len(found)}, largest first)"
            notify(f"{what} seeded at frame {proposal.frame} ({proposal.name}), confidence {proposal.confidence:.2f}, "
                   f"{100 * seed['area_fraction']:.1f}% of the frame")
        _write_seed(out_dir, input_path, proposal, {"identity": identity, "seed": seed})
    # segment() has started in out_dir when its run record is there; before that a resume starts it afresh
    started = resume and RunFolder(out_dir).holds_run()
    discover = None
    if auto.objects != 1:
        discover = _discoverer(input_path, auto, seg, max_size, len(seed.get("objects") or [1]), seed["seed_frame"], notify)
    result = segment(
        input_path, [f"{seed['seed_frame']}:{RunFolder(out_dir).auto_seed_file}"], out_dir, device=device, config=config,
        force=not started, resume=started, progress=progress, max_size=max_size, command=command, notify=notify,
        segmenter=tracker, discover=discover, **segment_kwargs,
    )
    if seed["seed_frame"] > 0:  # also when already complete: a run stopped while copying them is finished here
        _copy_early(out_dir, result)
    result.auto = {"mode": "seed", **seed, "weights": identity["primary_sha256"]}
    return result


def _discoverer(input_path: Path, auto: AutoConfig, seg: PrimarySegmenter, max_size: int | None, seeded: int,
                seed_frame: int, notify: Callable[[str], None] | None):
    """``discover`` for :func:`vossegcli.run.segment.segment` (:func:`vossegcli.run.discovery.discoverer`)
    with the proposer ``auto`` names: the instance decoder's objects on the frame alone, or with
    ``--proposer parts`` the primary-object network's foreground parts."""
    from vossegcli.engine.rvos import instance_labels

    decoder, refs = seg.instances, None
    if decoder is None:
        with FrameSource.open(input_path, max_size) as source:
            refs, _ = collect_references(seg, source, auto.references, source.reader.count_frames())

    def parts_of(image: np.ndarray, min_area: int) -> np.ndarray:
        if decoder is not None:
            with torch.inference_mode():
                logits, scores, _ = decoder(seg.features(image))
            return instance_labels(logits[0], scores[0], image.shape[:2])
        return split_objects(seg.predict(image, refs).mask, 0, min_area)

    return discoverer(parts_of, auto.objects or MAX_OBJECTS, seeded, seed_frame, notify)


def _write_seed(out_dir: Path, input_path: Path, proposal: Proposal, record: dict) -> None:
    """The seed mask, the early frames' masks (input size, one at a time) and, last, the record that
    says both are complete."""
    folder = RunFolder(out_dir)
    early_dir = folder.auto_early_dir
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        folder.auto_file.unlink(missing_ok=True)
        shutil.rmtree(early_dir, ignore_errors=True)
        write_label_png(folder.auto_seed_file, proposal.mask.astype(np.uint8), davis_palette())
        if proposal.early:
            early_dir.mkdir()
            with open_frames(input_path) as reader:
                size = (reader.info.width, reader.info.height)
                for i, mask in sorted(proposal.early.items()):
                    write_label_png(early_dir / f"{reader.frame_name(i)}.png", _to_input_size(mask, size), davis_palette())
        write_json_atomic(folder.auto_file, record)
    except OSError as exc:
        raise OutputError(write_error_message(out_dir, exc)) from exc


def _copy_early(out_dir: Path, result: SegmentationRun) -> None:
    """Frames before the seed frame: their co-attention masks replace the engine's empty ones."""
    files = sorted(RunFolder(out_dir).auto_early_dir.glob("*.png"))
    try:
        for path in files:
            data = path.read_bytes()
            atomic_write(out_dir / path.name, lambda handle, data=data: handle.write(data))
    except OSError as exc:
        raise OutputError(write_error_message(out_dir, exc)) from exc
    if files:
        result.notes.append(f"{len(files)} frame(s) before the seed frame: co-attention masks")


def _read_auto_record(out_dir: Path) -> dict | None:
    try:
        return json.loads(RunFolder(out_dir).auto_file.read_text())
    except (OSError, ValueError):
        return None


def _segment_cosnet(input_path: Path, out_dir: Path, auto: AutoConfig, seg: PrimarySegmenter, identity: dict, *,
                    resume: bool, max_size: int | None, progress, notify) -> SegmentationRun:
    """Every frame by co-attention with the N references; PNGs written atomically in order, so a
    resume continues after the last complete one."""
    source = FrameSource.open(input_path, max_size)
    reader, info, work = source.reader, source.info, source.size
    t0 = time.perf_counter()
    total = reader.count_frames()
    refs, used = collect_references(seg, source, auto.references, total)
    ref_seconds = time.perf_counter() - t0
    if notify:
        notify(f"reference frames: {', '.join(map(str, used)) if used else 'none (saliency only)'}")
    first = 0
    if resume:  # PNGs are written atomically and in order: every one there is complete
        while first < total and (out_dir / f"{reader.frame_name(first)}.png").is_file():
            first += 1
        if notify and first:
            notify(f"resuming after frame {first - 1}: {first} masks are complete")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        RunFolder(out_dir).clean_temporary_files()
        write_json_atomic(RunFolder(out_dir).auto_file, {"identity": identity, "references": used})
    except OSError as exc:
        raise OutputError(write_error_message(out_dir, exc)) from exc
    done = first
    engine = 0.0
    confidences: list[float] = []
    wall0 = time.perf_counter()
    try:
        writer = MaskWriter(davis_palette(), size=(info.width, info.height))
        with writer, source.read_ahead(first) as frames:
            if progress:
                progress(done, info.num_frames)
            for frame in frames:
                image, index = frame.image, frame.index
                t = time.perf_counter()
                pred = seg.predict(image, refs)
                engine += time.perf_counter() - t
                confidences.append(pred.confidence)
                writer.submit(out_dir / f"{reader.frame_name(index)}.png", pred.mask.astype(np.uint8))
                done = first + writer.completed
                if progress:
                    progress(done, info.num_frames)
            writer.finish()
        done = first + writer.completed
        if progress:
            progress(done, info.num_frames)
    except MaskWriteError as error:
        raise OutputError(f"{error}; {describe_written(out_dir, reader, first + writer.completed)}") from error.error
    except (torch.cuda.OutOfMemoryError, MemoryError) as error:
        done = first + writer.completed
        raise out_of_memory(error, seg.device, done, work, describe_written(out_dir, reader, done),
                            "the same command and --resume") from error
    except (KeyboardInterrupt, Interrupted) as stop:
        done = first + writer.completed
        raise interrupted(stop, done, out_dir, describe_written(out_dir, reader, done),
                          "the same command and --resume") from None
    finally:
        reader.close()
        RunFolder(out_dir).clean_temporary_files()
    processed = done - first
    return SegmentationRun(
        input=str(input_path), output=str(out_dir),
        objects=[{"id": 1, "start_frame": 0, "area_px": None, "mask": "--auto (co-attention, every frame)"}],
        frames=done, width=info.width, height=info.height, device=str(seg.device),
        dtype="bf16" if seg.dtype == torch.bfloat16 else "fp16" if seg.dtype == torch.float16 else "float32",
        config={"auto": auto.as_dict()}, stage_seconds={"references": round(ref_seconds, 4), "frames": round(engine, 4)},
        engine_seconds=engine, fps=processed / engine if engine > 0 else float("nan"),
        memory=peak_memory_mb(seg.device), weights={"primary_sha256": identity["primary_sha256"]},
        platform=environment_info(seg.device), internal_width=work[0], internal_height=work[1], max_size=max_size,
        frames_processed=processed, resumed_from_frame=first - 1 if first else None, wall_seconds=time.perf_counter() - wall0,
        already_complete=resume and processed == 0 and first > 0,
        auto={"mode": "cosnet", "references": used,
              "mean_confidence": round(float(np.mean(confidences)), 4) if confidences else None,
              "weights": identity["primary_sha256"]},
    )
