"""CPU cost per object of refiner files at 480p (854×480), as the engine runs them (channels_last,
the engine's autocast): the refiner forward for one object, the appearance evidence (maps + update)
for one object, and one target-attention refresh. Best of ``--repeat`` rounds of 10 calls.

    python tools/refiner_cost.py weights/refiner.pt runs/a/refiner.pt ...   (run alone: 2 cores)
"""
import json
import sys
import time

import numpy as np
import torch

from vossegcli.engine.evidence import AppearanceEvidence
from vossegcli.engine.segmenter import Segmenter, preset_config


def best_ms(fn, rounds: int = 3, calls: int = 10) -> float:
    fn()
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t) / calls)
    return round(1000 * best, 1)


def main(paths: list[str]) -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (480, 854, 3), dtype=np.uint8)
    for path in paths:
        seg = Segmenter(preset_config("default", refiner=path), device="cpu")
        refiner = seg.refiner
        with torch.inference_mode(), seg._autocast():
            feats = seg.backbone(torch.from_numpy(frame).permute(2, 0, 1)[None].contiguous())
        grid = feats.s16.shape[-2:]
        scores = torch.rand(1, 1, *grid)
        mask = torch.zeros(1, 480, 854)
        mask[0, 120:360, 200:600] = 1
        row = {"refiner": path, "config": refiner.config.as_dict(), "precision": seg.precision}
        evidence = None
        if refiner.config.evidence:
            ev = AppearanceEvidence(refiner.config.evidence)
            ev.add_objects(feats.s16[0].float(), mask)
            evidence = ev.maps(feats.s16[0].float())
            accept = torch.ones(1, dtype=torch.bool)
            soft = mask[:, ::4, ::4]
            row["evidence_ms"] = best_ms(lambda: (ev.maps(feats.s16[0].float()),
                                                  ev.update(feats.s16[0].float(), soft, accept)))
        with torch.inference_mode(), seg._autocast():
            attention = refiner.attention_vectors(feats, mask[:, None]) if refiner.config.attention else None
            if attention is not None:
                row["attention_refresh_ms"] = best_ms(lambda: refiner.attention_vectors(feats, mask[:, None]))
            row["refiner_ms"] = best_ms(lambda: refiner(feats, scores, (480, 854), evidence, attention))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    torch.set_num_threads(2)
    main(sys.argv[1:])
