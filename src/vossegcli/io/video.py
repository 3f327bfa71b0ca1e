"""Frames in, streamed: a video file (decoded with ffmpeg) or a folder of images.

:func:`open_frames` returns a :class:`FrameReader` that knows the frame size, frame rate and
(for folders exactly, for videos approximately) the number of frames, and yields
:class:`Frame` objects one at a time, so a long video never has to fit in memory. Every
problem a user can fix is raised as :class:`~vossegcli.errors.InputError` naming the file.

Damaged videos. ffmpeg runs with ``-v error`` and its messages are collected, never shown.
When it ends:

* fewer frames than the container announces *and* decoding errors (a truncated or half-
  downloaded file): every decodable frame has been yielded, then :class:`TruncatedVideoError`
  is raised saying from which frame on the video is unreadable;
* decoding errors but (about) all frames delivered (ffmpeg concealed damage inside the file):
  a line is added to :attr:`FrameReader.warnings` (ffmpeg decodes ahead of what has been read, so
  which frames are damaged cannot be told exactly).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vossegcli.errors import InputError, first_line

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

#: Frame rate reported for a folder of frames (and for a video whose rate ffmpeg cannot tell).
FOLDER_FPS = 24.0

#: A video that ends this many frames (or 2 %) short of its container's frame count, with ffmpeg
#: decoding errors, is called truncated. Container counts are estimates; a frame or two off is normal.
TRUNCATION_TOLERANCE = 2
#: ffmpeg error lines kept per decode (the rest are counted, not stored).
_MAX_ERROR_LINES = 20
_TELLING = re.compile(r"partial file|end of file|truncat|moov atom", re.IGNORECASE)


class TruncatedVideoError(InputError):
    """The video stops decoding before its announced end; frames before ``frames_read`` were fine."""

    def __init__(self, message: str, frames_read: int, expected: int | None):
        super().__init__(message)
        self.frames_read = frames_read
        self.expected = expected


@dataclass(frozen=True)
class VideoInfo:
    """What is known about an input before decoding it."""

    path: Path
    kind: str  # "video" | "folder"
    width: int
    height: int
    fps: float
    #: Exact for folders; for a video an estimate from the container (duration * fps), or None.
    num_frames: int | None
    #: Folder: the image file stems in natural order ("frame2" < "frame10"); video: None.
    frame_names: tuple[str, ...] | None


@dataclass(frozen=True)
class Frame:
    index: int
    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB, writable


_NATURAL_CHUNKS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key that orders embedded numbers numerically: "frame2" < "frame10"."""
    parts = []
    for chunk in _NATURAL_CHUNKS.split(name):
        if not chunk:
            continue
        if chunk.isdigit():
            parts.append((0, int(chunk)))
        else:
            parts.append((1, chunk.lower()))
    return (tuple(parts), name)


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grayscale: scale to 8 bit rather than letting PIL clip at 255.
        data = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if data.max(initial=0) > 255 else 255.0
        gray = np.clip(np.round(data * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.array(image, dtype=np.uint8)


class FrameReader:
    """Streams the frames of a video file or image folder; iterable more than once.

    Construction checks the input (and decodes the first frame of a video) so that a bad path
    fails immediately with an :class:`InputError`; iteration decodes one frame at a time.
    Use as a context manager, or call :meth:`close`, to stop any decoder still running.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._files: tuple[Path, ...] = ()
        self._open_iterators: weakref.WeakSet = weakref.WeakSet()
        #: One line per problem noticed while decoding that did not stop it (e.g. concealed damage).
        self.warnings: list[str] = []
        if not self.path.exists():
            raise InputError(f"{self.path}: no such file or folder; check the path to the video or frame folder")
        if self.path.is_dir():
            self.info = self._scan_folder()
        else:
            self.info = self._probe_video()

    # ------------------------------------------------------------------ folders

    def _scan_folder(self) -> VideoInfo:
        folder = self.path
        try:
            entries = list(folder.iterdir())
        except OSError as exc:
            raise InputError(f"{folder}: cannot list the folder ({exc.strerror or exc}); check its permissions") from exc
        files = [
            p for p in entries
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
        ]
        if not files:
            raise InputError(
                f"{folder}: no frame images ({', '.join(IMAGE_SUFFIXES)}) in this folder; "
                "pass a video file or a folder of frames"
            )
        files.sort(key=lambda p: natural_key(p.stem))
        seen: dict[str, Path] = {}
        for p in files:
            if p.stem in seen:
                raise InputError(
                    f"{p}: the folder also has {seen[p.stem].name} with the same name; "
                    "keep only one image per frame name"
                )
            seen[p.stem] = p
        width, height = self._image_size(files[0])
        for p in files[1:]:
            w, h = self._image_size(p)
            if (w, h) != (width, height):
                raise InputError(
                    f"{p}: {w}x{h} but the first frame {files[0].name} is {width}x{height}; "
                    "all frames in the folder must have the same size"
                )
        self._files = tuple(files)
        return VideoInfo(
            path=folder,
            kind="folder",
            width=width,
            height=height,
            fps=FOLDER_FPS,
            num_frames=len(files),
            frame_names=tuple(p.stem for p in files),
        )

    @staticmethod
    def _image_size(path: Path) -> tuple[int, int]:
        try:
            with Image.open(path) as image:
                return image.size
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable image ({exc}); re-export or remove this frame") from exc

    def _read_image(self, path: Path) -> np.ndarray:
        try:
            with Image.open(path) as image:
                array = _to_rgb(image)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable image ({exc}); re-export or remove this frame") from exc
        if array.shape[:2] != (self.info.height, self.info.width):
            raise InputError(
                f"{path}: {array.shape[1]}x{array.shape[0]} but the frames are "
                f"{self.info.width}x{self.info.height}; all frames must have the same size"
            )
        return array

    # ------------------------------------------------------------------- videos

    def _probe_video(self) -> VideoInfo:
        path = self.path
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise InputError(
                f"{path}: is a single image; pass a video file or the folder that holds the frame images"
            )
        gen, meta = self._start_decoder()
        try:
            width, height = meta["size"]
            first = next(gen, None)
        except RuntimeError as exc:
            raise InputError(f"{path}: ffmpeg cannot decode the video ({first_line(exc)}); re-encode it, e.g. as H.264 mp4") from exc
        finally:
            gen.close()
        if first is None:
            raise InputError(f"{path}: the video has no frames; check the file or re-export it")
        fps = float(meta.get("fps") or 0.0)
        if not fps > 0:
            fps = FOLDER_FPS
        duration = float(meta.get("duration") or 0.0)
        num_frames: int | None = None
        if meta.get("nframes") and meta["nframes"] != float("inf"):
            num_frames = int(meta["nframes"])
        elif duration > 0:
            num_frames = max(1, int(round(duration * fps)))
        return VideoInfo(
            path=path,
            kind="video",
            width=int(width),
            height=int(height),
            fps=fps,
            num_frames=num_frames,
            frame_names=None,
        )

    def _start_decoder(self):
        """Start ffmpeg; return (generator positioned after the meta dict, meta)."""
        import imageio_ffmpeg

        path = self.path
        try:
            gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        except Exception as exc:  # ffmpeg binary missing and the like
            raise InputError(f"{path}: cannot start ffmpeg ({exc}); reinstall imageio-ffmpeg") from exc
        try:
            meta = next(gen)
            if not meta.get("size"):
                raise ValueError("no frame size")
        except Exception as exc:
            gen.close()
            text = str(exc)
            if "Input #0" in text and ("does not contain any stream" in text or "matches no streams" in text):
                raise InputError(
                    f"{path}: the file holds no video frames (no video stream); check the file or re-export it"
                ) from exc
            if path.suffix.lower() in VIDEO_SUFFIXES:
                hint = "the file is damaged or not a video; re-export or re-encode it (e.g. H.264 mp4)"
            else:
                hint = f"pass a video ({', '.join(VIDEO_SUFFIXES)}) or a folder of frame images"
            raise InputError(f"{path}: not a video ffmpeg can decode; {hint}") from exc
        return gen, meta

    def _spawn_decoder(self) -> subprocess.Popen:
        """ffmpeg decoding to raw RGB on stdout, errors only on stderr, in its own process group
        (a Ctrl-C in the terminal reaches vosseg, which stops ffmpeg itself)."""
        import imageio_ffmpeg

        cmd = [
            imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error",
            "-i", str(self.path), "-pix_fmt", "rgb24", "-vcodec", "rawvideo", "-f", "image2pipe", "-",
        ]
        kwargs: dict = {"start_new_session": True} if os.name == "posix" else {
            "creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        }
        try:
            return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)
        except OSError as exc:
            raise InputError(f"{self.path}: cannot start ffmpeg ({exc}); reinstall imageio-ffmpeg") from exc

    def _iter_video(self, start: int = 0) -> Iterator[Frame]:
        width, height = self.info.width, self.info.height
        frame_bytes = width * height * 3
        proc = self._spawn_decoder()
        errors = _ErrorLog(proc.stderr)
        index = 0
        try:
            while True:
                buf = bytearray(frame_bytes)
                view = memoryview(buf)
                got = 0
                while got < frame_bytes:
                    n = proc.stdout.readinto(view[got:])
                    if not n:
                        break
                    got += n
                if got < frame_bytes:
                    if got:
                        errors.add(f"frame {index} is incomplete ({got} of {frame_bytes} bytes)")
                    break
                if index >= start:
                    image = np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3)
                    yield Frame(index=index, name=self.frame_name(index), image=image)
                index += 1
            try:
                returncode = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                returncode = None
            errors.join()
            self._check_decode_end(index, returncode, errors)
        finally:
            _stop(proc, errors)  # stops the ffmpeg process when the consumer stops early

    def _check_decode_end(self, frames: int, returncode: int | None, errors: _ErrorLog) -> None:
        """After ffmpeg's last frame: raise if the file was cut short, warn on concealed damage."""
        failed = bool(errors.count) or returncode not in (0, None)
        if not failed:
            return
        detail = errors.first or f"ffmpeg exit status {returncode}"
        if frames == 0:
            raise InputError(f"{self.path}: ffmpeg cannot decode any frame ({detail}); re-encode the video (e.g. as H.264 mp4)")
        expected = self.info.num_frames
        short = expected is not None and frames < expected - max(TRUNCATION_TOLERANCE, 0.02 * expected)
        if short or returncode not in (0, None):
            announced = f" of the {expected} it announces" if expected else ""
            raise TruncatedVideoError(
                f"{self.path}: unreadable from frame {frames} on (file truncated or corrupt: {detail}); "
                f"only frames 0-{frames - 1}{announced} decode - re-download or re-export the video",
                frames_read=frames,
                expected=expected,
            )
        self.warnings.append(
            f"{self.path}: ffmpeg reported {errors.count} decoding error(s) ({detail}) but delivered all {frames} frames; "
            "some may be damaged (smeared blocks) - re-encode or re-download the video if their masks look wrong"
        )

    def _iter_folder(self, start: int = 0) -> Iterator[Frame]:
        for index in range(start, len(self._files)):
            path = self._files[index]
            yield Frame(index=index, name=path.stem, image=self._read_image(path))

    # ------------------------------------------------------------------- public

    def frame_name(self, index: int) -> str:
        """Name of frame ``index``: the file stem for folders, ``f"{index:05d}"`` for videos.

        Output mask PNGs are written as ``<frame_name>.png``.
        """
        if self.info.kind == "folder":
            return self.info.frame_names[index]
        if index < 0:
            raise IndexError(index)
        return f"{index:05d}"

    def count_frames(self) -> int:
        """The exact number of frames. Folders: instant. Videos: ffmpeg decodes the whole file."""
        if self.info.kind == "folder":
            return len(self._files)
        import imageio_ffmpeg

        try:
            count, _ = imageio_ffmpeg.count_frames_and_secs(str(self.path))
        except Exception as exc:
            raise InputError(f"{self.path}: ffmpeg cannot count the frames ({first_line(exc)}); re-encode the video") from exc
        return int(count)

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def frames(self, start: int = 0) -> Iterator[Frame]:
        """Frames ``start``, ``start + 1``, ... (a video still decodes the earlier ones, unseen)."""
        if start < 0:
            raise ValueError("start must be >= 0")
        self.warnings = []
        if self.info.kind == "folder":
            iterator = self._iter_folder(start)
        else:
            iterator = self._iter_video(start)
        self._open_iterators.add(iterator)
        return iterator

    def close(self) -> None:
        """Stop every decoder started by an unfinished iteration."""
        for iterator in list(self._open_iterators):
            iterator.close()
        self._open_iterators = weakref.WeakSet()

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        i = self.info
        return f"FrameReader({str(i.path)!r}, {i.kind}, {i.width}x{i.height}, {i.fps:g} fps, {i.num_frames} frames)"


class _ErrorLog:
    """Reads ffmpeg's stderr in a thread: counts the error lines and keeps the first few.

    (ffmpeg demuxes and decodes well ahead of what has been read from its pipe, so the time an
    error arrives says little about which frame it concerns; no frame number is guessed.)"""

    def __init__(self, stream):
        self.count = 0
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").strip()
                if line:
                    self.add(line)
        except (OSError, ValueError):
            pass

    def add(self, line: str) -> None:
        line = re.sub(r"^(\[[^]]*\]\s*)+", "", line)  # drop "[h264 @ 0x55...]" prefixes
        with self._lock:
            self.count += 1
            if len(self.lines) < _MAX_ERROR_LINES:
                self.lines.append(line)

    @property
    def first(self) -> str | None:
        """The most telling error line (a truncation notice if there is one), without a final '.'."""
        if not self.lines:
            return None
        telling = [text for text in self.lines if _TELLING.search(text)]
        return (telling or self.lines)[0].rstrip(".")

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)


def _stop(proc: subprocess.Popen, errors: _ErrorLog) -> None:
    """Kill ffmpeg if it still runs, reap it, let the stderr reader finish, close the pipes."""
    if proc.poll() is None:
        try:
            proc.kill()
        except OSError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover
        pass
    errors.join()
    for stream in (proc.stdout, proc.stderr):
        try:
            stream.close()
        except (OSError, ValueError):
            pass


def open_frames(path: str | Path) -> FrameReader:
    """Open a video file or a folder of frame images for streaming (see :class:`FrameReader`)."""
    return FrameReader(Path(path).expanduser())
