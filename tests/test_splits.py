"""Honest splits: no training text says what an evaluation prompt says, and no training scene holds a pair of the
compositional split."""

import numpy as np
import pytest

from tessera.data.examples import DataConfig, category_weights, examples, understanding_example, world_text
from tessera.data.prompts import (
    HELD_OUT,
    SPLITS,
    description_key,
    held_keys,
    kept_out,
    may_ask,
    may_train_on,
    mentions_unseen,
    prompt_pools,
    split_metadata,
)
from tessera.data.shapes import ShapesSource
from tessera.errors import ConfigError
from tessera.eval.shapes_eval import COMPOSITIONAL_PATH, UNSEEN_PAIRS, load_metadata, make_compositional
from tessera.sequence.tasks import Task
from tessera.world.grammar import parse_description, parse_question
from tessera.world.language import CAPTION_QUESTION, CATEGORIES, QUESTION_KINDS, distinct_prompts, question_answer
from tessera.world.scene import sample_scene

HEAD, TAIL = "does this image show ", " ?"


def asks_about_unseen(question: str) -> bool:
    """Whether a question names a colour-shape pair of the compositional split."""
    q = parse_question(question)
    return any(s is not None and (s.shape, s.colour) in UNSEEN_PAIRS for s in (q.subject, q.target))


def scene_pairs(scene) -> set[tuple[str, str]]:
    return {(o.shape, o.colour) for o in scene.objects}


def test_the_kept_out_prompts_cover_every_evaluation():
    benchmark = [m["prompt"] for m in load_metadata() if m["tag"] in HELD_OUT]
    train, held = prompt_pools()
    compositional = [m["prompt"] for m in load_metadata(COMPOSITIONAL_PATH)]
    for text in benchmark + [p for pool in held.values() for p in pool] + compositional:
        assert not may_train_on(text), text
    assert load_metadata(COMPOSITIONAL_PATH) == make_compositional(seed=0)  # the shipped file is the seeded one
    assert all(mentions_unseen(p) for p in compositional)
    for category in CATEGORIES:  # what is left to train on is every other distinct prompt of the world
        allowed = [p for p in distinct_prompts(category) if may_train_on(p)]
        assert sorted(train[category]) == sorted(allowed), category
    assert len(train["color_attr"]) > 400 and len(train["position"]) >= 16 and len(train["colors"]) >= 6


def test_the_evaluation_splits_are_the_kept_out_prompts():
    """`eval shapes --split` and the demo measure on these; no held-out or compositional prompt may be trained on."""
    held = split_metadata("held-out")
    assert {m["tag"] for m in held} == set(HELD_OUT) and not any(may_train_on(m["prompt"]) for m in held)
    assert split_metadata("compositional") == sorted(
        load_metadata(COMPOSITIONAL_PATH), key=lambda m: CATEGORIES.index(m["tag"])
    )
    assert len(split_metadata("shapes-eval")) == 553
    for split in SPLITS:
        first = split_metadata(split, 2)
        assert all(sum(m["tag"] == c for m in first) <= 2 for c in CATEGORIES) and first
        assert all(m in split_metadata(split) for m in first)


def test_no_training_text_or_scene_is_held_out():
    rng = np.random.default_rng(0)
    kept = kept_out()
    for _ in range(1500):
        text, scene = world_text(rng, 64, prompt_share=0.5)
        assert description_key(text) not in kept and not mentions_unseen(text), text
        assert not scene_pairs(scene) & UNSEEN_PAIRS, text
    for task in (Task.CAPTION, Task.QA, Task.JUDGE):
        for _ in range(400):
            question, answer, scene = understanding_example(task, rng, 64)
            assert not scene_pairs(scene) & UNSEEN_PAIRS
            if task == Task.JUDGE:
                assert question.startswith(HEAD) and may_train_on(question[len(HEAD) : -len(TAIL)]), question
            elif task == Task.CAPTION:
                assert question == CAPTION_QUESTION and may_train_on(answer), answer
            else:
                assert may_ask(parse_question(question)) and not asks_about_unseen(question), question
    images = ShapesSource(64, avoid=UNSEEN_PAIRS).scenes(300, rng)
    assert not set().union(*map(scene_pairs, images)) & UNSEEN_PAIRS


@pytest.mark.parametrize(
    ("question", "held"),
    [
        ("is there a green star?", True),  # ShapesEval's colors prompt "a green star"
        ("how many green stars are there?", True),
        ("is the triangle to the left of the square?", True),  # its position prompt "a triangle left of a square"
        ("is there a small green star?", False),
        ("what colour is the star?", False),
        ("is the red triangle left of the square?", False),
    ],
)
def test_a_question_naming_a_held_out_description_may_not_be_asked(question, held):
    assert may_ask(parse_question(question)) != held


def test_reading_questions_name_no_held_out_description_and_are_of_the_kind_asked():
    """The world's questions name held-out descriptions (so the test can fail); the data stream's never do, nor a
    run's own `hold_out`, and a question asked of a kind is of that kind (a scene that cannot be asked it is
    redrawn: the world falls back to another kind)."""
    rng = np.random.default_rng(2)
    said = [
        parse_question(question_answer(sample_scene(rng, 64, avoid=UNSEEN_PAIRS), rng, kind)[0])
        for kind in QUESTION_KINDS * 300
    ]
    assert sum(not may_ask(q) for q in said) > 30
    assert sum(q.kind != kind for q, kind in zip(said, QUESTION_KINDS * 300, strict=True)) > 30
    hold = held_keys(["an orange circle", "a star below a square"])
    assert not all(may_ask(q, hold) for q in said if may_ask(q))  # the run's own keys are asked without the rule
    for kind in QUESTION_KINDS * 150:
        question, _, _ = understanding_example(Task.QA, rng, 64, hold, kind)
        asked = parse_question(question)
        assert may_ask(asked, hold) and asked.kind == kind, question


