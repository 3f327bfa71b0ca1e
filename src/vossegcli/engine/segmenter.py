"""The engine: one frame and the video's state in, one label map out (FRTM-VOS, Algorithm 1).

:class:`Segmenter` holds only the networks and settings; everything about a video lives in a
:class:`~vossegcli.engine.state.VideoState`, so one engine serves several videos (interleaved if
you like) and a state saved part-way continues exactly. :meth:`Segmenter.step` processes a frame:

1. the backbone runs once (:mod:`vossegcli.engine.backbone`);
2. all objects' target models score the stride-16 features at once: one (h·w, C) @ (C, N·c)
   product for every w1, one per-object product and shifted sum for every w2
   (:mod:`vossegcli.engine.target_model`);
2b. each object's presence is judged, lost objects are searched for, and the scores are weighted
   by each object's spatial prior (:mod:`vossegcli.engine.presence`); objects judged lost or
   absent get no pixels and do not learn from the frame;
3. the refiner (:mod:`vossegcli.engine.refiner`) turns all objects' scores and the backbone
   features into full-resolution logits (without one, scores are upsampled bilinearly);
4. the logits are merged into one id map (:mod:`vossegcli.engine.merge`);
5. each object's memory gets the frame as a new sample — its merged probability where it wins,
   0 elsewhere, computed on the label grid from the target models' own scores (not the refiner's
   mask: that drifted onto shadows and reflections, docs/RESULTS.md) — and every
   ``update_interval`` frames of an object its w2 is re-optimized on its memory; objects due on the
   same frame are solved as one batch.

An object starts on the frame where its mask is given: augmented copies of that frame are made
(:mod:`vossegcli.engine.augment`), the target models of all objects starting there (w1 and w2)
are trained on them by Gauss–Newton as one batch (:mod:`vossegcli.engine.optim`), their memories
are filled with them, and the given mask is written for that frame — carved out of the objects
already tracked.

Everything runs under ``torch.inference_mode()``. A frame waits for the device twice at most, both
through :func:`~vossegcli.engine.device.to_host`: once for the presence signals (decided on the
host), once for the label map together with its diagnostics (tested by counting the reads). :meth:`Segmenter.run` is a thin generator over :meth:`step` and holds nothing per frame
after yielding, so memory does not grow with video length::

    seg = Segmenter(SegmenterConfig(), device="auto")
    state = seg.new_state()
    for frame in frames:
        labels = seg.step(state, frame, new_masks)  # (H, W) uint8 object ids
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vossegcli.engine.augment import AugmentConfig, augment_start_frame
from vossegcli.engine.backbone import Backbone, BackboneFeatures
from vossegcli.engine.device import (
    configure_determinism, precision_name, resolve_device, resolve_precision, to_host, tune_cpu_allocator,
)
from vossegcli.engine.geometry import FEATURE_STRIDE, downsample_mask, label_grid_size, upsample_scores
from vossegcli.engine.mask_shape import part_areas, real_parts, scattered
from vossegcli.engine.scene_cut import colour_histogram
from vossegcli.engine.memory import SampleMemory
from vossegcli.engine.merge import LOGIT_LIMIT, label_map_from_logits, soft_aggregate, winner_labels
from vossegcli.engine.objects import MAX_OBJECTS
from vossegcli.engine.optim import GaussNewtonCG
from vossegcli.engine.presence import (
    OWNER_STRIDE, STATUS_NAMES, FrameDiagnostics, PresenceConfig, PresenceState, Status, after_frame, assess,
    frame_descriptor, ownership_penalties,
)
from vossegcli.engine.reid import mask_boxes, region_embeddings
from vossegcli.engine.refiner import Refiner, load_refiner
from vossegcli.engine.state import StageTimes, VideoState
from vossegcli.engine.target_features import TargetFeatures, load_target_features
from vossegcli.engine.weights import weights_file
from vossegcli.engine.target_model import (
    BatchedSamples, BatchedTargetProblem, TargetModel, UpsampleOperator, from_batched_weights, project_frame,
    score_projected_batched, to_batched_weights,
)
from vossegcli.errors import VossegError


@dataclass(frozen=True)
class SegmenterConfig:
    """Engine settings. Defaults follow FRTM-VOS ("Ours") unless a comment says otherwise."""

    channels: int = 96  #: c, output channels of w1
    #: Multiplies the stride-16 features before D. EfficientNet-Lite2's block-14 features have
    #: std ≈ 5.5; the reference's regularization/preconditioner constants were set for ResNet
    #: features an order of magnitude smaller, and with unscaled features 5 GN steps do not
    #: converge. Chosen on davis16-train val (first frame only, mean IoU): 1.0 → 31.3,
    #: 0.2 → 64.1, 0.1 → 67.6, 0.05 → 68.9.
    feature_scale: float = 0.05
    #: Learned target-model features (:mod:`vossegcli.engine.target_features`, LWL's adapter):
    #: a weights file, "default" (the shipped file if the manifest lists one, else none), or None
    #: (D sees the scaled stride-16 features alone, as FRTM). Chosen on real30 (docs/RESULTS.md):
    #: folds 80.31 → 80.80 J&F, target models alone 75.79 → 76.96, at 1.05× the CPU time
    #: (val-synth, second: 78.96 → 77.93).
    target_features: str | None = "default"
    init_cg_iterations: tuple[int, ...] = (5, 10, 10, 10, 10)  #: CG iterations per first-frame GN step
    init_w2_cg_iterations: int = 10  #: extra GN step on w2 after filling the memory (reference code)
    regularization: tuple[float, float] = (1e-4, 1e-2)  #: (λ1, λ2); residual λ·w
    preconditioner: tuple[float, float] = (1e-4, 1e-2)  #: CG block preconditioner for (w1, w2)
    label_stride: int = 4  #: loss grid = frame / label_stride (reference: 1, full resolution)
    hinge_fraction: float = 0.1  #: κ_min of the hinge pixel weights
    score_sharpness: float = 8.0  #: probability = sigmoid(k · (score − 0.5))
    augment: AugmentConfig = field(default_factory=AugmentConfig)  #: num_samples=0: no augmentation
    update_interval: int = 8  #: t_s: re-optimize w2 every t_s frames of the object; 0: no updates
    update_cg_iterations: int = 10  #: N_CGu
    memory_capacity: int = 80  #: K_max
    memory_learning_rate: float = 0.1  #: η
    #: The least total weight of the start-frame samples in the memory (LWL: 0.25); 0: none, the
    #: given mask fades with η like any sample (the paper). Chosen on real30 (docs/RESULTS.md):
    #: 0 → 78.5, 0.5 → 80.3 J&F, the last quarter of the clips +2.6 J; neutral on val-synth.
    memory_anchor_weight: float = 0.5
    min_update_pixels: int = 10  #: a frame enters the memory only with this many pixels > 0.5
    #: "default": the shipped refiner weights if present (weights/manifest.json), else none;
    #: a path: that refiner file; None: no refiner (scores upsampled bilinearly, "D-only").
    refiner: str | None = "default"
    #: Arithmetic of the backbone and the refiner (the target models and their solver always run
    #: in float32): "auto" — bfloat16 where the hardware computes it natively (CUDA GPUs with
    #: bf16, CPUs with AVX512-BF16 or AMX), else float32; "fp32"; "bf16"; "fp16" (CUDA only).
    precision: str = "auto"
    #: Presence decisions, re-identification and the spatial prior (:mod:`vossegcli.engine.presence`).
    presence: PresenceConfig = field(default_factory=PresenceConfig)
    seed: int = 0

    @property
    def updates(self) -> bool:
        return self.update_interval > 0

    def as_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, dict] = {
    # The paper's "Ours": c = 96, t_s = 8, N_GN = 5 with CG (5, 10, 10, 10, 10), N_CGu = 10.
    "default": {},
    # The paper's "Ours (fast)": c = 32, t_s = 16, N_GN = 4, N_CGu = 5.
    "fast": {"channels": 32, "update_interval": 16, "init_cg_iterations": (5, 10, 10, 10), "update_cg_iterations": 5},
}


def preset_config(name: str = "default", **overrides) -> SegmenterConfig:
    """A :class:`SegmenterConfig` from a named preset plus explicit overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return SegmenterConfig(**{**PRESETS[name], **overrides})


