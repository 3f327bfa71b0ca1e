"""`vosseg train`, `train-primary` and `train-target-features`: parse and delegate to vossegcli.train."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from vossegcli.errors import VossegError
from vossegcli.cli.common import EngineOptions, _Command, _fail, _progress, _use_threads, app, console, err_console


@app.command(
    cls=_Command,
    epilog="Examples:\n\n  vosseg train --data ../shared/data --out runs/refiner --steps 1000\n\n"
    "  vosseg train --data ../shared/data --out runs/refiner --resume     # continue after an interruption\n\n"
    "  vosseg train --data sample --out /tmp/smoke --steps 3              # smoke test on the bundled sample"
)


def train(
    data: str = typer.Option(..., help="Folder holding davis16-train/ and ecssd/ (e.g. ../shared/data), or 'sample'."),
    out: Path = typer.Option(..., help="Run folder: caches, checkpoints, refiner.pt, validation.jsonl."),
    device: str = typer.Option("auto", metavar="auto|cpu|cuda", help="auto (CUDA if available), cpu or cuda."),
    steps: int = typer.Option(1000, help="Optimizer steps."),
    batch_size: int = typer.Option(8, help="Samples per step (each contributes 2 frames)."),
    lr: float = typer.Option(1e-3, help="Adam learning rate."),
    lr_drop: float = typer.Option(0.8, help="Divide the learning rate by 10 from this fraction of --steps on."),
    crop: int = typer.Option(256, help="Training crop side in pixels (multiple of 32)."),
    synthetic_ratio: float = typer.Option(0.5, help="Share of samples drawn from synthetic clips."),
    synthetic_clips: int = typer.Option(400, help="Synthetic clips generated (and cached)."),
    synthetic_data: str = typer.Option(
        "ecssd+duts", help="Objects and backgrounds of synthetic clips: ecssd, or ecssd+duts (adds DUTS-TR's 6300 training "
        "images; its held-out tenth stays for val-synth).",
    ),
    synthetic_motion: str = typer.Option(
        "realistic", help="simple (rigid motion) or realistic (also non-rigid warps, fast motion with blur, lighting change).",
    ),
    loss: str = typer.Option("bce", help="bce, bce+dice or bce+lovasz (a region loss added to cross-entropy)."),
    object_windows: float = typer.Option(0.5, help="Share of training crops centred on the object."),
    distractor_windows: float = typer.Option(
        0.25, help="Share of training crops centred on the target model's strongest false positive."
    ),
    width: int = typer.Option(32, help="Refiner channel width."),
    init: str = typer.Option("", help="Start from this refiner weights file ('default': the shipped one; its "
                             "--width)."),
    val_every: int = typer.Option(0, help="Validation J&F every N steps (0: only at the end)."),
    val_frames: int = typer.Option(0, help="Validate on the first N frames of each val sequence (0: all)."),
    resume: bool = typer.Option(False, help="Continue from OUT/checkpoint.pt."),
    seed: int = typer.Option(0, help="Seed for sampling, synthetic clips and initialization."),
    real: str = typer.Option(
        "train", help="Real sequences to train on: train (davis16-train's train split), none (synthetic clips only), "
        "all, or fold:K (all 30 but real30's fold K, K = 0..4; validation on fold K).",
    ),
    cache: Optional[Path] = typer.Option(None, help="Feature cache folder to use (default OUT/cache); runs can share one."),
    target_features: str = typer.Option(
        "default", "--target-features", metavar="default|none|FILE",
        help="The learned target-model features whose target-model scores the refiner learns from: default (the "
        "shipped adapter, what segment uses), a file from `vosseg train-target-features`, or none.",
    ),
    threads: int = EngineOptions.threads,
) -> None:
    """Train the refinement network on davis16-train `train` + synthetic clips (ECSSD, optionally DUTS-TR)."""
    _use_threads(threads, device)
    from vossegcli.engine.device import resolve_device
    from vossegcli.train.trainer import RefinerTrainer, TrainConfig

    if crop % 32 or crop < 64:
        _fail(VossegError(f"--crop {crop}: must be a multiple of 32, at least 64"))
    config = TrainConfig(
        steps=steps, batch_size=batch_size, lr=lr, lr_drop=lr_drop, crop=crop, synthetic_ratio=synthetic_ratio,
        synthetic_clips=synthetic_clips, object_windows=object_windows, distractor_windows=distractor_windows,
        refiner_width=width, val_every=val_every, val_frames=val_frames, seed=seed, data=data,
        synthetic_data=synthetic_data, synthetic_motion=synthetic_motion, loss=loss, init=init, real=real,
        cache=str(cache) if cache else "",
        target_features=target_features,
    )
    if real == "none" and synthetic_ratio < 1:
        config.synthetic_ratio = 1.0  # nothing real to draw from
    if init == "default":
        from vossegcli.engine.weights import shipped_path

        shipped = shipped_path("refiner")
        if shipped is None:
            _fail(VossegError("--init default: no shipped refiner weights in weights/; pass a file"))
        config.init = str(shipped)
    elif init and not Path(init).is_file():
        _fail(VossegError(f"{init}: refiner weights not found; pass an existing file to --init"))
    if loss not in ("bce", "bce+dice", "bce+lovasz"):
        _fail(VossegError(f"--loss {loss}: choose bce, bce+dice or bce+lovasz"))
    if synthetic_data not in ("ecssd", "ecssd+duts"):
        _fail(VossegError(f"--synthetic-data {synthetic_data}: choose ecssd or ecssd+duts"))
    if synthetic_motion not in ("simple", "realistic"):
        _fail(VossegError(f"--synthetic-motion {synthetic_motion}: choose simple or realistic"))
    try:
        trainer = RefinerTrainer(config, out, resolve_device(device), log=lambda m: err_console.print(m, highlight=False))
        if resume:
            if not trainer.load_checkpoint():
                raise VossegError(f"{out / 'checkpoint.pt'}: no checkpoint to resume from; drop --resume to start")
            err_console.print(f"resuming at step {trainer.step}", highlight=False)
        started = time.time()
        with _progress() as bar:
            task = bar.add_task("caching features", total=None)
            trainer.prepare(progress=lambda what, done, total: bar.update(task, description=what, completed=done, total=total))
            bar.update(task, description="training", completed=trainer.step, total=steps)
            trainer.train(progress=lambda step, loss: bar.update(task, completed=step, description=f"training · loss {loss:.4f}"))
        result = trainer.validate()
    except VossegError as error:
        _fail(error)
        return
    summary = {"steps": trainer.step, "wall_seconds": round(time.time() - started, 1), "validation": result,
               "refiner": str(out / "refiner.pt"), "device": str(trainer.device)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    console.print(
        f"trained {trainer.step} steps; validation J&F {100 * result['J&F']:.1f}; weights: {out / 'refiner.pt'}", highlight=False
    )


@app.command(
    "train-primary",
    cls=_Command,
    epilog="Example:\n\n  vosseg train-primary --data ../shared/data --out runs/primary --steps 3000 --seed 0",
)


def train_primary(
    data: Path = typer.Option(..., help="Folder holding davis16-train/, ecssd/ and duts-tr/ (e.g. ../shared/data)."),
    out: Path = typer.Option(..., help="Run folder: primary.pt is written here."),
    steps: int = typer.Option(3000, help="Optimizer steps (each: a saliency batch, then a frame-pair batch)."),
    seed: int = typer.Option(0, help="Random seed."),
    cache: Path = typer.Option(Path.home() / ".cache" / "vosseg", help="Where backbone features are cached."),
    init: Optional[Path] = typer.Option(None, help="Start from these primary-object weights (the gate re-opened)."),
    synthetic_batch: int = typer.Option(2, help="Synthetic common-object pairs per step (0: none)."),
    gate_lr_scale: float = typer.Option(0.01, help="The co-attention gate's learning rate, as a share of --lr's."),
    device: str = EngineOptions.device,
    threads: int = EngineOptions.threads,
) -> None:
    """Train the primary-object network behind --auto (COSNet's two alternating steps: saliency images, then
    frame pairs of the davis16-train `train` split). Prints losses and the val split's stride-16 IoU."""
    _use_threads(threads, device)
    from vossegcli.train.primary import main as train_main

    try:
        train_main(["--data", str(data), "--out", str(out), "--steps", str(steps), "--seed", str(seed),
                    "--cache", str(cache), "--synthetic-batch", str(synthetic_batch),
                    "--gate-lr-scale", str(gate_lr_scale), "--device", device] + (["--init", str(init)] if init else []))
    except VossegError as error:
        _fail(error)


