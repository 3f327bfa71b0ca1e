"""The library API behind ``vosseg segment`` and ``vosseg benchmark``, under its historical name.

The code lives in :mod:`vossegcli.run` (one module per job: :mod:`~vossegcli.run.segment`,
:mod:`~vossegcli.run.inputs`, :mod:`~vossegcli.run.outputs`, :mod:`~vossegcli.run.resume`,
:mod:`~vossegcli.run.report`, :mod:`~vossegcli.run.benchmark`); this module re-exports its public
names, so ``from vossegcli.pipeline import segment`` keeps working.
"""

from __future__ import annotations

from vossegcli.errors import Interrupted, RunInterrupted
from vossegcli.run.benchmark import run_benchmark
from vossegcli.run.options import DEFAULT_MAX_SIZE
from vossegcli.run.inputs import internal_size, load_inputs
from vossegcli.files import clean_temporary_files
from vossegcli.run.outputs import prepare_output_dir
from vossegcli.run.report import SegmentationRun, environment_info, peak_memory_mb, weights_info
from vossegcli.io.run_folder import RUN_FILE, RunFolder
from vossegcli.run.resume import run_identity
from vossegcli.run.segment import ProgressFn, segment
from vossegcli.engine.weights import weights_file

__all__ = [
    "DEFAULT_MAX_SIZE", "RUN_FILE", "Interrupted", "RunFolder", "ProgressFn", "RunInterrupted", "SegmentationRun",
    "clean_temporary_files", "environment_info", "internal_size", "load_inputs", "peak_memory_mb",
    "prepare_output_dir", "weights_file", "run_benchmark", "run_identity", "segment", "weights_info",
]
