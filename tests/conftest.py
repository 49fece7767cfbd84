"""Shared fixtures: the judge, tiny tokenizers and models made once per session, and the CLI run in-process."""

import contextlib
import io
import os
import socket
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from tessera.cli import main
from tessera.config import override
from tessera.eval.judge import Judge
from tessera.tokenizer import build as visual
from tessera.tokenizer.train import TokenizerTrainConfig, TokenizerTrainer
from tessera.train.trainer import TrainConfig, Trainer

TINY_MODEL = {"dim": 64, "n_layer": 2, "n_head": 4, "n_kv_head": 2, "max_seq_len": 64, "max_grid": 8}


def distinct_rewards(metadata, images, texts) -> np.ndarray:
    """A reward that tells every sample apart (0 to 1): no GRPO group agrees, so every row is updated."""
    return np.linspace(0, 1, len(images), dtype=np.float32)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str) -> Result:
    """`tessera ARGS...` in this process: its exit code and what it printed."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def cli():
    return run_cli


def one_line_error(result: Result, *named: str) -> None:
    """Bad input: exit code 2 and one line on stderr that names the problem; no traceback."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for part in named:
        assert part in lines[0], lines[0]


def two_ranks(fn, *args) -> None:
    """Run fn(rank, *args) in two spawned processes that form one gloo process group."""
    with socket.socket() as s:  # a free local port for the group's store
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ranked, args=(port, fn, args), nprocs=2)


def _ranked(rank: int, port: int, fn, args) -> None:
    """One of `two_ranks`' processes: torchrun's environment for rank `rank` of two, one thread, then fn."""
    os.environ |= {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
                   "MASTER_PORT": str(port)}  # fmt: skip
    torch.set_num_threads(1)
    fn(rank, *args)


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
def mask_tokenizer_dir(tmp_path_factory):
    """A PatchVQ of 8x8 patches as 256 coverage masks times 8 colours, fitted 30 steps: 32x32 images -> 4x4 codes."""
    folder = tmp_path_factory.mktemp("masks")
    vq = {"codebook_size": 256, "dim": 64, "l2_norm": False, "commitment": 0.0, "restart_below": 0.003}
    cfg = override(
        TokenizerTrainConfig(),
        {"tokenizer": {"arch": "patch", "patch": {"patch": 8, "colours": 8, "quantizer": vq}}, "canvas": 32,
         "steps": 30, "batch_size": 16, "warmup": 0, "log_every": 1, "sample_every": 1000, "save_every": 30},
    )  # fmt: skip
    TokenizerTrainer(cfg, folder, progress=False).fit()
    return folder / "checkpoint"


@pytest.fixture(scope="session")
def t2i_ckpt(tokenizer_dir, tmp_path_factory):
    """A tiny text-to-image model after a few supervised steps, on a tokenizer whose codes differ in brightness."""
    root = tmp_path_factory.mktemp("t2i")
    tok, tok_cfg = visual.load(tokenizer_dir)
    with torch.no_grad():
        tok.post_quant_conv.weight.mul_(30)  # untrained codes decode alike; this spreads their brightness
    visual.save(root / "tok", tok, tok_cfg)
    cfg = override(
        TrainConfig(),
        {
            "model": TINY_MODEL,
            "data": {"examples": 64, "canvas": 32, "text_len": 16, "cache": str(root / "cache")},
            "tokenizer": str(root / "tok"),
            "steps": 5,
            "batch_size": 8,
            "warmup": 1,
            "sample_every": 1000,
        },
    )
    Trainer(cfg, root / "run", progress=False).fit()
    return root / "run" / "checkpoint"


@pytest.fixture(scope="session")
def reader(tokenizer_dir, tmp_path_factory):
    """A tiny model trained on all four tasks of the world."""
    root = tmp_path_factory.mktemp("reader")
    cfg = override(
        TrainConfig(),
        {
            "model": TINY_MODEL | {"max_seq_len": 96},
            "data": {"examples": 400, "canvas": 32, "text_len": 16, "cache": str(root / "cache"),
                     "tasks": {"t2i": 1, "caption": 1, "qa": 2, "judge": 1}, "question_len": 24, "answer_len": 40},
            "tokenizer": str(tokenizer_dir), "steps": 250, "batch_size": 16, "lr": 3e-3, "warmup": 5,
            "sample_every": 1000,
        },
    )  # fmt: skip
    trainer = Trainer(cfg, root / "run", progress=False)
    rows = trainer.fit()
    return root / "run" / "checkpoint", rows


@pytest.fixture(scope="session")
def unified_run(tmp_path_factory):
    """`tessera unified --preset smoke`: every stage at toy size."""
    out = tmp_path_factory.mktemp("unified") / "run"
    done = run_cli("unified", "--preset", "smoke", "--out", str(out), f"model.data.cache={out.parent / 'cache'}")
    assert done.returncode == 0, done.stderr
    return out
