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

Settings are :class:`~vossegcli.engine.config.SegmenterConfig`; the diagnostics of the written masks
and the ownership penalty are :mod:`vossegcli.engine.diagnose`.

An object starts on the frame where its mask is given: augmented copies of that frame are made
(:mod:`vossegcli.engine.augment`), the target models of all objects starting there (w1 and w2)
are trained on them by Gauss–Newton as one batch (:mod:`vossegcli.engine.target_fit`,
:mod:`vossegcli.engine.optim`), their memories
are filled with them, and the given mask is written for that frame — carved out of the objects
already tracked.

A mask given again for objects already tracked is an *anchor*: that frame's whole truth. It is
written as given; each object in it gets the frame and augmented copies as permanent samples
(its self-labelled samples since the last anchor dropped) and its w2 re-fitted; the tracked
objects not in it are absent on that frame and searched for from the next one on.

Everything runs under ``torch.inference_mode()``. A tracked frame waits for the device once,
through :func:`~vossegcli.engine.device.to_host`: the presence decisions are made on the device
(:func:`~vossegcli.engine.presence.assess`, (N,) tensors and ``torch.where``) and read back together
with the label map and its diagnostics (tested by counting the reads; ``probabilities=True`` adds
one). :meth:`Segmenter.run` is a thin generator over :meth:`step` and holds nothing per frame
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
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from vossegcli.engine.augment import augment_start_frame
from vossegcli.engine.backbone import Backbone, BackboneFeatures
from vossegcli.engine.config import PRESETS, SegmenterConfig, preset_config, with_overrides
from vossegcli.engine.device import (
    precision_name, resolve_device, resolve_precision, to_host,
)
from vossegcli.engine.diagnose import anchor_presence, apply_ownership, diagnose, start_presence
from vossegcli.engine.geometry import FEATURE_STRIDE, downsample_mask, label_grid_size, upsample_scores
from vossegcli.engine.memory import SampleMemory
from vossegcli.engine.merge import LOGIT_LIMIT, label_map_from_logits, soft_aggregate, winner_labels
from vossegcli.engine.objects import MAX_OBJECTS
from vossegcli.engine.optim import GaussNewtonCG
from vossegcli.engine.presence import FrameDiagnostics, PresenceState, Status, assess
from vossegcli.engine.refiner import Refiner, load_refiner
from vossegcli.engine.refiner_tuning import refine, tune_refiner
from vossegcli.engine.scene_cut import colour_histogram
from vossegcli.engine.state import StageTimes, VideoState
from vossegcli.engine.target_features import load_target_features
from vossegcli.engine.target_fit import fit_target_model, fit_target_models, start_samples
from vossegcli.engine.target_model import (
    BatchedSamples, BatchedTargetProblem, UpsampleOperator, project_frame, score_projected_batched,
)
from vossegcli.engine.weights import load_named


