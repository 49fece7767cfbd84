import os

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from tessera.errors import TesseraError
from tessera.eval.judge import WEIGHTS_DIR, Judge
from tessera.eval.judge_train import JudgeTrainConfig, evaluate, held_out_scenes, train_judge
from tessera.eval.metrics import object_counts
from tessera.world.render import render_image
from tessera.world.scene import sample_scene


@pytest.fixture(scope="module")
def held_out():
    return held_out_scenes(1000)


def test_shipped_weights_are_small_and_versioned():
    weights = WEIGHTS_DIR / "judge.safetensors"
    assert os.path.getsize(str(weights)) < 2_000_000
    meta = yaml.safe_load((WEIGHTS_DIR / "judge.yaml").read_text())
    assert meta["version"].startswith("judge-v")
    assert meta["train"]["seed"] == 0


def test_precision_and_recall_on_clean_renders(judge, held_out):
    counts = evaluate(judge, held_out, corrupted=False)
    assert counts.actual > 3000
    assert counts.precision >= 0.99 and counts.recall >= 0.99


def test_precision_and_recall_on_corrupted_renders(judge, held_out):
    counts = evaluate(judge, held_out, corrupted=True, seed=123)
    assert counts.precision >= 0.95 and counts.recall >= 0.95


def test_other_canvas_sizes_are_read_in_their_own_pixels(judge):
    rng = np.random.default_rng(7)
    scenes = [sample_scene(rng, 128) for _ in range(100)]
    found = judge.read(np.stack([render_image(s) for s in scenes]))
    counts = object_counts(found, [s.objects for s in scenes])
    assert counts.precision >= 0.97 and counts.recall >= 0.97


def test_blank_image_has_no_objects(judge):
    assert judge.read(np.full((64, 64, 3), 128, np.uint8)) == [[]]


def test_training_path_lowers_the_loss(tmp_path):
    cfg = JudgeTrainConfig(steps=60, batch_size=8, scenes=64, eval_scenes=8)
    _, metrics = train_judge(cfg, tmp_path, progress=False)
    assert metrics["final_loss"] < 0.7 * metrics["initial_loss"]
    reloaded = Judge.load(tmp_path)
    assert isinstance(reloaded.read(render_image(sample_scene(np.random.default_rng(0)))), list)
    assert yaml.safe_load((tmp_path / "judge.yaml").read_text())["train"]["steps"] == 60


def test_missing_corrupt_or_foreign_weights_are_refused(tmp_path):

    with pytest.raises(TesseraError, match="no judge"):
        Judge.load(tmp_path)
    (tmp_path / "judge.yaml").write_text((WEIGHTS_DIR / "judge.yaml").read_text())
    (tmp_path / "judge.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(TesseraError, match="cannot load"):
        Judge.load(tmp_path)
    save_file({"weight": torch.zeros(3)}, str(tmp_path / "judge.safetensors"))
    with pytest.raises(TesseraError, match="cannot load"):
        Judge.load(tmp_path)
