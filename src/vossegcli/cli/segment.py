"""`vosseg segment` (with --auto) and `vosseg batch`: parse, delegate to vossegcli.run, print."""

from __future__ import annotations

import json
import shlex
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from vossegcli.errors import EXIT_USER_ERROR, Interrupted, RunInterrupted, VossegError
from vossegcli.run.options import engine_config, parse_value
from vossegcli.cli.common import (
    EngineOptions, _Command, _as_flags, _default_out, _describe_refiner, _describe_target_features, _fail,
    _interrupted_exit, _progress, _sample_defaults, _stop_on_signals, _use_threads, app, console, err_console,
    with_run_options,
)


def _segment_command(input_path: Optional[Path], masks: Optional[List[str]], out: Path,
                     options: dict, auto: Optional[list[str]] = None) -> str:
    """The shell command that reruns this segment call (for the resume hint and .vosseg-run.json):
    the input, masks and output, then every run option not at its default (run/options.py's table)."""
    from vossegcli.run.options import rerun_words

    parts = ["vosseg", "segment"] + ([str(input_path)] if input_path is not None else [])
    for m in masks or []:
        parts += ["--mask", str(m)]
    return shlex.join(parts + ["--out", str(out)] + rerun_words(options) + (auto or []))


@contextmanager
def _segment_errors():
    """One-line errors (exit 2) and interruptions (exit 128 + signal) of a segment run."""
    try:
        yield
    except VossegError as error:
        _fail(error)
    except RunInterrupted as stop:
        _interrupted_exit(stop.signum, stop.message)
    except (Interrupted, KeyboardInterrupt) as stop:
        signum = stop.signum if isinstance(stop, Interrupted) else signal.SIGINT
        _interrupted_exit(signum, f"interrupted by {signal.Signals(signum).name} before any mask was written")


@contextmanager
def _frame_bar(total: int | None):
    """A progress bar shown from the first progress call on; yields the ``progress(done, total)`` callback."""
    bar = _progress()
    task = bar.add_task("segmenting", total=total)

    def tick(done: int, total: int | None) -> None:
        if not bar.live.is_started:
            bar.start()
        bar.update(task, completed=done, total=total)

    try:
        yield tick
    finally:
        if bar.live.is_started:
            bar.stop()


def _report_run(result, report: Optional[Path], json_out: bool) -> bool:
    """Warnings, the "already complete" line, the --report file and --json output of a segment run;
    True when nothing more is to be printed."""
    for warning in result.warnings:
        err_console.print(f"[bold yellow]warning:[/] {escape(_as_flags(warning))}", highlight=False, soft_wrap=True)
    if result.already_complete:
        console.print(f"{escape(result.output)}: already complete ({result.frames} frames); nothing to resume",
                      highlight=False, soft_wrap=True)
        return True
    if report:
        with _segment_errors():
            result.write_json(report)
    if json_out:
        print(json.dumps(result.to_dict(), indent=2))
        return True
    return False