def with_overrides(config: SegmenterConfig, overrides: dict) -> SegmenterConfig:
    """``config`` with settings changed as JSON gives them: lists become tuples, and a nested
    setting (``presence``, ``augment``) is given as an object of the fields to change."""
    fields = {k: replace(getattr(config, k), **v) if isinstance(v, dict) else tuple(v) if isinstance(v, list) else v
              for k, v in overrides.items()}
    return replace(config, **fields)


def resolve_refiner(spec: str | None, device: torch.device) -> Refiner | None:
    """The refiner named by a config's ``refiner`` field ("default", a path, or None)."""
    if spec is None or spec == "none":
        return None
    path, _ = weights_file("refiner", spec, with_sha256=False)
    if path is None:
        return None
    if not path.is_file():
        raise VossegError(f"{path}: refiner weights not found; pass an existing file or refiner=None")
    try:
        return load_refiner(path, device)
    except ValueError as error:  # a refiner of a removed variant: the message says so
        if "removed from vosseg" in str(error):
            raise VossegError(str(error)) from None
        raise VossegError(f"{path}: not a vosseg refiner file (ValueError); pass another file or refiner=None") from None
    except Exception as error:  # a corrupt or foreign file
        raise VossegError(f"{path}: not a vosseg refiner file ({type(error).__name__}); pass another file or refiner=None") from None