@pytest.mark.parametrize("text", ["a photo of a red star", "two red stars", "a red star left of a blue circle"])
def test_a_text_naming_an_unseen_pair_may_not_be_trained_on(text):
    assert mentions_unseen(text) and not may_train_on(text)
    assert ("star", "red") in UNSEEN_PAIRS and parse_description(text).objects[0].colour == "red"


def texts_said(hold_out: list[str]) -> list[str]:
    """Every description the world's data stream says in 600 examples (prompts, captions, judging questions)."""
    tasks = {Task.T2I: 1.0, Task.CAPTION: 0.5, Task.JUDGE: 0.5}
    cfg = DataConfig(examples=600, canvas=32, prompt_share=0.8, tasks=tasks, hold_out=hold_out)
    stream, _ = examples(cfg, seed=0, skipped={})
    said = []
    for task, text, answer, _, _ in stream:
        said.append(answer if task == Task.CAPTION else text[len(HEAD) : -len(TAIL)] if task == Task.JUDGE else text)
    return said


def test_a_runs_hold_out_keeps_its_descriptions_out_of_every_text():
    held = ["an orange circle", "a star below a square"]
    keys = {description_key(t) for t in held}
    assert any(description_key(t) in keys for t in texts_said([]))  # said without it, so the test can fail
    assert not any(description_key(t) in keys for t in texts_said(held))
    assert "an orange circle" not in prompt_pools(held_keys(held))[0]["colors"]


@pytest.mark.parametrize(
    ("hold_out", "message"),
    [
        (["a red blorp"], "data.hold_out: unknown word 'blorp'"),
        (distinct_prompts("single_object"), "no training prompt of single_object"),
    ],
)
def test_a_hold_out_the_world_cannot_keep_is_a_config_error(hold_out, message):
    with pytest.raises(ConfigError, match=message):
        DataConfig(hold_out=hold_out).validate()


def test_coloured_prompts_are_true_and_say_no_held_out_prompt():
    """With prompt_colours 1, uncoloured objects of the drawn prompts are given colours, position prompts included;
    every text is still a training text (no held-out description, no unseen pair) and its scene holds it."""
    rng = np.random.default_rng(0)
    plain = {p for pool in prompt_pools()[0].values() for p in pool}
    drawn = [world_text(rng, 64, 1.0, prompt_colours=1.0) for _ in range(1500)]
    for text, scene in drawn:
        assert may_train_on(text) and parse_description(text).holds(scene.objects), text
    new = [parse_description(text) for text, _ in drawn if text not in plain]
    assert 0.2 < len(new) / 1500 < 0.6, len(new)  # color_attr comes coloured; most coloured singles are held
    assert sum(bool(c.relations) for c in new) > 50  # 'a red circle left of a square': the grammar beyond 16 texts


@pytest.mark.parametrize("weights", ["category", "sqrt"])
def test_prompt_categories_are_drawn_by_their_weights(weights):
    """Each category alike, or by the square root of its training prompts' count: color_attr's 484 prompts then
    take over half the draws, and colors' 7 prompts are no longer each drawn 69 times as often as one of them."""
    pools = prompt_pools()[0]
    w = dict(zip(CATEGORIES, category_weights(pools, weights), strict=True))
    rng = np.random.default_rng(0)
    texts = [world_text(rng, 32, 1.0, prompt_weights=weights)[0] for _ in range(1200)]
    for category in CATEGORIES:
        assert abs(np.mean([t in pools[category] for t in texts]) - w[category]) < 0.04
    sizes = len(pools["color_attr"]) / len(pools["colors"])
    assert w["color_attr"] / w["colors"] == pytest.approx(1.0 if weights == "category" else sizes**0.5)


def test_named_order_draws_the_first_named_object_upper():
    """With named_order, every prompt of two different objects and no relation ("a red circle and a blue square")
    has the first named one upper (without it, about half do); every scene of several objects still holds its prompt."""
    rng = np.random.default_rng(0)
    drawn = {on: [world_text(rng, 64, 1.0, named_order=on) for _ in range(400)] for on in (True, False)}
    for on, pairs in drawn.items():
        several = [(parse_description(t), s) for t, s in pairs if len(parse_description(t).objects) > 1]
        assert all(c.holds(s.objects) for c, s in several)
        pairs_named = [s for c, s in several if not c.relations and [o.count for o in c.objects] == [1, 1]]
        upper = [s.objects[0].box[1] < s.objects[1].box[1] for s in pairs_named]  # objects come in the named order
        assert len(upper) > 80 and (all(upper) if on else 0.3 < np.mean(upper) < 0.7), np.mean(upper)


def test_unknown_prompt_weights_are_a_config_error():
    with pytest.raises(ConfigError, match="data.prompt_weights must be one of category, sqrt, got .cube."):
        DataConfig(prompt_weights="cube").validate()
