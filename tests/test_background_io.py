"""The background threads of a run: frames decoded ahead (io/prefetch.py) and PNGs written behind
(run/outputs.py MaskWriter) - order, errors at the right place, clean stops."""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import vossegcli.run.outputs as outputs
from vossegcli.errors import OutputError
from vossegcli.io.palette import read_label_png
from vossegcli.io.prefetch import prefetch
from vossegcli.io.video import TruncatedVideoError


class Source:
    """A generator of 0, 1, 2, ... that records how far it was read and whether it was closed."""

    def __init__(self, n: int | None = None, fail_at: int | None = None, delay: float = 0.0):
        self.n, self.fail_at, self.delay = n, fail_at, delay
        self.produced = 0
        self.closed = False

    def __iter__(self):
        try:
            i = 0
            while self.n is None or i < self.n:
                if i == self.fail_at:
                    raise TruncatedVideoError(f"clip.mp4: unreadable from frame {i} on", frames_read=i, expected=10)
                if self.delay:
                    time.sleep(self.delay)
                self.produced += 1
                yield i
                i += 1
        finally:
            self.closed = True


def test_prefetch_yields_everything_in_order():
    assert list(prefetch(range(100), maxsize=3)) == list(range(100))
    assert list(prefetch([])) == []


def test_prefetch_raises_the_producers_exception_after_the_items_before_it():
    source = Source(fail_at=5)
    got = []
    frames = prefetch(source, maxsize=2)
    with pytest.raises(TruncatedVideoError, match="unreadable from frame 5") as error:
        for item in frames:
            got.append(item)
    assert got == [0, 1, 2, 3, 4]
    assert error.value.frames_read == 5
    assert not frames.thread.is_alive() and source.closed
    with pytest.raises(StopIteration):  # and nothing after it
        next(frames)


def test_prefetch_reads_at_most_maxsize_ahead():
    source = Source()  # endless
    frames = prefetch(source, maxsize=3)
    assert next(frames) == 0
    time.sleep(0.3)
    assert source.produced <= 1 + 3 + 1  # the one consumed, the queue, the one waiting to be put
    frames.close()


def test_prefetch_early_stop_ends_the_thread_and_closes_the_source():
    source = Source()  # endless: the thread would run forever if not stopped
    with prefetch(source, maxsize=2) as frames:
        for item in frames:
            if item == 3:
                break
    assert not frames.thread.is_alive() and source.closed
    with pytest.raises(StopIteration):
        next(frames)


def test_prefetch_dropped_without_close_ends_the_thread():
    source = Source()
    frames = prefetch(source, maxsize=2)
    next(frames)
    thread = frames.thread
    del frames
    thread.join(5)
    assert not thread.is_alive() and source.closed


def test_prefetch_consumer_keyboard_interrupt_ends_the_thread():
    source = Source()
    with pytest.raises(KeyboardInterrupt):
        with prefetch(source, maxsize=2) as frames:
            for item in frames:
                if item == 2:
                    raise KeyboardInterrupt
    assert not frames.thread.is_alive() and source.closed


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_prefetch_sigint_while_waiting_for_the_producer_ends_the_thread():
    source = Source(delay=0.5)  # slow: the consumer waits in the queue when the signal comes
    # Python's own SIGINT handler, whatever this process inherited (a job started in the background
    # by a shell has SIGINT ignored, and the source never ends)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            with prefetch(source, maxsize=2) as frames:
                for _ in frames:
                    pass
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert not frames.thread.is_alive() and source.closed


def labels(i: int, size=(8, 6)) -> np.ndarray:
    return np.full((size[1], size[0]), i % 3, np.uint8)


def test_mask_writer_writes_in_order_and_scales_back(tmp_path):
    with outputs.MaskWriter(size=(16, 12)) as writer:
        for i in range(7):
            writer.submit(tmp_path / f"{i:05d}.png", labels(i))
        writer.finish()
    assert writer.completed == 7
    for i in range(7):
        png = read_label_png(tmp_path / f"{i:05d}.png")
        assert png.shape == (12, 16) and set(np.unique(png).tolist()) == {i % 3}
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "the disk is full"), (errno.EACCES, "no permission")])
def test_mask_writer_failure_is_an_output_error_naming_the_png(tmp_path, monkeypatch, code, words):
    real_write = outputs.write_label_png

    def write(path, labels, palette=None):
        if Path(path).name == "00003.png":
            raise OSError(code, os.strerror(code))
        real_write(path, labels, palette)

    monkeypatch.setattr(outputs, "write_label_png", write)
    writer = outputs.MaskWriter()
    with pytest.raises(OutputError) as error:
        with writer:
            for i in range(10):
                writer.submit(tmp_path / f"{i:05d}.png", labels(i))
            writer.finish()
    assert isinstance(error.value, outputs.MaskWriteError)
    assert str(error.value).startswith(f"{tmp_path / '00003.png'}: cannot write, {words}")
    assert error.value.error.errno == code
    assert writer.completed == 3  # frames 0-2; nothing after the failure is written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert not writer._thread.is_alive()


def test_mask_writer_close_writes_what_is_queued(tmp_path):
    """After an interruption the PNGs already handed over are completed, so `completed` is exact."""
    writer = outputs.MaskWriter(maxsize=4)
    for i in range(5):
        writer.submit(tmp_path / f"{i:05d}.png", labels(i))
    writer.close()
    assert writer.completed == 5 and len(list(tmp_path.glob("*.png"))) == 5
    assert not writer._thread.is_alive()
    with pytest.raises(RuntimeError):
        writer.submit(tmp_path / "late.png", labels(0))
