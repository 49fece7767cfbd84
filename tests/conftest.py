import pytest
import torch

from tessera.config import override
from tessera.eval.judge import Judge
from tessera.tokenizer import build as visual


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
