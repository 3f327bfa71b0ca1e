"""Frames in, streamed: a video file (decoded in-process by ffmpeg's libraries through PyAV) or a
folder of images.

:func:`open_frames` returns a :class:`FrameReader` that knows the frame size, frame rate and
(for folders and most video containers exactly) the number of frames, and yields :class:`Frame`
objects one at a time, so a long video never has to fit in memory. Every problem a user can fix
is raised as :class:`~vossegcli.errors.InputError` naming the file.

Videos are decoded exactly as stored: one :class:`Frame` per stored frame, in presentation order,
never duplicated or dropped to fit a constant rate, each with its presentation timestamp
(:attr:`Frame.time`, seconds); a display-rotation tag is applied (a portrait phone clip comes out
upright). A variable frame rate is noticed while decoding and said once in :attr:`FrameReader.notes`.

Damaged videos. ffmpeg's messages are collected, never shown. When decoding ends:

* fewer frames than the container indexes (a truncated or half-downloaded file): every decodable
  frame has been yielded, then :class:`TruncatedVideoError` is raised saying from which frame on
  the video is unreadable;
* decoding errors inside the file: a frame the decoder rejects is replaced by the frame before it
  (so frame N stays stored frame N) and a line is added to :attr:`FrameReader.warnings`.
"""

from __future__ import annotations

import heapq
import re
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vossegcli.errors import InputError, first_line

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

#: Frame rate of a folder of frames unless given (and of a video whose rate ffmpeg cannot tell).
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
    #: Video: the display rotation applied to every frame (0, 90, 180 or 270 degrees counter-clockwise).
    rotation: int = 0
    #: Video: the unit of the stream's timestamps (seconds).
    time_base: Fraction | None = None
    #: Video: the container's rates disagree, a sign of a variable frame rate (decoding confirms it).
    variable_frame_rate: bool = False
    #: Video: the frame count the container indexes (mp4, mov), None when it has no index.
    frames_announced: int | None = None


