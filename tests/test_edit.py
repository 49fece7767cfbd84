"""Editing by prefix: orders that put a kept region first, and edits that keep its tokens exactly."""

import random

import numpy as np
import pytest
from conftest import one_line_error
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.errors import InputError
from tessera.eval.edits import EDIT_KINDS, edit_cases, reads_as
from tessera.generate.edit import box_mask, edit, edit_sheet, edit_success, token_mask
from tessera.model.bundle import load as load_bundle
from tessera.model.orders import lattice, prefix_order, rejected_order
from tessera.pictures import load_image, save_png
from tessera.world.render import render_image
from tessera.world.scene import sample_scene


def grows_connected(order: list[int], start: int, h: int, w: int) -> bool:
    """Every cell from `start` on touches one drawn before it."""
    near = lattice(h, w)
    drawn = set(order[:start])
    for cell in order[start:]:
        if drawn and not set(near[cell]) & drawn:
            return False
        drawn.add(cell)
    return True


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 7), w=st.integers(1, 7), bits=st.integers(0, 2**49 - 1), seed=st.integers(0, 2**31))
def test_prefix_orders_put_any_kept_region_first_and_grow_from_it(h, w, bits, seed):
    keep = [bool(bits >> i & 1) for i in range(h * w)]  # connected or not, empty or full
    order = prefix_order(keep, h, w, random.Random(seed))
    kept = sum(keep)
    assert sorted(order) == list(range(h * w))
    assert all(keep[c] for c in order[:kept]) and not any(keep[c] for c in order[kept:])
    assert grows_connected(order, kept if kept else 1, h, w)


def test_rejection_finds_a_prefix_for_a_connected_region_and_never_for_a_split_one():
    h = w = 4
    box = [r < 2 and c < 3 for r in range(h) for c in range(w)]  # a 2 x 3 corner block
    order, draws = rejected_order(box, h, w, random.Random(0), tries=20000)
    assert order is not None and all(box[c] for c in order[:6]) and draws >= 1
    corners = [i in (0, 15) for i in range(16)]
    assert rejected_order(corners, h, w, random.Random(0), tries=200) == (None, 200)


@pytest.fixture(scope="module")
def picture_and_bundle(t2i_ckpt):
    bundle = load_bundle(t2i_ckpt)
    image = render_image(sample_scene(np.random.default_rng(3), bundle.cfg.canvas))
    return image, bundle


@pytest.mark.parametrize("method", ["root", "reject", "raster"])
def test_edits_keep_the_kept_tokens_exactly(picture_and_bundle, method):
    image, bundle = picture_and_bundle
    keep = box_mask((0, 0, 32, 16), 32, inside=True)  # keep the top half, redraw the bottom
    result = edit(bundle, image, keep, "a red circle", n=3, method=method, seed=1)
    kept = token_mask(keep, bundle.cfg.grid)
    assert kept.sum() == 8 and result.codes.shape == (3, 4, 4) and result.images.shape == (3, 32, 32, 3)
    assert (result.codes[:, kept] == result.source[kept]).all()
    assert (result.codes[:, ~kept] != result.source[~kept]).any()  # the rest was drawn, not copied
    assert len(result.draws) == 3 and (method == "reject" or result.draws == [1, 1, 1])


def test_a_token_is_kept_only_if_all_its_pixels_are():
    keep = box_mask((4, 0, 32, 32), 32, inside=True)  # the left 4 pixels redrawn: the first token column goes
    assert token_mask(keep, (4, 4)).sum(0).tolist() == [0, 4, 4, 4]


def test_edit_refuses_what_it_cannot_do(picture_and_bundle):
    image, bundle = picture_and_bundle
    with pytest.raises(InputError, match="nothing to draw"):
        edit(bundle, image, np.ones((32, 32), bool), "a red circle")
    with pytest.raises(InputError, match="32x32"):
        edit(bundle, image[:16], np.ones((16, 32), bool), "a red circle")
    split = np.zeros((32, 32), bool)
    split[:8, :8] = split[24:, 24:] = True
    with pytest.raises(InputError, match="not connected"):
        edit(bundle, image, split, "a red circle", method="reject", tries=50)
    assert edit(bundle, image, split, "a red circle", n=1).codes.shape == (1, 4, 4)  # the root method takes it
    with pytest.raises(InputError, match="box"):
        box_mask((10, 0, 5, 8), 32, inside=True)


