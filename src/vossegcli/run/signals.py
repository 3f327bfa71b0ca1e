"""Holding SIGINT/SIGTERM back while the engine is in the middle of a frame.

The CLI turns SIGINT and SIGTERM into an exception raised wherever the main thread is. Inside
:meth:`~vossegcli.engine.segmenter.Segmenter.step` that would leave the video state half-updated
(a memory written but its model not yet re-optimized), and such a state must not be saved for an
exact resume. :func:`deferred_signals` runs a block with those signals recorded instead of
delivered, and delivers a recorded one to the previous handler when the block ends — a delay of
at most one frame.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

_SIGNALS = [signal.SIGINT] + ([signal.SIGTERM] if hasattr(signal, "SIGTERM") else [])


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Run the block with SIGINT/SIGTERM held back; deliver the first one received afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: received.append(signum)) for s in _SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if received:
            signum = received[0]
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                if signum == signal.SIGINT:
                    raise KeyboardInterrupt
                signal.raise_signal(signum)
