import pytest
import torch

from tessera.config import override
from tessera.eval.judge import Judge
from tessera.tokenizer import build as visual
from tessera.train.trainer import TrainConfig, Trainer


@pytest.fixture(scope="session")
def judge() -> Judge:
    """The shipped, versioned judge."""
    return Judge.load()


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    """An untrained but fixed tiny tokenizer: 32x32 images -> 4x4 codes."""
    folder = tmp_path_factory.mktemp("tok") / "checkpoint"
    torch.manual_seed(0)
    cfg = override(
        visual.TokenizerConfig(),
        {"conv": {"ch": 8, "ch_mult": [1, 1, 1, 1], "z_channels": 8, "num_res_blocks": 1, "norm_groups": 4,
                  "encoder": "patch", "quantizer": {"codebook_size": 32, "dim": 4}}},
    )  # fmt: skip
    visual.save(folder, visual.build(cfg), cfg)
    return folder


@pytest.fixture(scope="session")
def reader(tokenizer_dir, tmp_path_factory):
    """A tiny model trained on all four tasks of the world."""
    root = tmp_path_factory.mktemp("reader")
    cfg = override(
        TrainConfig(),
        {
            "model": {"dim": 64, "n_layer": 2, "n_head": 4, "n_kv_head": 2, "max_seq_len": 96, "max_grid": 8},
            "data": {"examples": 400, "canvas": 32, "text_len": 16, "cache": str(root / "cache"),
                     "tasks": {"t2i": 1, "caption": 1, "qa": 2, "judge": 1}, "question_len": 24, "answer_len": 40},
            "tokenizer": str(tokenizer_dir), "steps": 60, "batch_size": 16, "lr": 3e-3, "warmup": 5,
            "sample_every": 1000,
        },
    )  # fmt: skip
    trainer = Trainer(cfg, root / "run", progress=False)
    rows = trainer.fit()
    return root / "run" / "checkpoint", rows