@dataclass(frozen=True)
class Frame:
    index: int
    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB, writable
    #: Presentation time in seconds: the stored timestamp for videos, index / fps for folders.
    time: float | None = None


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

    def __init__(self, path: Path, folder_fps: float = FOLDER_FPS):
        if not folder_fps > 0:
            raise ValueError(f"folder_fps must be positive, not {folder_fps}")
        self.path = Path(path)
        self._folder_fps = float(folder_fps)
        self._files: tuple[Path, ...] = ()
        self._open_iterators: weakref.WeakSet = weakref.WeakSet()
        #: One line per problem noticed while decoding that did not stop it (e.g. concealed damage).
        self.warnings: list[str] = []
        #: One line per fact about the input worth saying once (e.g. a variable frame rate).
        self.notes: list[str] = []
        self._decode_size = (0, 0)
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
            fps=self._folder_fps,
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

    def _open_container(self):
        """(container, video stream) of the file, opened with PyAV; InputError when it is not a video."""
        av = _av()
        path = self.path
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise InputError(
                f"{path}: is a single image; pass a video file or the folder that holds the frame images"
            )
        try:
            container = av.open(str(path), metadata_errors="ignore")
        except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
            if path.suffix.lower() in VIDEO_SUFFIXES:
                hint = "the file is damaged or not a video; re-export or re-encode it (e.g. H.264 mp4)"
            else:
                hint = f"pass a video ({', '.join(VIDEO_SUFFIXES)}) or a folder of frame images"
            raise InputError(f"{path}: not a video ffmpeg can decode; {hint}") from exc
        except OSError as exc:
            raise InputError(f"{path}: cannot read the file ({exc.strerror or exc}); check its permissions") from exc
        if not container.streams.video:
            container.close()
            raise InputError(f"{path}: the file holds no video frames (no video stream); check the file or re-export it")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame and slice threads: decoding keeps pace with the engine
        return container, stream

    def _probe_video(self) -> VideoInfo:
        path = self.path
        container, stream = self._open_container()
        try:
            first = next(self._decoded(container, stream, _ErrorLog()), None)
            rate = stream.average_rate or stream.guessed_rate
            nominal = stream.guessed_rate or stream.average_rate
            time_base = stream.time_base
            duration = None
            if stream.duration is not None and time_base:
                duration = float(stream.duration * time_base)
            elif container.duration:
                duration = container.duration / 1_000_000
            announced = int(stream.frames or 0)
        finally:
            container.close()
        if first is None:
            raise InputError(f"{path}: the file holds no video frames; check the file or re-export it")
        # Rates that disagree (frames / duration vs the stream's base rate) mean variable frame rate;
        # when they agree, the base rate is the exact one (the average suffers from how the last
        # frame's duration was stored).
        # (A short clip's average is off by up to a frame in its length: not counted as variable.)
        slack = max(0.01, 1.5 / announced) if announced else 0.01
        variable = bool(rate and nominal and abs(float(rate) / float(nominal) - 1) > slack)
        fps = float(rate if variable else nominal or rate or 0.0)
        if not fps > 0:
            fps = FOLDER_FPS
        num_frames: int | None = announced or None
        if num_frames is None and duration:
            num_frames = max(1, int(round(duration * fps)))
        rotation = _quarter_turns(first.rotation) * 90
        width, height = first.width, first.height
        self._decode_size = (width, height)
        if rotation in (90, 270):
            width, height = height, width
        return VideoInfo(
            path=path,
            kind="video",
            width=int(width),
            height=int(height),
            fps=fps,
            num_frames=num_frames,
            frame_names=None,
            rotation=rotation,
            time_base=time_base,
            variable_frame_rate=variable,
            frames_announced=announced or None,
        )

    @staticmethod
    def _decoded(container, stream, errors: _ErrorLog) -> Iterator:
        """PyAV frames in presentation order, one per stored frame.

        A packet the decoder rejects is logged in ``errors`` and stands in as ``(pts,)`` (a tuple,
        not a frame) at its place in presentation order, so frame N stays stored frame N; a
        demuxing failure (a cut file) ends the sequence."""
        av = _av()
        missing: list[int] = []  # pts of rejected packets, a heap
        unplaced = 0  # rejected packets without a pts (placed at the end)
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as exc:
                    errors.add(_libav_message(exc))
                    if packet.size:
                        if packet.pts is None:
                            unplaced += 1
                        else:
                            heapq.heappush(missing, packet.pts)
                    continue
                for frame in frames:
                    while missing and frame.pts is not None and missing[0] < frame.pts:
                        yield (heapq.heappop(missing),)
                    if frame.is_corrupt:
                        errors.add("a frame was decoded with errors (concealed)")
                    yield frame
        except av.error.FFmpegError as exc:
            errors.add(_libav_message(exc))
            errors.cut = True
        while missing:
            yield (heapq.heappop(missing),)
        for _ in range(unplaced):
            yield (None,)

    def _iter_video(self, start: int = 0) -> Iterator[Frame]:
        container, stream = self._open_container()
        errors = _ErrorLog()
        turns = self.info.rotation // 90
        width, height = self._decode_size
        time_base = stream.time_base
        timing = _FrameRateCheck(self.info.fps)
        index = 0
        previous = None  # the latest decoded PyAV frame: it stands in for a rejected packet
        held: list[int | None] = []  # pts of rejected packets after it, until the file's end is known

        def picture() -> np.ndarray:
            """``previous`` as an upright (H, W, 3) RGB array of its own (a stand-in converts again)."""
            array = previous.to_ndarray(format="rgb24", width=width, height=height)
            return np.ascontiguousarray(np.rot90(array, turns) if turns else array)

        def frame_at(pts: int | None) -> Frame | None:
            """Frame ``index`` (None before ``start``: never converted) with its timestamp."""
            t = float(pts * time_base) if pts is not None and time_base else index / self.info.fps
            timing.add(t)
            return Frame(index=index, name=self.frame_name(index), image=picture(), time=t) if index >= start else None

        def stand_ins() -> Iterator[Frame]:
            nonlocal index
            for pts in held:
                errors.stood_in += 1
                out = frame_at(pts)
                if out is not None:
                    yield out
                index += 1
            held.clear()

        try:
            for item in self._decoded(container, stream, errors):
                if isinstance(item, tuple):  # a rejected packet
                    if previous is not None:
                        held.append(item[0])
                    continue
                yield from stand_ins()
                previous = item
                out = frame_at(item.pts)
                if out is not None:
                    yield out
                index += 1
            short = self._is_cut(index + len(held), errors)
            if not short:
                yield from stand_ins()
            self._check_decode_end(index, errors, short)
            if timing.variable:
                self.notes.append(f"{self.path}: variable frame rate: {index} frames, timestamps kept")
        finally:
            container.close()

    def _is_cut(self, frames: int, errors: _ErrorLog) -> bool:
        """True when decoding stopped well short of the frames the container indexes (a cut file)."""
        announced = self.info.frames_announced
        expected = announced or self.info.num_frames
        if expected is None:
            return False
        short = frames < expected - max(TRUNCATION_TOLERANCE, 0.02 * expected)
        # An exact index (mp4, mov) that is not delivered means a cut file; an estimate from the
        # duration (mkv, webm) only together with errors.
        return short and (bool(announced) or errors.cut or bool(errors.count))

    def _check_decode_end(self, frames: int, errors: _ErrorLog, short: bool) -> None:
        """After the last frame: raise if the file was cut short, warn on damage inside it."""
        detail = errors.first or "the file ends early"
        if frames == 0:
            raise InputError(f"{self.path}: ffmpeg cannot decode any frame ({detail}); re-encode the video (e.g. as H.264 mp4)")
        expected = self.info.num_frames
        if short:
            announced = f" of the {expected} it announces" if expected else ""
            raise TruncatedVideoError(
                f"{self.path}: unreadable from frame {frames} on (file truncated or corrupt: {detail}); "
                f"only frames 0-{frames - 1}{announced} decode - re-download or re-export the video",
                frames_read=frames,
                expected=expected,
            )
        if not errors.count:
            return
        stood_in = (f"; {errors.stood_in} undecodable frame(s) replaced by the frame before"
                    if errors.stood_in else "")
        self.warnings.append(
            f"{self.path}: {errors.count} decoding error(s) ({detail}) but all {frames} frames delivered{stood_in}; "
            "some may be damaged (smeared blocks) - re-encode or re-download the video if their masks look wrong"
        )

    def _iter_folder(self, start: int = 0) -> Iterator[Frame]:
        for index in range(start, len(self._files)):
            path = self._files[index]
            yield Frame(index=index, name=path.stem, image=self._read_image(path), time=index / self.info.fps)

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
        """The exact number of frames. Folders: instant. Videos: every packet is read (not decoded)."""
        if self.info.kind == "folder":
            return len(self._files)
        av = _av()
        container, stream = self._open_container()
        try:
            return sum(1 for packet in container.demux(stream) if packet.size)
        except av.error.FFmpegError as exc:
            raise InputError(f"{self.path}: ffmpeg cannot count the frames ({first_line(exc)}); re-encode the video") from exc
        finally:
            container.close()

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def frames(self, start: int = 0) -> Iterator[Frame]:
        """Frames ``start``, ``start + 1``, ... (a video still decodes the earlier ones, unseen)."""
        if start < 0:
            raise ValueError("start must be >= 0")
        self.warnings = []
        self.notes = []
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
    """Problems met while decoding one video: ffmpeg's errors (counted, the first few kept),
    whether demuxing failed, how many frames were stood in for."""

    def __init__(self) -> None:
        self.count = 0
        self.lines: list[str] = []
        self.cut = False
        self.stood_in = 0
        self._lock = threading.Lock()

    def add(self, line: str) -> None:
        line = re.sub(r"^(\[[^]]*\]\s*)+", "", str(line).strip())  # drop "[h264 @ 0x55...]" prefixes
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


