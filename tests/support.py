"""Helpers the test modules share: one CLI runner, and the IoU of two masks."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from vossegcli.cli import app

runner = CliRunner()


def run_cli(*args, env: dict | None = None):
    """``vosseg ARGS`` in-process; every argument is passed as ``str``. Returns click's Result."""
    return runner.invoke(app, [str(a) for a in args], env=env)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0
