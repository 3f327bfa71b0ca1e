"""The per-video loop: frames in, label maps out (FRTM-VOS, Algorithm 1).

For every frame: the backbone runs once; each tracked object's target model scores the stride-16
features; the refiner (:mod:`vossegcli.engine.refiner`) turns scores and backbone features into
full-resolution probabilities (without one, scores are upsampled bilinearly); the probabilities are
merged into one id map (:mod:`vossegcli.engine.merge`). Then each object's memory gets the frame
as a new sample (its merged probability where it wins, 0 elsewhere — computed from the target
models' own upsampled scores unless ``update_labels="refined"``), and every ``update_interval``
frames its target model's w2 is re-optimized on the memory.

An object starts on the frame where its mask is given: augmented copies of that frame are made
(:mod:`vossegcli.engine.augment`), the target model (w1 and w2) is trained on them by Gauss–Newton
(:mod:`vossegcli.engine.optim`), its memory is filled with them, and the given mask is written for
that frame — carved out of the objects already tracked.

The loop is a generator and holds nothing per frame after yielding, so memory does not grow with
video length. It takes plain arrays, so it is usable without the CLI::

    seg = Segmenter(SegmenterConfig(), device="auto")
    for index, labels in seg.run(frames, {0: first_mask}):
        ...  # labels: (H, W) uint8 object ids
"""

from __future__ import annotations

import time
from pathlib import Path
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np
import torch

from vossegcli.engine.augment import AugmentConfig, augment_start_frame
from vossegcli.engine.backbone import Backbone, BackboneFeatures
from vossegcli.engine.geometry import FEATURE_STRIDE, downsample_mask, label_grid_size, upsample_scores
from vossegcli.engine.memory import SampleMemory
from vossegcli.engine.merge import label_map, soft_aggregate, winner_labels
from vossegcli.engine.optim import GaussNewtonCG
from vossegcli.engine.refiner import Refiner, default_refiner_path, load_refiner
from vossegcli.engine.target_model import TargetModel, TargetModelProblem, TrainingSamples, hinge_pixel_weights
from vossegcli.errors import DeviceError, VossegError

#: Most objects one run tracks (each costs one target model per frame).
MAX_OBJECTS = 32


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
    min_update_pixels: int = 10  #: a frame enters the memory only with this many pixels > 0.5
    #: "default": the shipped refiner weights if present (weights/manifest.json), else none;
    #: a path: that refiner file; None: no refiner (scores upsampled bilinearly, "D-only").
    refiner: str | None = "default"
    #: What each object's memory learns from when a refiner is used: "coarse" — the target model's
    #: own upsampled scores (merged over objects), so online learning is exactly the D-only
    #: engine's and the refiner only shapes the output; "refined" — the refiner's mask, as in the
    #: paper (measured to drift onto shadows and reflections the refiner adds: docs/RESULTS.md).
    update_labels: str = "coarse"
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


@dataclass
class StageTimes:
    """Wall time (seconds) spent per stage, summed over the frames processed."""

    backbone: float = 0.0
    target_init: float = 0.0  #: start frames: augmentation, its backbone passes, first optimization
    target_score: float = 0.0  #: applying D, then the refiner (or bilinear upsampling): probabilities
    target_update: float = 0.0  #: memory insertion and periodic w2 re-optimization
    merge: float = 0.0  #: soft aggregation and label map
    frames: int = 0

    @property
    def engine(self) -> float:
        return self.backbone + self.target_init + self.target_score + self.target_update + self.merge

    def as_dict(self) -> dict:
        return asdict(self)


def resolve_device(name: str) -> torch.device:
    """'auto' → CUDA when available else CPU; 'cuda' fails clearly when CUDA is absent."""
    name = name.lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"--device {name}: this PyTorch ({torch.__version__}) sees no CUDA GPU; use --device cpu or auto"
            )
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise DeviceError(f"--device {name}: unknown device; use auto, cpu or cuda")