def test_edit_command_writes_the_sheet_and_each_edit(cli, t2i_ckpt, picture_and_bundle, tmp_path):
    image, _ = picture_and_bundle
    save_png(image, tmp_path / "in.png")
    out = tmp_path / "edits"
    result = cli("edit", str(tmp_path / "in.png"), "a red circle", "--ckpt", str(t2i_ckpt), "--erase-box",
                 "8,8,24,24", "-n", "2", "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "kept 12 of 16 tokens" in result.stdout
    assert load_image(out / "edit-1.png").shape == (32, 32, 3) and (out / "sheet.png").exists()
    mask = np.zeros((32, 32, 3), np.uint8)
    mask[:16] = 255
    save_png(mask, tmp_path / "mask.png")
    kept = cli("edit", str(tmp_path / "in.png"), "a red circle", "--ckpt", str(t2i_ckpt), "--keep",
               str(tmp_path / "mask.png"), "-n", "1", "--out", str(out))  # fmt: skip
    assert kept.returncode == 0 and "kept 8 of 16 tokens" in kept.stdout
    both = cli("edit", str(tmp_path / "in.png"), "a red circle", "--ckpt", str(t2i_ckpt), "--keep-box", "0,0,8,8",
               "--erase-box", "0,0,8,8")  # fmt: skip
    one_line_error(both, "at most one")
    unmasked = cli("edit", str(tmp_path / "in.png"), "make the circle blue", "--ckpt", str(t2i_ckpt))
    one_line_error(unmasked, "not trained to instruct")  # no mask: an instruction, which this model never learnt
    bad = cli("edit", str(tmp_path / "in.png"), "a red circle", "--ckpt", str(t2i_ckpt), "--keep-box", "0,0,8")
    one_line_error(bad, "x0,y0,x1,y1")


def test_the_edit_set_changes_one_object_of_its_kind_inside_the_redrawn_box():
    cases = edit_cases(5, 64, seed=0)
    assert [c.kind for c in cases] == [k for k in EDIT_KINDS for _ in range(5)]
    for c in cases:
        gone, new = set(c.before.objects) - set(c.after.objects), set(c.after.objects) - set(c.before.objects)
        assert (len(gone), len(new)) == {"remove": (1, 0), "add": (0, 1), "recolour": (1, 1)}[c.kind]
        x0, y0, x1, y1 = c.erase
        assert all(x0 <= o.box[0] and y0 <= o.box[1] and o.box[2] <= x1 and o.box[3] <= y1 for o in gone | new)
    short = edit_cases(3, 64, seed=0, fits=lambda prompt: len(prompt.split()) <= 6)
    assert len(short) == 9 and all(len(c.prompt.split()) <= 6 for c in short)  # only captions the model can read


def test_the_judge_reads_the_target_scene_and_not_the_source(judge):
    cases = edit_cases(10, 64, seed=1)
    after = judge.read([render_image(c.after) for c in cases])
    before = judge.read([render_image(c.before) for c in cases])
    target = [reads_as(d, c.after) for d, c in zip(after, cases, strict=True)]
    source = [reads_as(d, c.after) for d, c in zip(before, cases, strict=True)]
    assert np.mean(target) >= 0.9 and not any(source), (target, source)


def test_edit_success_scores_each_kind(t2i_ckpt, judge):
    bundle = load_bundle(t2i_ckpt)
    cases = edit_cases(2, bundle.cfg.canvas, seed=0, fits=bundle.fits)
    scores, edited = edit_success(bundle, judge, cases)
    assert edited.shape == (6, 32, 32, 3) and edit_sheet(cases, edited, (4, 4)).shape == (6 * 34 + 2, 4 * 34 + 2, 3)
    assert set(scores) == set(EDIT_KINDS)
    assert all(set(s) == {"edited", "ceiling", "unedited"} and s["unedited"] == 0 for s in scores.values())
