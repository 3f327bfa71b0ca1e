"""Shared set-up: the helpers in support.py are importable from every test module, and a `cli`
fixture runs vosseg in-process."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import support` under any import mode

from support import run_cli  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """`--threads N` run in-process sets torch's thread count for the whole pytest process; restore it after
    each test so that a later test comparing an in-process run with a subprocess run (byte-identity) compares
    the same arithmetic."""
    import torch

    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def cli():
    """``cli("segment", ...)``: vosseg in-process (see support.run_cli)."""
    return run_cli
