"""From files to files: open a video, read the masks, run the engine, write palette PNGs.

:func:`segment` is the library API behind ``vosseg segment``; the CLI only parses options and
shows progress. Everything that can be checked is checked before the output folder is touched, so
a bad input leaves nothing behind. During a run:

* frames are decoded and scaled to at most ``max_size`` pixels on the longest side in a
  background thread (:func:`~vossegcli.io.prefetch.prefetch`), a few frames ahead of the engine;
* the label maps are scaled back (nearest) and written as PNGs, atomically (temporary name, then
  rename), by a background writer (:class:`~vossegcli.run.outputs.MaskWriter`), a few frames
  behind; progress, the report and every "how far it got" message count only complete PNGs, and
  the writer is drained before the run counts as complete;
* stray temporary files are removed on the way out - also after Ctrl-C / SIGTERM - and before a
  resume;
* ``<out>/.vosseg-run.json`` records what the run is (input, masks, engine settings) so that
  ``resume=True`` can continue an interrupted run from its last complete frame, and refuses to
  mix the output of two different runs;
* a problem part-way (damaged video, full disk, out of memory) is raised as a one-line
  :class:`VossegError` that also says how far the run got; an interruption is raised as
  :class:`RunInterrupted` (not an ``Exception``) with the same information.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections import deque
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from vossegcli.engine.segmenter import Segmenter
from vossegcli.engine.config import SegmenterConfig
from vossegcli.engine.device import configure_process, resolve_device
from vossegcli.errors import InputError, Interrupted, MaskError, OutputError, RunInterrupted, VossegError
from vossegcli.io.masks import MaskSet
from vossegcli.io.video import FrameReader, TruncatedVideoError
from vossegcli.run.inputs import FrameSource, load_inputs, scale_start_masks
from vossegcli.run.options import DEFAULT_MAX_SIZE
from vossegcli.run.outputs import (
    MaskWriteError, MaskWriter, TimestampLog, describe_written, interrupted, out_of_memory, prepare_output_dir,
    remove_if_empty, write_error_message,
)
from vossegcli.run.bidirectional import backward_pass
from vossegcli.run.diagnostics import DiagnosticsLog, summarize
from vossegcli.run.report import SegmentationRun, environment_info, peak_memory_mb, proc_memory_mb, weights_info
from vossegcli.run.resume import (
    STATE_EVERY, ResumePlan, load_saved_state, new_run_record, plan_resume, resume_hint, run_identity, state_extra,
)
from vossegcli.run.signals import deferred_signals
from vossegcli.io.masks import load_masks
from vossegcli.io.run_folder import STATE_FILE, TIMESTAMPS_FILE, RunFolder
from vossegcli.run.corrections import Corrections, discard_from, keep_keyframe, latest_keyframe, restart_for_correction
from vossegcli.run.anchors import AnchorBlend

ProgressFn = Callable[[int, "int | None"], None]

#: Frames at which the report's memory trace samples this process's RSS (and every 500th).
_TRACE_FRAMES = (1, 10, 100, 250)


def segment(
    input_path: Path,
    mask_args: Sequence[str],
    out_dir: Path,
    *,
    device: str = "auto",
    config: SegmenterConfig | None = None,
    force: bool = False,
    progress: ProgressFn | None = None,
    reader: FrameReader | None = None,
    masks: MaskSet | None = None,
    max_size: int | None = DEFAULT_MAX_SIZE,
    resume: bool = False,
    snap_mask: bool = False,
    command: str | None = None,
    notify: Callable[[str], None] | None = None,
    deterministic: bool = False,
    state_every: int = STATE_EVERY,
    bidirectional: bool = False,
    segmenter: Segmenter | None = None,
    discover: Callable[[int, np.ndarray, np.ndarray | None, list[int]], np.ndarray | None] | None = None,
    correct: Sequence[str] = (),
    remove: Sequence[str] = (),
) -> SegmentationRun:
    """Segment ``input_path`` (video file or frame folder) from ``mask_args``; write PNGs to ``out_dir``.

    ``reader``/``masks`` may be passed when the caller already loaded them (the CLI does, to
    print what it understood before running; load them with the same ``snap``).
    ``max_size``: longest side the engine works at (frames scaled down, masks written at the input
    size); ``resume``: continue the run already in ``out_dir`` from its last complete frame;
    ``command``: the shell command that reproduces this run, for resume hints and the run record;
    ``notify``: called with one-line notes as they arise (resume point, lost objects);
    ``deterministic``: deterministic algorithms only on CUDA; ``state_every``: save the engine state
    every N frames (0: only when interrupted) so that ``resume`` continues exactly;
    ``bidirectional``: after the forward pass, propagate backward from where lost objects were
    re-found (:mod:`vossegcli.run.bidirectional`) and rewrite the frames that changes;
    ``segmenter``: an engine already loaded with ``config`` (``vosseg batch`` reuses one per worker);
    ``discover(index, image, previous labels, ids in use)``: called before each frame (engine size)
    and may return an id map of objects new on that frame (ids not used yet; ``--auto --objects``);
    ``correct``: ``N:fix.png`` masks that correct the run already in ``out_dir`` from frame N on;
    ``remove``: ``N:ID[,ID]``, objects removed from frame N on (a correction too when ``out_dir``
    holds the run; :mod:`vossegcli.run.corrections`). Raises :class:`VossegError` (one line, with how far the run got) or :class:`RunInterrupted`.
    """
    if reader is None or masks is None:
        reader, masks = load_inputs(Path(input_path), mask_args, snap=snap_mask)
    out_dir = Path(out_dir)
    folder = RunFolder(out_dir)
    config = config or SegmenterConfig()
    if max_size is not None and max_size < 0:
        raise VossegError(f"max_size={max_size}: must be 0 (native size) or a positive number of pixels")
    if resume and force:
        raise VossegError("resume=True and force=True: choose one (resume=True continues the run in out_dir, force=True starts over)")
    info = reader.info
    identity = run_identity(Path(input_path), reader, masks, config, snap_mask)
    hint = resume_hint(command)
    new_fixes, fixes, editing = Corrections.of_run(out_dir, correct, remove, resume=resume, force=force)
    if fixes.masks:  # the run's masks and its corrections (anchors), checked together before anything is written
        masks = load_masks(list(mask_args) + fixes.mask_args(), (info.height, info.width), info.frame_names,
                           info.num_frames if info.kind == "folder" else None, snap_mask)
    fixes.check(masks, info.num_frames, exact=info.kind == "folder")
    correcting = False
    if editing:
        plan = plan_resume(out_dir, identity, reader, masks, correcting=True)
        if plan.complete:  # its frames are known exactly now
            new_fixes.check(masks, plan.last + 1)
        correcting = plan.complete or min(new_fixes.frames) <= plan.last + 1
        if correcting:
            plan = ResumePlan(plan.last, {}, [])  # (where it restarts is decided with the keyframes below)
        else:
            resume = True  # the correction lies past the frames written: continue the run with it
    elif resume:
        plan = plan_resume(out_dir, identity, reader, masks)
    else:
        prepare_output_dir(out_dir, force)
        plan = ResumePlan(-1, dict(masks.labels), [])
        for kept in (folder.keyframes_dir, folder.corrections_dir):  # (a forced run over an older one: not its keyframes)
            shutil.rmtree(kept, ignore_errors=True)
    source = FrameSource(reader, max_size)
    work_size = source.size
    objects = [{"id": o.id, "start_frame": o.start_frame, "area_px": o.area, "mask": str(o.source),
                "anchor_frames": list(o.anchor_frames)} for o in masks.objects]
    if plan.complete:
        reader.close()
        return SegmentationRun(
            input=str(input_path), output=str(out_dir), objects=objects, frames=plan.last + 1, width=info.width,
            height=info.height, device="", dtype="float32", config=config.as_dict(), stage_seconds={},
            engine_seconds=0.0, fps=float("nan"), memory={}, weights={}, internal_width=work_size[0],
            internal_height=work_size[1], max_size=max_size, resumed_from_frame=plan.last, already_complete=True,
            notes=[f"{out_dir}: already complete ({plan.last + 1} frames); nothing to resume"],
        )
    if segmenter is not None:
        if segmenter.config != config:
            raise ValueError("the given segmenter was made with other engine settings than config")
        torch_device = segmenter.device
    else:
        torch_device = resolve_device(device)
    configure_process(torch_device, deterministic)
    if segmenter is None:
        segmenter = Segmenter(config, device=torch_device)
    if torch_device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(torch_device)
    written_up_to = plan.last  # (frames 0..written_up_to are in out_dir now)
    if correcting:
        state, plan = restart_for_correction(segmenter, out_dir, identity, work_size, masks, min(new_fixes.frames),
                                             plan.last)
        why = None
    else:
        state, why = (load_saved_state(segmenter, out_dir, identity, work_size, plan.last) if resume and plan.last >= 0
                      else (None, None))
        if resume and plan.last >= 0 and state is None:  # (a kill right after a correction restarted: no state file yet)
            state = latest_keyframe(segmenter, out_dir, identity, work_size, plan.last + 1, plan.last)
    if state is not None:
        # Exact resume: the engine continues from its saved state, as if never stopped.
        start = first = state.frame_index
        later = {f: lab for f, lab in masks.labels.items() if f >= start}
        initial = scale_start_masks(masks, later, work_size, max_size)
        plan = ResumePlan(plan.last, later, plan.notes if correcting else [
            f"resuming exactly after frame {start - 1} ({reader.frame_name(start - 1)}.png) from the saved engine "
            f"state: the result is the same as an uninterrupted run's"])
    else:
        start = max(plan.last, 0)
        first = plan.last + 1  # frames 0 .. first-1 are already complete in out_dir
        initial = {start + k: v for k, v in scale_start_masks(masks, plan.initial, work_size, max_size).items()}
        state = segmenter.new_state()
        state.frame_index = start
        if resume and plan.last >= 0:
            plan.notes.append(
                f"no usable engine state ({why or f'{STATE_FILE} is missing'}): objects re-seeded from their masks in "
                f"frame {plan.last}, so the result differs from an uninterrupted run's"
            )
    state.extra = state_extra(identity, work_size)
    times_before = state.times.as_dict()  # a resumed state carries the earlier part's times
    if notify:
        for note in plan.notes:
            notify(note)

    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot create the output folder ({exc.strerror or exc}); choose another out_dir") from exc
    record = new_run_record(
        identity, command=command, max_size=max_size, internal_resolution=work_size, device=str(torch_device),
        resumed_from_frame=plan.last if plan.last >= 0 else None,
    )
    try:
        folder.clean_temporary_files()
        with deferred_signals():  # the record lists the corrections before what they rewrite is removed
            if fixes:
                record["corrections"] = fixes.store(out_dir)
            folder.write_record(record)
            if correcting:
                discard_from(out_dir, reader.frame_name, state.frame_index if state is not None else 0, written_up_to)
    except OSError as exc:
        if created:
            remove_if_empty(out_dir)
        raise OutputError(write_error_message(out_dir, exc)) from exc

    done = first  # frames 0 .. done-1 are complete in out_dir
    trace: list[dict] = []
    times: deque[tuple[int, str, float | None]] = deque()  # submitted masks waiting for their line
    stamped = first  # frames 0 .. stamped-1 have their line in timestamps.csv
    try:
        stamps = TimestampLog(out_dir, keep=first) if info.kind == "video" else None
    except OSError as exc:
        raise OutputError(write_error_message(folder.timestamps_file, exc)) from exc
    try:
        diagnostics = DiagnosticsLog(out_dir, keep=start)
    except OSError as exc:
        raise OutputError(write_error_message(folder.diagnostics_file, exc)) from exc
    if stamps is not None and stamps.kept < first and notify:
        notify(f"{TIMESTAMPS_FILE} has no line for frames {stamps.kept}-{first - 1} (the earlier run was killed); "
               "their times are missing there")
    if progress:
        progress(done, info.num_frames)  # the starting point (frames already there when resuming)

    def stamp_up_to(complete: int) -> None:
        """timestamps.csv lines for the masks complete up to frame ``complete`` - 1."""
        nonlocal stamped
        while stamps is not None and stamped < complete and times:
            stamps.add(*times.popleft())
            stamped += 1

    def written(completed: int) -> None:
        """Progress and memory trace for the PNGs completed since the last call."""
        nonlocal done
        while done < first + completed:
            done += 1
            stamp_up_to(done)
            if done - first in _TRACE_FRAMES or done % 500 == 0:
                mem = proc_memory_mb()
                if mem:
                    trace.append({"frame": done - 1, **mem})
            if progress:
                progress(done, info.num_frames)

    state_path = folder.state_file

    def save_state() -> bool:
        """Save the engine state when every frame it has processed has its PNG. A signal waits for
        the file to be complete (inside torch.save it would surface as the writer's RuntimeError)."""
        if state.frame_index == done and state.frame_index > 0:
            with deferred_signals():
                state.save(state_path)
            return True
        return False

    anchors = {f: [o.id for o in masks.objects if f in o.anchor_frames] for f in masks.anchor_frames}
    blender = AnchorBlend(segmenter, Path(input_path), work_size, scale_start_masks(masks, masks.labels, work_size, max_size),
                          anchors, folder.blend_dir, notify, floor=first) if anchors else None
    try:
        wall_start = time.perf_counter()
        writer = MaskWriter(masks.palette, size=(info.width, info.height))
        try:
            # Leaving the block stops the decoding thread, then writes the PNGs still queued.
            with writer, source.read_ahead(start) as frames:
                previous = None
                for frame in frames:
                    image, when = frame.image, frame.time
                    index = state.frame_index
                    given = initial.get(index)
                    if discover is not None and state.num_objects:
                        found = discover(index, image, previous, list(state.objects.ids))
                        if found is not None and found.any():
                            given = found if given is None else np.where(given > 0, given, found)
                    gone = [i for i in fixes.removals.get(index, []) if i in state.objects]
                    blended = blender is not None and blender.wants(index)
                    if blended:
                        blender.prepare(index)  # the backward pass of the segment this frame is in
                    # A signal waits for the frame to finish, so the state is never half-updated.
                    with deferred_signals():
                        if gone:  # --remove: these objects end here
                            state.remove_objects(gone)
                        labels = (segmenter.step(state, image, given, probabilities=True) if blended
                                  else segmenter.step(state, image, given))
                        if blended:
                            d = state.diagnostics
                            labels = blender.blend(index, labels, list(state.objects.ids), state.probabilities,
                                                   list(zip(d.status, d.similarity)) if d is not None else None)
                        previous = labels
                        diagnostics.add(state.diagnostics)
                        if index >= first:  # (the frame a re-seeded resume starts from is already written)
                            name = reader.frame_name(index)
                            writer.submit(out_dir / f"{name}.png", labels)
                            times.append((index, name, when))
                    written(writer.completed)
                    if state_every and state.frame_index % state_every == 0:
                        writer.drain()
                        written(writer.completed)
                        if save_state():
                            keep_keyframe(state_path, out_dir, state.frame_index)  # (for --correct)
                writer.finish()
            written(writer.completed)
            wall = time.perf_counter() - wall_start
        except (KeyboardInterrupt, Interrupted):
            writer.close()
            done = first + writer.completed
            with deferred_signals():
                try:
                    save_state()
                except OSError:
                    pass  # the periodic state (if any) stays; the resume note will say
            raise
        finally:
            done = first + writer.completed  # after a failure or an interruption: what is complete
    except MaskWriteError as error:
        raise OutputError(f"{error}; {describe_written(out_dir, reader, done)}; then continue with {hint}") from error.error
    except TruncatedVideoError as error:  # every decodable frame has been segmented and written
        raise InputError(f"{error}; {describe_written(out_dir, reader, done)}") from error
    except VossegError as error:  # e.g. a damaged image in a frame folder
        raise type(error)(f"{error}; {describe_written(out_dir, reader, done)}; then continue with {hint}") from error
    except (torch.cuda.OutOfMemoryError, MemoryError) as error:
        raise out_of_memory(error, torch_device, done, work_size, describe_written(out_dir, reader, done), hint,
                            objects=len(masks.objects)) from error
    except (KeyboardInterrupt, Interrupted) as stop:
        raise interrupted(stop, done, out_dir, describe_written(out_dir, reader, done), hint, info.num_frames) from None
    finally:
        reader.close()
        diagnostics.close()
        if blender is not None:
            blender.close()
        if stamps is not None:
            stamp_up_to(done)  # lines for what the writer completed last
            stamps.close()
        folder.clean_temporary_files()
    if notify:
        for note in reader.notes:
            notify(note)
    if done == 0:
        raise InputError(f"{input_path}: no frames could be decoded; re-encode the video (e.g. as H.264 mp4)")
    late = [(path, frame) for path, frame in masks.files if frame >= done]
    if late:
        path, frame = late[0]
        raise MaskError(
            f"{path}: mask is for frame {frame} but {input_path} has only {done} frames "
            f"(0..{done - 1}); give the mask as N:path.png with a frame inside the video"
        )
    backward = None
    if bidirectional:
        try:
            backward = backward_pass(segmenter, state, Path(input_path), out_dir, reader.frame_name, work_size, masks.palette)
        except (KeyboardInterrupt, Interrupted) as stop:
            signum = stop.signum if isinstance(stop, Interrupted) else signal.SIGINT
            raise RunInterrupted(
                int(signum), done, out_dir,
                f"interrupted by {signal.Signals(signum).name} during the backward pass: all {done} forward masks are "
                f"complete in {out_dir} (some frames may already hold backward results); start over with --force to "
                "redo the backward pass",
            ) from None
        finally:
            shutil.rmtree(folder.backward_dir, ignore_errors=True)
    try:
        folder.write_record({**record, "complete": True, "frames": done})
        state_path.unlink(missing_ok=True)  # a complete run needs no engine state
    except OSError as exc:
        raise OutputError(write_error_message(folder.record_file, exc)) from exc
    summary = summarize(folder.diagnostics_file)  # after the backward pass: its statuses count
    stage_seconds = {k: v - times_before.get(k, 0.0) for k, v in state.times.as_dict().items() if k != "frames"}
    engine = sum(stage_seconds.values())
    mem = proc_memory_mb()
    if mem:
        trace.append({"frame": done - 1, **mem})
    processed = done - first
    return SegmentationRun(
        input=str(input_path),
        output=str(out_dir),
        objects=objects,
        frames=done,
        width=info.width,
        height=info.height,
        device=str(torch_device),
        dtype=segmenter.precision,
        config=segmenter.config.as_dict(),
        stage_seconds={k: round(v, 4) for k, v in stage_seconds.items()},
        engine_seconds=engine,
        fps=processed / engine if engine > 0 else float("nan"),
        memory={**peak_memory_mb(torch_device), "sample_memory_mb": round(state.memory_bytes() / 2**20, 1)},
        weights=weights_info(segmenter),
        platform=environment_info(torch_device),
        internal_width=work_size[0],
        internal_height=work_size[1],
        max_size=max_size,
        frames_processed=processed,
        resumed_from_frame=plan.last if plan.last >= 0 else None,
        warnings=list(reader.warnings),
        notes=list(plan.notes) + list(reader.notes),
        memory_trace=trace,
        wall_seconds=wall,
        diagnostics=summary,
        bidirectional=backward,
    )
