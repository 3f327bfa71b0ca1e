"""Engine settings (:class:`SegmenterConfig`) and the named presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from vossegcli.engine.augment import AugmentConfig
from vossegcli.engine.presence import PresenceConfig


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
    #: k of D's probability sigmoid(k · (score − 0.5)): the labels a tracked frame teaches the
    #: target models, the presence regions, and the output without a refiner (the 0.5 threshold is
    #: the same for any k). Chosen on real30 (docs/RESULTS.md): 8 → 82.32, 16 → 82.71, 32 → 83.18,
    #: 64 → 83.23 J&F (a plateau: near-binary labels keep D from fading on its own uncertain parts;
    #: last quarter of the clips 79.2 → 81.5 J).
    score_sharpness: float = 32.0
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
    #: Adam steps that tune the refiner to the objects of each given mask (the frame and some of its
    #: augmented copies, against the mask; a later mask of a tracked object tunes again from the
    #: weights so far; :mod:`vossegcli.engine.refiner_tuning`); 0: none.
    #: Chosen on real30 (docs/RESULTS.md, "Tuning the refiner on the given mask"): the default's 3
    #: steps at 1e-3 on the frame and 2 copies give 83.19 → 84.06 J&F for ~3 s per 480p start
    #: frame on a 2-core CPU; ``--preset quality``'s 30 steps at 1e-4 on the frame and all 4 copies
    #: give 85.24 for ~30 s.
    refiner_tuning_steps: int = 3
    refiner_tuning_lr: float = 1e-3  #: Adam's learning rate for those steps
    #: How many of the start frame's augmented copies the tuning uses besides the frame (None: all).
    refiner_tuning_copies: int | None = 2
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
    # (and no tuning of the refiner on the given masks)
    "fast": {"channels": 32, "update_interval": 16, "init_cg_iterations": (5, 10, 10, 10), "update_cg_iterations": 5,
             "refiner_tuning_steps": 0},
    # The default with the refiner tuned longer on each start frame's masks (engine/refiner_tuning.py).
    "quality": {"refiner_tuning_steps": 30, "refiner_tuning_lr": 1e-4, "refiner_tuning_copies": None},
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