def resolve_refiner(spec: str | None, device: torch.device) -> Refiner | None:
    """The refiner named by a config's ``refiner`` field ("default", a path, or None)."""
    if spec is None or spec == "none":
        return None
    path = default_refiner_path() if spec == "default" else Path(spec)
    if path is None:
        return None
    if not path.is_file():
        raise VossegError(f"{path}: refiner weights not found; pass an existing file or --refiner none")
    try:
        return load_refiner(path, device)
    except Exception as error:  # a corrupt or foreign file
        raise VossegError(f"{path}: not a vosseg refiner file ({type(error).__name__}); pass another file or --refiner none") from None


@dataclass
class ObjectTracker:
    """One object: its id, start frame, target model, sample memory and frame counter."""

    object_id: int
    start_frame: int
    model: TargetModel
    memory: SampleMemory | None = None
    frames_tracked: int = 0


@dataclass
class FrameResult:
    index: int
    labels: np.ndarray  #: (H, W) uint8 object ids


class Segmenter:
    """Semi-supervised VOS with per-object online target models (FRTM-VOS without the refiner)."""

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
        if self.config.update_labels not in ("coarse", "refined"):
            raise ValueError(f"update_labels must be 'coarse' or 'refined', not {self.config.update_labels!r}")
        if refiner is None:
            refiner = resolve_refiner(self.config.refiner, self.device)
        self.refiner = refiner.to(self.device).eval() if refiner is not None else None
        self.solver = GaussNewtonCG(preconditioner=self.config.preconditioner)
        self.w2_solver = GaussNewtonCG(preconditioner=self.config.preconditioner[1:])
        self.times = StageTimes()
        self.trackers: list[ObjectTracker] = []

    # -- timing -------------------------------------------------------------------------------
    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _timed(self, stage: str, start: float) -> None:
        self._sync()
        setattr(self.times, stage, getattr(self.times, stage) + time.perf_counter() - start)

    def memory_bytes(self) -> int:
        """Bytes held by all objects' sample memories (fixed once the objects have started)."""
        return sum(tr.memory.nbytes for tr in self.trackers if tr.memory is not None)

    # -- the loop -----------------------------------------------------------------------------
    def run(self, frames: Iterable[np.ndarray], initial_masks: Mapping[int, np.ndarray]) -> Iterator[FrameResult]:
        """Segment a video.

        Args:
            frames: (H, W, 3) uint8 RGB images, in order, streamed.
            initial_masks: start frame index → (H, W) uint8 id map of the objects starting there
                (0 = background). Each id must appear in one mask only.
        Yields:
            one :class:`FrameResult` per input frame, in order.
        """
        if not initial_masks:
            raise ValueError("no initial masks given")
        self.trackers = []
        self.times = StageTimes()
        for index, image in enumerate(frames):
            h, w = image.shape[:2]
            start_mask = initial_masks.get(index)
            if not self.trackers and start_mask is None:
                yield FrameResult(index, np.zeros((h, w), np.uint8))
                self.times.frames += 1
                continue
            t = time.perf_counter()
            rgb = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)
            feats = self.backbone(rgb[None])
            x = feats.s16.float() * self.config.feature_scale
            self._timed("backbone", t)

            given = torch.from_numpy(start_mask).to(self.device).long() if start_mask is not None else None
            if self.trackers:
                labels, merged, coarse = self._predict(feats, x, (h, w), given)
                if self.config.updates:
                    t = time.perf_counter()
                    self._update(x, merged if coarse is None else coarse)
                    self._timed("target_update", t)
            else:
                labels = torch.zeros((h, w), dtype=torch.long, device=self.device)
            if given is not None:
                labels = torch.where(given > 0, given, labels)
                t = time.perf_counter()
                self._start_objects(index, rgb, x, given)
                self._timed("target_init", t)
            self.times.frames += 1
            yield FrameResult(index, labels.to(torch.uint8).cpu().numpy())

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB 0..255 → (B, C, h, w) scaled stride-16 features for D."""
        return self.backbone(images).s16.float() * self.config.feature_scale

    def _predict(
        self, feats: BackboneFeatures, x: torch.Tensor, frame_hw: tuple[int, int], given: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Backbone features and scaled stride-16 features x (1, C, h, w) → (H, W) id map,
        (N + 1, H, W) merged distribution, and — with a refiner and ``update_labels="coarse"`` —
        the (N + 1, H, W) merged distribution of the target models' own upsampled scores.

        With a refiner, each object's probability is sigmoid(R(features, scores)); without, the
        scores are upsampled bilinearly and mapped by sigmoid(k · (s − 0.5)). On a frame where new
        objects are given, their mask is carved out of the tracked objects before merging.
        """
        t = time.perf_counter()
        scores = torch.cat([tr.model(x) for tr in self.trackers], dim=0)  # (N, 1, h, w)
        keep = (given == 0) if given is not None else None  # carve out objects given on this frame
        coarse_probs = None
        if self.refiner is None or (self.config.updates and self.config.update_labels == "coarse"):
            up = upsample_scores(scores, frame_hw, 1)[:, 0]
            coarse_probs = torch.sigmoid(self.config.score_sharpness * (up - 0.5))
            if keep is not None:
                coarse_probs = coarse_probs * keep
        if self.refiner is None:
            probs = coarse_probs
        else:
            with torch.no_grad():
                probs = torch.sigmoid(self.refiner(feats, scores, frame_hw)[:, 0])
            if keep is not None:
                probs = probs * keep
        self._timed("target_score", t)
        t = time.perf_counter()
        ids = torch.tensor([tr.object_id for tr in self.trackers], device=self.device)
        merged = soft_aggregate(probs)
        labels = label_map(merged, ids)
        coarse = soft_aggregate(coarse_probs) if self.refiner is not None and coarse_probs is not None else None
        self._timed("merge", t)
        return labels, merged, coarse

    def _update(self, x: torch.Tensor, merged: torch.Tensor) -> None:
        """Add this frame to each tracked object's memory; re-optimize w2 every t_s frames."""
        cfg = self.config
        soft = winner_labels(merged)  # (N, H, W)
        for n, tracker in enumerate(self.trackers):
            tracker.frames_tracked += 1
            label = soft[n]
            if int((label > 0.5).sum()) >= cfg.min_update_pixels and tracker.memory is not None:
                tracker.memory.insert(tracker.model.project(x)[0], downsample_mask(label[None, None], cfg.label_stride)[0])
            if tracker.frames_tracked % cfg.update_interval == 0 and tracker.memory is not None:
                tracker.model = self._optimize_w2(tracker.model, tracker.memory, cfg.update_cg_iterations)

    def _optimize_w2(self, model: TargetModel, memory: SampleMemory, cg_iterations: int) -> TargetModel:
        """One GN step of ``cg_iterations`` CG iterations on w2, w1 frozen, over the memory."""
        cfg = self.config
        features, labels, gamma = memory.active()
        weights = hinge_pixel_weights(labels, cfg.hinge_fraction, pixel_area=float(cfg.label_stride**2))
        samples = TrainingSamples(features, labels, weights, gamma, cfg.label_stride)
        problem = TargetModelProblem(samples, cfg.regularization, optimize_w1=False)
        (w2,) = self.w2_solver.run(problem, [model.w2], [cg_iterations])
        return TargetModel(model.w1, w2)

    def _start_objects(self, frame_index: int, rgb: torch.Tensor, x: torch.Tensor, given: torch.Tensor) -> None:
        """Train a target model (and fill a memory) for every object id in ``given`` ((H, W) id map)."""
        existing = {tr.object_id for tr in self.trackers}
        for object_id in torch.unique(given).tolist():
            if object_id == 0:
                continue
            if object_id in existing:
                raise ValueError(f"object {object_id} is already tracked; each id may start only once")
            if len(self.trackers) >= MAX_OBJECTS:
                raise ValueError(f"more than {MAX_OBJECTS} objects")
            mask = (given == object_id).float()
            self.trackers.append(self._new_tracker(frame_index, object_id, rgb, x, mask))

    def _new_tracker(
        self, frame_index: int, object_id: int, rgb: torch.Tensor, x: torch.Tensor, mask: torch.Tensor
    ) -> ObjectTracker:
        """First-frame training of one object from rgb (3, H, W), features x (1, C, h, w), mask (H, W)."""
        cfg = self.config
        model, features, labels = fit_target_model(
            x, rgb, mask, cfg, self._features, self.solver, seed=cfg.seed * 1000 + object_id
        )
        memory = None
        if cfg.updates:
            projected = model.project(features)
            memory = SampleMemory(
                max(cfg.memory_capacity, labels.shape[0]),
                tuple(projected.shape[1:]),
                label_grid_size(tuple(mask.shape), cfg.label_stride),
                cfg.memory_learning_rate,
                device=self.device,
            )
            memory.initialize(projected, labels)
            if cfg.init_w2_cg_iterations > 0:
                model = self._optimize_w2(model, memory, cfg.init_w2_cg_iterations)
        return ObjectTracker(object_id, frame_index, model, memory)


