"""`vosseg overlay`, `benchmark`, `evaluate` and `ablation`: look at, time and score results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from vossegcli import __version__
from vossegcli.cli.common import (
    EngineOptions, _Command, _command_failures, _default_out, _fail, _progress, _sample_defaults, _use_threads, app,
    console, err_console, with_run_options,
)
from vossegcli.errors import VossegError
from vossegcli.run.options import engine_config


@app.command(
    cls=_Command,
    epilog="Examples:\n\n  vosseg overlay                  # the bundled sample, masks from out/sample\n\n"
    "  vosseg overlay video.mp4 masks/ --out overlay.mp4\n\n"
    "  vosseg overlay frames/ masks/ --out overlay.mp4 --alpha 0.6 --fps 30\n\n"
    "Exit codes: 0 done; 2 a problem with the input, masks or output (one line says which); "
    "130/143 stopped by SIGINT/SIGTERM (no partial video is left)."
)


def overlay(
    input_path: Optional[Path] = typer.Argument(
        None, metavar="[INPUT]", help="The video file or frame folder that was segmented. Default: the bundled sample."
    ),
    masks_dir: Optional[Path] = typer.Argument(
        None, metavar="[MASKS_DIR]", help="Folder of palette PNGs written by vosseg segment. Default: out/<input name>."
    ),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output mp4 (H.264, yuv420p). Default: out/<input name>.mp4."),
    alpha: float = typer.Option(0.5, min=0.0, max=1.0, help="Opacity of the coloured masks."),
    contours: bool = typer.Option(True, "--contours/--no-contours", help="Outline each object over its tinted fill."),
    fps: Optional[float] = typer.Option(
        None, "--fps", min=0.001,
        help="Frame rate for a folder of frames (default 24). Videos keep their own timing, variable rates included.",
    ),
    diagnostics: bool = typer.Option(
        False, "--diagnostics",
        help="Draw each object's status (tracked / uncertain / lost / absent) and template similarity from the "
        "mask folder's diagnostics.jsonl, and mark scene cuts.",
    ),
    frame_numbers: bool = typer.Option(
        False, "--frame-numbers",
        help="Write each frame's number and mask file in the corner, to name the frame a correction is for "
        "(--mask N:fix.png).",
    ),
    force: bool = typer.Option(
        False, "--force",
        help="Draw even when the masks look made from another input (another run record, size or frame count).",
    ),
) -> None:
    """Blend coloured masks over the frames into a playable mp4: one frame per input frame, at the input's timing.

    An object coloured much like its own mask colour (a red car under red) is drawn in a contrasting colour."""
    from vossegcli.io.overlay import write_overlay

    with _command_failures("no overlay video was written"):
        if input_path is None:
            from vossegcli.sample import sample_paths

            input_path = sample_paths().video
        masks_dir = masks_dir if masks_dir is not None else _default_out(input_path)
        out = out if out is not None else _default_out(input_path).with_suffix(".mp4")
        if not force:
            from vossegcli.io.video import open_frames
            from vossegcli.run.match import check_masks_match_input

            if masks_dir.is_dir():
                with open_frames(input_path) as reader:
                    check_masks_match_input(input_path, masks_dir, reader.info)
        with _progress() as bar:
            task = bar.add_task("overlay", total=None)
            notes: list[str] = []
            n = write_overlay(
                input_path, masks_dir, out, alpha=alpha, contours=contours, fps=fps, notes=notes, diagnostics=diagnostics,
                frame_numbers=frame_numbers, progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    for note in notes:
        err_console.print(f"note: {note}", highlight=False, soft_wrap=True)
    console.print(f"wrote {n} frames to [bold]{out}[/]", highlight=False)


@app.command(
    cls=_Command,
    epilog="Examples:\n\n  vosseg export out/clip --as prores              # out/clip-rgba.mov: the objects with alpha\n\n"
    "  vosseg export out/clip --as rgba --object 2 --feather 2   # RGBA PNGs of object 2, soft edges\n\n"
    "  vosseg export out/clip --as rle                 # out/clip.rle.jsonl: COCO RLE per frame",
)
def export(
    masks_dir: Path = typer.Argument(..., metavar="MASKS_DIR", help="Folder of palette PNGs written by vosseg segment."),
    kind: str = typer.Option(
        ..., "--as", metavar="rgba|prores|alpha|rle|boxes",
        help="rgba: RGBA PNG per frame (objects opaque); prores: one ProRes 4444 .mov with alpha; alpha: a white-on-"
        "black matte mp4 per object; rle: COCO RLE per frame (JSON lines); boxes: CSV of each object's box per frame.",
    ),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Where to write (default: beside MASKS_DIR, named "
                                       "after it: <dir>-rgba/, <dir>-rgba.mov, <dir>-mattes/, <dir>.rle.jsonl, <dir>-boxes.csv)."),
    input_path: Optional[Path] = typer.Option(None, "--input", help="The video or frame folder that was segmented "
                                              "(rgba, prores; default: the one the run record names)."),
    object_ids: Optional[List[int]] = typer.Option(None, "--object", help="Only this object id (repeat for more)."),
    feather: float = typer.Option(0.0, "--feather", min=0.0, metavar="PX", help="Soften alpha edges by PX pixels."),
) -> None:
    """Cut-outs and formats for editing and other tools: RGBA frames or a ProRes 4444 video with alpha, matte videos,
    COCO RLE, or boxes, from the masks of a run."""
    from vossegcli.io.export import DEFAULT_NAMES, export as run_export

    with _command_failures("finished files are kept, none half-written"):
        masks_dir = masks_dir.expanduser()
        if out is None and kind in DEFAULT_NAMES:
            out = masks_dir.parent / DEFAULT_NAMES[kind].format(stem=masks_dir.resolve().name)
        with _progress() as bar:
            task = bar.add_task(f"export {kind}", total=None)
            result = run_export(masks_dir, kind, out or masks_dir, input_path=input_path, objects=object_ids,
                                feather=feather, progress=lambda done, total: bar.update(task, completed=done, total=total))
    console.print(f"wrote {kind} of {result['frames']} frames, objects {', '.join(map(str, result['objects'])) or 'none'}: "
                  f"[bold]{escape(result['out'])}[/]", highlight=False, soft_wrap=True)


@app.command(
    cls=_Command,
    epilog="Examples:\n\n  vosseg benchmark                     # the bundled sample\n\n"
    "  vosseg benchmark clip.mp4 --mask first.png --device cuda --json\n\n"
    "  vosseg benchmark clip.mp4 --mask first.png --threads 1 --precision fp32   # as a CPU without bf16 runs"
)


@with_run_options("device", "max_size", "preset", "augment", "fill", "update", "seed", "refiner", "target_features",
                  "precision", "deterministic", "absence")
def benchmark(
    input_path: Optional[Path] = typer.Argument(None, metavar="[INPUT]", help="Clip to time. Default: the bundled sample."),
    mask: Optional[List[str]] = typer.Option(None, "--mask", "-m", help="Mask(s), as for segment."),
    fps: bool = typer.Option(True, "--fps", hidden=True, help="Measure frames per second (always on; kept for scripts)."),
    frames: Optional[int] = typer.Option(None, help="Use only the first N frames."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    threads: int = EngineOptions.threads,
    options: Optional[dict] = None,
) -> None:
    """Measure engine speed: FPS, per-stage split, device and peak memory."""
    o = options  # the run options (run/options.py's table)
    _use_threads(threads, o["device"])
    from vossegcli.run.benchmark import run_benchmark

    try:
        config = engine_config(o)
        input_path, masks = _sample_defaults(input_path, mask)
        with _progress() as bar:
            task = bar.add_task("benchmark", total=None)
            result = run_benchmark(
                input_path, masks, device=o["device"], config=config, max_frames=frames, max_size=o["max_size"],
                deterministic=o["deterministic"],
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    except VossegError as error:
        _fail(error)
        return
    if json_out:
        print(json.dumps(result, indent=2))
        return
    table = Table(title=f"vosseg {__version__} benchmark — {result['device']}", show_header=True)
    table.add_column("stage")
    table.add_column("ms / frame", justify="right")
    for stage, ms in result["stage_ms_per_frame"].items():
        table.add_row(stage, f"{ms:.1f}")
    console.print(table)
    res = result["resolution"]
    console.print(
        f"[bold]{result['fps']:.2f} FPS[/] on {result['device']} — {result['frames']} frames at "
        f"{res['width']}x{res['height']}"
        + (" (scaled from {width}x{height})".format(**result["input_resolution"])
           if result["input_resolution"] != res else "")
        + f", {result['objects']} object(s); peak RSS {result['memory']['peak_rss_mb']:.0f} MB"
        + (f", peak GPU {result['memory']['peak_gpu_allocated_mb']:.0f} MB" if "peak_gpu_allocated_mb" in result["memory"] else ""),
        highlight=False,
    )
    console.print(f"convention: {result['fps_convention']}", style="dim", highlight=False)


@app.command(
    cls=_Command,
    epilog="Examples:\n\n  vosseg evaluate out/bear ../DAVIS/Annotations/480p/bear\n\n"
    "  vosseg evaluate results/ annotations/ --json scores.json    # a folder of sequences"
)


def evaluate(
    pred: Path = typer.Argument(..., metavar="PRED", help="Predicted masks: a sequence folder of PNGs, or a folder of sequence folders."),
    gt: Path = typer.Argument(..., metavar="GT", help="Ground truth, laid out like PRED."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the scores as JSON to this file."),
    sequences: Optional[str] = typer.Option(
        None, help="Comma-separated sequence names to score (default: every sequence folder in GT)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Score even when the predictions run past the ground truth's last frame (another video?).",
    ),
) -> None:
    """J (region IoU), F (boundary) and J&F, following the DAVIS 2017 semi-supervised protocol."""
    from vossegcli.eval.davis import evaluate as run_evaluate, render_table

    try:
        with _progress(transient=True) as bar:
            task = bar.add_task("evaluating", total=None)
            names = [n.strip() for n in sequences.split(",") if n.strip()] if sequences else None
            result = run_evaluate(pred, gt, sequences=names, force=force,
                                  progress=lambda done, total: bar.update(task, completed=done, total=total))
    except VossegError as error:
        _fail(error)
        return
    console.print(render_table(result))
    for warning in result.warnings:
        err_console.print(f"warning: {warning}", style="dim", highlight=False)
    if json_path:
        json_path.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        console.print(f"wrote {json_path}", highlight=False)


@app.command(
    cls=_Command,
    epilog="Examples:\n\n  vosseg ablation --data ../shared/data --split val --out runs/ablation --json runs/ablation.json\n\n"
    "  vosseg ablation --data ../shared/data --split val,val-synth --variants refiner   # the two yardsticks"
)


def ablation(
    data: Path = typer.Option(..., help="Folder holding davis16-train/ and duts-tr/ (e.g. ../shared/data)."),
    split: str = typer.Option(
        "val", help="Comma-separated splits: those of davis16-train's splits.json (train, val) and/or val-synth "
        "(60 synthetic clips from held-out DUTS-TR images, rendered once into ~/.cache/vosseg). With several, "
        "a mean column is added: settings are chosen on it.",
    ),
    out: Path = typer.Option(Path("runs/ablation"), help="Where the masks of each variant are written."),
    device: str = typer.Option("auto", metavar="auto|cpu|cuda", help="auto (CUDA if available), cpu or cuda."),
    variants: Optional[str] = typer.Option(None, help="Comma-separated substrings selecting variants (default: all)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write all results as JSON."),
    threads: int = EngineOptions.threads,
) -> None:
    """Target-model ablation (first frame only / + augmentation / + memory updates / + refiner, default and
    fast presets): J&F and FPS of each variant on one or more splits."""
    _use_threads(threads, device)
    from vossegcli.eval.split import ablation_variants, run_split

    chosen = ablation_variants()
    if variants:
        keys = [k.strip() for k in variants.split(",") if k.strip()]
        chosen = {name: cfg for name, cfg in chosen.items() if any(k in name for k in keys)}
    splits = [x.strip() for x in split.split(",") if x.strip()]
    results: dict[str, list] = {name: [] for name in chosen}
    try:
        with _progress() as bar:
            task = bar.add_task("ablation", total=None)
            for name, config in chosen.items():
                slug = name.replace(": ", "-").replace(" ", "_").replace("+", "plus")
                for part in splits:

                    def tick(seq: str, done: int, total: int | None, name=name, part=part) -> None:
                        bar.update(task, description=f"{name} · {part} · {seq}", completed=done, total=total)

                    results[name].append(run_split(data, part, out / part / slug, config, name=name, device=device,
                                                   progress=tick))
    except VossegError as error:
        _fail(error)
        return
    table = Table(title=f"target-model ablation on {', '.join(splits)}")
    table.add_column("variant")
    for part in splits:
        table.add_column(f"{part} J&F", justify="right")
    if len(splits) > 1:
        table.add_column("mean J&F", justify="right")
    for col in ("FPS", "memory/object"):
        table.add_column(col, justify="right")
    for name, runs in results.items():
        scores = [100 * r.scores.jf_mean for r in runs]
        row = [name, *(f"{v:.1f}" for v in scores)]
        if len(splits) > 1:
            row.append(f"{sum(scores) / len(scores):.1f}")
        row += [f"{runs[0].mean_fps:.2f}", f"{runs[0].sample_memory_mb:.1f} MB"]
        table.add_row(*row)
    console.print(table)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        data_out = [{**r.to_dict(), "split": part} for runs in results.values() for part, r in zip(splits, runs)]
        json_path.write_text(json.dumps(data_out, indent=2) + "\n")
