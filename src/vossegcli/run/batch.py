"""``vosseg batch``: many videos on one machine — jobs read and checked up front, the engine loaded
once per worker, failures recorded without stopping the batch, finished videos skipped on a re-run.

Jobs (:func:`read_jobs`) come from

* a CSV file with a header: ``input,mask[,out][,<option>...]`` — several masks in one cell are
  separated by ``;`` (each ``path.png`` or ``N:path.png``);
* a JSON Lines file: one object per line, ``{"input": ..., "mask": "a.png" | ["a.png", "40:b.png"],
  "out": ..., <option>: ...}``;
* a folder: every video in it (mp4, mov, avi, mkv, webm, m4v) with a mask PNG of the same name
  (``clip.mp4`` + ``clip.png``).

Relative paths are relative to the jobs file (or folder). ``out`` defaults to
``<out-root>/<input name>``. Per-job options: the run options of :mod:`vossegcli.run.options`
that a job may set (``preset``, ``augment``, ``fill``, ``update``, ``seed``, ``refiner``,
``target_features``, ``max_size``, ``precision``, ``absence``, ``bidirectional``); ``auto=true``
(no mask: as ``vosseg segment --auto``) with ``objects`` (a number or ``all``, as ``--objects``).

Every row is checked before anything runs (:func:`check_jobs`: input opens, masks read and fit
the frames, options valid, no two jobs write one folder); all problems are listed at once, the
bad rows are recorded as failed, and the good ones run. Each job goes through
:func:`vossegcli.run.segment.segment` — a folder with a complete run is skipped ("already
complete"), an interrupted one is resumed exactly from its saved state. ``workers`` > 1 runs that
many processes, each with ``cores // workers`` torch threads and its own engines (one per distinct
engine configuration, loaded once).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

from vossegcli.errors import InputError, VossegError
from vossegcli.io.video import VIDEO_SUFFIXES
from vossegcli.run.options import BATCH_COLUMNS, parse_value

#: The option columns of a jobs file (besides input, mask and out): run/options.py's table.
OPTIONS = BATCH_COLUMNS


@dataclass
class Job:
    row: int  #: 1-based row of the jobs file (the video's position for a folder)
    input: str
    masks: list[str]
    out: str
    options: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"row {self.row} ({Path(self.input).name})"


@dataclass
class JobResult:
    row: int
    input: str
    out: str
    status: str  #: done | skipped | failed
    frames: int = 0
    fps: float | None = None
    wall_seconds: float = 0.0
    error: str | None = None
    exit_status: int = 0  #: as `vosseg segment` would exit: 0, 2 (a problem), 130/143 (stopped)
    diagnostics: list[str] = field(default_factory=list)


def read_jobs(path: Path, out_root: Path) -> tuple[list[Job], list[str]]:
    """(jobs, problems) of a CSV / JSON Lines file or a folder of videos (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such jobs file or folder; pass a .csv, a .jsonl or a folder of videos with same-named mask PNGs")
    base = path if path.is_dir() else path.parent
    rows: list[tuple[int, dict]] = []
    problems: list[str] = []
    if path.is_dir():
        videos = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if not videos:
            raise InputError(f"{path}: no videos ({', '.join(VIDEO_SUFFIXES)}) in this folder; pass a folder of videos with same-named mask PNGs, or a jobs file")
        for k, video in enumerate(videos, 1):
            rows.append((k, {"input": video.name, "mask": video.with_suffix(".png").name}))
    elif path.suffix.lower() == ".csv":
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "input" not in reader.fieldnames or "mask" not in reader.fieldnames:
                raise InputError(f"{path}: the first line must be a header with at least input,mask (e.g. input,mask,out)")
            for k, row in enumerate(reader, 2):  # line numbers: the header is line 1
                rows.append((k, {key: value for key, value in row.items() if key is not None}))
    elif path.suffix.lower() in (".jsonl", ".json"):
        with path.open() as handle:
            for k, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                    if not isinstance(item, dict):
                        raise ValueError("not an object")
                except ValueError as error:
                    problems.append(f"{path}:{k}: not a JSON object ({error}); write one {{\"input\": ..., \"mask\": ...}} per line")
                    continue
                rows.append((k, item))
    else:
        raise InputError(f"{path}: unknown jobs file type; use .csv, .jsonl or a folder of videos")
    jobs: list[Job] = []
    for k, item in rows:
        where = f"{path.name}:{k}"
        unknown = sorted(set(item) - {"input", "mask", "out", *OPTIONS})
        if unknown:
            problems.append(f"{where}: unknown column(s) {', '.join(unknown)}; known: input, mask, out, {', '.join(OPTIONS)}")
            continue
        try:
            auto = bool(parse_value("auto", item.get("auto")))
        except ValueError as error:
            problems.append(f"{where}: {error}")
            continue
        if not item.get("input") or not (item.get("mask") or auto):
            problems.append(f"{where}: needs an input and at least one mask (or auto=true)")
            continue
        if auto and item.get("mask"):
            problems.append(f"{where}: auto=true finds the objects itself: leave the mask empty, or drop auto")
            continue
        raw_masks = item.get("mask") or []
        masks = raw_masks if isinstance(raw_masks, list) else [m for m in str(raw_masks).split(";") if m.strip()]
        masks = [_resolve_mask(base, str(m).strip()) for m in masks]
        source = Path(str(item["input"]))
        source = source if source.is_absolute() else base / source
        out = Path(str(item["out"])) if item.get("out") else Path(out_root) / source.stem
        if item.get("out") and not out.is_absolute():
            out = base / out
        try:
            options = {name: parse_value(name, item.get(name)) for name in OPTIONS if parse_value(name, item.get(name)) is not None}
        except ValueError as error:
            problems.append(f"{where}: {error}")
            continue
        jobs.append(Job(k, str(source), masks, str(out), options))
    return jobs, problems


def _resolve_mask(base: Path, spec: str) -> str:
    """``path.png`` or ``N:path.png`` relative to ``base``."""
    frame, sep, rest = spec.partition(":")
    if sep and frame.isdigit():
        p = Path(rest)
        return f"{frame}:{p if p.is_absolute() else base / p}"
    p = Path(spec)
    return str(p if p.is_absolute() else base / p)


def auto_config(job: Job):
    """The --auto settings of an ``auto`` job (``objects``: as ``--objects``; 1 when not given)."""
    from vossegcli.run.auto import AutoConfig

    return AutoConfig(objects=job.options.get("objects", 1))


def job_config(job: Job):
    """The engine configuration of a job's options (as ``vosseg segment`` builds it)."""
    from vossegcli.run.options import engine_config

    return engine_config({k: v for k, v in job.options.items() if k not in ("auto", "objects")})


def check_jobs(jobs: list[Job]) -> tuple[list[Job], list[tuple[Job, str]]]:
    """(good jobs, [(bad job, problem)]): every input opened and every mask read against it, the
    engine options checked, and no two jobs writing to one folder."""
    from vossegcli.run.inputs import load_inputs

    good, bad = [], []
    seen: dict[str, Job] = {}
    for job in jobs:
        try:
            job_config(job)
            if job.options.get("auto"):
                from vossegcli.io.video import open_frames

                auto_config(job)
                open_frames(Path(job.input)).close()
            else:
                reader, _ = load_inputs(Path(job.input), job.masks)
                reader.close()
            key = os.path.realpath(job.out)
            if key in seen:
                raise VossegError(f"{job.out}: also the output of {seen[key].label}; give each job its own out")
            seen[key] = job
        except VossegError as error:
            bad.append((job, str(error)))
            continue
        good.append(job)
    return good, bad


# ----------------------------------------------------------------------------------------- running
_ENGINES: dict[str, object] = {}  #: per process: engine configuration (JSON) → loaded Segmenter


def _engine(config, device: str):
    from vossegcli.engine.segmenter import Segmenter

    key = json.dumps(config.as_dict(), sort_keys=True) + device
    if key not in _ENGINES:
        _ENGINES[key] = Segmenter(config, device=device)
    return _ENGINES[key]


def run_job(job: Job, device: str = "auto", progress: Callable[[int, int | None], None] | None = None) -> JobResult:
    """Segment one job with this process's engine for its configuration; never raises a VossegError
    (it becomes a failed result). A re-run skips a complete folder and resumes an interrupted one."""
    from vossegcli.run.diagnostics import summary_lines
    from vossegcli.io.run_folder import RunFolder
    from vossegcli.run.segment import segment

    start = time.perf_counter()
    out = Path(job.out)
    try:
        config = job_config(job)
        max_size, bidirectional = job.options.get("max_size", 960), job.options.get("bidirectional", False)
        if job.options.get("auto"):
            from vossegcli.run.auto import segment_auto

            run = segment_auto(Path(job.input), out, auto_config(job), device=device, config=config,
                               resume=RunFolder(out).auto_file.is_file(),
                               progress=progress, max_size=max_size, bidirectional=bidirectional)
        else:
            resume = RunFolder(out).holds_run()
            segmenter = _engine(config, device)
            run = segment(
                Path(job.input), job.masks, out, config=config, resume=resume, segmenter=segmenter, progress=progress,
                max_size=max_size, bidirectional=bidirectional,
            )
    except VossegError as error:
        return JobResult(job.row, job.input, job.out, "failed", error=str(error), exit_status=2,
                         wall_seconds=round(time.perf_counter() - start, 3))
    status = "skipped" if run.already_complete else "done"
    return JobResult(
        job.row, job.input, job.out, status, frames=run.frames_processed if not run.already_complete else run.frames,
        fps=None if run.already_complete else round(run.fps, 3), wall_seconds=round(time.perf_counter() - start, 3),
        diagnostics=summary_lines(run.diagnostics) if run.diagnostics else [],
    )


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_in_worker(job: Job, device: str, queue=None) -> JobResult:
    """A job in a worker process; per-frame progress goes to ``queue`` as (row, done, total). An
    interrupt ends the process once the job has stopped (its state saved), so the batch can end."""
    tick = (lambda done, total: queue.put((job.row, done, total))) if queue is not None else None
    try:
        return run_job(job, device, tick)
    except KeyboardInterrupt:  # (RunInterrupted included: the state file is written by then)
        os._exit(130)


def _stop_workers(pool: ProcessPoolExecutor, pending) -> None:
    """After Ctrl-C / SIGTERM in the parent: start no further video, and stop the running ones as an
    interrupted `vosseg segment` (SIGINT: the frame in progress finishes, the state is saved, the
    worker exits); a worker still alive after :data:`STOP_GRACE` seconds is terminated."""
    for future in pending:
        future.cancel()
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        try:
            os.kill(process.pid, signal.SIGINT)
        except OSError:
            pass
    deadline = time.monotonic() + STOP_GRACE
    for process in processes:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


#: Seconds a worker gets to save its state after an interrupt.
STOP_GRACE = 60.0


@dataclass
class BatchReport:
    jobs: list[JobResult]
    workers: int
    wall_seconds: float

    @property
    def failed(self) -> int:
        return sum(r.status == "failed" for r in self.jobs)

    def to_dict(self) -> dict:
        frames = sum(r.frames for r in self.jobs if r.status == "done")
        return {
            "workers": self.workers,
            "wall_seconds": round(self.wall_seconds, 3),
            "frames_segmented": frames,
            "throughput_fps": round(frames / self.wall_seconds, 3) if self.wall_seconds > 0 else None,
            "done": sum(r.status == "done" for r in self.jobs),
            "skipped": sum(r.status == "skipped" for r in self.jobs),
            "failed": self.failed,
            "jobs": [asdict(r) for r in sorted(self.jobs, key=lambda r: r.row)],
        }


def run_batch(
    jobs: list[Job],
    bad: list[tuple[Job, str]] = (),
    *,
    workers: int = 1,
    device: str = "auto",
    threads: int = 0,
    on_result: Callable[[JobResult], None] | None = None,
    progress: Callable[[Job, int, int | None], None] | None = None,
) -> BatchReport:
    """Run checked ``jobs`` (``bad`` ones are recorded as failed, not run) on ``workers`` processes
    (1: in this process), each with ``threads`` torch threads (0: cores // workers). ``progress(job, done, total)`` is called as each video's frames complete
    (from worker processes through a queue); ``on_result`` as each job ends."""
    start = time.perf_counter()
    results = [JobResult(job.row, job.input, job.out, "failed", error=problem, exit_status=2) for job, problem in bad]
    for r in results:
        if on_result:
            on_result(r)
    if workers <= 1:
        if threads:
            _init_worker(threads)
        for job in jobs:
            tick = (lambda done, total, job=job: progress(job, done, total)) if progress else None
            result = run_job(job, device, tick)
            results.append(result)
            if on_result:
                on_result(result)
        return BatchReport(results, 1, time.perf_counter() - start)
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    context = get_context("spawn")
    manager = context.Manager() if progress else None
    queue = manager.Queue() if manager is not None else None
    by_row = {job.row: job for job in jobs}

    def drain() -> None:
        while queue is not None and not queue.empty():
            row, done, total = queue.get_nowait()
            progress(by_row[row], done, total)

    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(threads,))
    pending = {pool.submit(_run_in_worker, job, device, queue): job for job in jobs}
    try:
        while pending:
            finished, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            drain()
            for future in finished:
                job = pending.pop(future)
                try:
                    result = future.result()
                except Exception as error:  # a worker that died (out of memory, killed)
                    result = JobResult(job.row, job.input, job.out, "failed", error=f"{job.label}: worker failed ({error})",
                                       exit_status=1)
                results.append(result)
                if on_result:
                    on_result(result)
    except BaseException:
        # Ctrl-C / SIGTERM (or a failure here): a re-run resumes the stopped videos exactly.
        _stop_workers(pool, pending)
        raise
    else:
        pool.shutdown(wait=True)
    finally:
        if manager is not None:
            manager.shutdown()
    return BatchReport(results, workers, time.perf_counter() - start)


__all__ = ["BatchReport", "Job", "JobResult", "check_jobs", "read_jobs", "run_batch", "run_job"]