def resolve_target_features(spec: str | None, device: torch.device) -> TargetFeatures | None:
    """The adapter named by a config's ``target_features`` field ("default", a path, or None)."""
    if spec is None or spec == "none":
        return None
    path, _ = weights_file("target_features", spec, with_sha256=False)
    if path is None:
        return None
    if not path.is_file():
        raise VossegError(f"{path}: target-feature weights not found; pass an existing file or target_features=None")
    try:
        return load_target_features(path, device)
    except Exception as error:  # a corrupt or foreign file
        raise VossegError(f"{path}: not a vosseg target-feature file ({type(error).__name__}); "
                          "pass another file or target_features=None") from None


@dataclass
class FrameResult:
    index: int
    labels: np.ndarray  #: (H, W) uint8 object ids
    diagnostics: FrameDiagnostics | None = None  #: per-object statuses and signals (None: no objects yet)


class Segmenter:
    """Semi-supervised VOS with per-object online target models (FRTM-VOS). Stateless per video:
    pass a :class:`VideoState` (from :meth:`new_state` or :meth:`VideoState.load`) to :meth:`step`."""

    def __init__(
        self,
        config: SegmenterConfig | None = None,
        device: str | torch.device = "auto",
        backbone: Backbone | None = None,
        refiner: Refiner | None = None,
        deterministic: bool = False,
    ) -> None:
        self.config = config or SegmenterConfig()
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        configure_determinism(self.device, deterministic)
        if self.device.type == "cpu":
            tune_cpu_allocator()
        self.backbone = (backbone or Backbone()).to(self.device)
        if refiner is None:
            refiner = resolve_refiner(self.config.refiner, self.device)
        if refiner is not None:  # channels_last: ~1.6x faster convolutions on CPU, same results
            refiner = refiner.to(self.device, memory_format=torch.channels_last).eval()
        self.refiner = refiner
        self.target_features = resolve_target_features(self.config.target_features, self.device)
        self.compute_dtype = resolve_precision(self.config.precision, self.device)
        self.solver = GaussNewtonCG(preconditioner=self.config.preconditioner)
        self.w2_solver = GaussNewtonCG(preconditioner=self.config.preconditioner[1:])
        #: Wait for the device before reading a timer (``vosseg benchmark`` turns it on; a normal
        #: run never synchronizes except to read the label map back).
        self.sync_timers = False
        self.last_state: VideoState | None = None  #: the state of the latest :meth:`run`
        self._upsample_ops: dict[tuple, UpsampleOperator] = {}
        self._config_dict = json.loads(json.dumps(self.config.as_dict()))

    # -- per-video state -----------------------------------------------------------------------
    def new_state(self) -> VideoState:
        """An empty state for a new video."""
        return VideoState(config=self._config_dict, presence=PresenceState())

    def load_state(self, path: str | Path) -> VideoState:
        """A state saved by :meth:`VideoState.save` with this engine's settings (ValueError otherwise)."""
        return VideoState.load(path, self.device, config=self._config_dict)

    @property
    def times(self) -> StageTimes:
        """Stage times of the latest :meth:`run`."""
        return self.last_state.times if self.last_state is not None else StageTimes()

    def memory_bytes(self, state: VideoState | None = None) -> int:
        """Bytes held by the sample memories of ``state`` (default: the latest run's)."""
        state = state or self.last_state
        return state.memory_bytes() if state is not None else 0

    def _autocast(self):
        """Autocast context for the backbone and the refiner (a no-op in float32)."""
        if self.compute_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.compute_dtype)

    @property
    def precision(self) -> str:
        """The effective arithmetic of backbone and refiner: "fp32", "bf16" or "fp16"."""
        return precision_name(self.compute_dtype)

    def warm_up(self, frame: np.ndarray) -> None:
        """Run the backbone and the refiner once on ``frame`` ((H, W, 3) uint8), so one-off costs
        (memory allocation, kernel selection, cuDNN autotuning) fall outside a timed run."""
        with torch.inference_mode(), self._autocast():
            rgb = torch.from_numpy(np.ascontiguousarray(frame)).to(self.device).permute(2, 0, 1)
            feats = self.backbone(rgb[None])
            if self.refiner is not None:
                grid = feats.s16.shape[-2:]
                self.refiner(feats, torch.zeros((1, 1, *grid), device=self.device), frame.shape[:2])
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # -- timing -------------------------------------------------------------------------------
    def _timed(self, state: VideoState, stage: str, start: float) -> float:
        if self.sync_timers and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        setattr(state.times, stage, getattr(state.times, stage) + now - start)
        return now

    # -- the loop -----------------------------------------------------------------------------
    def run(
        self,
        frames: Iterable[np.ndarray],
        initial_masks: Mapping[int, np.ndarray],
        state: VideoState | None = None,
    ) -> Iterator[FrameResult]:
        """Segment a video: a thin loop over :meth:`step`.

        Args:
            frames: (H, W, 3) uint8 RGB images, in order, streamed — starting at ``state.frame_index``
                (0 for a new state).
            initial_masks: frame index → (H, W) uint8 id map of the objects starting there
                (0 = background). Each id must appear in one mask only.
            state: continue this state (it is updated in place); default: a new one.
        Yields:
            one :class:`FrameResult` per input frame, in order.
        """
        if not initial_masks and (state is None or state.num_objects == 0):
            raise ValueError("no initial masks given")
        state = state if state is not None else self.new_state()
        self.last_state = state
        for image in frames:
            index = state.frame_index
            labels = self.step(state, image, initial_masks.get(index))
            yield FrameResult(index, labels, state.diagnostics)

    def step(self, state: VideoState, frame: np.ndarray, new_masks: np.ndarray | None = None) -> np.ndarray:
        """Process the next frame of ``state``'s video.

        Args:
            state: the video's state; updated in place (frame counter, models, memories, timers).
            frame: (H, W, 3) uint8 RGB.
            new_masks: (H, W) uint8 id map of objects that start on this frame, or None.
        Returns:
            (H, W) uint8 object ids.
        """
        h, w = frame.shape[:2]
        if state.frame_hw is None:
            state.frame_hw = (h, w)
        elif state.frame_hw != (h, w):
            raise ValueError(f"frame {state.frame_index} is {w}x{h}, the video's frames are {state.frame_hw[1]}x{state.frame_hw[0]}")
        starting = new_masks is not None and bool(np.any(new_masks))
        state.diagnostics = None
        if state.num_objects == 0 and not starting:
            state.frame_index += 1
            state.times.frames += 1
            return np.zeros((h, w), np.uint8)
        with torch.inference_mode():
            out = self._step(state, frame, new_masks if starting else None)
        state.frame_index += 1
        state.times.frames += 1
        return out

    def _step(self, state: VideoState, frame: np.ndarray, new_masks: np.ndarray | None) -> np.ndarray:
        """One frame → (H, W) uint8 ids on the host. The device is waited for twice at most: for the
        presence signals (:func:`~vossegcli.engine.presence.assess`), and for the label map together
        with its diagnostics (:meth:`_diagnose`); both through :func:`~vossegcli.engine.device.to_host`."""
        h, w = frame.shape[:2]
        t = time.perf_counter()
        rgb = torch.from_numpy(np.ascontiguousarray(frame)).to(self.device, non_blocking=True).permute(2, 0, 1)
        with self._autocast():
            feats = self.backbone(rgb[None])
        x = self._scaled(feats)[0]  # (h16, w16, C)
        t = self._timed(state, "backbone", t)
        given = torch.from_numpy(new_masks).to(self.device).long() if new_masks is not None else None
        colour = colour_histogram(rgb) if state.presence is not None else None
        if state.num_objects:
            labels = self._predict_and_update(state, feats, x, (h, w), given, colour)
        else:
            labels = np.zeros((h, w), np.uint8)
        if given is not None:
            labels = np.where(new_masks > 0, new_masks, labels).astype(np.uint8)
            t = time.perf_counter()
            self._start_objects(state, rgb, x, given, feats, colour)
            self._timed(state, "target_init", t)
        return labels

    def _scaled(self, feats: BackboneFeatures) -> torch.Tensor:
        """Backbone features of B frames → (B, h, w, C) float32 features for D: the scaled
        stride-16 features, with the learned channels appended when the engine has an adapter."""
        if self.target_features is not None:
            with torch.autocast(self.device.type, enabled=False):
                return self.target_features(feats)
        return (feats.s16.float() * self.config.feature_scale).permute(0, 2, 3, 1).contiguous()

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB 0..255 → (B, h, w, C) scaled stride-16 features for D.

        One image at a time: on CPU a batch of 4 full frames runs ~2× slower per image than
        single images (its activations fall out of cache); on CUDA, batches are used as given.
        """
        chunk = images.shape[0] if self.device.type == "cuda" else 1
        with self._autocast():
            return torch.cat([self._scaled(self.backbone(images[i : i + chunk]))
                              for i in range(0, images.shape[0], chunk)])

    def _upsample_op(self, grid_hw: tuple[int, int], label_hw: tuple[int, int]) -> UpsampleOperator:
        key = (grid_hw, label_hw)
        if key not in self._upsample_ops:
            self._upsample_ops[key] = UpsampleOperator(grid_hw, label_hw, self.config.label_stride, self.device)
        return self._upsample_ops[key]

    def _predict_and_update(
        self, state: VideoState, feats: BackboneFeatures, x: torch.Tensor, frame_hw: tuple[int, int],
        given: torch.Tensor | None, colour: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Score, refine and merge all tracked objects (→ (H, W) int64 ids), then update their memories.
        ``colour``: the frame's colour histogram (scene cuts).

        On a frame where new objects are given, their mask is carved out of the tracked objects.
        """
        cfg = self.config
        t = time.perf_counter()
        projected = project_frame(x, state.w1)  # (N, h, w, c)
        scores = score_projected_batched(projected, state.w2)[:, None]  # (N, 1, h, w)
        assessment = None
        if state.presence is not None:
            assessment = assess(state.presence, cfg.presence, scores, feats.s16[0], feats.s32[0], cfg.score_sharpness,
                                colour)
            if assessment.window is not None:
                scores = scores * assessment.window
            t = self._timed(state, "presence", t)
        if self.refiner is not None:
            with self._autocast():
                logits = self.refiner(feats, scores, frame_hw)[:, 0].float()
        else:
            logits = cfg.score_sharpness * (upsample_scores(scores, frame_hw, 1)[:, 0] - 0.5)
        if given is not None:
            logits = logits.masked_fill(given[None] > 0, -LOGIT_LIMIT)
        if assessment is not None and cfg.presence.enabled:
            logits = self._ownership(state, assessment, logits)
            gone = [i for i in range(state.num_objects) if not assessment.written(i)]
            if gone:
                logits = logits.clone()
                logits[gone] = -LOGIT_LIMIT
        t = self._timed(state, "target_score", t)
        labels = label_map_from_logits(logits, state.objects.ids_tensor(self.device))
        t = self._timed(state, "merge", t)
        learn = None
        if assessment is None:
            host = to_host(labels.to(torch.uint8))[0]
        else:
            host = self._diagnose(state, assessment, labels, logits)
            if cfg.presence.enabled:
                learn = [s == Status.TRACKED for s in assessment.status]
                gone = [i for i in range(state.num_objects) if not assessment.written(i)]
                if gone:  # a gone object takes no pixels from the others' memory labels either
                    scores = scores.clone()
                    scores[gone] = -1e4
            t = self._timed(state, "presence", t)
        if cfg.updates:
            self._update(state, scores, projected, given, learn)
            self._timed(state, "target_update", t)
        return host

    def _ownership(self, state: VideoState, assessment, logits: torch.Tensor) -> torch.Tensor:
        """Logits (N, H, W) less the ownership penalties (:func:`~vossegcli.engine.presence.ownership_penalties`)
        when two or more objects are drawn and their previous masks are known."""
        p, cfg = state.presence, self.config.presence
        written = [assessment.written(i) for i in range(state.num_objects)]
        if cfg.ownership_penalty <= 0 or p.owner is None or p.owner.shape[0] != state.num_objects or sum(written) < 2:
            return logits
        penalty = ownership_penalties(p.owner, p.velocity, written, cfg.ownership_reach)
        h, w = logits.shape[-2:]
        up = F.interpolate(penalty[:, None], scale_factor=OWNER_STRIDE, mode="bilinear", align_corners=False)[:, 0, :h, :w]
        return logits - cfg.ownership_penalty * up

    def _diagnose(self, state: VideoState, assessment, labels: torch.Tensor, logits: torch.Tensor) -> np.ndarray:
        """Per-object area, mean probability and parts of the written masks → ``state.diagnostics``
        (a written mask scattered over many separate parts is reported ``uncertain``, with the reason);
        then the presence state's boxes and velocities (from the written masks), references and templates.
        Returns the label map (H, W) uint8 on the host: read with the diagnostics in one transfer."""
        ids = state.objects.ids_tensor(self.device)
        onehot = labels[None] == ids[:, None, None]  # (N, H, W)
        area = onehot.flatten(1).sum(dim=1)
        prob = (torch.sigmoid(logits) * onehot).flatten(1).sum(dim=1) / area.clamp_min(1)
        y0, y1 = _quantile_span(onehot.sum(dim=2))  # robust to a few stray pixels far away
        x0, x1 = _quantile_span(onehot.sum(dim=1))
        coverage = downsample_mask(onehot.float()[:, None], OWNER_STRIDE)[:, 0]  # (N, h8, w8)
        host, values, covered = to_host(labels.to(torch.uint8), torch.stack([area.float(), prob.float(), x0, y0, x1, y1], dim=1),
                                        coverage >= 0.5)
        values = values.tolist()
        parts = part_areas(covered)  # (the parts are counted on the host's grid)
        p = state.presence
        if state.num_objects > 1 and self.config.presence.ownership_penalty > 0:
            p.owner = coverage
        previous = p.written_area
        areas, ratios, probs, boxes, counts = [], [], [], [], []
        status = [STATUS_NAMES[s] for s in assessment.status]
        reasons = [_reason(self.config.presence, assessment, i) for i in range(state.num_objects)]
        for i, (a, pr, bx0, by0, bx1, by1) in enumerate(values):
            boxes.append([v / FEATURE_STRIDE for v in (bx0, by0, bx1, by1)] if a > 0 else [])
            areas.append(int(a))
            prev = previous[i] if i < len(previous) else 0
            ratios.append(round(a / prev, 3) if prev > 0 and a > 0 else None)
            probs.append(round(pr, 4) if a > 0 else None)
            counts.append(real_parts(parts[i]) if a > 0 else None)
            if a > 0 and status[i] == "tracked" and scattered(parts[i]):  # reported; decisions unchanged
                status[i] = "uncertain"
                reasons[i] = (f"scattered: {counts[i]} separate parts, the largest {parts[i][0] / sum(parts[i]):.0%} "
                              "of the mask (look-alikes may be segmented with it)")
        p.written_area = areas
        state.diagnostics = (FrameDiagnostics(
            frame=state.frame_index, ids=list(state.objects.ids),
            status=status, area=areas, area_ratio=ratios,
            peak=[round(v, 4) for v in assessment.peak], mean_probability=probs,
            similarity=[round(v, 4) for v in assessment.similarity], refound=list(assessment.refound),
            scene_cut=assessment.scene_cut,
            frame_similarity=None if assessment.frame_similarity is None else round(assessment.frame_similarity, 4),
            parts=counts, reason=reasons,
        ))
        after_frame(p, self.config.presence, assessment, state.frame_index, boxes)
        return host

    def _memory_labels(self, scores: torch.Tensor, given: torch.Tensor | None,
                       frame_hw: tuple[int, int]) -> torch.Tensor:
        """(N, H', W') soft labels on the label grid: each object's merged probability where it wins,
        from the target models' scores upsampled straight to the label grid (never to full
        resolution), so online learning is the D-only engine's and the refiner only shapes the output."""
        cfg = self.config
        s = cfg.label_stride
        grid = label_grid_size(frame_hw, s)
        probs = torch.sigmoid(cfg.score_sharpness * (upsample_scores(scores, grid, s)[:, 0] - 0.5))
        if given is not None:
            probs = probs * downsample_mask((given == 0).float()[None, None], s)[0]
        return winner_labels(soft_aggregate(probs))

    def _update(self, state: VideoState, scores: torch.Tensor, projected: torch.Tensor, given: torch.Tensor | None,
                learn: list[bool] | None = None) -> None:
        """Add this frame to every object's memory and re-optimize w2 of the objects due (as one
        batch). ``learn``: per slot, whether the presence decisions let the object learn from this
        frame (None: all)."""
        cfg = self.config
        soft = self._memory_labels(scores, given, state.frame_hw)
        accept = (soft > 0.5).flatten(1).sum(dim=1) * cfg.label_stride**2 >= cfg.min_update_pixels
        if learn is not None:
            accept = accept & torch.tensor(learn, device=accept.device)
        state.memory.insert(projected, soft, accept)
        tracked = state.objects.frames_tracked
        for slot in range(len(tracked)):
            tracked[slot] += 1
        due = [slot for slot, n in enumerate(tracked) if n % cfg.update_interval == 0 and (learn is None or learn[slot])]
        if due:
            self._optimize_w2(state, due, cfg.update_cg_iterations)

    def _start_presence(self, state: VideoState, x: torch.Tensor, feats: BackboneFeatures, masks: torch.Tensor,
                        w1: torch.Tensor, w2: torch.Tensor, new_ids: list[int], colour: torch.Tensor | None) -> None:
        """Templates, boxes and peak references of objects starting on this frame, and their first
        diagnostics (the given mask)."""
        embeddings, boxes, peaks = _start_frame_signals(x, feats, masks, w1, w2)
        areas = masks.flatten(1).sum(dim=1).tolist()
        state.presence.add_objects(embeddings, boxes, peaks, areas, state.frame_index, self.config.presence.template_capacity,
                                   frame_descriptor(feats.s32[0]), colour)
        d = state.diagnostics
        if d is None or d.frame != state.frame_index:
            d = state.diagnostics = FrameDiagnostics(state.frame_index, [], [], [], [], [], [], [], [])
        n = len(new_ids)
        d.ids += new_ids
        d.status += ["tracked"] * n
        d.area += [int(a) for a in areas]
        state.presence.written_area += [int(a) for a in areas]
        d.area_ratio += [None] * n
        d.peak += [round(p, 4) for p in peaks]
        d.mean_probability += [1.0] * n
        d.similarity += [1.0] * n
        d.refound += [False] * n
        d.parts += [None] * n
        d.reason += [None] * n

    def _optimize_w2(self, state: VideoState, slots: Sequence[int], cg_iterations: int) -> None:
        """One GN step of ``cg_iterations`` CG iterations on w2 (w1 frozen) over the memories of ``slots``."""
        cfg = self.config
        features, labels, gamma = state.memory.active(list(slots))
        op = self._upsample_op(tuple(features.shape[2:4]), tuple(labels.shape[-2:]))
        samples = BatchedSamples(features, labels, gamma, cfg.label_stride, cfg.hinge_fraction)
        problem = BatchedTargetProblem(samples, cfg.regularization, optimize_w1=False, upsample=op)
        all_slots = len(slots) == state.num_objects
        w2 = state.w2 if all_slots else state.w2[list(slots)]
        (w2,) = self.w2_solver.run(problem, [w2], [cg_iterations])
        if all_slots:
            state.w2 = w2
        else:
            state.w2 = state.w2.clone()
            state.w2[list(slots)] = w2

    def _start_objects(self, state: VideoState, rgb: torch.Tensor, x: torch.Tensor, given: torch.Tensor,
                       feats: BackboneFeatures, colour: torch.Tensor | None = None) -> None:
        """Train the target models (and fill the memories) of every object id in ``given`` ((H, W)
        ids); ``colour``: the frame's colour histogram (the first reference for scene cuts)."""
        cfg = self.config
        new_ids = [i for i in torch.unique(given).tolist() if i != 0]
        slots = state.objects.add(new_ids, state.frame_index)
        masks = torch.stack([(given == i).float() for i in new_ids])  # (n, H, W)
        if state.presence is None:  # a state made before presence existed: start it now
            state.presence = PresenceState()
        w1, w2, features, labels, weights = fit_target_models(
            x, rgb, masks, cfg, self._features, self.solver, seeds=[cfg.seed * 1000 + i for i in new_ids],
            upsample_op=self._upsample_op,
        )
        state.w1 = w1 if state.w1 is None else torch.cat([state.w1, w1])
        state.w2 = w2 if state.w2 is None else torch.cat([state.w2, w2])
        self._start_presence(state, x, feats, masks, w1, w2, new_ids, colour)
        if not cfg.updates:
            return
        if state.memory is None:
            capacity = max(cfg.memory_capacity, 1 + cfg.augment.num_samples)
            state.memory = SampleMemory(
                capacity, (x.shape[0], x.shape[1], cfg.channels), label_grid_size(state.frame_hw, cfg.label_stride),
                cfg.memory_learning_rate, device=self.device, anchor_weight=cfg.memory_anchor_weight,
            )
        projected = torch.bmm(features.flatten(1, 3), w1).reshape(*features.shape[:4], w1.shape[-1])
        state.memory.add_objects(projected, labels, weights)
        if cfg.init_w2_cg_iterations > 0:
            self._optimize_w2(state, slots, cfg.init_w2_cg_iterations)