def fit_target_model(
    x: torch.Tensor,
    rgb: torch.Tensor,
    mask: torch.Tensor,
    config: SegmenterConfig,
    features_fn: Callable[[torch.Tensor], torch.Tensor],
    solver: GaussNewtonCG,
    seed: int,
) -> tuple[TargetModel, torch.Tensor, torch.Tensor]:
    """Train a target model on one start frame and its augmented copies (w1 and w2 jointly).

    Args:
        x: (1, C, h, w) scaled stride-16 features of the frame.
        rgb: (3, H, W) the frame, 0..255 (used for augmentation).
        mask: (H, W) the object's binary mask.
        features_fn: (B, 3, H, W) images → (B, C, h, w) scaled stride-16 features.
        seed: seeds the weight initialization and the augmentation.
    Returns:
        the model, the (K, C, h, w) features and (K, 1, H', W') labels of the K training samples
        (sample 0 is the frame itself).
    """
    features, masks = x, mask[None, None].float()
    if config.augment.num_samples > 0:
        aug_images, aug_masks = augment_start_frame(rgb.float(), mask, config.augment, seed)
        if aug_images.shape[0] > 0:
            features = torch.cat([x, features_fn(aug_images)])
            masks = torch.cat([masks, aug_masks[:, None].to(masks.dtype)])
    labels = downsample_mask(masks, config.label_stride)
    k = labels.shape[0]
    gamma = torch.ones(k, device=x.device)
    gamma[0] = 2.0  # the original frame weighs twice an augmented copy
    samples = TrainingSamples(
        features=features,
        labels=labels,
        pixel_weights=hinge_pixel_weights(labels, config.hinge_fraction, pixel_area=float(config.label_stride**2)),
        sample_weights=gamma / gamma.sum(),
        label_stride=config.label_stride,
    )
    generator = torch.Generator().manual_seed(seed)
    model = TargetModel.initialize(x.shape[1], config.channels, generator, x.device)
    problem = TargetModelProblem(samples, config.regularization, optimize_w1=True)
    w1, w2 = solver.run(problem, [model.w1, model.w2], config.init_cg_iterations)
    return TargetModel(w1, w2), features, labels


__all__ = [
    "FEATURE_STRIDE", "MAX_OBJECTS", "PRESETS", "FrameResult", "Segmenter", "SegmenterConfig", "StageTimes",
    "fit_target_model", "preset_config", "resolve_device",
]
