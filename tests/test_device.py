"""Device, precision and determinism choices (engine/device.py)."""

import pytest
import torch

import vossegcli.engine.device as device_module
from vossegcli.engine.device import configure_determinism, precision_name, resolve_precision
from vossegcli.errors import DeviceError
from support import runner

CPU = torch.device("cpu")


def test_auto_precision_on_cpu_follows_native_bf16_support(monkeypatch):
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", CPU) is torch.bfloat16
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", CPU) is None and precision_name(None) == "fp32"


def test_explicit_precisions_and_errors():
    assert resolve_precision("fp32", CPU) is None
    assert resolve_precision("bf16", CPU) is torch.bfloat16
    with pytest.raises(DeviceError, match="precision='fp16' needs a CUDA device"):
        resolve_precision("fp16", CPU)
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("int4", CPU)


def test_deterministic_turns_on_deterministic_algorithms():
    before = torch.are_deterministic_algorithms_enabled()
    try:
        configure_determinism(CPU, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(before)


def test_building_an_engine_changes_no_process_wide_setting_and_the_run_layer_does(monkeypatch):
    from vossegcli.engine.config import preset_config
    from vossegcli.engine.device import configure_process
    from vossegcli.engine.segmenter import Segmenter

    calls = []
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda *a, **k: calls.append("deterministic"))
    monkeypatch.setattr(device_module, "tune_cpu_allocator", lambda: calls.append("allocator"))
    Segmenter(preset_config("fast", refiner=None), device="cpu")
    assert calls == []
    configure_process(CPU, deterministic=True)
    assert calls == ["deterministic", "allocator"]


@pytest.mark.slow
def test_precision_option_reaches_the_engine_and_the_report(tmp_path):

    from vossegcli.cli import app

    report = tmp_path / "r.json"
    result = runner.invoke(app, ["segment", "--out", str(tmp_path / "o"), "--precision", "fp32", "--device", "cpu",
                                      "--preset", "fast", "--augment", "0", "--report", str(report)])
    assert result.exit_code == 0, result.output
    import json

    data = json.loads(report.read_text())
    assert data["dtype"] == "fp32" and data["config"]["precision"] == "fp32"
    assert data["wall_fps"] > 0
    bad = runner.invoke(app, ["segment", "--out", str(tmp_path / "p"), "--precision", "fp8"])
    assert bad.exit_code == 2 and "--precision fp8: choose one of auto, fp32, bf16, fp16" in bad.output
