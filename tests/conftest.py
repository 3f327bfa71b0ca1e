"""Shared set-up: the helpers in support.py are importable from every test module, and a `cli`
fixture runs vosseg in-process."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import support` under any import mode

from support import run_cli  # noqa: E402


@pytest.fixture(scope="session")
def cli():
    """``cli("segment", ...)``: vosseg in-process (see support.run_cli)."""
    return run_cli
