"""Invariants of the first-frame augmentation (engine/augment.py)."""

import pytest
import torch

from vossegcli.engine.augment import AugmentConfig, WarpParams, augment_start_frame, fill_hole, warp_object

RED = torch.tensor([220.0, 20.0, 20.0]).view(3, 1, 1)
BLUE = torch.tensor([20.0, 40.0, 200.0]).view(3, 1, 1)


def _scene(h=96, w=128, box=(30, 60, 40, 80)):
    """A solid red rectangle (the object) on a blue background."""
    y0, y1, x0, x1 = box
    mask = torch.zeros(h, w)
    mask[y0:y1, x0:x1] = 1
    image = BLUE.expand(3, h, w) * (1 - mask) + RED.expand(3, h, w) * mask
    return image, mask


def test_same_seed_same_samples_other_seed_other_samples():
    image, mask = _scene()
    a = augment_start_frame(image, mask, AugmentConfig(num_samples=4), seed=3)
    b = augment_start_frame(image, mask, AugmentConfig(num_samples=4), seed=3)
    c = augment_start_frame(image, mask, AugmentConfig(num_samples=4), seed=4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_shapes_binary_masks_and_no_degenerate_samples():
    image, mask = _scene()
    images, masks = augment_start_frame(image, mask, AugmentConfig(num_samples=6), seed=0)
    assert images.shape == (6, 3, 96, 128) and masks.shape == (6, 96, 128)
    assert set(torch.unique(masks).tolist()) <= {0.0, 1.0}
    area = masks.sum(dim=(1, 2))
    assert (area > 0).all() and (area < 0.99 * 96 * 128).all()
    assert images.min() >= -1 and images.max() <= 256


def test_object_is_pasted_where_the_new_mask_is_and_the_hole_is_filled():
    image, mask = _scene()
    images, masks = augment_start_frame(image, mask, AugmentConfig(num_samples=4, fill="gray"), seed=1)
    assert images.shape[0] == 4
    checked_inside = checked_vacated = 0
    for img, m in zip(images, masks):
        inner = -torch.nn.functional.max_pool2d(-m[None, None], 5, 1, 2)[0, 0] > 0.5  # eroded by 2 px
        assert inner.any()  # every copy shows the object
        assert (img[0][inner] > 150).float().mean() > 0.9  # red object colour inside
        checked_inside += 1
        # Where the object was and is no longer: not object-red (hole filled, gray 128 or background).
        vacated = (mask > 0) & (-torch.nn.functional.max_pool2d(-(1 - m)[None, None], 7, 1, 3)[0, 0] > 0.5)
        if vacated.sum() >= 20:
            assert (img[0][vacated] < 150).float().mean() > 0.9
            checked_vacated += 1
    assert checked_inside == 4 and checked_vacated >= 2  # the hole check really ran


def test_inpainting_reconstructs_a_smooth_image_and_gray_fill_is_128():
    h, w = 64, 80
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    image = torch.stack([xx * 2, yy * 3, xx + yy]).clamp(0, 255)
    hole = torch.zeros(h, w, dtype=torch.bool)
    hole[20:40, 30:50] = True
    filled = fill_hole(image, hole, "inpaint")
    assert (filled - image)[:, hole].abs().mean() < 8.0  # gradients of 1-3 per px over a 20-px hole
    assert torch.equal(filled[:, ~hole], image[:, ~hole])
    gray = fill_hole(image, hole, "gray")
    assert torch.all(gray[:, hole] == 128)


def test_identity_warp_returns_the_object_unchanged():
    image, mask = _scene()
    rgba = torch.cat([image * mask, mask[None] * 255])
    params = WarpParams(center=(59.5, 44.5), new_center=(59.5, 44.5))
    out, label = warp_object(rgba, mask, params)
    assert torch.equal(label, mask)
    assert (out - rgba).abs().max() < 1.0


@pytest.mark.parametrize(
    "box, size",
    [
        ((10, 11, 20, 21), (96, 128)),  # one pixel
        ((0, 30, 0, 40), (96, 128)),  # touching the border
        ((2, 94, 3, 125), (96, 128)),  # ~94 % of the frame
        ((5, 20, 7, 30), (37, 53)),  # odd frame size
    ],
)
def test_edge_cases_terminate_quickly(box, size):
    image, mask = _scene(*size, box=box)
    # Returning at all is the point (the retry loop is capped); no timing is asserted.
    images, masks = augment_start_frame(image, mask, AugmentConfig(num_samples=4), seed=0)
    assert images.shape[0] == masks.shape[0] <= 4
    for m in masks:
        assert 0 < m.sum() < 0.99 * m.numel()


def test_empty_mask_gives_no_samples():
    image, _ = _scene()
    images, masks = augment_start_frame(image, torch.zeros(96, 128), AugmentConfig(num_samples=4), seed=0)
    assert images.shape[0] == 0 and masks.shape[0] == 0


# ------------------------------------------------------------------------------------------
# Further checks (helper session): dtypes, RNG hygiene, strict colours with inpainting, the
# attempt cap, more edge-case masks, warp geometry, filters and sampling decks.

import random  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch.nn.functional as F  # noqa: E402

from vossegcli.engine import augment  # noqa: E402
from vossegcli.engine.augment import (  # noqa: E402
    dilate,
    inpaint,
    motion_blur_kernel,
    object_transform,
    warp_affine,
)


def _erode(mask: torch.Tensor, r: int) -> torch.Tensor:
    """Erode, counting everything beyond the frame as outside (the object may continue there)."""
    padded = F.pad(mask.float(), (r, r, r, r)).bool()
    return (~dilate(~padded, r))[r:-r, r:-r] if r else mask.bool()


def _gradient(h=60, w=80):
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    return torch.stack([2 * xs, 3 * ys, xs + ys + 20]).clamp(0, 255)


def test_global_rng_state_is_neither_used_nor_changed():
    image, mask = _scene()
    cfg = AugmentConfig(num_samples=3)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = augment_start_frame(image, mask, cfg, seed=1)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(123)
    b = augment_start_frame(image, mask, cfg, seed=1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_dtypes_devices_and_mask_types():
    image, mask = _scene()
    images, masks = augment_start_frame(image, mask.bool(), AugmentConfig(num_samples=2), seed=0)
    assert images.dtype == masks.dtype == torch.float32
    assert images.device == masks.device == image.device
    assert images.min() >= 0 and images.max() <= 255
    images, _ = augment_start_frame(image.to(torch.uint8), mask, AugmentConfig(num_samples=2), seed=0)
    assert images.dtype == torch.float32 and images.shape[0] == 2
    images, masks = augment_start_frame(image.double(), mask, AugmentConfig(num_samples=2), seed=0)
    assert images.dtype == masks.dtype == torch.float64


def test_object_lands_in_new_places():
    image, mask = _scene()
    _, masks = augment_start_frame(image, mask, AugmentConfig(num_samples=4), seed=0)
    centres = set()
    for m in masks:
        ys, xs = torch.nonzero(m, as_tuple=True)
        centres.add((round(float(ys.float().mean())), round(float(xs.float().mean()))))
    assert len(centres) == 4  # one grid cell each


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inpaint_mode_pastes_exact_object_colour_and_fills_the_hole_with_background(seed):
    image, mask = _scene()
    red, blue = RED.view(3, 1), BLUE.view(3, 1)
    images, masks = augment_start_frame(image, mask, AugmentConfig(num_samples=4, fill="inpaint"), seed=seed)
    # Every pixel blends object and background colours: bicubic ringing must not make halos.
    low, high = torch.minimum(RED, BLUE).view(1, 3, 1, 1), torch.maximum(RED, BLUE).view(1, 3, 1, 1)
    assert (images >= low - 0.01).all() and (images <= high + 0.01).all()
    saw_vacated = False
    for img, m in zip(images, masks):
        m = m.bool()
        inside, core, outside = _erode(m, 2), _erode(m, 5), ~dilate(m, 4)
        assert inside.any()
        # 2 px in: closer to the object colour than to the background (an up-scaled bicubic edge
        # ramps over a few px); 5 px in: exactly the object colour (no bicubic halo).
        assert ((img[:, inside] - red).norm(dim=0) < (img[:, inside] - blue).norm(dim=0)).all()
        if core.any():
            assert (img[:, core] - red).abs().max() < 3
        # Away from the new mask, including where the object was: background colour.
        assert (img[:, outside] - blue).abs().max() < 3
        saw_vacated |= bool((mask.bool() & outside).any())
    assert saw_vacated


def test_bad_arguments_raise():
    image, mask = _scene()
    with pytest.raises(ValueError):
        augment_start_frame(image, mask, AugmentConfig(fill="telea"), seed=0)
    with pytest.raises(ValueError):
        augment_start_frame(image, mask[:10], AugmentConfig(), seed=0)
    with pytest.raises(ValueError):
        augment_start_frame(image[:2], mask, AugmentConfig(), seed=0)
    with pytest.raises(ValueError):
        augment_start_frame(image, mask, AugmentConfig(max_attempts=0), seed=0)
    with pytest.raises(ValueError):
        fill_hole(image, mask.bool(), "nope")


def _edge_masks(h, w):
    cases = {}
    m = torch.zeros(h, w)
    m[0, w - 1] = 1
    cases["one pixel in a corner"] = m
    m = torch.zeros(h, w)
    m[:, : max(w // 5, 1)] = 1
    m[h - 3 :, :] = 1
    cases["touching three borders"] = m
    m = torch.ones(h, w)
    m.view(-1)[torch.randperm(h * w, generator=torch.Generator().manual_seed(0))[: int(0.05 * h * w)]] = 0
    cases["95 percent, holes scattered"] = m
    cases["whole frame"] = torch.ones(h, w)
    m = torch.zeros(h, w)
    m[::3, ::3] = 1
    cases["sparse dots"] = m
    m = torch.zeros(h, w)
    m[0, :] = 1
    cases["one row"] = m
    return cases


@pytest.mark.parametrize("hw", [(37, 53), (120, 160)])
@pytest.mark.parametrize("fill", ["inpaint", "gray"])
def test_more_edge_case_masks_give_valid_samples(hw, fill):
    h, w = hw
    image = torch.rand(3, h, w, generator=torch.Generator().manual_seed(1)) * 255
    for name, m in _edge_masks(h, w).items():
        start = time.perf_counter()
        images, masks = augment_start_frame(image, m, AugmentConfig(num_samples=4, fill=fill), seed=0)
        assert time.perf_counter() - start < 10, name  # generous: the CI machine may be shared
        assert 1 <= images.shape[0] <= 4, name
        assert images.shape[1:] == (3, h, w) and masks.shape[1:] == (h, w), name
        areas = masks.sum((1, 2))
        assert (areas >= 1).all() and (areas <= augment.MAX_COVERAGE * h * w).all(), name
        assert torch.isfinite(images).all(), name


def test_tiny_object_is_scaled_up_to_the_minimum_side():
    image = torch.rand(3, 120, 160, generator=torch.Generator().manual_seed(1)) * 255
    mask = torch.zeros(120, 160)
    mask[60, 80] = 1
    _, masks = augment_start_frame(image, mask, AugmentConfig(num_samples=4), seed=0)
    areas = masks.sum((1, 2))  # ×10 (then rotated): roughly 100 px unless cut by the border
    assert (areas >= 20).all() and (areas <= 150).all()


def test_zero_samples_requested():
    image, mask = _scene()
    images, masks = augment_start_frame(image, mask, AugmentConfig(num_samples=0), seed=0)
    assert images.shape[0] == 0 and masks.shape[0] == 0


def test_attempt_cap_returns_fewer_samples_instead_of_looping(monkeypatch):
    image, mask = _scene()
    monkeypatch.setattr(augment, "MAX_COVERAGE", 0.0)  # every draw now counts as "whole frame"
    calls = []
    real = augment.warp_affine

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(augment, "warp_affine", counting)
    images, masks = augment_start_frame(image, mask, AugmentConfig(num_samples=3, max_attempts=5), seed=0)
    assert images.shape[0] == 0 and masks.shape[0] == 0
    assert len(calls) <= 3 * 5


def test_inpaint_gradient_error_is_small_and_degenerate_holes_work():
    image = _gradient()
    hole = torch.zeros(60, 80, dtype=torch.bool)
    hole[20:40, 30:55] = True
    err = (inpaint(image, hole) - image)[:, hole].abs()
    assert err.mean() < 1.5 and err.max() < 6  # slopes are 2–3 gray levels per px
    odd = _gradient(37, 53)
    hole = torch.zeros(37, 53, dtype=torch.bool)
    hole[5:9, 40:53] = True  # touches the right border
    out = inpaint(odd, hole)
    assert torch.isfinite(out).all() and (out - odd)[:, hole].abs().mean() < 10
    assert torch.equal(inpaint(odd, torch.zeros_like(hole)), odd)
    assert (inpaint(odd, torch.ones_like(hole)) == 128).all()


def _random_rgba(h=31, w=45, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(4, h, w, generator=g) * 255, (torch.rand(h, w, generator=g) > 0.5).float()


def test_translation_moves_pixels_by_whole_pixels():
    rgba, label = _random_rgba()
    params = WarpParams(center=(10.0, 10.0), new_center=(15.0, 13.0))  # +5 px in x, +3 px in y
    out, lab = warp_object(rgba, label, params)
    assert torch.allclose(out[:, 3:, 5:], rgba[:, :-3, :-5], atol=1e-3)
    assert torch.equal(lab[3:, 5:], label[:-3, :-5])
    assert out[:, :3].abs().max() < 1e-3 and out[:, :, :5].abs().max() < 1e-3  # zeros padding
    assert lab[:3].sum() == 0 and lab[:, :5].sum() == 0


def test_scale_flip_and_rotation_of_a_label():
    label = torch.zeros(41, 41)
    label[18:23, 18:23] = 1  # 5×5 square centred on (20, 20)
    label[18, 18] = 0  # asymmetry: top-left corner missing
    rgba = label.expand(4, -1, -1).clone()
    centre = dict(center=(20.0, 20.0), new_center=(20.0, 20.0))
    _, big = warp_object(rgba, label, WarpParams(**centre, scale=3.0))
    ys, xs = torch.nonzero(big, as_tuple=True)
    assert int(ys.max() - ys.min()) + 1 == 15 and int(xs.max() - xs.min()) + 1 == 15
    _, flipped = warp_object(rgba, label, WarpParams(**centre, flip=True))
    assert torch.equal(flipped, label.flip(-1))
    _, turned = warp_object(rgba, label, WarpParams(**centre, angle_deg=90.0))
    assert torch.equal(turned, torch.rot90(label, 1, (0, 1))) or torch.equal(turned, torch.rot90(label, -1, (0, 1)))


def test_windowed_warp_matches_the_full_frame_warp():
    h, w = 50, 70
    src = torch.zeros(4, h, w)
    src[:, 20:32, 30:45] = torch.rand(4, 12, 15, generator=torch.Generator().manual_seed(2)) * 255
    forward = object_transform(
        WarpParams(center=(37.0, 25.5), new_center=(20.0, 18.0), scale=1.5, flip=True, angle_deg=20.0, skew=(0.1, 0.1))
    )
    full = warp_affine(src, forward, (h, w), mode="bicubic")
    crop = src[:, 16:36, 26:49]  # the object plus a 4-px margin, offset (x=26, y=16)
    win = warp_affine(crop, forward, (25, 33), mode="bicubic", src_offset=(26, 16), out_offset=(3, 5))
    assert torch.allclose(win, full[:, 5:30, 3:36], atol=1e-2)


def test_motion_blur_kernel_sizes_and_direction():
    assert motion_blur_kernel(0, 45) is None
    for size, side in [(1, 3), (2, 3), (5, 7)]:
        k = motion_blur_kernel(size, 0)
        assert k.shape == (side, side) and torch.isclose(k.sum(), torch.tensor(1.0))
    assert motion_blur_kernel(5, 0)[3].sum() > 0.9  # angle 0: a horizontal blur
    assert motion_blur_kernel(5, 90)[:, 3].sum() > 0.9


def test_grid_has_enough_roughly_square_cells_and_decks_draw_without_replacement():
    assert augment._grid_shape(5, 480, 854) == (2, 4)
    for n in range(1, 25):
        for h, w in [(480, 854), (854, 480), (37, 53), (100, 100)]:
            rows, cols = augment._grid_shape(n, h, w)
            assert rows * cols >= n and 0.3 < (h / rows) / (w / cols) < 3.5
    deck = augment._Deck.of(augment.OBJ_FLIPS, random.Random(0))
    draws = [deck.draw() for _ in range(10)]
    assert sum(draws[:5]) == 1 and sum(draws[5:]) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda_and_agrees_with_cpu():
    image, mask = _scene()
    cpu_img, cpu_mask = augment_start_frame(image, mask, AugmentConfig(num_samples=4), seed=0)
    gpu_img, gpu_mask = augment_start_frame(image.cuda(), mask.cuda(), AugmentConfig(num_samples=4), seed=0)
    assert gpu_img.is_cuda and gpu_mask.is_cuda and gpu_img.shape == cpu_img.shape
    assert (gpu_mask.cpu() != cpu_mask).float().mean() < 0.01
    assert (gpu_img.cpu() - cpu_img).abs().mean() < 1.0


DAVIS = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis16-train"


@pytest.mark.shared
@pytest.mark.skipif(not (DAVIS / "videos").is_dir(), reason="needs ../shared/data/davis16-train")
def test_real_frame_gives_four_plausible_samples():
    import imageio_ffmpeg
    import numpy as np
    from PIL import Image

    frames = imageio_ffmpeg.read_frames(str(DAVIS / "videos" / "car-turn.mp4"))
    width, height = next(frames)["size"]
    frame = np.frombuffer(next(frames), np.uint8).reshape(height, width, 3)
    frames.close()
    image = torch.from_numpy(frame.copy()).permute(2, 0, 1).float()
    mask = torch.from_numpy(np.array(Image.open(DAVIS / "masks" / "car-turn" / "00000.png")) > 0)
    images, masks = augment_start_frame(image, mask, AugmentConfig(num_samples=4), seed=0)
    assert images.shape == (4, 3, height, width)
    ratio = masks.sum((1, 2)) / mask.sum()  # area × scale² from {0.5 … 2.5}, minus border cuts
    assert ((ratio > 0.5**2 * 0.5) & (ratio < 2.5**2 * 1.5)).all()
