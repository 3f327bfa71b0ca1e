"""The user's masks in: parse ``--mask`` arguments, decode every common mask format, validate.

Accepted formats (each file is one frame's annotation):

* palette (indexed) PNG of object ids, the DAVIS / YouTube-VOS format; its palette is kept;
* grayscale PNG of object ids (0 = background);
* a binary mask: one object as any single non-zero value (0/255, 0/1, ...), in grayscale,
  palette (only when that value is 255) or RGB (one colour);
* an RGB(A) colour mask: every distinct non-black colour is one object (alpha 0 = background).
  If all colours are DAVIS-palette colours their palette index is the id, otherwise colours
  are numbered 1..K in raster order of first appearance. An RGB image whose object pixels are
  all gray (R = G = B) is read as a grayscale mask.

Binary masks carry no id: frame by frame, they are numbered in the order given, after the largest
id given up to their frame (so a later id mask's ids name the objects as numbered there). Value 255 in an id mask is DAVIS's "void" label and is ignored.

Several masks of one object (anchors): an id mask on a later frame that holds ids given on an
earlier frame gives those objects again there - a correction. It is that frame's whole truth:
every object already started and not in it is absent on that frame (a note says which). Binary
masks always start a new object; to give an object again, use an id mask (editing vosseg's own
palette PNG of that frame keeps the ids).

Everything a user can get wrong raises :class:`~vossegcli.errors.MaskError` with one line that
names the file and says how to fix it.

Snapping (``snap=True``, ``vosseg segment --snap-mask``): a mask drawn in an image editor often has
anti-aliased edges or JPEG noise - many stray values around (or inside) the real objects. With
snapping, the "real" values are chosen first: background (0 / black) always, then, by decreasing
pixel count, every value that covers a solid region (not tiny: >= 20 px and >= 0.05 % of the image;
not a fringe: >= 80 % of its pixels touch another value, as the blend values along an
anti-aliased edge do - so objects thinner than ~3 px are snapped away too) and whose colour is
more than ``SNAP_MERGE_DISTANCE`` (RGB distance) from every real value already chosen. Every other
pixel takes the real value whose colour is nearest (RGB distance; palette entries by their palette
colour; small gray ids by numeric distance). The number of pixels changed is reported.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vossegcli.engine.objects import MAX_OBJECTS
from vossegcli.errors import MaskError
from vossegcli.io.palette import VOID_ID, davis_palette

# Anti-aliasing / lossy-compression detection (see _check_not_antialiased).
AA_MANY_VALUES = 8  # more distinct values than this ...
AA_TINY_FRACTION = 0.0005  # ... with at least half of them covering < 0.05 % of the image
AA_TINY_PIXELS = 20  # ... or fewer than 20 px
FRINGE_MAX_FRACTION = 0.01  # a "fringe" value covers < 1 % of the image ...
FRINGE_BOUNDARY_SHARE = 0.8  # ... and >= 80 % of its pixels touch a different value
#: --snap-mask: colours closer than this (Euclidean RGB, 0..255) to a more frequent real colour
#: are its noise, not another object (JPEG noise moves values by a few units; DAVIS colours are >= 128 apart).
SNAP_MERGE_DISTANCE = 48.0
SNAP_HINT = "or add snap_mask=True to map the stray values to the nearest object"


@dataclass(frozen=True)
class ObjectInfo:
    id: int
    start_frame: int
    area: int  # pixels on its start frame
    source: Path
    color: tuple[int, int, int]
    #: later frames whose mask gives this object again (anchors), ascending
    anchor_frames: tuple[int, ...] = ()


@dataclass
class MaskSet:
    objects: list[ObjectInfo]  # sorted by id
    #: frame -> (H, W) uint8 id map of the objects given on that frame: objects starting there and,
    #: on an *anchor* frame (one holding an id given on an earlier frame), every object present
    #: there — the frame's whole truth
    labels: dict[int, np.ndarray]
    #: 768 ints: the input mask's palette if it was a palette PNG, else DAVIS
    palette: list[int]
    notes: list[str] = field(default_factory=list)
    #: every mask file used, with its frame, in the order given
    files: list[tuple[Path, int]] = field(default_factory=list)

    @property
    def ids(self) -> list[int]:
        return [obj.id for obj in self.objects]

    @property
    def first_frame(self) -> int:
        return min(self.labels)

    @property
    def anchor_frames(self) -> list[int]:
        """Frames whose mask gives objects already given before (the frame's whole truth), ascending."""
        return sorted({f for o in self.objects for f in o.anchor_frames})

    def describe(self) -> list[str]:
        """Human-readable lines, one per object, then any notes (void pixels, overlaps, ...)."""
        lines = []
        for o in self.objects:
            line = f"object {o.id}: {o.area:,} px, starts at frame {o.start_frame} ({o.source.name})"
            if o.anchor_frames:
                line += f"; given again at frame{'s' if len(o.anchor_frames) > 1 else ''} " + \
                    ", ".join(map(str, o.anchor_frames))
            lines.append(line)
        return lines + list(self.notes)


@dataclass
class _Decoded:
    """One mask file, decoded into raw object values."""

    path: Path
    values: np.ndarray  # (H, W) int64, 0 = background
    binary: bool  # a single object without a meaningful id
    palette: list[int] | None  # the file's own palette (palette PNGs only)
    notes: list[str]
    frame: int = 0


# --------------------------------------------------------------------------- arguments

_INDEX_ARG = re.compile(r"^\s*([+-]?\d+)\s*:(.*)$", re.DOTALL)


def parse_mask_arg(arg: str) -> tuple[int | None, Path]:
    """Split a ``--mask`` value into (frame index or None, path).

    ``mask.png`` -> (None, mask.png); ``12:mask.png`` -> (12, mask.png). A path that exists
    as written wins over the ``N:`` reading, so files with colons in their names still work.
    """
    if isinstance(arg, Path):
        return None, arg
    if not arg or not arg.strip():
        raise MaskError("--mask: empty value; give a PNG path, or N:path.png for frame N")
    match = _INDEX_ARG.match(arg)
    if match:
        rest = match.group(2)
        if not rest.strip():
            raise MaskError(f"{arg}: no mask file after the frame index; write N:path.png, e.g. 0:mask.png")
        if Path(arg).exists() and not Path(rest).exists():
            return None, Path(arg)
        index = int(match.group(1))
        if index < 0:
            raise MaskError(
                f"{rest}: frame index {index} is negative; frame indices start at 0 (e.g. 0:{rest})"
            )
        return index, Path(rest).expanduser()
    if ":" in arg and not Path(arg).exists():
        prefix, rest = arg.split(":", 1)
        is_drive = len(prefix) == 1 and prefix.isalpha() and rest[:1] in ("\\", "/")
        if not is_drive:
            raise MaskError(
                f"{arg}: not a valid --mask value; write path.png, or N:path.png where N is a "
                "frame index (0 = first frame)"
            )
    return None, Path(arg).expanduser()


# --------------------------------------------------------------------------- decoding


def _open_image(path: Path, snap: bool = False) -> Image.Image:
    if not path.exists():
        raise MaskError(f"{path}: no such mask file; check the path")
    if path.is_dir():
        raise MaskError(f"{path}: is a folder; pass a mask PNG file")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise MaskError(
            f"{path}: cannot be decoded as an image; save the mask as a PNG "
            "(palette PNG of object ids, or black/white)"
        ) from exc
    if image.format == "JPEG" and not snap:
        image.close()
        raise MaskError(
            f"{path}: is a JPEG, whose lossy compression blurs mask edges into extra values; "
            f"save the mask as a PNG (palette PNG of object ids, or black/white), {SNAP_HINT}"
        )
    return image


def _rgb_keys(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 -> (H, W) int64 colour keys, 0 for black or transparent pixels."""
    keys = (
        (rgba[..., 0].astype(np.int64) << 16)
        | (rgba[..., 1].astype(np.int64) << 8)
        | rgba[..., 2].astype(np.int64)
    )
    keys[rgba[..., 3] == 0] = 0
    return keys


def _davis_colour_index() -> dict[int, int]:
    pal = davis_palette()
    return {(pal[3 * i] << 16) | (pal[3 * i + 1] << 8) | pal[3 * i + 2]: i for i in range(1, 256)}


def _decode(path: Path, frame_size: tuple[int, int], snap: bool = False, allow_empty: bool = False) -> _Decoded:
    """Read one mask file (frame_size = (height, width)) into raw values; checks size, emptiness, anti-aliasing, void.

    ``snap``: map stray (anti-aliased / JPEG) values to the nearest real object first (module doc).
    """
    image = _open_image(path, snap)
    notes: list[str] = []
    palette = None
    with image:
        fh, fw = frame_size
        if image.size != (fw, fh):
            w, h = image.size
            raise MaskError(
                f"{path}: {w}x{h} but the video frames are {fw}x{fh}; resize the mask to the "
                "frame size with nearest-neighbour interpolation"
            )
        mode = image.mode
        if mode == "P":
            kind = "palette"
            values = np.array(image, dtype=np.int64)
            palette = list(image.getpalette() or [])
        elif mode == "1":
            kind = "gray"
            values = np.array(image.convert("L"), dtype=np.int64)
        elif mode in ("L", "I", "I;16", "I;16B", "I;16L", "I;16N"):
            kind = "gray"
            values = np.array(image, dtype=np.int64)
        elif mode == "F":
            kind = "gray"
            data = np.array(image, dtype=np.float64)
            if not np.all(np.isfinite(data)) or not np.array_equal(data, np.round(data)):
                raise MaskError(
                    f"{path}: holds fractional values (a soft/probability mask); save a PNG with "
                    "one integer id per object (0 = background)"
                )
            values = data.astype(np.int64)
        elif mode == "LA":
            kind = "gray"
            la = np.array(image, dtype=np.int64)
            values = np.where(la[..., 1] == 0, 0, la[..., 0])
        else:
            kind = "rgb"
            rgba = np.array(image.convert("RGBA"), dtype=np.uint8)
            keys = _rgb_keys(rgba)
            obj = keys != 0
            rgb = rgba[..., :3]
            if obj.any() and np.all(rgb[obj, 0] == rgb[obj, 1]) and np.all(rgb[obj, 1] == rgb[obj, 2]):
                kind = "gray"  # a grayscale id / binary mask saved as RGB
                values = np.where(obj, rgb[..., 0].astype(np.int64), 0)
            else:
                values = keys

    if snap:
        values = _snap(path, values, kind, palette, notes)
    total = values.size
    nonzero = values[values != 0]
    if nonzero.size == 0 and allow_empty:  # (a later frame's truth: every object absent there)
        return _Decoded(path, np.zeros(values.shape, np.int64), False, palette, notes)
    if nonzero.size == 0:
        raise MaskError(
            f"{path}: has no object pixels (it is all background); paint the objects with "
            "non-zero ids or colours"
        )
    uniq, counts = np.unique(nonzero, return_counts=True)

    if kind == "rgb":
        _check_not_antialiased(path, values, uniq, counts, total, strict=True, what="colours")
        values = _colours_to_ids(path, values, notes)
        uniq, counts = np.unique(values[values != 0], return_counts=True)
    else:
        others = uniq[uniq != VOID_ID]
        is_void = (
            VOID_ID in uniq and others.size > 0
            and (kind == "palette" or int(others.max()) <= MAX_OBJECTS)
        )
        if is_void:
            void_px = int(counts[uniq == VOID_ID][0])
            values = np.where(values == VOID_ID, 0, values)
            notes.append(
                f"{path.name}: {void_px:,} px with value 255 (DAVIS 'void') ignored as background"
            )
            uniq, counts = uniq[uniq != VOID_ID], counts[uniq != VOID_ID]
        _check_not_antialiased(path, values, uniq, counts, total, strict=kind != "palette", what="values")
        if kind == "gray" and uniq.size > 1 and int(uniq.max()) >= VOID_ID and uniq.size <= MAX_OBJECTS:
            # Gray levels such as 85/170/255 used as labels: number them by brightness.
            notes.append(
                f"{path.name}: gray levels {', '.join(str(int(v)) for v in uniq)} read as objects "
                f"{', '.join(str(i) for i in range(1, uniq.size + 1))}"
            )
            ranks = np.zeros(values.shape, dtype=np.int64)
            nz = values != 0
            ranks[nz] = np.searchsorted(uniq, values[nz]) + 1
            values, uniq = ranks, np.arange(1, uniq.size + 1)

    binary = uniq.size == 1 and (kind != "palette" or int(uniq[0]) == VOID_ID)
    if binary:
        values = (values != 0).astype(np.int64)
        uniq, counts = np.array([1]), np.array([int(counts.sum())])
    if uniq.size > MAX_OBJECTS:
        raise MaskError(
            f"{path}: {uniq.size} distinct object ids, more than the {MAX_OBJECTS} vosseg can track; "
            "merge or drop objects (or, if the mask is anti-aliased, export it without anti-aliasing "
            f"{SNAP_HINT})"
        )
    if int(uniq.max()) >= VOID_ID:
        raise MaskError(
            f"{path}: object id {int(uniq.max())} is too large; use ids 1..254 (0 = background, 255 = void)"
        )
    return _Decoded(path=path, values=values, binary=binary, palette=palette, notes=notes)


def _value_colours(uniq: np.ndarray, kind: str, palette: list[int] | None) -> tuple[np.ndarray, float]:
    """Colours (K, 3) float of mask values and the distance under which two are one object's noise."""
    if kind == "rgb":  # colour keys
        cols = np.stack([(uniq >> 16) & 255, (uniq >> 8) & 255, uniq & 255], axis=1).astype(np.float64)
        return cols, SNAP_MERGE_DISTANCE
    if kind == "palette":
        pal = np.array(list(palette or [])[:768] + davis_palette()[len(palette or []):], dtype=np.float64).reshape(256, 3)
        cols = pal[np.clip(uniq, 0, 255)]
        cols[uniq == 0] = 0.0  # index 0 is background whatever its palette colour
        return cols, SNAP_MERGE_DISTANCE
    peak = float(uniq.max(initial=0))
    if peak <= MAX_OBJECTS:  # small gray ids (1, 2, 3 ...): every solid value is an object
        return np.repeat(uniq[:, None].astype(np.float64), 3, axis=1), 0.0
    scale = 255.0 / 65535.0 if peak > 255 else 1.0
    return np.repeat(uniq[:, None].astype(np.float64) * scale, 3, axis=1), SNAP_MERGE_DISTANCE


def _snap(path: Path, values: np.ndarray, kind: str, palette: list[int] | None, notes: list[str]) -> np.ndarray:
    """--snap-mask: every pixel of a stray value takes the nearest real value (see the module doc)."""
    total = values.size
    uniq, counts = np.unique(values, return_counts=True)
    colours, merge = _value_colours(uniq, kind, palette)
    share = _boundary_share(values, uniq)
    solid = counts >= max(AA_TINY_PIXELS, AA_TINY_FRACTION * total)
    # An anti-aliased edge leaves each blend value as a 1-2 px line along the edge: however long the
    # edge (any area), >= 80 % of its pixels touch another value. A real object has an interior.
    fringe = share >= FRINGE_BOUNDARY_SHARE
    centres: list[int] = []  # indices into uniq
    centre_colours = [np.zeros(3)]  # background (0 / black) is always real
    for i in np.argsort(-counts, kind="stable"):
        if uniq[i] == 0 or not solid[i] or fringe[i]:
            continue
        if min(float(np.linalg.norm(colours[i] - c)) for c in centre_colours) <= merge:
            continue
        centres.append(int(i))
        centre_colours.append(colours[i])
    centre_values = np.array([0] + [int(uniq[i]) for i in centres], dtype=values.dtype)
    cc = np.stack(centre_colours)  # same order as centre_values
    distance = np.linalg.norm(colours[:, None, :] - cc[None, :, :], axis=2)  # (K, centres)
    target = centre_values[np.argmin(distance, axis=1)]
    changed_values = int(np.sum(target != uniq))
    if changed_values == 0:
        notes.append(f"{path.name}: snap_mask=True found no stray values; nothing changed")
        return values
    snapped = target[np.searchsorted(uniq, values)]
    changed = int(np.count_nonzero(snapped != values))
    notes.append(
        f"{path.name}: snap_mask=True mapped {changed:,} px ({100.0 * changed / total:.2f} % of the image) with "
        f"{changed_values} stray value(s) to the nearest of {len(centre_values) - 1} object value(s) and background"
    )
    return snapped


def _colours_to_ids(path: Path, keys: np.ndarray, notes: list[str]) -> np.ndarray:
    """Colour keys -> ids: DAVIS palette indices if every colour is one, else 1..K by first appearance."""
    davis = _davis_colour_index()
    void_key = next(k for k, i in davis.items() if i == VOID_ID)
    flat = keys.reshape(-1)
    colours, first = np.unique(flat, return_index=True)
    keep = colours != 0
    colours, first = colours[keep], first[keep]
    if colours.size > 1 and void_key in colours:
        void_px = int(np.count_nonzero(flat == void_key))
        notes.append(
            f"{path.name}: {void_px:,} px in the DAVIS 'void' colour (224,224,192) ignored as background"
        )
        keep = colours != void_key
        colours, first = colours[keep], first[keep]
    if all(int(k) in davis for k in colours):
        ids = np.array([davis[int(k)] for k in colours], dtype=np.int64)
    else:
        ids = np.empty(colours.size, dtype=np.int64)
        ids[np.argsort(first, kind="stable")] = np.arange(1, colours.size + 1)
    pos = np.clip(np.searchsorted(colours, keys), 0, colours.size - 1)
    hit = colours[pos] == keys
    return np.where(hit, ids[pos], 0)


def _boundary_share(values: np.ndarray, uniq: np.ndarray) -> np.ndarray:
    """For each value in `uniq`, the share of its pixels with a 4-neighbour of another value."""
    padded = np.pad(values, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    edge = (
        (centre != padded[:-2, 1:-1]) | (centre != padded[2:, 1:-1])
        | (centre != padded[1:-1, :-2]) | (centre != padded[1:-1, 2:])
    )
    inside = np.searchsorted(uniq, values)
    inside = np.clip(inside, 0, uniq.size - 1)
    valid = uniq[inside] == values
    totals = np.bincount(inside[valid], minlength=uniq.size)
    edges = np.bincount(inside[valid & edge], minlength=uniq.size)
    return edges / np.maximum(totals, 1)


def _check_not_antialiased(path, values, uniq, counts, total, strict: bool, what: str) -> None:
    """Reject masks whose values look like anti-aliased / JPEG-compressed edges.

    Rule 1 (all masks): more than 8 distinct values, at least half of which are tiny (< 0.05 %
    of the image or < 20 px). Palette PNGs are explicit id maps, so for them "tiny" means
    < 20 px only. Rule 2 (grayscale / RGB only, >= 3 values): at least two values, and at least
    half of them, are thin "fringes": < 1 % of the image and >= 80 % of their pixels touch a
    different value - the ramp an anti-aliased edge leaves around a real object.
    """
    n = int(uniq.size)
    if n <= 1:
        return
    tiny_limit = max(AA_TINY_PIXELS, AA_TINY_FRACTION * total) if strict else AA_TINY_PIXELS
    tiny = int(np.sum(counts < tiny_limit))
    suspicious = n > AA_MANY_VALUES and tiny * 2 >= n
    if not suspicious and strict and n >= 3:
        share = _boundary_share(values, uniq)
        fringe = int(np.sum((counts < FRINGE_MAX_FRACTION * total) & (share >= FRINGE_BOUNDARY_SHARE)))
        suspicious = fringe >= 2 and fringe * 2 >= n
    if suspicious:
        raise MaskError(
            f"{path}: looks anti-aliased or JPEG-compressed ({n} distinct {what}, many covering only "
            "a few edge pixels); export it with nearest-neighbour / no anti-aliasing as a PNG "
            f"(ideally an indexed palette PNG with one id per object), {SNAP_HINT}"
        )


# --------------------------------------------------------------------------- loading


def _resolve_frame(index: int | None, path: Path, names: dict[str, int] | None, notes: list[str]) -> int:
    if index is not None:
        return index
    if names is not None and path.stem in names:
        return names[path.stem]
    if path.stem.isdigit() and int(path.stem) != 0:
        notes.append(
            f"{path.name}: applied to the first frame; write {int(path.stem)}:{path} if it belongs "
            f"to frame {int(path.stem)}"
        )
    return 0


def _pick_palette(decoded: list[_Decoded], ids: list[int]) -> tuple[list[int], str | None]:
    davis = davis_palette()
    for d in decoded:
        if d.palette is None:
            continue
        pal = [int(v) for v in d.palette[:768]]
        pal = pal + davis[len(pal):]
        colours = [tuple(pal[3 * i: 3 * i + 3]) for i in ids]
        background = tuple(pal[0:3])
        visible = all(sum(c) >= 60 and c != background for c in colours)
        if visible and len(set(colours)) == len(colours):
            return pal, None
        return davis, (
            f"{d.path.name}: its palette gives objects black or identical colours; "
            "using the DAVIS palette for output"
        )
    return davis, None


def load_masks(
    args: Sequence[str | Path],
    frame_size: tuple[int, int],
    frame_names: Sequence[str] | None = None,
    num_frames: int | None = None,
    snap: bool = False,
) -> MaskSet:
    """Load and validate the ``--mask`` arguments for frames of ``frame_size`` = (height, width).

    ``frame_names`` (folder input) lets ``00012.png`` apply to the frame named ``00012``;
    ``num_frames`` (when known exactly) bounds the ``N:`` frame indices. ``snap``: map anti-aliased
    or JPEG-noisy values to the nearest real object instead of refusing the mask (module doc).
    """
    if not args:
        raise MaskError("no mask given; pass --mask mask.png (first frame) or --mask N:mask.png (frame N)")
    names = {name: i for i, name in enumerate(frame_names)} if frame_names is not None else None
    limit = num_frames if num_frames is not None else (len(frame_names) if frame_names is not None else None)
    notes: list[str] = []

    decoded: list[_Decoded] = []
    seen: dict[tuple[Path, int], Path] = {}
    for arg in args:
        index, path = parse_mask_arg(arg)
        if limit is not None and index is not None and index >= limit:
            raise MaskError(
                f"{path}: frame index {index} is past the end of the video ({limit} frames, "
                f"indices 0..{limit - 1}); fix the N in N:{path.name}"
            )
        d = _decode(path, frame_size, snap, allow_empty=True)
        d.frame = _resolve_frame(index, path, names, notes)
        key = (path.resolve(), d.frame)
        if key in seen:
            raise MaskError(f"{path}: given twice for frame {d.frame}; pass each mask once")
        seen[key] = path
        decoded.append(d)

    # An empty mask is only meaningful after objects have started: "none of them is here".
    starts = [d.frame for d in decoded if d.values.any()]
    for d in decoded:
        if not d.values.any():
            if not starts or d.frame <= min(starts):
                raise MaskError(
                    f"{d.path}: has no object pixels (it is all background); paint the objects with "
                    "non-zero ids or colours"
                )
            notes.append(f"{d.path.name}: all background, so every object is absent on frame {d.frame}")
    # Frame by frame: the id masks of a frame (at most one), then its binary masks. An id first given
    # on an earlier frame makes the later mask an anchor of that object (the frame's whole truth);
    # binary masks are numbered after the largest id given so far, so the ids of a later id mask
    # (e.g. vosseg's own PNG of that frame, edited) name the objects as numbered up to there.
    owner: dict[int, _Decoded] = {}
    anchors: dict[int, list[int]] = {}
    id_mask_on_frame: dict[int, _Decoded] = {}
    for frame in sorted({d.frame for d in decoded}):
        for d in (d for d in decoded if d.frame == frame and not d.binary):
            other = id_mask_on_frame.get(d.frame)
            if other is not None:
                raise MaskError(
                    f"{d.path}: {other.path.name} already gives object ids for frame {d.frame}; "
                    "merge them into one mask, or pass single-object (black/white) masks instead"
                )
            id_mask_on_frame[d.frame] = d
            given = np.unique(d.values[d.values != 0]).tolist()
            known = [i for i in given if i in owner]
            for obj_id in given:
                if obj_id in owner:
                    anchors.setdefault(obj_id, []).append(d.frame)
                else:
                    owner[obj_id] = d
            missing = sorted(i for i in owner if i not in given and owner[i].frame < d.frame)
            if known and missing:
                notes.append(
                    f"{d.path.name}: object{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} "
                    f"{'are' if len(missing) > 1 else 'is'} not in it, so absent on frame {d.frame} (a mask given "
                    "again is the whole frame's truth; add every visible object, e.g. by editing vosseg's own PNG "
                    "of that frame)"
                )
            if len(owner) > MAX_OBJECTS:
                raise MaskError(
                    f"{d.path}: {len(owner)} objects in total across the masks, more than the "
                    f"{MAX_OBJECTS} vosseg can track; track fewer objects"
                )
        for d in (d for d in decoded if d.frame == frame and d.binary):
            next_id = max(owner, default=0) + 1
            if len(owner) >= MAX_OBJECTS:
                raise MaskError(
                    f"{d.path}: more than {MAX_OBJECTS} objects in total across the masks; track fewer objects"
                )
            if next_id >= VOID_ID:
                raise MaskError(f"{d.path}: no free object id left below 255; renumber the id masks from 1")
            d.values = np.where(d.values != 0, next_id, 0)
            owner[next_id] = d
    # Compose one label map per start frame; later masks win where masks overlap.
    height, width = frame_size
    labels: dict[int, np.ndarray] = {}
    for d in decoded:
        canvas = labels.setdefault(d.frame, np.zeros((height, width), dtype=np.uint8))
        paint = d.values != 0
        overlap = int(np.count_nonzero(paint & (canvas != 0)))
        if overlap:
            notes.append(
                f"{d.path.name}: overlaps earlier masks on frame {d.frame} by {overlap:,} px; "
                "those pixels go to this mask's object"
            )
        canvas[paint] = d.values[paint].astype(np.uint8)
        notes.extend(d.notes)

    ids = sorted(owner)
    palette, palette_note = _pick_palette(decoded, ids)
    if palette_note:
        notes.append(palette_note)
    objects = []
    total = width * height
    for obj_id in ids:
        d = owner[obj_id]
        area = int(np.count_nonzero(labels[d.frame] == obj_id))
        if area == 0:
            raise MaskError(
                f"{d.path}: object {obj_id} is completely covered by a later mask on frame {d.frame}; "
                "remove the overlap or drop one of the masks"
            )
        if area < max(AA_TINY_PIXELS, AA_TINY_FRACTION * total):
            notes.append(f"object {obj_id} ({d.path.name}) is only {area} px; check that this is a real object")
        colour = tuple(int(c) for c in palette[3 * obj_id: 3 * obj_id + 3])
        objects.append(ObjectInfo(id=obj_id, start_frame=d.frame, area=area, source=d.path, color=colour,
                                  anchor_frames=tuple(anchors.get(obj_id, ()))))
    return MaskSet(objects=objects, labels=dict(sorted(labels.items())), palette=palette, notes=notes,
                   files=[(d.path, d.frame) for d in decoded])
