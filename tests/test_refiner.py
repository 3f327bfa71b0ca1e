import torch

from vossegcli.engine.backbone import BackboneFeatures
from vossegcli.engine.geometry import upsample_scores
from vossegcli.engine.refiner import Refiner, RefinerConfig, load_refiner, save_refiner


def _features(b=1, h=96, w=128):
    g = torch.Generator().manual_seed(0)
    return BackboneFeatures(*(torch.randn(b, c, -(-h // s), -(-w // s), generator=g) for c, s in ((24, 4), (48, 8), (120, 16), (352, 32))))


def test_output_is_full_resolution_logits_for_each_object():
    feats = _features()
    scores = torch.randn(3, 1, 6, 8)  # 3 objects share one frame's features
    out = Refiner(RefinerConfig(width=16)).eval()(feats, scores, (96, 128))
    assert out.shape == (3, 1, 96, 128) and torch.isfinite(out).all()


def test_odd_frame_sizes_work():
    feats = _features(h=101, w=77)
    out = Refiner(RefinerConfig(width=16)).eval()(feats, torch.randn(1, 1, 7, 5), (101, 77))
    assert out.shape == (1, 1, 101, 77)


def test_untrained_refiner_with_score_skip_reproduces_the_d_only_engine():
    feats = _features()
    scores = torch.randn(2, 1, 6, 8)
    refiner = Refiner(RefinerConfig(width=16, score_skip=True, skip_init=8.0)).eval()
    with torch.no_grad():
        logits = refiner(feats, scores, (96, 128))
    expected = 8.0 * (upsample_scores(scores, (96, 128)) - 0.5)
    assert torch.allclose(logits, expected, atol=1e-5)


def test_gradients_reach_every_parameter():
    refiner = Refiner(RefinerConfig(width=8, score_skip=False))
    out = refiner(_features(b=2), torch.randn(2, 1, 6, 8), (96, 128))
    out.mean().backward()
    silent = [n for n, p in refiner.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not silent, f"no gradient reaches {silent}"


def test_save_and_load_round_trip(tmp_path):
    refiner = Refiner(RefinerConfig(width=8)).eval()
    for p in refiner.parameters():
        torch.nn.init.normal_(p)
    save_refiner(refiner, tmp_path / "r.pt", meta={"step": 3})
    loaded = load_refiner(tmp_path / "r.pt")
    feats, scores = _features(), torch.randn(1, 1, 6, 8)
    with torch.no_grad():
        assert torch.equal(refiner(feats, scores, (96, 128)), loaded(feats, scores, (96, 128)))


def test_upsampler_reordered_tail_equals_the_direct_computation_and_its_gradient():
    """The upsampler sums conv2's taps before upsampling (cheaper); it must equal
    conv2(resize(bicubic(x))) in value and in gradient (training uses it)."""
    import torch.nn.functional as F

    from vossegcli.engine.refiner import Upsampler

    torch.manual_seed(0)
    up = Upsampler(8).double()
    z = torch.randn(2, 8, 9, 13, dtype=torch.float64, requires_grad=True)

    def direct(z):
        x = F.interpolate(z, scale_factor=2, mode="bicubic", align_corners=False)
        x = F.relu(up.conv1(x))
        x = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
        return up.conv2(F.interpolate(x, size=(35, 50), mode="bilinear", align_corners=False))

    got, expected = up(z, (35, 50)), direct(z)
    assert got.shape == (2, 1, 35, 50) and torch.allclose(got, expected, atol=1e-10)
    with torch.inference_mode():  # the in-place path
        assert torch.allclose(up(z, (35, 50)), expected, atol=1e-10)
    g = torch.randn_like(got)
    grads = torch.autograd.grad((got * g).sum(), [z, up.conv2.weight, up.conv2.bias])
    grads_ref = torch.autograd.grad((direct(z) * g).sum(), [z, up.conv2.weight, up.conv2.bias])
    assert all(torch.allclose(a, b, atol=1e-9) for a, b in zip(grads, grads_ref))


def test_bicubic_x2_equals_pytorchs_bicubic_upsampling_including_borders():
    import torch.nn.functional as F

    from vossegcli.engine.refiner import _bicubic_x2

    for shape in ((1, 1, 1, 1), (1, 3, 2, 5), (2, 8, 13, 9)):
        x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        ref = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
        got = _bicubic_x2(x)
        assert got.shape == ref.shape and torch.allclose(got, ref, atol=1e-12)
        g = torch.randn_like(ref)
        assert torch.allclose(torch.autograd.grad((got * g).sum(), x)[0], torch.autograd.grad((ref * g).sum(), x)[0], atol=1e-12)


def test_refiner_trains_after_running_in_inference_mode():
    """Validation runs the refiner under inference mode; training must still work afterwards."""
    from vossegcli.engine.backbone import BackboneFeatures
    from vossegcli.engine.refiner import Refiner, RefinerConfig

    torch.manual_seed(0)
    refiner = Refiner(RefinerConfig(width=8))
    feats = BackboneFeatures(s4=torch.randn(1, 24, 16, 16), s8=torch.randn(1, 48, 8, 8),
                             s16=torch.randn(1, 120, 4, 4), s32=torch.randn(1, 352, 2, 2))
    scores = torch.randn(1, 1, 4, 4)
    with torch.inference_mode():
        refiner(feats, scores, (64, 64))
    before = refiner(feats, scores, (64, 64))
    before.square().mean().backward()
    torch.optim.SGD(refiner.parameters(), lr=0.1).step()  # an inference tensor in the module would raise here
    with torch.no_grad():
        assert not torch.allclose(refiner(feats, scores, (64, 64)), before)  # the step changed the output


# -- evidence inputs, target attention, convex upsampler (issue 11) -------------------------------
from vossegcli.engine.refiner import ConvexUpsampler, load_partial  # noqa: E402


def _extended(**kw):
    return Refiner(RefinerConfig(width=8, evidence=("gmm", "gdm"), attention=True, upsampler="convex", **kw))


def test_extended_refiner_takes_evidence_and_attention_and_refuses_missing_inputs():
    import pytest

    refiner = _extended().eval()
    feats, scores = _features(), torch.randn(2, 1, 6, 8)
    attention = refiner.attention_vectors(feats, torch.rand(2, 1, 6, 8))
    assert attention.shape == (2, 4, 8)
    out = refiner(feats, scores, (96, 128), torch.rand(2, 5, 6, 8), attention)
    assert out.shape == (2, 1, 96, 128) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="5 evidence channels"):
        refiner(feats, scores, (96, 128), None, attention)
    with pytest.raises(ValueError, match="attention"):
        refiner(feats, scores, (96, 128), torch.rand(2, 5, 6, 8), None)


def test_untrained_convex_upsampler_interpolates_the_score_skip_bilinearly():
    import torch.nn.functional as F

    feats, scores = _features(), torch.randn(1, 1, 6, 8)
    refiner = Refiner(RefinerConfig(width=8, upsampler="convex")).eval()
    with torch.no_grad():
        out = refiner(feats, scores, (96, 128))
    s4 = F.interpolate(scores, (24, 32), mode="bilinear", align_corners=False)
    expected = 8.0 * (F.interpolate(s4, (96, 128), mode="bilinear", align_corners=False) - 0.5)
    # to the 1e-4 floor of the initial log-weights, on logits up to ±16
    assert torch.allclose(out, expected, atol=1e-2)


def test_convex_upsampling_gradient_matches_finite_differences():
    up = ConvexUpsampler(4).double()
    torch.nn.init.normal_(up.weights.weight, std=0.3)
    z = torch.randn(1, 4, 3, 4, dtype=torch.float64, requires_grad=True)
    coarse = torch.randn(1, 1, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: up.upsample(a, b), (z, coarse))


def test_warm_start_reproduces_the_smaller_refiner_until_trained():
    small = Refiner(RefinerConfig(width=8, upsampler="convex")).eval()
    for p in small.parameters():
        torch.nn.init.normal_(p, std=0.2)
    big = _extended().eval()
    fresh = load_partial(big, small.state_dict())
    assert fresh and all(name.startswith("attention.") and ".head." in name for name in fresh)
    feats, scores = _features(), torch.randn(2, 1, 6, 8)
    with torch.no_grad():
        attention = big.attention_vectors(feats, torch.rand(2, 1, 6, 8))
        assert torch.allclose(small(feats, scores, (96, 128)),
                              big(feats, scores, (96, 128), torch.rand(2, 5, 6, 8), attention), atol=1e-5)


def test_gradients_reach_the_evidence_and_attention_weights():
    refiner = _extended(score_skip=False)
    for p in refiner.parameters():
        torch.nn.init.normal_(p, std=0.1)
    feats = _features(b=2)
    attention = refiner.attention_vectors(feats, torch.rand(2, 1, 6, 8))
    refiner(feats, torch.randn(2, 1, 6, 8), (96, 128), torch.rand(2, 5, 6, 8), attention).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in refiner.parameters())
    assert refiner.tse["s4"].encode[0].weight.grad[:, -5:].abs().sum() > 0  # evidence input channels
    assert refiner.attention["s16"].tse.encode[0].weight.grad.abs().sum() > 0
    assert refiner.cab["s8"].gate[0].weight.grad[:, -8:].abs().sum() > 0  # attention input of the CAB


def test_extended_refiner_round_trips_and_is_deterministic(tmp_path):
    refiner = _extended().eval()
    for p in refiner.parameters():
        torch.nn.init.normal_(p, std=0.1)
    save_refiner(refiner, tmp_path / "r.pt")
    loaded = load_refiner(tmp_path / "r.pt")
    assert loaded.config == refiner.config and loaded.config.evidence == ("gmm", "gdm")
    feats, scores, ev = _features(), torch.randn(1, 1, 6, 8), torch.rand(1, 5, 6, 8)
    with torch.no_grad():
        a = refiner(feats, scores, (96, 128), ev, refiner.attention_vectors(feats, torch.rand(1, 1, 6, 8, generator=torch.Generator().manual_seed(1))))
        b = loaded(feats, scores, (96, 128), ev, loaded.attention_vectors(feats, torch.rand(1, 1, 6, 8, generator=torch.Generator().manual_seed(1))))
    assert torch.equal(a, b)