@app.command(
    cls=_Command,
    epilog="Examples:\n\n  vosseg train --data ../shared/data --out runs/refiner --cache runs/cache --real all --steps 0   "
    "# build the feature cache\n\n"
    "  vosseg train-target-features --data ../shared/data --cache runs/cache --out runs/tf/all.pt --real all",
)


def train_target_features(
    data: Path = typer.Option(..., help="Folder holding davis16-train/ (e.g. ../shared/data)."),
    out: Path = typer.Option(..., help="The adapter weights file to write."),
    cache: Path = typer.Option(Path("runs/cache"), help="The refiner trainer's feature cache (vosseg train --cache)."),
    real: str = typer.Option("all", help="Real sequences: all, train, none, or fold:K (real30's fold K held out)."),
    steps: int = typer.Option(600, help="Optimizer steps (4 items each)."),
    seed: int = typer.Option(0, help="Random seed."),
    lr: float = typer.Option(5e-4, help="Adam learning rate (divided by 10 for the last 20 % of the steps)."),
    eval_every: int = typer.Option(250, help="Steps between held-out losses (folds only)."),
    device: str = EngineOptions.device,
    threads: int = EngineOptions.threads,
) -> None:
    """Train the learned target-model features (LWL's adapter) through the engine's own target-model fit on
    cached backbone features of davis16-train and synthetic clips. Prints the loss every 50 steps."""
    _use_threads(threads, device)
    from vossegcli.train.target_features import main as train_main

    args = [str(out), "--data", str(data), "--cache", str(cache), "--real", real, "--steps", str(steps),
            "--seed", str(seed), "--lr", str(lr), "--eval-every", str(eval_every), "--device", device]
    try:
        train_main(args)
    except VossegError as error:
        _fail(error)


