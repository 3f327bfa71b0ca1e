"""What every command shares: the Typer app, one-line errors, progress bars, engine options, threads and signals."""

from __future__ import annotations

import functools
import inspect
import re
import signal
import threading
import typing
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from typer.core import TyperCommand

from vossegcli.errors import EXIT_USER_ERROR, Interrupted, VossegError


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


def _typer_option(name: str):
    """The Typer declaration of a run option from the one table (:mod:`vossegcli.run.options`)."""
    from vossegcli.run.options import OPTIONS

    o = OPTIONS[name]
    decls = [f"{o.flag}/{o.negative}"] if o.kind is bool and o.default else [o.flag]
    extra = {"min": o.minimum} if o.minimum is not None else {}
    return typer.Option(o.default, *decls, metavar=o.metavar, help=o.help, **extra)


def with_run_options(*names: str):
    """Give a Typer command the run options ``names`` (flags, defaults and help from the one table,
    :mod:`vossegcli.run.options`); the command receives their values together as its ``options``
    dict (option name → value) instead of one parameter each."""
    from vossegcli.run.options import OPTIONS

    def kind(name: str):
        o = OPTIONS[name]
        return Optional[o.kind] if o.default is None else o.kind

    def wrap(fn):
        hints = typing.get_type_hints(fn)
        own = [p.replace(annotation=hints.get(n, p.annotation))
               for n, p in inspect.signature(fn).parameters.items() if n != "options"]
        added = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=_typer_option(n), annotation=kind(n))
                 for n in names]

        @functools.wraps(fn)
        def command(**given):
            options = {n: given.pop(n) for n in names}
            return fn(**given, options=options)

        params = own + added
        command.__signature__ = inspect.Signature(params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return wrap


class EngineOptions:
    """Single option declarations for commands that do not take the run options as a group
    (:func:`with_run_options`): ``--device`` (from the table) for the trainers, and ``--threads``."""

    device = _typer_option("device")
    threads = typer.Option(
        0, "--threads", min=0,
        help="CPU threads for the arithmetic. 0 = one per core (fastest on an otherwise idle machine). When other "
        "programs keep cores busy, use fewer: measured 1.1 FPS with 2 threads against 12 with --threads 1 beside one "
        "busy process on 2 cores.",
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


@contextmanager
def _command_failures(on_stop: str):
    """A command's body: Ctrl-C / SIGTERM stop it cleanly, a VossegError is one ``error:`` line (exit 2), a
    stop is one ``stopped:`` line ending with ``on_stop`` (exit 128 + the signal)."""
    try:
        with _stop_on_signals():
            yield
    except VossegError as error:
        _fail(error)
    except (Interrupted, KeyboardInterrupt) as stop:
        signum = stop.signum if isinstance(stop, Interrupted) else signal.SIGINT
        _interrupted_exit(signum, f"interrupted by {signal.Signals(signum).name}; {on_stop}")


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
