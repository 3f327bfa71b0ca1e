"""Backbone time per 854x480 frame on this CPU: eager NCHW fp32, channels_last fp32 (shipped), bf16 autocast, torch.compile."""
import time, json, sys, torch
from vossegcli.engine.backbone import Backbone
x = (torch.rand(1, 3, 480, 854) * 255)
def tm(fn, n=10):
    fn(); fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    ts.sort(); return round(1000 * ts[len(ts) // 2], 1)
res = {}
with torch.inference_mode():
    bb = Backbone()
    res["channels_last fp32 (shipped)"] = tm(lambda: bb(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        res["channels_last bf16 autocast"] = tm(lambda: bb(x))
    # eager NCHW: convert folded weights back to contiguous
    for m in bb.modules():
        if hasattr(m, "fused_weight"):
            m.fused_weight = m.fused_weight.contiguous()
    orig = bb._stem
    def stem_nchw(images, orig=orig):
        return orig(images).contiguous()
    bb._stem = stem_nchw
    res["eager NCHW fp32"] = tm(lambda: bb(x))
if "compile" in sys.argv:
    bb = Backbone()
    t = time.perf_counter()
    cb = torch.compile(bb)
    with torch.inference_mode():
        cb(x)
    res["torch.compile fp32: first call (compile) s"] = round(time.perf_counter() - t, 1)
    with torch.inference_mode():
        res["torch.compile fp32"] = tm(lambda: cb(x))
print(json.dumps(res, indent=1))