_INSTANCES_EXAMPLE = "Example:\n\n  vosseg train-instances --data ../shared/data --out runs/rvos/instances.pt --steps 1500"


@app.command("train-instances", cls=_Command, epilog=_INSTANCES_EXAMPLE)
def train_instances(
    out: Path = typer.Option(..., help="The instance-decoder weights file to write (use it with --proposer FILE)."),
    data: Path = typer.Option(..., help="Folder holding davis16-train/ and duts-tr/ (e.g. ../shared/data)."),
    threads: int = EngineOptions.threads,
    steps: int = typer.Option(1500, help="Optimizer steps (4 windows of 4 frames each)."),
    synthetic: int = typer.Option(160, help="Synthetic multi-object clips rendered for training."),
    cache: Path = typer.Option(Path("runs/instances-cache"), help="Where the rendered clips' backbone features are kept."),
    seed: int = typer.Option(0, help="Random seed."),
    init: Optional[Path] = typer.Option(None, help="Continue from these instance-decoder weights."),
    device: str = EngineOptions.device,
) -> None:
    """Train RVOS's recurrent instance decoder (the object proposer of --auto --objects), zero-shot, on synthetic
    multi-object clips (DUTS-TR training objects) and davis16-train composites. Prints the loss every 50 steps."""
    _use_threads(threads, device)
    from vossegcli.train.instances import main as train_main

    try:
        train_main([str(out), "--data", str(data), "--cache", str(cache), "--steps", str(steps),
                    "--synthetic", str(synthetic), "--seed", str(seed), "--device", device] + (["--init", str(init)] if init else []))
    except VossegError as error:
        _fail(error)
