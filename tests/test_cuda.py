"""The engine on a CUDA GPU: the same masks as on the CPU (to rounding), a state saved on one device
continues on the other, and deterministic mode repeats itself exactly. Skipped without a GPU."""

import numpy as np
import pytest
import torch

from vossegcli.engine.config import preset_config
from vossegcli.engine.device import configure_process
from vossegcli.engine.segmenter import Segmenter
from vossegcli.io.palette import read_label_png
from vossegcli.io.video import open_frames
from vossegcli.sample import sample_paths
from support import iou

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def clip():
    with open_frames(sample_paths().video) as reader:
        frames = [f.image for f in reader][:16]
    return frames, read_label_png(sample_paths().mask)


def _masks(device, frames, first, deterministic=False):
    configure_process(torch.device(device), deterministic)
    seg = Segmenter(preset_config("default", precision="fp32"), device=device)
    return [r.labels for r in seg.run(iter(frames), {0: first})]


def test_cuda_masks_agree_with_cpu_masks(clip):
    frames, first = clip
    cpu, gpu = _masks("cpu", frames, first), _masks("cuda", frames, first)
    for a, b in zip(cpu[1:], gpu[1:]):
        assert all(iou(a == o, b == o) > 0.97 for o in (1, 2))


def test_a_state_saved_on_cuda_continues_on_the_cpu_and_back(clip, tmp_path):
    frames, first = clip
    config = preset_config("default", precision="fp32")
    gpu = Segmenter(config, device="cuda")
    state = gpu.new_state()
    for i in range(8):
        gpu.step(state, frames[i], first if i == 0 else None)
    state.save(tmp_path / "gpu.pt")
    on_gpu = [gpu.step(state, frames[i]) for i in range(8, 16)]
    cpu = Segmenter(config, device="cpu")
    moved = cpu.load_state(tmp_path / "gpu.pt")
    on_cpu = [cpu.step(moved, frames[i]) for i in range(8, 12)]
    for a, b in zip(on_gpu, on_cpu):
        assert all(iou(a == o, b == o) > 0.97 for o in (1, 2))
    moved.save(tmp_path / "cpu.pt")
    back = gpu.load_state(tmp_path / "cpu.pt")
    assert back.w1.device.type == "cuda" and back.memory.features.device.type == "cuda"
    assert (gpu.step(back, frames[12]) > 0).any()


def test_deterministic_mode_repeats_exactly_on_cuda(clip):
    frames, first = clip
    a = _masks("cuda", frames, first, deterministic=True)
    b = _masks("cuda", frames, first, deterministic=True)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