#: Fraction of a mask's pixels left out on each side of its box (stray fragments do not widen it).
BOX_QUANTILE = 0.02


def _reason(cfg, assessment, slot: int) -> str | None:
    """Why the presence decisions did not call ``slot`` tracked on this frame (None when they did)."""
    status, sim = assessment.status[slot], assessment.similarity[slot]
    if status == Status.TRACKED:
        return None
    if status == Status.ABSENT:
        return f"nothing in the frame resembles it (best similarity {sim:.2f})"
    if status == Status.LOST:
        return f"only weak resemblances in the frame (best similarity {sim:.2f} < {cfg.found_similarity:g})"
    if assessment.refound[slot]:
        return f"re-found on this frame (similarity {sim:.2f})"
    if assessment.scene_cut:
        return "kept through a scene cut"
    if sim < cfg.track_similarity:
        return f"weak match to its look (similarity {sim:.2f} < {cfg.track_similarity:g})"
    return "its area jumped or its score weakened against the previous frames"


def _quantile_span(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, L) pixel counts per row (or column) → (N,) float start and end (exclusive) of the span
    holding all but :data:`BOX_QUANTILE` of the pixels at each end."""
    cum = counts.float().cumsum(dim=1)
    total = cum[:, -1:]
    start = (cum <= BOX_QUANTILE * total).sum(dim=1).float()
    end = (cum < (1 - BOX_QUANTILE) * total).sum(dim=1).float() + 1
    return start, torch.maximum(end, start + 1)


def _start_frame_signals(x: torch.Tensor, feats: BackboneFeatures, masks: torch.Tensor, w1: torch.Tensor,
                         w2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Embeddings (n, D), boxes (n, 4) in cells and the target models' peak scores of n objects
    starting on a frame with masks (n, H, W)."""
    h, w = feats.s16.shape[-2:]
    pooled = downsample_mask(masks.float()[:, None], FEATURE_STRIDE)[:, 0, :h, :w]
    boxes = mask_boxes(pooled, 1e-3)
    embeddings = region_embeddings(feats.s16[0], feats.s32[0], boxes, pooled)
    scores = score_projected_batched(project_frame(x, w1), w2)  # (n, h, w)
    return embeddings, boxes, scores.flatten(1).amax(dim=1).tolist()


