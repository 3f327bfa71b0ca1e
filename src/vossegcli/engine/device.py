"""Which device and arithmetic the engine runs with, and how deterministic it is.

* :func:`resolve_device`: "auto" → CUDA when available, else CPU; a clear error for a missing GPU.
* :func:`resolve_precision`: the autocast dtype for the backbone and the refiner. The target
  models and their Gauss–Newton solver always run in float32.
* :func:`configure_process`: the process-wide settings a run wants — algorithm choices
  (:func:`configure_determinism`) and, on CPU, the C allocator (:func:`tune_cpu_allocator`). The
  run layer calls it once before it builds a :class:`~vossegcli.engine.segmenter.Segmenter`; the
  engine itself never changes process-wide settings.
* :func:`configure_determinism`: on CUDA, ``cudnn.benchmark`` (autotuned convolutions) for speed,
  or — with ``deterministic=True`` — deterministic algorithms only. The engine itself uses no
  autograd at run time (the solver's Jacobian products are explicit), so the non-deterministic
  backward kernels of interpolation are never involved; with ``deterministic=True`` the same input
  gives the same masks on the same GPU model, driver and PyTorch. On CPU every run is
  deterministic already (tested).
"""

from __future__ import annotations

import os

import torch

from vossegcli.errors import DeviceError


def resolve_device(name: str) -> torch.device:
    """'auto' → CUDA when available else CPU; 'cuda' fails clearly when CUDA is absent."""
    name = name.lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device={name!r}: this PyTorch ({torch.__version__}) sees no CUDA GPU; use device='cpu' or device='auto'"
            )
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise DeviceError(f"device={name!r}: unknown device; use device='auto', 'cpu' or 'cuda'")


def cuda_status() -> tuple[bool, str]:
    """(usable, one line saying so plainly): whether this PyTorch can run on a GPU here, and if not why."""
    if torch.version.cuda is None:
        return False, (
            f"no: this PyTorch ({torch.__version__}) is a CPU-only build; on a machine with an NVIDIA GPU install "
            "a CUDA build (pip install torch --index-url https://download.pytorch.org/whl/cu126)"
        )
    try:
        count = torch.cuda.device_count()
        available = torch.cuda.is_available()
    except Exception as error:  # noqa: BLE001 - a broken driver raises all kinds of errors
        return False, f"no: PyTorch has CUDA {torch.version.cuda} but the driver fails ({error}); check nvidia-smi"
    if not available or count == 0:
        return False, (
            f"no: PyTorch has CUDA {torch.version.cuda} but finds no GPU (no NVIDIA driver or device; "
            "CUDA_VISIBLE_DEVICES may hide it); `nvidia-smi` should list one"
        )
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(count))
    return True, f"yes: {count} GPU(s) - {names} - CUDA {torch.version.cuda}"


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16, read from /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool({"avx512_bf16", "amx_bf16"} & flags)
    except OSError:
        pass
    return False


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for backbone and refiner (None: plain float32)."""
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {name!r}")
    if name == "fp32":
        return None
    if name == "fp16":
        if device.type != "cuda":
            raise DeviceError("precision='fp16' needs a CUDA device; use precision='bf16' or 'fp32' on CPU")
        return torch.float16
    if name == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else None




def configure_determinism(device: torch.device, deterministic: bool = False) -> None:
    """Set the process-wide algorithm choices for ``device`` (see the module docstring)."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by deterministic cuBLAS
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def configure_process(device: torch.device, deterministic: bool = False) -> None:
    """The process-wide settings of a run on ``device`` (idempotent): algorithm choices and, on CPU,
    the allocator tuning (~10 % faster frames, :func:`tune_cpu_allocator`)."""
    configure_determinism(device, deterministic)
    if device.type == "cpu":
        tune_cpu_allocator()


def precision_name(dtype: torch.dtype | None) -> str:
    """The name of an autocast dtype from :func:`resolve_precision`: "fp32", "bf16" or "fp16"."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def busy_cores(seconds: float = 0.2) -> float | None:
    """How many cores other programs keep busy right now: /proc/stat sampled ``seconds`` apart (Linux;
    None elsewhere). Called before the engine starts, so this process adds next to nothing."""
    import time

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (1.0 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1)


_ALLOCATOR_TUNED = False


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the process instead of returning it to the OS (glibc only).

    Every frame allocates and frees the same few large buffers (full-resolution maps of tens of
    MB). glibc serves large blocks with fresh ``mmap`` pages and returns them on free, so each frame
    pays the kernel's zeroing of every page again: measured ~770 000 page faults over a 40-frame
    480p run with two objects. With mmap off for blocks up to 32 MB and no heap trimming, the freed
    blocks are reused (~210 000 faults, ~10 % faster; docs/RESULTS.md); peak memory is unchanged
    because the same sizes recur every frame. Process-wide and idempotent; returns whether it applied.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        ok = libc.mallopt(m_mmap_threshold, 32 * 2**20) == 1  # glibc's largest allowed value
        ok = libc.mallopt(m_trim_threshold, 2**31 - 1) == 1 and ok
        ok = libc.mallopt(m_top_pad, 64 * 2**20) == 1 and ok
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to do
        return False
    _ALLOCATOR_TUNED = ok
    return ok


def to_host(*tensors: torch.Tensor) -> list:
    """Device tensors → numpy arrays on the host, with **one** wait for the device.

    Every read the engine makes of device values in a frame goes through here, so a frame waits
    for the GPU as few times as possible: each tensor is copied without blocking and the copies
    wait once, together (on CPU this is a plain conversion).
    """
    if tensors and tensors[0].device.type == "cuda":
        copies = [t.detach().to("cpu", non_blocking=True) for t in tensors]
        torch.cuda.current_stream(tensors[0].device).synchronize()
    else:
        copies = [t.detach().cpu() for t in tensors]
    return [c.numpy() for c in copies]
