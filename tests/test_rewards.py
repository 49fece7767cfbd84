"""Rewards by name: the judge with GenEval's rules (strict and partial), text formats, a colour share."""

from dataclasses import replace

import numpy as np
import pytest

from tessera.errors import TesseraError
from tessera.eval.clutter import add_clutter
from tessera.eval.shapes_eval import load_metadata
from tessera.rl.rewards import combine, make_reward, parse_spec
from tessera.world.constraints import from_geneval, sample_scene_for
from tessera.world.render import render_image, render_labels
from tessera.world.scene import BACKGROUND, PALETTE, boxes_apart, sample_scene


def test_shapes_eval_rewards_follow_the_rules(judge):
    meta = next(m for m in load_metadata() if m["tag"] == "color_attr")  # two coloured objects
    rng = np.random.default_rng(0)
    good = render_image(sample_scene_for(from_geneval(meta), rng))
    other = next(c for c in PALETTE if c != meta["include"][1]["color"])
    one_wrong = dict(meta, include=[meta["include"][0], {**meta["include"][1], "color": other}])
    blank = np.full_like(good, 128)
    strict, partial = make_reward("shapes_eval", judge=judge), make_reward("shapes_eval_partial", judge=judge)
    images = np.stack([good, good, blank])
    metas = [meta, one_wrong, meta]
    assert strict(metas, images, [""] * 3).tolist() == [1.0, 0.0, 0.0]
    assert partial(metas, images, [""] * 3).tolist() == [1.0, 0.5, 0.0]


def test_a_policy_that_sprays_objects_scores_lower_than_one_that_draws_the_scene(judge):
    """GenEval's rule only asks that the named objects be there, so clutter passes it; strict and shapes_eval_exact
    pay for every object and mark beyond the scene."""
    rng = np.random.default_rng(1)
    lines = [m for m in load_metadata() if m["tag"] in ("single_object", "two_object", "colors")][::8][:12]
    scenes = [sample_scene_for(from_geneval(m), rng) for m in lines]
    drawn = np.stack([render_image(s) for s in scenes])
    sprayed = []
    for scene in scenes:  # the scene, then as many more objects and marks as fit around it
        crowd = sample_scene(rng, n_objects=6)
        extra = [o for o in crowd.objects if all(boxes_apart(o, p, 4.0) for p in scene.objects)]
        image = render_image(replace(scene, objects=(*scene.objects, *extra)))
        shape_map = np.where(render_labels(scene) > 0, 1, 0).astype(np.uint8)
        add_clutter(image, shape_map, shape_map.copy(), 3, rng, 6)
        sprayed.append(image)
    sprayed = np.stack(sprayed)
    texts = [""] * len(lines)
    for name in ("strict", "shapes_eval_exact", "shapes_eval_exact_sq"):
        reward = make_reward(name, judge=judge)
        honest, spray = reward(lines, drawn, texts), reward(lines, sprayed, texts)
        assert honest.mean() >= 0.9 and spray.mean() < 0.5 * honest.mean(), (name, honest, spray)
    geneval = make_reward("shapes_eval", judge=judge)
    assert geneval(lines, sprayed, texts).mean() >= 0.75  # the rule clutter fools


def test_the_squared_exact_reward_pays_less_for_an_extra_than_for_a_miss(judge):
    """For two asked objects, both drawn beside a third earns more than one drawn alone under shapes_eval_exact,
    and less under shapes_eval_exact_sq."""
    rng = np.random.default_rng(2)
    lines = [m for m in load_metadata() if m["tag"] == "two_object"][:6]
    missed, crowded = [], []
    for meta in lines:
        scene = sample_scene_for(from_geneval(meta), rng)
        crowd = sample_scene(rng, n_objects=6)
        extra = next(o for o in crowd.objects if all(boxes_apart(o, p, 4.0) for p in scene.objects))
        missed.append(render_image(replace(scene, objects=scene.objects[:1])))
        crowded.append(render_image(replace(scene, objects=(*scene.objects, extra))))
    texts = [""] * len(lines)
    for name, extra_wins in (("shapes_eval_exact", True), ("shapes_eval_exact_sq", False)):
        reward = make_reward(name, judge=judge)
        miss, extra = reward(lines, np.stack(missed), texts), reward(lines, np.stack(crowded), texts)
        assert ((extra > miss) == extra_wins).all(), (name, miss, extra)