def fit_target_models(
    x: torch.Tensor,
    rgb: torch.Tensor,
    masks: torch.Tensor,
    config: SegmenterConfig,
    features_fn: Callable[[torch.Tensor], torch.Tensor],
    solver: GaussNewtonCG,
    seeds: Sequence[int],
    upsample_op: Callable[[tuple[int, int], tuple[int, int]], UpsampleOperator] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train n target models on one start frame and augmented copies (w1 and w2 jointly, one batch).

    Args:
        x: (h, w, C) scaled stride-16 features of the frame (channels last).
        rgb: (3, H, W) the frame, 0..255 (used for augmentation).
        masks: (n, H, W) the objects' binary masks.
        features_fn: (B, 3, H, W) images → (B, h, w, C) scaled stride-16 features.
        seeds: per object, seeds the weight initialization and the augmentation.
    Returns:
        w1 (n, C, c), w2 (n, c, 9), the (n, K, h, w, C) features and (n, K, H', W') labels of the
        training samples (sample 0 is the frame itself; objects with fewer augmented copies are
        padded with empty samples) and their (n, K) relative weights (2 for the frame, 1 per copy,
        0 for padding).
    """
    n = masks.shape[0]
    k = 1 + max(config.augment.num_samples, 0)
    per_object = []
    for mask, seed in zip(masks, seeds):
        images, aug_masks = (None, None)
        if config.augment.num_samples > 0:
            images, aug_masks = augment_start_frame(rgb.float(), mask, config.augment, seed)
        per_object.append((images, aug_masks))
    counts = [0 if im is None else im.shape[0] for im, _ in per_object]
    all_images = [im for im, _ in per_object if im is not None and im.shape[0] > 0]
    aug_feats = features_fn(torch.cat(all_images)) if all_images else None
    h, w, big_c = x.shape
    frame_hw = tuple(masks.shape[-2:])
    features = x.new_zeros((n, k, h, w, big_c))
    full_masks = masks.new_zeros((n, k, *frame_hw))
    weights = torch.zeros((n, k), device=x.device)
    offset = 0
    for i, ((_, aug_masks), count) in enumerate(zip(per_object, counts)):
        features[i, 0] = x
        full_masks[i, 0] = masks[i]
        weights[i, 0] = 2.0  # the original frame weighs twice an augmented copy
        if count:
            features[i, 1 : 1 + count] = aug_feats[offset : offset + count]
            full_masks[i, 1 : 1 + count] = aug_masks.to(masks.dtype)
            weights[i, 1 : 1 + count] = 1.0
            offset += count
    labels = downsample_mask(full_masks.flatten(0, 1)[:, None], config.label_stride)[:, 0]
    labels = labels.reshape(n, k, *labels.shape[-2:])
    init = [TargetModel.initialize(big_c, config.channels, torch.Generator().manual_seed(s), x.device) for s in seeds]
    w1 = torch.stack([to_batched_weights(m)[0] for m in init])
    w2 = torch.stack([to_batched_weights(m)[1] for m in init])
    op = upsample_op((h, w), tuple(labels.shape[-2:])) if upsample_op is not None else None
    samples = BatchedSamples(features, labels, weights / weights.sum(dim=1, keepdim=True), config.label_stride,
                             config.hinge_fraction)
    problem = BatchedTargetProblem(samples, config.regularization, optimize_w1=True, upsample=op)
    w1, w2 = solver.run(problem, [w1, w2], config.init_cg_iterations)
    return w1, w2, features, labels, weights


def fit_target_model(
    x: torch.Tensor,
    rgb: torch.Tensor,
    mask: torch.Tensor,
    config: SegmenterConfig,
    features_fn: Callable[[torch.Tensor], torch.Tensor],
    solver: GaussNewtonCG,
    seed: int,
) -> TargetModel:
    """One object's target model from (1, C, h, w) features, rgb (3, H, W) and mask (H, W), with
    ``features_fn`` mapping (B, 3, H, W) images to (B, C, h, w) features (training uses this)."""
    x_hwc = x[0].permute(1, 2, 0).contiguous()

    def hwc(images: torch.Tensor) -> torch.Tensor:
        return features_fn(images).permute(0, 2, 3, 1).contiguous()

    w1, w2, _, _, _ = fit_target_models(x_hwc, rgb, mask[None].float(), config, hwc, solver, [seed])
    return from_batched_weights(w1[0], w2[0])


__all__ = [
    "FEATURE_STRIDE", "MAX_OBJECTS", "PRESETS", "FrameResult", "Segmenter", "SegmenterConfig", "StageTimes",
    "VideoState", "fit_target_model", "fit_target_models", "preset_config", "resolve_device",
]
