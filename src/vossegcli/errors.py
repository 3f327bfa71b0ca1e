"""User-facing errors.

Every problem a user can fix (bad input file, bad mask, unwritable output, unavailable device)
is raised as :class:`VossegError` with a one-line message that names the file and says what to
do. The CLI prints the message and exits with :data:`EXIT_USER_ERROR`; library users catch it.
A run stopped by a signal raises :class:`Interrupted` (from the CLI's signal handler) inside and
:class:`RunInterrupted` (a KeyboardInterrupt) out of :func:`vossegcli.run.segment.segment`.
"""

from __future__ import annotations

EXIT_USER_ERROR = 2


class VossegError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class InputError(VossegError):
    """An input video, frame folder or frame cannot be read."""


class MaskError(VossegError):
    """A mask file is missing, unreadable or inconsistent with the video."""


class OutputError(VossegError):
    """The output location cannot be written."""


class DeviceError(VossegError):
    """The requested compute device is not available."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Interrupted(BaseException):
    """Raised by a signal handler (the CLI installs one for SIGINT and SIGTERM) to stop a run."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by SIGINT/SIGTERM (or KeyboardInterrupt). The PNGs written so far are complete.

    ``frames_done`` frames (0 .. frames_done - 1) are in ``out_dir``; ``message`` says so in one
    line and how to resume. A KeyboardInterrupt, so ``except Exception`` does not swallow it and
    code that handles Ctrl-C handles it.
    """

    def __init__(self, signum: int, frames_done: int, out_dir, message: str):
        super().__init__(message)
        self.signum = signum
        self.frames_done = frames_done
        self.out_dir = out_dir
        self.message = message

    @property
    def exit_code(self) -> int:
        """128 + signal number, the shell convention: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum
