"""Engine options as the command line gives them (``--preset``, ``--augment``, …) → a
:class:`~vossegcli.engine.segmenter.SegmenterConfig`; shared by ``segment``, ``benchmark`` and ``batch``."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

from vossegcli.errors import VossegError


def engine_config(
    preset: str, augment: Optional[int], fill: Optional[str], update: bool, seed: int, refiner: str = "default",
    precision: str = "auto", absence: bool = True, target_features: str = "default",
):
    """The engine configuration of ``vosseg segment``'s options (VossegError for an invalid one)."""

    from vossegcli.engine.config import preset_config

    try:
        config = preset_config(preset, seed=seed)
    except ValueError as error:
        raise VossegError(f"--preset {preset}: {error}") from None
    aug = config.augment
    if augment is not None:
        if augment < 0:
            raise VossegError(f"--augment {augment}: must be 0 or more")
        aug = replace(aug, num_samples=augment)
    if fill is not None:
        if fill not in ("inpaint", "gray"):
            raise VossegError(f"--fill {fill}: choose inpaint or gray")
        aug = replace(aug, fill=fill)
    from vossegcli.engine.device import PRECISIONS

    if precision not in PRECISIONS:
        raise VossegError(f"--precision {precision}: choose one of {', '.join(PRECISIONS)}")
    return replace(
        config, augment=aug, update_interval=config.update_interval if update else 0,
        refiner=None if refiner.lower() == "none" else refiner, precision=precision,
        target_features=None if target_features.lower() == "none" else target_features,
        presence=config.presence if absence else replace(config.presence, enabled=False, spatial_prior=False),
    )
