"""The run options, in one table: from it come the command-line flags (``vosseg segment``,
``benchmark``), the engine configuration (:func:`engine_config`), the command that reruns a run
(:func:`rerun_words`: the resume hint and ``.vosseg-run.json``) and the columns a ``vosseg batch``
jobs file may set (:data:`BATCH_COLUMNS`, :func:`parse_value`).

Each :class:`Option` says its default, its help text and where it goes; an option added here
appears in all four places.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

from vossegcli.errors import VossegError

#: Longest side (pixels) of the frames the engine sees. 480p and 540p (DAVIS: 854x480) run at
#: their own size; 720p is scaled by 0.75, 1080p by 1/2, 4K by 1/4. 0 or None: never scale.
DEFAULT_MAX_SIZE = 960


@dataclass(frozen=True)
class Option:
    name: str  #: the Python name (``max_size``); the flag is ``--max-size``
    default: Any
    kind: type  #: str, int or bool (an int option may default to None: "not given")
    help: str
    metavar: str | None = None
    minimum: int | None = None
    engine: bool = False  #: part of the engine configuration (:func:`engine_config`)
    batch: bool = True  #: a column of a batch jobs file

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def negative(self) -> str:
        """The flag that turns a default-on switch off (``--no-update``)."""
        return "--no-" + self.name.replace("_", "-")

    def words(self, value: Any) -> list[str]:
        """The command-line words that give ``value`` (none when it is the default)."""
        if value == self.default:
            return []
        if self.kind is bool:
            return [self.flag] if value else [self.negative]
        return [self.flag, str(value)]


_OPTIONS = (
    # (the order of the rerun command, kept as before so recorded commands read the same)
    Option("preset", "default", str, "default (tunes the refiner briefly on each mask you give, ~3 s per 480p "
           "mask on a 2-core CPU), fast (about twice as fast per object, no tuning, slightly rougher masks) or quality "
           "(tunes the refiner ten times longer: better masks, about 30 s per mask).", metavar="default|fast|quality",
           engine=True),
    Option("augment", None, int, "How many altered copies of the first frame (object moved, scaled, turned) the "
           "tracker also learns from before it starts; more copies, steadier tracking, slower start. 0 = none. "
           "Default 4.", engine=True),
    Option("fill", None, str, "In those copies, what covers the place the object was moved from: inpaint "
           "(surrounding colours) or gray.", metavar="inpaint|gray", engine=True),
    Option("update", True, bool, "Keep learning the object's look from the frames already segmented (--no-update: "
           "from the first frame only).", engine=True),
    Option("seed", 0, int, "Random seed: the same seed gives the same masks.", engine=True),
    Option("refiner", "default", str, "Edge refinement: default (the bundled network), a .pt file of your own, or "
           "none (faster, blockier edges).", metavar="default|none|FILE", engine=True),
    Option("target_features", "default", str, "What the per-object target models read: default (the bundled "
           "learned features), a .pt file from `vosseg train-target-features`, or none (the backbone's features "
           "alone, as FRTM-VOS).", metavar="default|none|FILE", engine=True),
    Option("max_size", DEFAULT_MAX_SIZE, int, "Longest side, in pixels, the engine works at: larger frames are "
           "scaled down for the engine and the masks scaled back, so they are written at the input size. "
           "0 = never scale.", minimum=0),
    Option("snap_mask", False, bool, "Accept masks with anti-aliased edges or JPEG noise: each stray value takes "
           "the nearest object colour.", batch=False),
    Option("device", "auto", str, "auto (CUDA if available), cpu or cuda.", metavar="auto|cpu|cuda", batch=False),
    Option("precision", "auto", str, "Arithmetic of the backbone and refiner: auto (bf16 where the CPU or GPU "
           "computes it natively, else fp32), fp32, bf16, or fp16 (CUDA only). Target models always use fp32.",
           engine=True),
    Option("deterministic", False, bool, "On CUDA: deterministic algorithms only (no cuDNN autotuning; slower), so "
           "a rerun gives the same masks on the same GPU and software. CPU runs are always deterministic.",
           batch=False),
    Option("state_every", 50, int, "Save the engine's state every N frames (and when stopped by Ctrl-C or "
           "SIGTERM), so --resume continues exactly as if never stopped, even after a crash. 0 = only when stopped.",
           minimum=0, batch=False),
    Option("absence", True, bool, "Give an object judged lost or absent (left the view, hidden, after a scene "
           "cut) an empty mask, stop it learning, and re-find it by its look when it returns. --no-absence: plain "
           "FRTM-VOS, every object always drawn and no spatial prior (statuses are still reported).", engine=True),
    Option("bidirectional", False, bool, "Offline: after the forward pass, propagate backward from where a lost "
           "object was re-found, filling the frames it was missed in (reads the video twice; the report lists the "
           "frames changed)."),
)
OPTIONS: dict[str, Option] = {o.name: o for o in _OPTIONS}

#: Columns of a batch jobs file besides input, mask and out (``auto``/``objects``: as ``--auto --objects``).
BATCH_COLUMNS = tuple(o.name for o in _OPTIONS if o.batch) + ("auto", "objects")


def defaults() -> dict[str, Any]:
    return {o.name: o.default for o in _OPTIONS}


def rerun_words(values: Mapping[str, Any]) -> list[str]:
    """The flags that give ``values`` (option name → value; missing ones are defaults), in table order."""
    return [word for o in _OPTIONS for word in o.words(values.get(o.name, o.default))]


def parse_value(name: str, raw: Any) -> Any:
    """A batch cell as the option's type (None when empty); ValueError with a fix for a bad one."""
    if raw is None or raw == "":
        return None
    if name == "objects":  # as segment's --objects: a number, or all (0)
        text = str(raw).strip().lower()
        if text == "all":
            return 0
        if text.isdigit() and int(text) >= 1:
            return int(text)
        raise ValueError(f"objects={raw!r}: a number of objects (1 to 32) or all")
    kind = bool if name == "auto" else OPTIONS[name].kind
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name}={raw!r}: use true or false")
    return int(raw) if kind is int else str(raw)


def engine_config(values: Mapping[str, Any] | None = None, **given: Any):
    """The engine configuration of the run options ``values`` (and/or keywords; option name → value,
    missing ones at their defaults); VossegError naming the flag for an invalid one."""
    from vossegcli.engine.config import preset_config
    from vossegcli.engine.device import PRECISIONS

    v = {**defaults(), **(values or {}), **given}
    try:
        config = preset_config(v["preset"], seed=v["seed"])
    except ValueError as error:
        raise VossegError(f"--preset {v['preset']}: {error}") from None
    aug = config.augment
    if v["augment"] is not None:
        if v["augment"] < 0:
            raise VossegError(f"--augment {v['augment']}: must be 0 or more")
        aug = replace(aug, num_samples=v["augment"])
    if v["fill"] is not None:
        if v["fill"] not in ("inpaint", "gray"):
            raise VossegError(f"--fill {v['fill']}: choose inpaint or gray")
        aug = replace(aug, fill=v["fill"])
    if v["precision"] not in PRECISIONS:
        raise VossegError(f"--precision {v['precision']}: choose one of {', '.join(PRECISIONS)}")
    return replace(
        config, augment=aug, update_interval=config.update_interval if v["update"] else 0,
        refiner=None if v["refiner"].lower() == "none" else v["refiner"], precision=v["precision"],
        target_features=None if v["target_features"].lower() == "none" else v["target_features"],
        presence=config.presence if v["absence"] else replace(config.presence, enabled=False, spatial_prior=False),
    )