#: Gauss–Newton steps (of ``init_w2_cg_iterations`` CG iterations) re-fitting w2 on an anchor frame.
ANCHOR_GN_STEPS = 2
#: Seeds an anchor's augmentation apart from the start frame's (× the frame index).
ANCHOR_SEED = 7919


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
    ) -> None:
        self.config = config or SegmenterConfig()
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.backbone = (backbone or Backbone()).to(self.device)
        if refiner is None:
            refiner = load_named("refiner", self.config.refiner, self.device, load_refiner, "refiner", "refiner")
        if refiner is not None:  # channels_last: ~1.6x faster convolutions on CPU, same results
            refiner = refiner.to(self.device, memory_format=torch.channels_last).eval()
        self.refiner = refiner
        self.target_features = load_named("target_features", self.config.target_features, self.device, load_target_features,
                                           "target-feature", "target_features")
        self.compute_dtype = resolve_precision(self.config.precision, self.device)
        self.solver = GaussNewtonCG(preconditioner=self.config.preconditioner)
        self.w2_solver = GaussNewtonCG(preconditioner=self.config.preconditioner[1:])
        #: Wait for the device before reading a timer (``vosseg benchmark`` turns it on; a normal
        #: run never synchronizes except to read the label map back).
        self.sync_timers = False
        self._upsample_ops: dict[tuple, UpsampleOperator] = {}
        self._config_dict = json.loads(json.dumps(self.config.as_dict()))

    # -- per-video state -----------------------------------------------------------------------
    def new_state(self) -> VideoState:
        """An empty state for a new video."""
        return VideoState(config=self._config_dict, presence=PresenceState())

    def load_state(self, path: str | Path) -> VideoState:
        """A state saved by :meth:`VideoState.save` with this engine's settings (ValueError otherwise)."""
        return VideoState.load(path, self.device, config=self._config_dict)

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
        for image in frames:
            index = state.frame_index
            labels = self.step(state, image, initial_masks.get(index))
            yield FrameResult(index, labels, state.diagnostics)

    def step(self, state: VideoState, frame: np.ndarray, new_masks: np.ndarray | None = None,
             probabilities: bool = False) -> np.ndarray:
        """Process the next frame of ``state``'s video.

        Args:
            state: the video's state; updated in place (frame counter, models, memories, timers).
            frame: (H, W, 3) uint8 RGB.
            new_masks: (H, W) uint8 id map given for this frame, or None. Ids not tracked yet start
                there. If it holds a tracked object's id it is an *anchor*: the frame's whole truth, written
                as given; the tracked objects in it learn from it (:meth:`_anchor_objects`) and those
                not in it are absent there.
            probabilities: also leave the objects' probabilities in ``state.probabilities``
                ((N, H, W) uint8, 0..255, slot order; one more read from the device).
        Returns:
            (H, W) uint8 object ids.
        """
        h, w = frame.shape[:2]
        if state.frame_hw is None:
            state.frame_hw = (h, w)
        elif state.frame_hw != (h, w):
            raise ValueError(f"frame {state.frame_index} is {w}x{h}, the video's frames are {state.frame_hw[1]}x{state.frame_hw[0]}")
        # (an all-background mask on a frame with tracked objects is an anchor too: none of them is here)
        starting = new_masks is not None and (bool(np.any(new_masks)) or state.num_objects > 0)
        state.diagnostics = None
        state.probabilities = None
        if state.num_objects == 0 and not starting:
            state.frame_index += 1
            state.times.frames += 1
            return np.zeros((h, w), np.uint8)
        with torch.inference_mode():
            out = self._step(state, frame, new_masks if starting else None, probabilities)
        state.frame_index += 1
        state.times.frames += 1
        return out

    def _step(self, state: VideoState, frame: np.ndarray, new_masks: np.ndarray | None,
              probabilities: bool = False) -> np.ndarray:
        """One frame → (H, W) uint8 ids on the host. The device is waited for once on a tracked
        frame: for the label map, read with the presence decisions and the diagnostics
        (:func:`~vossegcli.engine.diagnose.diagnose`, through :func:`~vossegcli.engine.device.to_host`)."""
        h, w = frame.shape[:2]
        t = time.perf_counter()
        rgb = torch.from_numpy(np.ascontiguousarray(frame)).to(self.device, non_blocking=True).permute(2, 0, 1)
        with self._autocast():
            feats = self.backbone(rgb[None])
        x = self._scaled(feats)[0]  # (h16, w16, C)
        t = self._timed(state, "backbone", t)
        given = torch.from_numpy(new_masks).to(self.device).long() if new_masks is not None else None
        colour = colour_histogram(rgb) if state.presence is not None else None
        ids_given = [int(i) for i in np.unique(new_masks) if i] if new_masks is not None else []
        if given is not None and (not ids_given or any(i in state.objects for i in ids_given)):
            # an anchor: the mask is this frame's truth, nothing to predict
            t = time.perf_counter()
            self._anchor_objects(state, rgb, x, given, feats, colour)
            labels = new_masks.astype(np.uint8)
            if probabilities:
                state.probabilities = (labels[None] == np.array(state.objects.ids, np.uint8)[:, None, None]).astype(np.uint8) * 255
            fresh = [i for i in ids_given if i not in state.objects]
            if fresh:
                self._start_objects(state, rgb, x, torch.where(torch.isin(given, torch.tensor(fresh, device=given.device)),
                                                               given, 0), feats, colour)
            self._timed(state, "target_init", t)
            return labels
        if state.num_objects:
            labels = self._predict_and_update(state, feats, x, (h, w), given, colour, probabilities)
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
        given: torch.Tensor | None, colour: torch.Tensor | None = None, probabilities: bool = False,
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
                logits = refine(self.refiner, state.refiner_params, feats, scores, frame_hw)[:, 0].float()
        else:
            logits = cfg.score_sharpness * (upsample_scores(scores, frame_hw, 1)[:, 0] - 0.5)
        if given is not None:
            logits = logits.masked_fill(given[None] > 0, -LOGIT_LIMIT)
        if assessment is not None and cfg.presence.enabled:
            logits = apply_ownership(state, cfg.presence, assessment, logits)
            logits = torch.where(assessment.written[:, None, None], logits, -LOGIT_LIMIT)  # gone: no pixels
        t = self._timed(state, "target_score", t)
        labels = label_map_from_logits(logits, state.objects.ids_tensor(self.device))
        t = self._timed(state, "merge", t)
        learn = None
        if probabilities:
            state.probabilities = to_host((torch.sigmoid(logits) * 255).round().to(torch.uint8))[0]
        if assessment is None:
            host = to_host(labels.to(torch.uint8))[0]
        else:
            if cfg.presence.enabled:
                learn = assessment.status == Status.TRACKED
                # a gone object takes no pixels from the others' memory labels either
                scores = torch.where(assessment.written[:, None, None, None], scores, -1e4)
            host = diagnose(state, cfg, assessment, labels, logits)
            t = self._timed(state, "presence", t)
        if cfg.updates:
            self._update(state, scores, projected, given, learn)
            self._timed(state, "target_update", t)
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
                learn: torch.Tensor | None = None) -> None:
        """Add this frame to every object's memory and re-optimize w2 of the objects due (as one
        batch). ``learn``: (N,) bool, whether the presence decisions let each object learn from this
        frame (None: all); decided on the device, so an object due that may not learn is
        re-optimized with the rest and keeps its old w2 (no read decides who is due)."""
        cfg = self.config
        soft = self._memory_labels(scores, given, state.frame_hw)
        accept = (soft > 0.5).flatten(1).sum(dim=1) * cfg.label_stride**2 >= cfg.min_update_pixels
        if learn is not None:
            accept = accept & learn
        state.memory.insert(projected, soft, accept)
        tracked = state.objects.frames_tracked
        for slot in range(len(tracked)):
            tracked[slot] += 1
        due = [slot for slot, n in enumerate(tracked) if n % cfg.update_interval == 0]
        if due:
            self._optimize_w2(state, due, cfg.update_cg_iterations, None if learn is None else learn[due])

    def _optimize_w2(self, state: VideoState, slots: Sequence[int], cg_iterations: int,
                     keep: torch.Tensor | None = None) -> None:
        """One GN step of ``cg_iterations`` CG iterations on w2 (w1 frozen) over the memories of
        ``slots``; ``keep``: (len(slots),) bool, the slots that take the result (None: all)."""
        cfg = self.config
        features, labels, gamma = state.memory.active(list(slots))
        op = self._upsample_op(tuple(features.shape[2:4]), tuple(labels.shape[-2:]))
        samples = BatchedSamples(features, labels, gamma, cfg.label_stride, cfg.hinge_fraction)
        problem = BatchedTargetProblem(samples, cfg.regularization, optimize_w1=False, upsample=op)
        all_slots = len(slots) == state.num_objects
        old = state.w2 if all_slots else state.w2[list(slots)]
        (w2,) = self.w2_solver.run(problem, [old], [cg_iterations])
        if keep is not None:
            w2 = torch.where(keep.reshape(-1, *([1] * (w2.dim() - 1))), w2, old)
        if all_slots:
            state.w2 = w2
        else:
            state.w2 = state.w2.clone()
            state.w2[list(slots)] = w2

    def _tune_refiner(self, state: VideoState, rgb: torch.Tensor, feats: BackboneFeatures, masks: torch.Tensor,
                      w1: torch.Tensor, w2: torch.Tensor, seeds: Sequence[int]) -> None:
        """Tune the video's refiner parameters (from the shipped or the already tuned ones) on a
        frame with given masks: per object, the frame and ``refiner_tuning_copies`` of its augmented
        copies (the target models' own samples, same seeds), each with that object's target-model
        scores as input, against its mask. ``masks`` (n, H, W); ``w1``/``w2`` the n objects'
        target models."""
        cfg = self.config
        features, scores, labels = [], [], []
        for i, (mask, seed) in enumerate(zip(masks, seeds)):
            images, targets = [None], [mask]
            if cfg.augment.num_samples > 0:
                copies, copy_masks = augment_start_frame(rgb.float(), mask, cfg.augment, seed)
                keep = len(copies) if cfg.refiner_tuning_copies is None else cfg.refiner_tuning_copies
                images += list(copies[:keep])
                targets += list(copy_masks[:keep])
            for image, target in zip(images, targets):
                if image is None:
                    f = feats
                else:
                    with self._autocast():
                        f = self.backbone(image[None])
                x = self._scaled(f)[0]
                scores.append(score_projected_batched(project_frame(x, w1[i : i + 1]), w2[i : i + 1])[:, None])
                features.append(f)
                labels.append(target[None, None].float())
        batch = BackboneFeatures(*(torch.cat([getattr(f, k).float() for f in features])
                                   for k in ("s4", "s8", "s16", "s32")))
        state.refiner_params = tune_refiner(self.refiner, state.refiner_params, batch, torch.cat(scores),
                                            torch.cat(labels), cfg.refiner_tuning_steps, cfg.refiner_tuning_lr)

    def _anchor_objects(self, state: VideoState, rgb: torch.Tensor, x: torch.Tensor, given: torch.Tensor,
                        feats: BackboneFeatures, colour: torch.Tensor | None) -> None:
        """A frame whose mask is given again (``given`` (H, W) ids holding tracked objects): the
        tracked objects in it get the frame and its augmented copies as anchor samples (their
        tracked samples dropped, :meth:`SampleMemory.add_anchor`) and their w2 re-fitted on them;
        presence and templates take the mask as truth, and tracked objects not in it are absent
        here (:func:`~vossegcli.engine.diagnose.anchor_presence`)."""
        cfg = self.config
        present = set(torch.unique(given).tolist())
        slots = [i for i, object_id in enumerate(state.objects.ids) if object_id in present]
        if state.presence is None:
            state.presence = PresenceState()
        if slots and cfg.updates and state.memory is not None:
            ids = [state.objects.ids[i] for i in slots]
            masks = torch.stack([(given == i).float() for i in ids])
            seeds = [cfg.seed * 1000 + i + ANCHOR_SEED * state.frame_index for i in ids]
            features, labels, weights = start_samples(x, rgb, masks, cfg, self._features, seeds)
            w1 = state.w1[slots]
            projected = torch.bmm(features.flatten(1, 3), w1).reshape(*features.shape[:4], w1.shape[-1])
            state.memory.add_anchor(slots, projected, labels, weights)
            for _ in range(ANCHOR_GN_STEPS):
                self._optimize_w2(state, slots, cfg.init_w2_cg_iterations)
            for i in slots:
                state.objects.frames_tracked[i] = 0
            if cfg.refiner_tuning_steps > 0 and self.refiner is not None:  # real30 with a middle mask +1.11
                self._tune_refiner(state, rgb, feats, masks, state.w1[slots], state.w2[slots], seeds)
        if len(state.presence.status) == state.num_objects:
            anchor_presence(state, cfg.presence, x, feats, given, colour)

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
        if cfg.refiner_tuning_steps > 0 and self.refiner is not None:
            self._tune_refiner(state, rgb, feats, masks, w1, w2, [cfg.seed * 1000 + i for i in new_ids])
        state.w1 = w1 if state.w1 is None else torch.cat([state.w1, w1])
        state.w2 = w2 if state.w2 is None else torch.cat([state.w2, w2])
        start_presence(state, cfg.presence, x, feats, masks, w1, w2, new_ids, colour)
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


__all__ = [
    "FEATURE_STRIDE", "MAX_OBJECTS", "PRESETS", "FrameResult", "Segmenter", "SegmenterConfig", "StageTimes",
    "VideoState", "fit_target_model", "fit_target_models", "preset_config", "resolve_device", "with_overrides",
]
