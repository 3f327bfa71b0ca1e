import torch

from vossegcli.engine.backbone import BackboneFeatures
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


from vossegcli.engine.refiner import ConvexUpsampler  # noqa: E402


def test_untrained_convex_upsampler_interpolates_the_score_skip_bilinearly():
    import torch.nn.functional as F

    feats, scores = _features(), torch.randn(1, 1, 6, 8)
    refiner = Refiner(RefinerConfig(width=8)).eval()
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


def test_files_of_removed_variants_are_refused_and_older_convex_files_load(tmp_path):
    """A weights file written before the variants left names them: the convex one this version runs
    loads; one that needs appearance evidence is refused with a message that says to retrain."""
    import pytest

    refiner = Refiner(RefinerConfig(width=8)).eval()
    blob = {"config": {**refiner.config.as_dict(), "evidence": [], "attention": False, "upsampler": "convex"},
            "state_dict": refiner.state_dict(), "meta": {}}
    torch.save(blob, tmp_path / "old.pt")
    assert load_refiner(tmp_path / "old.pt").config == refiner.config
    blob["config"]["evidence"] = ["gmm"]
    torch.save(blob, tmp_path / "gmm.pt")
    with pytest.raises(ValueError, match="evidence=.*removed from vosseg.*vosseg train"):
        load_refiner(tmp_path / "gmm.pt")
