"""Is the installed PyTorch usable here, and is it the right build? One-line answers with the fix.

vosseg needs only ``torch`` (no torchvision: see ``engine/reid.py``). Two installs go wrong often:
a torch that does not import (a broken or half-replaced install), and a CUDA build — several GB of
NVIDIA libraries — on a machine with no GPU, where the ~200 MB CPU build does the same work.
"""

from __future__ import annotations

from importlib import metadata

CPU_INSTALL = "pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/cpu"
GPU_INSTALL = "pip install --force-reinstall torch"


def torch_import_problem() -> str | None:
    """None when ``import torch`` works, else one line: what failed and the command that fixes it."""
    try:
        import torch  # noqa: F401
    except Exception as error:  # noqa: BLE001 - a broken install raises ImportError, OSError, RuntimeError...
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return (f"PyTorch does not import ({first}); reinstall it: `{CPU_INSTALL}` on a machine without an "
                f"NVIDIA GPU, `{GPU_INSTALL}` with one")
    return None


def cuda_build_without_gpu() -> str | None:
    """One line when this torch is a CUDA build but no GPU is usable (the CPU build would do), else None."""
    import torch

    if torch.version.cuda is None:
        return None
    try:
        if torch.cuda.is_available():
            return None
    except Exception:  # noqa: BLE001 - a broken driver: cuda_status reports it
        return None
    return (f"this PyTorch ({torch.__version__}) is a CUDA build, but no GPU is usable here; on a machine without "
            f"an NVIDIA GPU the CPU build runs the same and is several GB smaller: `{CPU_INSTALL}`")


def torchvision_status() -> str:
    """A line on torchvision, which vosseg does not use: absent, matched, or not matching this torch."""
    try:
        installed = metadata.version("torchvision")
    except metadata.PackageNotFoundError:
        return "not installed (not needed)"
    import torch

    wanted = [r for r in (metadata.requires("torchvision") or []) if r.replace(" ", "").startswith("torch==")]
    pinned = wanted[0].split("==", 1)[1].split(";")[0].strip() if wanted else None
    mine = torch.__version__.split("+")[0]
    if pinned is not None and pinned.split("+")[0] != mine:
        return (f"{installed} was built for torch {pinned}, not this torch {torch.__version__}; vosseg does not use "
                "it, but other code importing it will fail: `pip uninstall torchvision`, or install the pair together")
    try:
        import torchvision.ops  # noqa: F401
        import torch.ops  # noqa: F401

        torch.ops.torchvision.nms  # noqa: B018 - raises when the compiled ops do not match this torch
    except Exception as error:  # noqa: BLE001
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return (f"{installed} does not load against this torch ({first}); vosseg does not use it: "
                "`pip uninstall torchvision`, or install torch and torchvision together from one index")
    return f"{installed} (matches torch; not needed by vosseg)"
