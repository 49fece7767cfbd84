from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.errors import TesseraError
from tessera.world.scene import (
    COLOURS,
    MAX_OBJECTS,
    SHAPES,
    SIZES,
    VIDEO_FRAMES,
    Scene,
    boxes_apart,
    check_canvas,
    relative_position,
    sample_scene,
)

seeds = st.integers(0, 2**32 - 1)
canvases = st.sampled_from([32, 48, 64, 96, 128, 256])


def _inside(scene: Scene) -> bool:
    return all(
        o.box[0] >= 0 and o.box[1] >= 0 and o.box[2] <= scene.canvas and o.box[3] <= scene.canvas for o in scene.objects
    )


@given(seeds, canvases)
@settings(max_examples=60, deadline=None)
def test_scenes_are_valid(seed, canvas):
    scene = sample_scene(np.random.default_rng(seed), canvas)
    assert 1 <= len(scene.objects) <= MAX_OBJECTS
    for o in scene.objects:
        assert o.shape in SHAPES and o.colour in COLOURS and o.size in SIZES
    assert _inside(scene)
    objs = scene.objects
    assert all(boxes_apart(a, b) for i, a in enumerate(objs) for b in objs[i + 1 :])


@given(seeds)
@settings(max_examples=30, deadline=None)
def test_sampling_is_deterministic_and_round_trips(seed):
    a = sample_scene(np.random.default_rng(seed), video=True)
    b = sample_scene(np.random.default_rng(seed), video=True)
    assert a == b
    assert Scene.from_dict(a.to_dict()) == a


@given(seeds)
@settings(max_examples=40, deadline=None)
def test_video_objects_stay_inside_and_apart(seed):
    scene = sample_scene(np.random.default_rng(seed), video=True)
    for t in range(VIDEO_FRAMES):
        frame = scene.at_frame(t)
        assert _inside(frame)
        objs = frame.objects
        assert all(boxes_apart(a, b) for i, a in enumerate(objs) for b in objs[i + 1 :])


def test_video_objects_move_and_bounce():
    rng = np.random.default_rng(0)
    scenes = [sample_scene(rng, video=True) for _ in range(50)]
    moving = [s for s in scenes if any(abs(o.vx) + abs(o.vy) > 0.5 for o in s.objects)]
    assert len(moving) > 40  # crowded scenes may stand still; most move
    # a bounce reverses the direction of travel while keeping the speed
    obj = sample_scene(np.random.default_rng(1), n_objects=1).objects[0]
    fast = Scene(64, (replace(obj, x=50.0, vx=6.0, vy=0.0),))
    xs = [fast.at_frame(t).objects[0].x for t in range(VIDEO_FRAMES)]
    steps = np.diff(xs)
    assert steps[0] > 0 and steps[-1] < 0 and np.allclose(np.abs(steps[2:]), 6.0)


@pytest.mark.parametrize("canvas", [0, 16, 40, 272, 100])
def test_bad_canvas_is_refused(canvas):
    with pytest.raises(TesseraError, match="multiple of 16"):
        check_canvas(canvas)


def test_relative_position_follows_geneval():
    a = (0, 0, 10, 10)
    assert relative_position(a, (20, 0, 30, 10)) == {"left of"}
    assert relative_position((20, 0, 30, 10), a) == {"right of"}
    assert relative_position(a, (0, 20, 10, 30)) == {"above"}
    assert relative_position(a, (20, 20, 30, 30)) == {"left of", "above"}
    # centres 1.5 apart with boxes of 10 + 10: inside the 0.1 * 20 = 2 margin, so no relation
    assert relative_position(a, (1.5, 0, 11.5, 10)) == set()
    # mostly below, slightly right: only the dominant direction counts
    assert relative_position((3, 30, 13, 40), a) == {"below"}
