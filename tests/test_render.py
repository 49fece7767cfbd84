import numpy as np

from tessera.world.render import render_edges, render_image, render_labels, render_segmentation, render_video
from tessera.world.scene import BACKGROUND, PALETTE, SHAPES, Object, Scene, make_object, sample_scene


def _one(shape="circle", colour="red", size="large", x=32.0, y=32.0, canvas=64) -> Scene:
    o = make_object(shape, colour, size, canvas)
    return Scene(canvas, (Object(o.shape, o.colour, o.size, x, y, o.r),))


def test_image_shape_background_and_colour():
    img = render_image(_one())
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert tuple(img[0, 0]) == BACKGROUND
    assert tuple(img[32, 32]) == PALETTE["red"]


def test_edges_are_anti_aliased():
    img = render_image(_one()).astype(int)
    red = np.array(PALETTE["red"])
    grey = np.array(BACKGROUND)
    # pixels strictly between background and object colour exist only along the outline
    mixed = ~np.all(img == red, axis=-1) & ~np.all(img == grey, axis=-1)
    assert 10 < mixed.sum() < 80


def test_every_shape_covers_a_plausible_area():
    areas = {s: (render_labels(_one(s)) > 0).sum() for s in SHAPES}
    r = 0.125 * 64
    assert abs(areas["circle"] - np.pi * r * r) < 0.05 * np.pi * r * r
    assert areas["star"] < areas["triangle"] < areas["circle"]
    assert len(set(areas.values())) == len(SHAPES)


def test_labels_segmentation_and_edges_agree():
    scene = sample_scene(np.random.default_rng(3), n_objects=4)
    labels = render_labels(scene)
    seg = render_segmentation(scene)
    assert set(np.unique(labels)) == set(range(5))
    for i, o in enumerate(scene.objects):
        assert np.all(seg[labels == i + 1] == SHAPES.index(o.shape) + 1)
    edges = render_edges(scene)
    assert set(np.unique(edges)) == {0, 255}
    assert np.all(labels[edges == 255] > 0)  # edges lie on objects
    assert (edges == 255).sum() < (labels > 0).sum()  # only their outlines


def test_rendering_is_deterministic_and_video_moves():
    scene = sample_scene(np.random.default_rng(5), video=True)
    assert np.array_equal(render_image(scene), render_image(scene))
    video = render_video(scene)
    assert video.shape == (9, 64, 64, 3)
    assert np.array_equal(video[0], render_image(scene))
    assert not np.array_equal(video[0], video[-1])
