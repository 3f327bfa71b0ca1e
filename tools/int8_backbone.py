"""Measure an int8 (post-training static quantization) EfficientNet-Lite2 backbone (docs/RESULTS.md, issue 9).

    python tools/int8_backbone.py              # speed of one 854x480 frame, fp32 vs int8
    python tools/int8_backbone.py val OUT_DIR  # and the davis16-train val J&F with the int8 backbone

Measurement only, not shipped: PyTorch's eager-mode quantization (``torch.ao.quantization``, x86
backend) on a copy of the backbone built for one frame size (the TF-SAME padding is fixed as
explicit zero padding), calibrated on 16 frames of davis16-train ``train`` clips.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.ao.quantization as tq
import torch.nn as nn

from vossegcli.engine.backbone import _TAPS, Backbone, BackboneFeatures, _same_pad

SIZE = (480, 854)
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis16-train"


class QConv(nn.Module):
    """A folded ``_SameConv2d`` as zero padding + ``nn.Conv2d`` (+ ReLU6) for a fixed input size."""

    def __init__(self, same, in_hw, act):
        super().__init__()
        k, s = same.kernel_size[0], same.stride[0]
        top, bottom = _same_pad(in_hw[0], k, s)
        left, right = _same_pad(in_hw[1], k, s)
        self.pad = nn.ZeroPad2d((left, right, top, bottom)) if (top or bottom or left or right) else nn.Identity()
        w = same.fused_weight.contiguous()
        self.conv = nn.Conv2d(w.shape[1] * same.groups, w.shape[0], k, s, 0, groups=same.groups, bias=True)
        self.conv.weight = nn.Parameter(w.clone())
        self.conv.bias = nn.Parameter(same.fused_bias.clone())
        self.act = nn.ReLU6() if act else nn.Identity()
        self.out_hw = (-(-in_hw[0] // s), -(-in_hw[1] // s))

    def forward(self, x):
        return self.act(self.conv(self.pad(x)))


class QBlock(nn.Module):
    def __init__(self, block, in_hw):
        super().__init__()
        layers = []
        hw = in_hw
        if block.has_expand:
            layers.append(QConv(block._expand_conv, hw, True))
        dw = QConv(block._depthwise_conv, hw, True)
        layers.append(dw)
        hw = dw.out_hw
        layers.append(QConv(block._project_conv, hw, False))
        self.body = nn.Sequential(*layers)
        self.residual = block.residual
        self.add = nn.quantized.FloatFunctional()
        self.out_hw = hw

    def forward(self, x):
        y = self.body(x)
        return self.add.add(y, x) if self.residual else y


class QBackbone(nn.Module):
    def __init__(self, bb: Backbone, hw=SIZE):
        super().__init__()
        self.quant = tq.QuantStub()
        self.stem = QConv(bb._conv_stem, hw, True)
        hw = self.stem.out_hw
        blocks = []
        for block in bb._blocks:
            blocks.append(QBlock(block, hw))
            hw = blocks[-1].out_hw
        self.blocks = nn.ModuleList(blocks)
        self.dequant = nn.ModuleDict({name: tq.DeQuantStub() for name in _TAPS})

    def forward(self, images):
        x = self.quant((images.float() - 127.0) / 128.0)
        x = self.stem(x)
        taps = {}
        names = {idx: name for name, idx in _TAPS.items()}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in names:
                taps[names[i]] = self.dequant[names[i]](x).contiguous()
        return BackboneFeatures(**taps)


def calibration_frames(n=16):
    from vossegcli.io.video import open_frames

    names = json.loads((DATA / "splits.json").read_text())["train"][:8]
    frames = []
    for name in names:
        with open_frames(DATA / "videos" / f"{name}.mp4") as reader:
            for i, f in enumerate(reader):
                if i in (0, 30):
                    frames.append(torch.from_numpy(np.ascontiguousarray(f.image)).permute(2, 0, 1)[None])
                if i >= 30:
                    break
    return frames[:n]


def build_int8():
    torch.backends.quantized.engine = "x86"
    bb = Backbone()
    q = QBackbone(bb).eval()
    q.qconfig = tq.get_default_qconfig("x86")
    tq.prepare(q, inplace=True)
    with torch.no_grad():
        for frame in calibration_frames():
            q(frame)
    tq.convert(q, inplace=True)
    return bb, q


def tm(fn, n=10):
    fn()
    fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return round(1000 * sorted(ts)[n // 2], 1)


def main():
    bb, q = build_int8()
    x = (torch.rand(1, 3, *SIZE) * 255)
    with torch.inference_mode():
        speed = {"fp32 channels_last ms": tm(lambda: bb(x)), "int8 (x86 eager static) ms": tm(lambda: q(x))}
        ref, got = bb(x), q(x)
        speed["s16 relative error"] = round(float((ref.s16 - got.s16).norm() / ref.s16.norm()), 4)
    print(json.dumps(speed))
    if len(sys.argv) > 2 and sys.argv[1] == "val":
        from vossegcli.engine.segmenter import Segmenter
        from vossegcli.engine.config import preset_config
        from vossegcli.eval.davis import evaluate
        from vossegcli.io.palette import read_label_png, write_label_png
        from vossegcli.io.video import open_frames

        seg = Segmenter(preset_config("default", precision="fp32"), device="cpu")

        class Int8(nn.Module):  # the engine's backbone interface
            def forward(self, images):
                return q(images.float())

        seg.backbone = Int8()
        out = Path(sys.argv[2])
        seqs = json.loads((DATA / "splits.json").read_text())["val"]
        for s in seqs:
            first = read_label_png(DATA / "masks" / s / "00000.png")
            (out / s).mkdir(parents=True, exist_ok=True)
            with open_frames(DATA / "videos" / f"{s}.mp4") as r:
                for res in seg.run((f.image for f in r), {0: first}):
                    write_label_png(out / s / f"{res.index:05d}.png", res.labels, None)
        r = evaluate(out, DATA / "masks", sequences=seqs)
        print(json.dumps({"val J&F int8 backbone": round(100 * r.jf_mean, 2),
                          "per_seq": {k: round(100 * v[2], 1) for k, v in r.per_sequence().items()}}))


if __name__ == "__main__":
    main()