class _FrameRateCheck:
    """Notices timestamps that do not follow one frame rate (variable-frame-rate video)."""

    def __init__(self, fps: float) -> None:
        self.step = 1.0 / fps if fps > 0 else None
        self.last: float | None = None
        self.variable = False

    def add(self, t: float) -> None:
        if self.last is not None and self.step and not self.variable:
            # off by more than a fifth of a frame (timestamps rounded to a coarse time base stay within it)
            self.variable = abs((t - self.last) - self.step) > 0.2 * self.step + 1e-4
        self.last = t


def _quarter_turns(degrees: float | None) -> int:
    """A display rotation in degrees (counter-clockwise) as quarter turns 0..3."""
    return int(round((degrees or 0) / 90)) % 4


def _libav_message(exc: BaseException) -> str:
    """ffmpeg's own words from a PyAV error: its last log line if it carries one, else the error."""
    text = str(exc)
    if "last error log:" in text:
        return text.split("last error log:", 1)[1].strip()
    return str(getattr(exc, "strerror", None) or text)


def _av():
    """PyAV, imported when first needed (it loads ffmpeg's libraries).

    ffmpeg's logging stays off (PyAV's default): nothing of it reaches the terminal, and routing
    it to Python can deadlock with threaded decoding. Errors arrive as exceptions and frame flags."""
    import av
    import av.logging

    if av.logging.get_level() is not None:
        av.logging.set_level(None)
    return av


def open_frames(path: str | Path, folder_fps: float = FOLDER_FPS) -> FrameReader:
    """Open a video file or a folder of frame images for streaming (see :class:`FrameReader`);
    ``folder_fps``: the frame rate a folder of frames plays at (videos carry their own)."""
    return FrameReader(Path(path).expanduser(), folder_fps=folder_fps)
