"""io/masks.py: every accepted mask format, and every user mistake as a one-line MaskError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from vossegcli.errors import MaskError
from vossegcli.io.masks import MAX_OBJECTS, MaskSet, load_masks, parse_mask_arg
from vossegcli.io.palette import davis_palette, write_label_png

W, H = 160, 120
SIZE = (H, W)  # load_masks takes (height, width), like numpy shapes


def two_objects() -> np.ndarray:
    labels = np.zeros((H, W), dtype=np.uint8)
    labels[10:40, 10:50] = 1  # 1200 px
    labels[60:100, 80:150] = 2  # 2800 px
    return labels


def rect(y0, y1, x0, x1, value=255) -> np.ndarray:
    out = np.zeros((H, W), dtype=np.uint8)
    out[y0:y1, x0:x1] = value
    return out


def save_gray(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array.astype(np.uint8), mode="L").save(path)
    return path


def areas(masks: MaskSet) -> dict[int, int]:
    return {o.id: o.area for o in masks.objects}


def assert_one_line(err: pytest.ExceptionInfo, name: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    assert name in message


# ----------------------------------------------------------------- parse_mask_arg


def test_parse_mask_arg_forms(tmp_path):
    assert parse_mask_arg("mask.png") == (None, Path("mask.png"))
    assert parse_mask_arg("3:mask.png") == (3, Path("mask.png"))
    assert parse_mask_arg("12:dir/00012.png") == (12, Path("dir/00012.png"))
    weird = tmp_path / "7:odd.png"  # a real file whose name starts with N:
    weird.write_bytes(b"")
    assert parse_mask_arg(str(weird)) == (None, weird)


@pytest.mark.parametrize("arg", ["x:mask.png", "1.5:mask.png", ":mask.png"])
def test_parse_mask_arg_bad_syntax(arg):
    with pytest.raises(MaskError, match="N:path.png") as err:
        parse_mask_arg(arg)
    assert_one_line(err, arg)


def test_parse_mask_arg_missing_path_and_negative_index():
    with pytest.raises(MaskError, match="no mask file after"):
        parse_mask_arg("3:")
    with pytest.raises(MaskError, match="negative") as err:
        parse_mask_arg("-1:mask.png")
    assert_one_line(err, "mask.png")


# ----------------------------------------------------------------- accepted formats


def test_palette_png_keeps_ids_and_palette(tmp_path):
    path = tmp_path / "mask.png"
    custom = davis_palette()
    custom[3:6] = [250, 10, 200]  # object 1 magenta
    write_label_png(path, two_objects(), custom)
    masks = load_masks([str(path)], SIZE)
    assert areas(masks) == {1: 1200, 2: 2800}
    assert [o.start_frame for o in masks.objects] == [0, 0]
    assert masks.palette[:9] == custom[:9] and len(masks.palette) == 768
    assert masks.objects[0].color == (250, 10, 200)
    assert masks.objects[1].color == (0, 128, 0)
    assert list(masks.labels) == [0]
    np.testing.assert_array_equal(masks.labels[0], two_objects())
    assert masks.labels[0].dtype == np.uint8
    assert masks.describe()[0] == "object 1: 1,200 px, starts at frame 0 (mask.png)"


def test_palette_void_255_is_ignored_and_reported(tmp_path):
    labels = two_objects()
    labels[0:5, :] = 255
    path = tmp_path / "davis.png"
    write_label_png(path, labels)
    masks = load_masks([path], SIZE)
    assert masks.ids == [1, 2]
    assert not (masks.labels[0] == 255).any()
    assert any("255" in line and "void" in line for line in masks.describe())


def test_grayscale_ids(tmp_path):
    labels = two_objects()
    labels[100:110, 0:20] = 5
    path = save_gray(tmp_path / "ids.png", labels)
    masks = load_masks([str(path)], SIZE)
    assert areas(masks) == {1: 1200, 2: 2800, 5: 200}
    assert masks.palette == davis_palette()


@pytest.mark.parametrize("value", [255, 1, 77])
def test_binary_mask_any_single_value(tmp_path, value):
    path = save_gray(tmp_path / "bin.png", rect(20, 50, 30, 70, value))
    masks = load_masks([str(path)], SIZE)
    assert areas(masks) == {1: 1200}
    assert set(np.unique(masks.labels[0]).tolist()) == {0, 1}


def test_mode_1_and_rgb_white_binary(tmp_path):
    Image.fromarray(rect(0, 10, 0, 10) > 0).save(tmp_path / "bits.png")  # mode "1"
    Image.fromarray(np.repeat(rect(20, 30, 0, 10)[..., None], 3, axis=2)).save(tmp_path / "white.png")
    masks = load_masks([str(tmp_path / "bits.png"), str(tmp_path / "white.png")], SIZE)
    assert areas(masks) == {1: 100, 2: 100}


def test_several_binary_masks_numbered_in_order_after_largest_id(tmp_path):
    ids = tmp_path / "ids.png"
    write_label_png(ids, two_objects())
    a = save_gray(tmp_path / "a.png", rect(100, 110, 0, 10))  # 100 px
    b = save_gray(tmp_path / "b.png", rect(100, 120, 20, 30))  # 200 px
    masks = load_masks([str(a), str(ids), str(b)], SIZE)  # binary first: still numbered after id 2
    assert areas(masks) == {1: 1200, 2: 2800, 3: 100, 4: 200}
    assert masks.objects[2].source == a and masks.objects[3].source == b


def test_binary_masks_on_different_frames(tmp_path):
    a = save_gray(tmp_path / "a.png", rect(0, 10, 0, 10))
    b = save_gray(tmp_path / "b.png", rect(50, 60, 50, 70))
    masks = load_masks([str(a), f"3:{b}"], SIZE, num_frames=10)
    assert [(o.id, o.start_frame, o.area) for o in masks.objects] == [(1, 0, 100), (2, 3, 200)]
    assert sorted(masks.labels) == [0, 3]
    assert set(np.unique(masks.labels[0]).tolist()) == {0, 1}
    assert set(np.unique(masks.labels[3]).tolist()) == {0, 2}


def test_rgb_mask_with_davis_colours_uses_palette_ids(tmp_path):
    pal = davis_palette()
    rgb = np.zeros((H, W, 3), dtype=np.uint8)
    rgb[10:40, 10:50] = pal[3 * 3: 3 * 3 + 3]  # DAVIS colour of id 3, first in raster order
    rgb[60:100, 80:150] = pal[3 * 1: 3 * 1 + 3]  # id 1
    path = tmp_path / "davis_rgb.png"
    Image.fromarray(rgb).save(path)
    masks = load_masks([str(path)], SIZE)
    assert areas(masks) == {3: 1200, 1: 2800}


def test_rgb_mask_other_colours_numbered_by_first_appearance(tmp_path):
    rgba = np.zeros((H, W, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[60:100, 80:150, :3] = (255, 200, 0)  # appears second in raster order
    rgba[10:40, 10:50, :3] = (30, 60, 250)  # appears first
    rgba[0:5, 100:160] = (0, 255, 0, 0)  # transparent: background despite the colour
    path = tmp_path / "colours.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    masks = load_masks([str(path)], SIZE)
    assert areas(masks) == {1: 1200, 2: 2800}
    assert masks.labels[0][20, 20] == 1 and masks.labels[0][80, 100] == 2


def test_gray_levels_as_labels_are_numbered_by_brightness(tmp_path):
    labels = np.zeros((H, W), dtype=np.uint8)
    labels[10:40, 10:50] = 255
    labels[60:100, 80:150] = 128
    masks = load_masks([str(save_gray(tmp_path / "levels.png", labels))], SIZE)
    assert areas(masks) == {1: 2800, 2: 1200}


def test_index_prefix_sets_start_frame(tmp_path):
    path = tmp_path / "later.png"
    write_label_png(path, two_objects())
    masks = load_masks([f"3:{path}"], SIZE, num_frames=5)
    assert [o.start_frame for o in masks.objects] == [3, 3]
    assert list(masks.labels) == [3]


def test_folder_frame_name_matching(tmp_path):
    names = ["00010", "00011", "00012", "00013"]
    first = tmp_path / "00010.png"
    later = tmp_path / "00012.png"
    write_label_png(first, two_objects())
    write_label_png(later, rect(0, 10, 0, 10, 3))
    masks = load_masks([str(first), str(later)], SIZE, frame_names=names)
    assert [(o.id, o.start_frame) for o in masks.objects] == [(1, 0), (2, 0), (3, 2)]


def test_unmatched_name_applies_to_first_frame_with_a_note(tmp_path):
    path = tmp_path / "00030.png"
    write_label_png(path, two_objects())
    masks = load_masks([str(path)], SIZE)  # a video: no frame names
    assert {o.start_frame for o in masks.objects} == {0}
    assert any("30:" in line for line in masks.describe())


def test_two_binary_masks_on_the_same_frame_are_fine_and_overlap_goes_to_the_later(tmp_path):
    a = save_gray(tmp_path / "a.png", rect(0, 20, 0, 20))  # 400 px
    b = save_gray(tmp_path / "b.png", rect(10, 30, 10, 30))  # overlaps a by 100 px
    masks = load_masks([str(a), str(b)], SIZE)
    assert areas(masks) == {1: 300, 2: 400}
    assert any("overlaps" in line for line in masks.describe())


# ----------------------------------------------------------------- errors


def test_missing_mask(tmp_path):
    with pytest.raises(MaskError, match="no such mask file") as err:
        load_masks([str(tmp_path / "gone.png")], SIZE)
    assert_one_line(err, "gone.png")


def test_undecodable_mask(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    with pytest.raises(MaskError, match="cannot be decoded") as err:
        load_masks([str(path)], SIZE)
    assert_one_line(err, "broken.png")


def test_jpeg_mask_is_rejected(tmp_path):
    path = tmp_path / "mask.jpg"
    Image.fromarray(rect(10, 50, 10, 50)).save(path, quality=95)
    with pytest.raises(MaskError, match="JPEG") as err:
        load_masks([str(path)], SIZE)
    assert_one_line(err, "mask.jpg")


def test_size_mismatch_gives_both_sizes(tmp_path):
    path = save_gray(tmp_path / "small.png", np.full((60, 80), 255, dtype=np.uint8))
    with pytest.raises(MaskError, match=r"80x60 but the video frames are 160x120.*nearest-neighbour") as err:
        load_masks([str(path)], SIZE)
    assert_one_line(err, "small.png")


def test_empty_mask(tmp_path):
    path = save_gray(tmp_path / "empty.png", np.zeros((H, W), dtype=np.uint8))
    with pytest.raises(MaskError, match="no object pixels") as err:
        load_masks([str(path)], SIZE)
    assert_one_line(err, "empty.png")


def blurred_disc(radius=35, blur=2.0) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    disc = (((yy - 60) ** 2 + (xx - 80) ** 2) < radius ** 2).astype(np.uint8) * 255
    return np.array(Image.fromarray(disc).filter(ImageFilter.GaussianBlur(blur)))


def test_antialiased_grayscale_mask(tmp_path):
    path = save_gray(tmp_path / "soft.png", blurred_disc())
    with pytest.raises(MaskError, match="anti-aliased or JPEG-compressed.*nearest-neighbour") as err:
        load_masks([str(path)], SIZE)
    assert_one_line(err, "soft.png")


def test_mildly_antialiased_mask_with_few_levels(tmp_path):
    # A disc rendered with 2x2 supersampling: values 0, 64, 128, 191, 255 - a thin ramp.
    yy, xx = (np.mgrid[0:2 * H, 0:2 * W] + 0.5) / 2
    big = ((yy - 60) ** 2 + (xx - 80) ** 2 < 35 ** 2).astype(np.float64)
    soft = np.rint(big.reshape(H, 2, W, 2).mean(axis=(1, 3)) * 255).astype(np.uint8)
    assert 3 <= len(np.unique(soft)) <= 5
    path = save_gray(tmp_path / "aa.png", soft)
    with pytest.raises(MaskError, match="anti-aliased"):
        load_masks([str(path)], SIZE)


def test_antialiased_rgb_mask(tmp_path):
    rgb = np.zeros((H, W, 3), dtype=np.uint8)
    rgb[10:50, 10:60] = (230, 40, 40)
    rgb[60:110, 80:150] = (40, 40, 230)
    blurred = np.array(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(1.5)))
    path = tmp_path / "soft_rgb.png"
    Image.fromarray(blurred).save(path)
    with pytest.raises(MaskError, match="anti-aliased") as err:
        load_masks([str(path)], SIZE)
    assert_one_line(err, "soft_rgb.png")


def test_genuine_small_objects_are_not_called_antialiased(tmp_path):
    labels = np.zeros((H, W), dtype=np.uint8)
    for i in range(12):  # 12 separate 6x6 objects: small but solid
        labels[10 + (i // 6) * 40: 16 + (i // 6) * 40, 10 + (i % 6) * 22: 16 + (i % 6) * 22] = i + 1
    path = tmp_path / "many.png"
    write_label_png(path, labels)
    masks = load_masks([str(path)], SIZE)
    assert len(masks.objects) == 12


def test_too_many_objects(tmp_path):
    labels = np.zeros((H, W), dtype=np.uint8)
    for i in range(MAX_OBJECTS + 2):
        y, x = divmod(i, 10)
        labels[y * 25: y * 25 + 20, x * 16: x * 16 + 14] = i + 1
    path = tmp_path / "crowd.png"
    write_label_png(path, labels)
    with pytest.raises(MaskError, match=f"more than the {MAX_OBJECTS}") as err:
        load_masks([str(path)], SIZE)
    assert_one_line(err, "crowd.png")


def test_frame_index_past_the_end(tmp_path):
    path = tmp_path / "late.png"
    write_label_png(path, two_objects())
    with pytest.raises(MaskError, match="past the end.*10 frames") as err:
        load_masks([f"10:{path}"], SIZE, num_frames=10)
    assert_one_line(err, "late.png")
    # without a known frame count the index is accepted
    assert load_masks([f"10:{path}"], SIZE).objects[0].start_frame == 10


def test_negative_frame_index(tmp_path):
    path = tmp_path / "m.png"
    write_label_png(path, two_objects())
    with pytest.raises(MaskError, match="negative"):
        load_masks([f"-2:{path}"], SIZE)


def test_a_known_id_in_a_later_mask_makes_it_an_anchor_and_objects_missing_from_it_are_absent_there(tmp_path):
    a = tmp_path / "first.png"
    b = tmp_path / "second.png"
    write_label_png(a, two_objects())
    write_label_png(b, rect(0, 10, 0, 10, 2))  # id 2 again, on another frame; id 1 left out
    masks = load_masks([str(a), f"5:{b}"], SIZE)
    assert masks.ids == [1, 2]
    assert [o.start_frame for o in masks.objects] == [0, 0]
    assert [o.anchor_frames for o in masks.objects] == [(), (5,)]
    assert masks.anchor_frames == [5]
    assert np.array_equal(masks.labels[5], rect(0, 10, 0, 10, 2))  # the frame's whole truth, as given
    assert any("second.png: object 1 is not in it, so absent on frame 5" in n for n in masks.notes)
    assert "given again at frame 5" in masks.describe()[1]
    assert sorted(f for _, f in masks.files) == [0, 5]


def test_an_all_background_mask_after_the_start_says_every_object_is_absent_but_not_on_the_first_frame(tmp_path):
    a = tmp_path / "first.png"
    empty = tmp_path / "empty.png"
    write_label_png(a, two_objects())
    write_label_png(empty, np.zeros((H, W), np.uint8))
    masks = load_masks([str(a), f"7:{empty}"], SIZE)
    assert masks.ids == [1, 2] and not masks.labels[7].any()
    assert any("empty.png: all background, so every object is absent on frame 7" in n for n in masks.notes)
    with pytest.raises(MaskError, match="has no object pixels") as err:
        load_masks([f"0:{empty}", f"3:{a}"], SIZE)
    assert_one_line(err, "empty.png")


def test_a_binary_mask_on_a_later_frame_is_still_a_new_object(tmp_path):
    a = tmp_path / "first.png"
    b = tmp_path / "late.png"
    write_label_png(a, two_objects())
    write_label_png(b, rect(0, 10, 0, 10))
    masks = load_masks([str(a), f"5:{b}"], SIZE)
    assert masks.ids == [1, 2, 3] and masks.objects[2].start_frame == 5 and masks.anchor_frames == []


def test_two_id_masks_for_the_same_frame(tmp_path):
    a = tmp_path / "one.png"
    b = tmp_path / "two.png"
    write_label_png(a, rect(0, 10, 0, 10, 1) + rect(20, 30, 0, 10, 2))
    write_label_png(b, rect(50, 60, 50, 60, 3) + rect(70, 80, 50, 60, 4))
    with pytest.raises(MaskError, match="already gives object ids for frame 0") as err:
        load_masks([str(a), str(b)], SIZE)
    assert_one_line(err, "two.png")


def test_no_masks():
    with pytest.raises(MaskError, match="--mask"):
        load_masks([], SIZE)


def test_object_fully_covered_by_a_later_mask(tmp_path):
    a = save_gray(tmp_path / "small.png", rect(10, 20, 10, 20))
    b = save_gray(tmp_path / "big.png", rect(0, 40, 0, 40))
    with pytest.raises(MaskError, match="completely covered") as err:
        load_masks([str(a), str(b)], SIZE)
    assert_one_line(err, "small.png")


def test_palette_mask_with_only_255_is_a_binary_object(tmp_path):
    path = tmp_path / "white_palette.png"
    write_label_png(path, rect(0, 10, 0, 20, 255))
    masks = load_masks([str(path)], SIZE)
    assert areas(masks) == {1: 200}


def test_grayscale_small_ids_with_255_treat_255_as_void(tmp_path):
    labels = two_objects()
    labels[110:120, :] = 255
    masks = load_masks([str(save_gray(tmp_path / "ids_void.png", labels))], SIZE)
    assert areas(masks) == {1: 1200, 2: 2800}


# ----------------------------------------------------------------- --snap-mask (issue 5)


def test_snap_antialiased_grayscale_mask_back_to_one_object(tmp_path):
    soft = blurred_disc()
    path = save_gray(tmp_path / "soft.png", soft)
    masks = load_masks([str(path)], SIZE, snap=True)
    assert masks.ids == [1]
    truth = blurred_disc(blur=0.01) > 127
    assert np.mean((masks.labels[0] > 0) != truth) < 0.005  # the ramp is cut at its middle
    note = [line for line in masks.describe() if "snap_mask=True" in line]
    assert len(note) == 1 and "soft.png" in note[0] and "px" in note[0]


def test_snap_antialiased_rgb_mask_keeps_two_objects(tmp_path):
    rgb = np.zeros((H, W, 3), dtype=np.uint8)
    rgb[10:50, 10:60] = (230, 40, 40)
    rgb[60:110, 80:150] = (40, 40, 230)
    path = tmp_path / "soft_rgb.png"
    Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(1.5)).save(path)
    masks = load_masks([str(path)], SIZE, snap=True)
    truth = np.zeros((H, W), np.uint8)
    truth[10:50, 10:60] = 1
    truth[60:110, 80:150] = 2
    assert masks.ids == [1, 2]
    assert np.count_nonzero(masks.labels[0] != truth) < 20  # only corner pixels may differ


def test_snap_accepts_a_jpeg_mask(tmp_path):
    labels = two_objects()
    rgb = np.array(davis_palette(), np.uint8).reshape(256, 3)[labels]
    path = tmp_path / "mask.jpg"
    Image.fromarray(rgb).save(path, quality=70)
    with pytest.raises(MaskError, match="JPEG.*snap_mask=True"):
        load_masks([str(path)], SIZE)
    masks = load_masks([str(path)], SIZE, snap=True)
    assert masks.ids == [1, 2]  # DAVIS colours keep their palette ids
    assert np.count_nonzero(masks.labels[0] != labels) < 10


def test_snap_leaves_a_clean_mask_alone(tmp_path):
    path = tmp_path / "clean.png"
    write_label_png(path, two_objects())
    masks = load_masks([str(path)], SIZE, snap=True)
    np.testing.assert_array_equal(masks.labels[0], two_objects())
    assert any("nothing changed" in line for line in masks.describe())


def test_snap_keeps_small_gray_ids_apart(tmp_path):
    labels = two_objects()
    labels[100:110, 0:20] = 3
    path = save_gray(tmp_path / "ids.png", labels)
    masks = load_masks([str(path)], SIZE, snap=True)
    assert masks.ids == [1, 2, 3]  # ids 1, 2, 3 are close in value but solid regions: not merged


def test_a_run_from_a_binary_mask_is_corrected_by_vossegs_own_png_with_id_1(tmp_path):
    first = tmp_path / "first.png"
    fix = tmp_path / "fix.png"
    save_gray(first, rect(10, 40, 10, 50))  # black/white: object 1
    write_label_png(fix, rect(12, 42, 14, 54, 1))  # vosseg's PNG of frame 9, edited: still id 1
    masks = load_masks([str(first), f"9:{fix}"], SIZE)
    assert masks.ids == [1] and masks.objects[0].anchor_frames == (9,) and masks.objects[0].source == first
    late = tmp_path / "late.png"
    save_gray(late, rect(60, 90, 60, 90))
    both = load_masks([f"40:{late}", str(first)], SIZE)  # binary masks: by frame, then as given
    assert [(o.id, o.start_frame) for o in both.objects] == [(1, 0), (2, 40)]
