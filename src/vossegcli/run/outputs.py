"""The output folder: checked before a run, written during it, cleaned on the way out.

* :func:`prepare_output_dir` refuses an unusable ``--out`` before anything is written;
* :class:`MaskWriter` encodes and writes the mask PNGs in a background thread, in order and
  atomically (temporary name, then rename), and knows how many are complete;
* :class:`TimestampLog` writes ``timestamps.csv``: each mask's frame and presentation time;
* :func:`write_error_message` / :func:`describe_written`: the one-line messages about writing.
"""

from __future__ import annotations

import errno
import os
import queue
import signal
import threading
import time
from pathlib import Path

import numpy as np

from vossegcli.errors import DeviceError, Interrupted, OutputError, RunInterrupted
from vossegcli.files import atomic_write
from vossegcli.io.palette import write_label_png
from vossegcli.io.video import FrameReader
from vossegcli.run.inputs import resize_labels
from vossegcli.io.run_folder import RunFolder

#: Label maps waiting for the PNG writer at most (each one frame at the engine's size).
WRITE_QUEUE = 4
#: Seconds between checks while waiting on the writer thread (so signal handlers run promptly).
_POLL = 0.1


def prepare_output_dir(out_dir: Path, force: bool) -> None:
    """Check that ``out_dir`` is usable (missing or empty, or ``force``) without creating it."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise OutputError(f"{out_dir}: exists and is not a folder; choose another out_dir")
        if any(out_dir.iterdir()) and not force:
            raise OutputError(
                f"{out_dir}: folder is not empty; choose an empty out_dir, add force=True to overwrite, "
                "or resume=True to continue an interrupted run"
            )
        if not _writable(out_dir):
            raise OutputError(f"{out_dir}: folder is not writable; choose another out_dir or fix its permissions")
    else:
        parent = out_dir.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir() or not _writable(parent):
            raise OutputError(f"{out_dir}: cannot create the output folder here ({parent} is not writable); choose another out_dir")


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK)


def remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def write_error_message(path: Path, exc: OSError) -> str:
    """Why ``path`` could not be written, and what to do, in one line."""
    if exc.errno == errno.ENOSPC or exc.errno == getattr(errno, "EDQUOT", -1):
        return f"{path}: cannot write, the disk is full ({exc.strerror}); free some space"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{path}: cannot write, no permission ({exc.strerror}); fix the folder's permissions or choose another out_dir"
    return f"{path}: cannot write ({exc.strerror or exc}); check the disk and the folder"


def describe_written(out_dir: Path, reader: FrameReader, done: int) -> str:
    """Which masks are in ``out_dir`` when frames 0 .. done - 1 are complete."""
    if done <= 0:
        return f"no masks were written to {out_dir}"
    if done == 1:
        return f"the mask for frame 0 is in {out_dir}"
    return f"masks for frames 0-{done - 1} ({reader.frame_name(0)}.png to {reader.frame_name(done - 1)}.png) are in {out_dir}"


def out_of_memory(error: BaseException, device, done: int, size: tuple[int, int], written: str, hint: str,
                  objects: int | None = None) -> DeviceError:
    """The one-line error of a run that ran out of (GPU) memory at frame ``done`` while working at
    ``size``: what to lower, how to continue (``hint``) and which masks are there (``written``)."""
    import torch

    gpu = device.type == "cuda" and isinstance(error, torch.cuda.OutOfMemoryError)
    what = f"{size[0]}x{size[1]}" + (f", {objects} object(s)" if objects is not None else "") + f" on {device}"
    return DeviceError(
        f"out of {'GPU ' if gpu else ''}memory at frame {done} ({what}); lower max_size (e.g. max_size="
        f"{max(64, max(size) // 2)})" + (" or use device='cpu'" if gpu else "") + f" and continue with {hint}"
        + (", or start over with preset='fast' or fewer objects" if objects is not None else "") + f"; {written}"
    )


def interrupted(stop: BaseException, done: int, out_dir: Path, written: str, hint: str,
                total: int | None = None) -> RunInterrupted:
    """The :class:`RunInterrupted` of a run stopped by ``stop`` (a signal or Ctrl-C) after ``done`` frames."""
    signum = stop.signum if isinstance(stop, Interrupted) else signal.SIGINT
    of = f" of {total}" if total else ""
    return RunInterrupted(int(signum), done, out_dir, f"interrupted by {signal.Signals(signum).name} after {done}{of} "
                          f"frames: {written}; continue with {hint}")


class MaskWriteError(OutputError):
    """A mask PNG could not be written; the message names it and says why (``error``: the OSError)."""

    def __init__(self, path: Path, error: OSError):
        super().__init__(write_error_message(path, error))
        self.path = Path(path)
        self.error = error


class MaskWriter:
    """Writes label maps as palette PNGs in one background thread, in the order submitted.

    :meth:`submit` hands over one (H, W) uint8 id map (copied); the thread scales it to ``size``
    = (w, h) with nearest neighbour, encodes it and writes it atomically with
    :func:`~vossegcli.io.palette.write_label_png`. At most ``maxsize`` maps wait: ``submit``
    blocks while the disk is behind. :attr:`completed` counts the PNGs written completely - the
    first ``completed`` submitted, always in order. The first write that fails ends the writing
    (nothing submitted after it is written); it is raised by the next :meth:`submit` or by
    :meth:`finish` - as :class:`MaskWriteError`, an OutputError naming the PNG, for an OSError.
    :meth:`close` (also on leaving a ``with`` block, after an error or an interruption) writes
    what is still waiting, unless a write failed, and ends the thread.
    """

    def __init__(self, palette: list[int] | None = None, size: tuple[int, int] | None = None, maxsize: int = WRITE_QUEUE):
        self._palette = palette
        self._size = size
        self._jobs: queue.Queue = queue.Queue(maxsize)
        self._completed = 0
        self._submitted = 0
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="vosseg-png-writer", daemon=True)
        self._thread.start()

    @property
    def completed(self) -> int:
        """PNGs written completely so far (the first ``completed`` submitted)."""
        return self._completed

    def submit(self, path: Path, labels: np.ndarray) -> None:
        self._raise_error()
        if self._closed:
            raise RuntimeError("MaskWriter is closed")
        self._put((Path(path), np.array(labels, dtype=np.uint8)))  # a copy: the caller may reuse its array
        self._submitted += 1

    def drain(self) -> None:
        """Wait until every PNG submitted so far is written (the thread keeps running); raise a failure."""
        while self._completed < self._submitted and self._error is None and self._thread.is_alive():
            time.sleep(0.002)
        self._raise_error()

    def finish(self) -> None:
        """Wait until every submitted PNG is written; raise the first failure."""
        self.close()
        self._raise_error()

    def close(self) -> None:
        """Write what is waiting (unless a write failed) and end the thread; safe to call again."""
        if not self._closed:
            self._closed = True
            self._put(None)
        while self._thread.is_alive():
            self._thread.join(_POLL)

    def __enter__(self) -> MaskWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _put(self, job) -> None:
        while True:
            try:
                self._jobs.put(job, timeout=_POLL)
                return
            except queue.Full:
                pass

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if self._error is not None:
                continue  # after a failure nothing more is written
            path, labels = job
            try:
                if self._size is not None:
                    labels = resize_labels(labels, self._size)
                write_label_png(path, labels, self._palette)
            except OSError as error:
                self._error = MaskWriteError(path, error)
                self._error.__cause__ = error
            except BaseException as error:  # noqa: BLE001 - raised in the submitting thread
                self._error = error
            else:
                self._completed += 1


#: Beside the masks of a video: one line per mask, "frame,mask,time_s" (presentation time in seconds).


class TimestampLog:
    """``<out>/timestamps.csv``: the presentation time of every mask written, one line each, in
    order, each written as its mask completes (so an interrupted run's file matches its masks).

    ``keep``: the first ``keep`` lines of an existing file stay (a resumed run); the rest is
    rewritten.
    """

    HEADER = "frame,mask,time_s\n"

    def __init__(self, out_dir: Path, keep: int = 0):
        self.path = RunFolder(out_dir).timestamps_file
        kept: list[str] = []
        if keep > 0 and self.path.is_file():
            with self.path.open() as handle:
                next(handle, None)
                for line in handle:
                    if len(kept) == keep:
                        break
                    kept.append(line)
        atomic_write(self.path, lambda handle: handle.write((self.HEADER + "".join(kept)).encode()))
        #: Lines kept from the earlier run (fewer than ``keep`` if it was killed between a mask and its line).
        self.kept = len(kept)
        self._handle = self.path.open("a", buffering=1)  # line-buffered: each line on disk with its mask

    def add(self, index: int, name: str, time: float | None) -> None:
        self._handle.write(f"{index},{name}.png,{'' if time is None else f'{time:.6f}'}\n")

    def close(self) -> None:
        self._handle.close()