def _segment_auto(
    input_path: Optional[Path], mask: Optional[List[str]], out: Optional[Path], report: Optional[Path], force: bool,
    resume: bool, json_out: bool, auto: bool, auto_mode: str, references: int, seed_window: int, dry_run: bool,
    objects: str, proposer: str, options: dict,
) -> None:
    """``vosseg segment --auto``: find the primary object (see :mod:`vossegcli.run.auto`). ``options``: the
    run options (run/options.py's table)."""
    device, max_size, precision = options["device"], options["max_size"], options["precision"]
    deterministic, state_every, bidirectional = options["deterministic"], options["state_every"], options["bidirectional"]
    from vossegcli.run.auto import AutoConfig, segment_auto
    from vossegcli.run.auto import dry_run as auto_dry_run
    from vossegcli.run.inputs import internal_size

    with _segment_errors(), _stop_on_signals():
        if not auto:
            raise VossegError("--dry-run goes with --auto (it writes the mask --auto proposes)")
        if mask:
            raise VossegError("--auto finds the object itself: drop --mask, or drop --auto to use your mask")
        if input_path is None:
            from vossegcli.sample import sample_paths

            input_path = sample_paths().video
        if auto_mode == "cosnet" and bidirectional:
            raise VossegError("--bidirectional needs --auto-mode seed (cosnet segments every frame on its own)")
        config = engine_config(options)
        try:
            count = parse_value("objects", objects)
        except ValueError:
            count = None
        if count is None:
            raise VossegError(f"--objects {objects}: give a number of objects (1 to 32) or all")
        if count != 1 and not auto:
            raise VossegError("--objects goes with --auto (with masks, every object you give is segmented)")
        if proposer != "default" and count == 1:
            raise VossegError("--proposer chooses how the objects of --objects N or all are found: add --objects")
        cfg = AutoConfig(mode=auto_mode, references=references, seed_window=seed_window, objects=count, proposer=proposer)
        out = out if out is not None else _default_out(input_path)
        from vossegcli.io.video import open_frames

        with open_frames(input_path) as reader:
            info = reader.info
        work = internal_size(info.width, info.height, max_size)
        err_console.print(
            f"[bold]{escape(str(input_path))}[/]: {info.kind}, {info.width}x{info.height}, "
            f"{info.num_frames if info.num_frames is not None else '?'} frames; --auto ({auto_mode}, "
            f"{references} reference frames)" + (f", segmented at {work[0]}x{work[1]}" if work != (info.width, info.height) else ""),
            highlight=False,
        )

        def say(line: str) -> None:
            err_console.print(f"  {escape(_as_flags(line))}", highlight=False, soft_wrap=True)

        if dry_run:
            proposal, path, use = auto_dry_run(input_path, cfg, out, device=device, precision=precision,
                                               max_size=max_size, force=force, notify=say)
            human = err_console if json_out else console  # --json: stdout holds only the JSON
            human.print(
                f"proposed mask for frame {proposal.frame} ({escape(proposal.name)}), confidence "
                f"{proposal.confidence:.2f}: [bold]{escape(str(path))}[/]", highlight=False, soft_wrap=True,
            )
            human.print("check or edit it, then run:  " + escape(shlex.join(use)), highlight=False, soft_wrap=True)
            if json_out:
                print(json.dumps({"proposal": str(path), **proposal.summary()}, indent=2))
            return
        flags = ["--auto"] + (["--auto-mode", auto_mode] if auto_mode != "seed" else []) + (
            ["--references", str(references)] if references != 5 else []) + (
            ["--seed-window", str(seed_window)] if seed_window != 10 else []) + (
            ["--objects", "all" if count == 0 else str(count)] if count != 1 else []) + (
            ["--proposer", proposer] if proposer != "default" else [])
        command = _segment_command(input_path, None, out, {**options, "snap_mask": False}, flags)
        extra = {} if auto_mode == "cosnet" else {
            "deterministic": deterministic, "state_every": state_every, "bidirectional": bidirectional}
        with _frame_bar(info.num_frames) as tick:
            result = segment_auto(
                input_path, out, cfg, device=device, config=config, precision=precision, force=force, resume=resume,
                max_size=max_size, progress=tick, notify=say, command=command, **extra,
            )
    if _report_run(result, report, json_out):
        return
    a = result.auto or {}
    if a.get("mode") == "seed":
        n = len(a.get("objects") or [1])
        console.print(
            f"{'primary object' if n == 1 else f'{n} objects'} seeded at frame {a['seed_frame']} ({escape(str(a['seed_frame_name']))}) with confidence "
            f"{a['confidence']:.2f}; reference frames {', '.join(map(str, a['references'])) or 'none'}",
            highlight=False, soft_wrap=True,
        )
    elif a:
        console.print(
            f"every frame segmented by co-attention with reference frames {', '.join(map(str, a['references'])) or 'none'}"
            + (f"; mean confidence {a['mean_confidence']:.2f}" if a.get("mean_confidence") is not None else ""),
            highlight=False, soft_wrap=True,
        )
    console.print(
        f"wrote {result.frames} masks to [bold]{escape(result.output)}[/] — {result.fps:.2f} FPS on {result.device} "
        f"(engine only), peak RSS {result.memory.get('peak_rss_mb', float('nan')):.0f} MB",
        highlight=False,
    )


