"""Read ahead in a background thread: ``prefetch(iterable)`` iterates ``iterable`` in a thread,
at most ``maxsize`` items ahead of the consumer, so decoding (and whatever else the iterable does,
e.g. scaling) overlaps with the consumer's work.

* The items arrive in order. An exception raised by the iterable (e.g. a
  :class:`~vossegcli.io.video.TruncatedVideoError` after the last frame that decodes) is raised in
  the consumer at the same position: after every item yielded before it.
* :meth:`Prefetch.close` (also on leaving a ``with`` block, or when the consumer drops the
  iterator) stops the thread and closes the iterable (a generator's ``finally`` runs, e.g. the
  video decoder is stopped), whether the consumer stopped early, failed or was interrupted by
  KeyboardInterrupt / a signal. The consumer's waits are short polls, so a signal handler runs
  promptly in the main thread while it waits.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")

#: Seconds between checks of the other side while waiting (not a latency: items pass at once).
_POLL = 0.1
_ITEM, _END, _ERROR = "item", "end", "error"


class Prefetch(Generic[T]):
    """An iterator over ``iterable`` filled by a background thread; see the module docstring."""

    def __init__(self, iterable: Iterable[T], maxsize: int = 4, name: str = "vosseg-prefetch"):
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._queue: queue.Queue = queue.Queue(maxsize)
        self._stop = threading.Event()
        self._finished = False
        #: The producer thread (ends after the last item, after an error, or once closed).
        #: (It holds no reference to this object, so dropping the iterator stops it, see __del__.)
        self.thread = threading.Thread(
            target=_produce, args=(iterable, self._queue, self._stop), name=name, daemon=True
        )
        self.thread.start()

    def __iter__(self) -> Prefetch[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        while True:
            try:
                kind, value = self._queue.get(timeout=_POLL)
                break
            except queue.Empty:
                if not self.thread.is_alive() and self._queue.empty():  # stopped by close()
                    self._finished = True
                    raise StopIteration from None
        if kind == _ITEM:
            return value
        self._finished = True
        self.thread.join()
        if kind == _ERROR:
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop the thread (it closes the iterable) and wait for it; safe to call more than once."""
        self._finished = True
        self._stop.set()
        while self.thread.is_alive():
            self._drain()
            self.thread.join(_POLL)
        self._drain()

    def _drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # dropped without close(): let the thread end on its own
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()


def _produce(iterable: Iterable, out: queue.Queue, stop: threading.Event) -> None:
    """The producer thread: every item, then an end mark or the error, unless stopped."""
    iterator = None
    try:
        iterator = iter(iterable)
        for item in iterator:
            if not _put(out, stop, (_ITEM, item)):
                return  # closed
        _put(out, stop, (_END, None))
    except BaseException as error:  # handed to the consumer, raised there
        _put(out, stop, (_ERROR, error))
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                pass


def _put(out: queue.Queue, stop: threading.Event, entry: tuple) -> bool:
    while not stop.is_set():
        try:
            out.put(entry, timeout=_POLL)
            return True
        except queue.Full:
            pass
    return False


def prefetch(iterable: Iterable[T], maxsize: int = 4) -> Prefetch[T]:
    """Iterate ``iterable`` in a background thread, at most ``maxsize`` items ahead (see :class:`Prefetch`)."""
    return Prefetch(iterable, maxsize)
