"""What vosseg says about a broken or oversized PyTorch install (one line with the fix, no traceback)."""

import os
import subprocess
import sys
from importlib import metadata

import torch

from vossegcli import install_check


def _broken_torch_env(tmp_path):
    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise OSError('libtorch_cpu.so: cannot open shared object file')\n")
    return dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")


def test_help_needs_no_torch(tmp_path):
    done = subprocess.run([sys.executable, "-m", "vossegcli.cli", "segment", "--help"], env=_broken_torch_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--mask" in done.stdout, done.stderr


def test_a_torch_that_does_not_import_gives_one_line_with_the_fix(tmp_path):
    env = _broken_torch_env(tmp_path)
    done = subprocess.run([sys.executable, "-m", "vossegcli.cli", "info"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    message = " ".join(lines)
    assert "PyTorch does not import" in message and "libtorch_cpu.so" in message
    assert "--index-url https://download.pytorch.org/whl/cpu" in message


def test_a_cuda_build_without_a_gpu_is_named_with_the_cpu_install(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    line = install_check.cuda_build_without_gpu()
    assert line is not None and "CUDA build" in line and install_check.CPU_INSTALL in line
    monkeypatch.setattr(torch.version, "cuda", None)
    assert install_check.cuda_build_without_gpu() is None  # a CPU build is what a CPU machine should have


def test_a_torchvision_built_for_another_torch_is_reported_as_not_matching(monkeypatch):
    real_version, real_requires = metadata.version, metadata.requires
    monkeypatch.setattr(install_check.metadata, "version",
                        lambda name: "0.99.0" if name == "torchvision" else real_version(name))
    monkeypatch.setattr(install_check.metadata, "requires",
                        lambda name: ["numpy", "torch==1.0.0"] if name == "torchvision" else real_requires(name))
    line = install_check.torchvision_status()
    assert "built for torch 1.0.0" in line and "vosseg does not use it" in line


def test_vosseg_does_not_need_torchvision():
    code = ("import sys; sys.modules['torchvision'] = None; "
            "from vossegcli.engine import segmenter, presence, reid; from vossegcli import cli; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    requires = metadata.requires("vosseg") or []
    assert not [r for r in requires if r.startswith("torchvision") and "extra" not in r]