@app.command(
    cls=_Command,
    epilog="Examples:\n\n"
    "  vosseg segment --out out/sample                      # the bundled sample clip\n\n"
    "  vosseg segment video.mp4 --mask first.png --out masks/\n\n"
    "  vosseg segment frames/ --mask 00000.png --mask 40:late_object.png --out masks/ --report run.json\n\n"
    "  vosseg segment video.mp4 --mask person.png --mask dog.png --out masks/   # one binary PNG per object\n\n"
    "  vosseg segment video.mp4 --mask first.png --out masks/ --resume     # continue after Ctrl-C or a crash\n\n"
    "  vosseg segment video.mp4 --mask first.png --out masks/ --correct 120:fix.png   # fix the run from frame 120 on\n\n"
    "  vosseg segment video.mp4 --mask first.png --out masks/ --remove 200:2   # object 2 is gone from frame 200 on\n\n"
    "  vosseg segment video.mp4 --mask 0:first.png --mask 60:again.png --out masks/   # an object given on two frames\n\n"
    "Exit codes: 0 done; 2 input, mask, output or device problem (one line says which and how to fix it); "
    "130 stopped by Ctrl-C (SIGINT), 143 stopped by SIGTERM - the masks written so far are complete and "
    "--resume continues."
)
@with_run_options("device", "max_size", "snap_mask", "preset", "augment", "fill", "update", "seed", "refiner",
                  "target_features", "precision", "deterministic", "state_every", "absence", "bidirectional")
def segment(
    input_path: Optional[Path] = typer.Argument(
        None, metavar="[INPUT]", help="Video file (mp4, mov, avi, mkv, webm) or folder of frames. Default: the bundled sample."
    ),
    mask: Optional[List[str]] = typer.Option(
        None, "--mask", "-m", help="Mask PNG for the first frame, or N:path.png for frame N. Repeat for more masks."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Output folder for one palette PNG per frame. Default: out/<input name>."
    ),
    report: Optional[Path] = typer.Option(None, help="Write a JSON report (objects, timings, FPS, memory, weights)."),
    force: bool = typer.Option(False, help="Write into a non-empty output folder, overwriting files."),
    resume: bool = typer.Option(
        False, "--resume",
        help="Continue the interrupted run in --out from its last complete frame (same input, masks and options).",
    ),
    correct: Optional[List[str]] = typer.Option(
        None, "--correct", metavar="N:FIX.png",
        help="Correct the run in --out from frame N on: FIX.png gives objects again (edit the run's own PNG of frame N). "
        "Restarts from the keyframe at or before N; earlier frames stay as they are. Repeat for more frames.",
    ),
    remove: Optional[List[str]] = typer.Option(
        None, "--remove", metavar="N:ID[,ID]",
        help="Remove objects from frame N on (no pixels from there; give the id again with a later --mask to bring it "
        "back). On a finished run in --out it is a correction, like --correct. Repeat for more.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout instead of a summary."),
    auto: bool = typer.Option(
        False, "--auto",
        help="No mask: find the video's primary object (the one that stands out and keeps appearing) and segment it "
        "as object 1.",
    ),
    auto_mode: str = typer.Option(
        "seed", "--auto-mode", metavar="seed|cosnet",
        help="With --auto: seed (the most confident of the first frames starts the tracker; steadier) or cosnet (every "
        "frame segmented on its own against reference frames).",
    ),
    references: int = typer.Option(
        5, "--references", min=0, max=20,
        help="With --auto: reference frames spread over the whole video that the object is compared against "
        "(0 = each frame on its own).",
    ),
    seed_window: int = typer.Option(
        10, "--seed-window", min=1, help="With --auto: the seed frame is the most confident of the first N frames.",
    ),
    objects: str = typer.Option(
        "1", "--objects", metavar="N|all",
        help="With --auto: segment up to N objects (the objects of the seed frame, largest first, ids 1..N, and "
        "objects entering later); all = every one found. 1 = the primary object as one object.",
    ),
    proposer: str = typer.Option(
        "default", "--proposer", metavar="default|parts|FILE",
        help="With --auto --objects: what finds the seed frame's objects: default = the shipped instance decoder "
        "(RVOS; tells touching objects apart), parts = the separate parts of the primary object's mask, or a file "
        "written by vosseg train-instances.",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run",
        help="With --auto: only write the proposed mask (OUT/proposal.png) and print the command that segments with it "
        "- check or edit it first.",
    ),
    threads: int = EngineOptions.threads,
    options: Optional[dict] = None,
) -> None:
    """Segment the objects of the given mask(s) in every frame and write palette PNGs, plus diagnostics.jsonl
    (per frame and object: tracked / uncertain / lost / absent and the signals behind it). With --auto, no mask is
    needed: the primary object is found and segmented."""
    o = options  # the run options (run/options.py's table)
    _use_threads(threads, o["device"])
    from vossegcli.run.inputs import internal_size, load_inputs
    from vossegcli.run.segment import segment as run_segment

    given_input, given_masks = input_path, mask
    if objects != "1" and not auto:
        with _segment_errors():
            raise VossegError("--objects goes with --auto (with masks, every object you give is segmented)")
    if (correct or remove) and (auto or dry_run):
        with _segment_errors():
            raise VossegError(("--correct" if correct else "--remove") + " goes with a run made from masks: run --auto "
                              "--dry-run once, then segment and correct with --mask OUT/proposal.png")
    if auto or dry_run:
        _segment_auto(input_path, mask, out, report, force, resume, json_out, auto, auto_mode, references, seed_window,
                      dry_run, objects, proposer, options)
        return
    with _segment_errors(), _stop_on_signals():
        config = engine_config(options)
        input_path, masks = _sample_defaults(input_path, mask)
        out = out if out is not None else _default_out(input_path)
        command = _segment_command(given_input, given_masks, out, options)
        reader, mask_set = load_inputs(input_path, masks, snap=o["snap_mask"])
        info = reader.info
        work = internal_size(info.width, info.height, o["max_size"])
        scaled = f" (segmented at {work[0]}x{work[1]}, --max-size {o['max_size']})" if work != (info.width, info.height) else ""
        err_console.print(
            f"[bold]{input_path}[/]: {info.kind}, {info.width}x{info.height}, "
            f"{info.num_frames if info.num_frames is not None else '?'} frames, "
            f"{f'variable frame rate (about {info.fps:.3g} fps)' if info.variable_frame_rate else f'{info.fps:g} fps'}"
            f"{scaled}",
            highlight=False,
        )
        for line in mask_set.describe():
            err_console.print(f"  {_as_flags(line)}", highlight=False, soft_wrap=True)
        err_console.print(f"  {_describe_refiner(config.refiner)}", highlight=False, soft_wrap=True)
        err_console.print(f"  {_describe_target_features(config.target_features)}", highlight=False, soft_wrap=True)
        # the bar shows from the first frame on, not while a --resume is checked
        with _frame_bar(info.num_frames) as tick:
            result = run_segment(
                input_path,
                masks,
                out,
                config=config,
                force=force,
                progress=tick,
                reader=reader,
                masks=mask_set,
                resume=resume,
                command=command,
                notify=lambda line: err_console.print(f"  {_as_flags(line)}", highlight=False, soft_wrap=True),
                **{k: o[k] for k in ("device", "max_size", "snap_mask", "deterministic", "state_every", "bidirectional")},
                correct=correct or (),
                remove=remove or (),
            )
    if not _report_run(result, report, json_out):
        resumed = (
            f" ({result.frames_processed} new after frame {result.resumed_from_frame})"
            if result.resumed_from_frame is not None else ""
        )
        console.print(
            f"wrote {result.frames} masks to [bold]{result.output}[/]{resumed} — {result.fps:.2f} FPS on {result.device} "
            f"(engine only), peak RSS {result.memory['peak_rss_mb']:.0f} MB",
            highlight=False,
        )
        from vossegcli.run.diagnostics import summary_lines

        for line in summary_lines(result.diagnostics) if result.diagnostics else []:
            console.print(f"  {line}", highlight=False, soft_wrap=True)
        if result.bidirectional is not None:
            b = result.bidirectional
            console.print(
                f"  backward pass: {b['stretches']} stretch(es) revisited, {b['frames_changed']} frame(s) changed "
                f"({b['seconds']:.1f} s)", highlight=False,
            )