def test_an_empty_canvas_earns_nothing(judge):
    """A counting prompt's exclude clause ("fewer than 4") holds when nothing is drawn; the dense reward must not
    pay for that, or RL learns to leave counting prompts blank."""
    lines = [m for m in load_metadata() if m["tag"] == "counting"][:6] + load_metadata()[:2]
    blank = np.broadcast_to(np.array(BACKGROUND, dtype=np.uint8), (len(lines), 64, 64, 3)).copy()
    for name in ("strict", "shapes_eval_exact", "shapes_eval_exact_sq"):
        assert make_reward(name, judge=judge)(lines, blank, [""] * len(lines)).max() == 0.0, name


def test_format_and_colour_share():
    fmt = make_reward("format", pattern=r"<think>.*</think>\s*(yes|no)")
    assert fmt(
        [{}] * 3, np.zeros((3, 1, 1, 3)), ["<think>two stars</think> yes", "yes", "<think></think> maybe"]
    ).tolist() == [1.0, 0.0, 0.0]
    red = make_reward("colour_share", colour="red")
    image = np.full((2, 4, 4, 3), 128, dtype=np.uint8)
    image[0, :2] = PALETTE["red"]
    assert red([{}] * 2, image, ["", ""]).tolist() == [0.5, 0.0]


def test_combination_and_errors():
    values = {"a": np.array([1.0, 0.0]), "b": np.array([0.5, 0.5])}
    assert combine(values, {"a": 1.0, "b": 2.0}).tolist() == [2.0, 1.0]
    assert parse_spec("shapes_eval") == {"shapes_eval": 1.0}
    assert parse_spec("shapes_eval:1, format:0.5") == {"shapes_eval": 1.0, "format": 0.5}
    with pytest.raises(TesseraError, match="unknown reward 'aesthetic'"):
        parse_spec("shapes_eval,aesthetic")
    with pytest.raises(TesseraError, match="weight 'x' is not a number"):
        parse_spec("format:x")
    with pytest.raises(TesseraError, match="local open_clip weights"):
        make_reward("clip")
    with pytest.raises(ValueError, match="no values"):
        combine(values, {"c": 1.0})
    with pytest.raises(TesseraError, match="bad pattern"):
        make_reward("format", pattern="(")


def test_reading_rewards_on_hand_made_answers():
    from tessera.world.grammar import parse_description

    scene = sample_scene_for(parse_description("a red circle and two blue stars"), np.random.default_rng(0))
    metas = [
        {"task": "qa", "truth": "two", "scene": scene},
        {"task": "qa", "truth": "two", "scene": scene},
        {"task": "judge", "truth": "no , there is no square", "scene": scene},
        {"task": "judge", "truth": "no , there is no square", "scene": scene},
        {"task": "judge", "truth": "yes", "scene": scene},
        {"task": "caption", "truth": "", "scene": scene},
        {"task": "caption", "truth": "", "scene": scene},
        {"task": "caption", "truth": "", "scene": scene},
    ]
    said = ["two", "three", "no , there is no square", "no , the square is red", "no , there is no star",
            "a red circle and two blue stars", "a red circle and a blue star", "circle circle red"]  # fmt: skip
    images = np.zeros((8, 4, 4, 3), np.uint8)
    right = make_reward("answer")(metas, images, said).tolist()
    assert right == [1.0, 0.0, 1.0, 0.5, 0.0, 1.0, 0.0, 0.0]  # half for the right no with a wrong reason
    form = make_reward("answer_format")(metas, images, said).tolist()
    assert form == [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]


def test_cycle_reward_compares_the_caption_with_the_prompt():
    meta = {"tag": "counting", "prompt": "two blue stars", "include": [{"class": "star", "count": 2}],
            "exclude": [{"class": "star", "count": 3}]}  # fmt: skip
    captions = iter([["two blue stars", "a blue star", "three stars and a circle", "not a caption"]])
    reward = make_reward("cycle", reader=lambda images: next(captions))
    got = reward([meta] * 4, np.zeros((4, 64, 64, 3), np.uint8), [""] * 4).tolist()
    assert got == [1.0, 0.5, 0.5, 0.0]  # both clauses; too few; too many; outside the grammar
    with pytest.raises(TesseraError, match="needs a model that captions"):
        make_reward("cycle")