@app.command(
    cls=_Command,
    epilog="Examples:\n\n"
    "  vosseg batch jobs.csv --out-root masks/                  # input,mask[,out][,options] per line\n\n"
    "  vosseg batch videos/ --out-root masks/ --workers 2        # clip.mp4 + clip.png, ...\n\n"
    "  vosseg batch jobs.jsonl --out-root masks/ --report batch.json\n\n"
    "  vosseg batch jobs.csv --out-root /shared/masks --ray auto --workers 8   # on a running Ray cluster\n\n"
    "Exit codes: 0 every video done (or already complete); 2 a job file problem or at least one video failed "
    "(each says why; the others are done); 130/143 stopped (re-run the same command to continue).",
)


def batch(
    jobs: Path = typer.Argument(..., metavar="JOBS", help="A .csv or .jsonl of jobs, or a folder of videos with same-named mask PNGs."),
    out_root: Path = typer.Option(Path("out"), "--out-root", help="Where jobs without an out column write: OUT_ROOT/<input name>."),
    workers: int = typer.Option(1, "--workers", min=1, help="Videos segmented at once, each in its own process (torch threads split among them)."),
    device: str = typer.Option("auto", metavar="auto|cpu|cuda", help="auto (CUDA if available), cpu or cuda."),
    report: Optional[Path] = typer.Option(None, help="Write a JSON report: per video frames, FPS, wall time, status, error, diagnostics."),
    ray_address: Optional[str] = typer.Option(
        None, "--ray", metavar="ADDRESS",
        help="Run on Ray (optional extra: pip install \"vosseg\\[ray]\"): --ray local starts a Ray instance here, "
        "--ray auto joins the running cluster, or give its address (ray://head:10001). --workers actors, one GPU each "
        "where there are GPUs.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout instead of a table."),
    threads: int = typer.Option(
        0, "--threads", min=0,
        help="CPU threads per worker. 0 = cores // --workers. Fewer when other programs keep cores busy.",
    ),
) -> None:
    """Segment many videos: every job checked first, the engine loaded once per worker, a failing video recorded
    while the others go on, finished videos skipped and interrupted ones resumed on a re-run."""
    from vossegcli.run.batch import check_jobs, read_jobs, run_batch

    try:
        with _stop_on_signals():
            job_list, problems = read_jobs(jobs, out_root)
            good, bad = check_jobs(job_list)
            for line in problems + [f"{job.label}: {why}" for job, why in bad]:
                err_console.print(f"[bold red]error:[/] {escape(_as_flags(line))}", highlight=False, soft_wrap=True)
            err_console.print(f"{len(good)} of {len(job_list) + len(problems)} job(s) to run with {workers} worker(s)", highlight=False)
            with _progress() as bar:
                overall = bar.add_task("videos", total=len(good) + len(bad))
                per_video: dict[int, int] = {}  # job row → its progress bar while it runs

                def ended(result) -> None:
                    bar.advance(overall)
                    if result.row in per_video:
                        bar.remove_task(per_video.pop(result.row))
                    if result.status == "failed" and result.row in {j.row for j in good}:
                        err_console.print(f"[bold red]failed:[/] {escape(_as_flags(result.error or ''))}", highlight=False,
                                          soft_wrap=True)

                def tick(job, done: int, total: int | None) -> None:
                    if job.row not in per_video:
                        per_video[job.row] = bar.add_task(escape(Path(job.input).name), total=total)
                    bar.update(per_video[job.row], completed=done, total=total)

                if ray_address is not None:
                    from vossegcli.run.batch_ray import run_batch_ray

                    result = run_batch_ray(good, bad, address=ray_address, workers=workers, device=device, threads=threads,
                                           on_result=ended)
                else:
                    result = run_batch(good, bad, workers=workers, device=device, threads=threads, on_result=ended,
                                       progress=tick)
    except VossegError as error:
        _fail(error)
        return
    except (Interrupted, KeyboardInterrupt) as stop:
        signum = stop.signum if isinstance(stop, Interrupted) else signal.SIGINT
        _interrupted_exit(signum, f"interrupted by {signal.Signals(signum).name}; completed videos are kept and "
                          "interrupted ones resume: run the same command again")
        return
    blob = {**result.to_dict(), "problems": problems}
    if report:
        try:
            report.write_text(json.dumps(blob, indent=2) + "\n")
        except OSError as exc:
            _fail(VossegError(f"{report}: cannot write the report ({exc.strerror or exc}); choose another --report path"))
            return
    if json_out:
        print(json.dumps(blob, indent=2))
    else:
        table = Table(title=f"vosseg batch — {blob['done']} done, {blob['skipped']} already complete, {blob['failed']} failed",
                      show_header=True)
        for col in ("row", "input", "status", "frames", "FPS", "wall s", "note"):
            table.add_column(col, justify="right" if col in ("row", "frames", "FPS", "wall s") else "left")
        for r in blob["jobs"]:
            note = r["error"] or "; ".join(r["diagnostics"][:2])
            table.add_row(str(r["row"]), Path(r["input"]).name, r["status"], str(r["frames"]),
                          "" if r["fps"] is None else f"{r['fps']:.2f}", f"{r['wall_seconds']:.1f}", note)
        console.print(table)
        if blob["throughput_fps"]:
            console.print(f"{blob['frames_segmented']} frames in {blob['wall_seconds']:.1f} s: "
                          f"{blob['throughput_fps']:.2f} frames/s over the batch", highlight=False)
    if blob["failed"] or problems:
        raise typer.Exit(EXIT_USER_ERROR)
