"""Nothing lost, ever: hostile input and faults, each met with one line (exit 2 for bad input, 1 for a failed run)
and with the user's files and the last good checkpoint intact. The crash-anywhere checkpoint save is in
test_checkpoint.py; pickles that would run code are refused there too."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import one_line_error, run_cli
from PIL import Image

from tessera.engine import checkpoint
from tessera.pictures import load_image
from tessera.tokenizer.build import TokenizerConfig

TINY = ["--preset", "smoke", "data.canvas=32", "data.examples=32", "sample_every=1000"]


def train_args(tokenizer, out, cache, *more: str) -> list[str]:
    return ["train", "--tokenizer", str(tokenizer), "--out", str(out), *TINY, f"data.cache={cache}", *more]


def all_finite(folder) -> bool:
    return all(torch.isfinite(v).all() for v in checkpoint.load_weights(folder).values())


# 1. --fresh deletes only what tessera made, and only after the config is checked.
def test_fresh_checks_first_and_deletes_only_tessera_runs(tokenizer_dir, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    monkeypatch.chdir(home)
    one_line_error(run_cli(*train_args(tokenizer_dir, ".", tmp_path / "c", "--fresh", "steps=0")), "steps")
    one_line_error(run_cli(*train_args(tokenizer_dir, ".", tmp_path / "c", "--fresh")), "not a tessera run folder")
    assert (home / "thesis.tex").read_text() == "years of work" and sorted(os.listdir(home)) == ["thesis.tex"]
    tok_run = tmp_path / "tok"
    done = run_cli("tokenizer", "train", "--preset", "smoke", "--out", str(tok_run), "canvas=32", "steps=2")
    assert done.returncode == 0, done.stderr
    ckpt = tok_run / "checkpoint"
    for extra in ([], ["--fresh"]):  # the run's own tokenizer: never deleted, never replaced
        one_line_error(run_cli(*train_args(ckpt, tok_run, tmp_path / "c", *extra)), "holds this run's own input")
    assert checkpoint.load_config(ckpt, "tokenizer", TokenizerConfig()).arch == "conv"


# 2. A diverging run stops naming the step; no checkpoint with non-finite weights is ever written.
def test_a_diverging_run_stops_and_keeps_its_last_finite_checkpoint(tokenizer_dir, tmp_path):
    out = tmp_path / "run"
    done = run_cli(*train_args(tokenizer_dir, out, tmp_path / "c", "steps=4", "save_every=2"))
    assert done.returncode == 0, done.stderr
    blown = run_cli(*train_args(tokenizer_dir, out, tmp_path / "c", "steps=40", "save_every=1", "lr=1e10"))
    assert blown.returncode == 1, blown.stderr
    assert "the run stopped" in blown.stderr and "is kept" in blown.stderr
    assert all_finite(out / "checkpoint") and "changed settings" in blown.stderr  # lr 0.003 -> 1e10, said
    tok = run_cli("tokenizer", "train", "--preset", "smoke", "--out", str(tmp_path / "tok"), "canvas=32", "lr=1e10")
    assert tok.returncode == 1 and "the run stopped" in tok.stderr
    assert not (tmp_path / "tok" / "checkpoint").exists() or all_finite(tmp_path / "tok" / "checkpoint")
    wider = run_cli(*train_args(tokenizer_dir, out, tmp_path / "c", "steps=8", "model.dim=96"))
    one_line_error(wider, "does not fit this run")  # a changed architecture is refused, not loaded silently


# 3. Two runs on one folder: the second is refused naming the first; a killed run leaves no stuck lock.
def test_a_run_folder_is_locked_by_its_run_and_freed_when_it_dies(tokenizer_dir, tmp_path):
    out = tmp_path / "run"
    args = train_args(tokenizer_dir, out, tmp_path / "c", "steps=100000", "save_every=1000")
    holder = subprocess.Popen([sys.executable, "-m", "tessera.cli", *args], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        deadline = time.time() + 60
        while not (out / "metrics.jsonl").exists() and time.time() < deadline and holder.poll() is None:
            time.sleep(0.1)
        refused = run_cli(*train_args(tokenizer_dir, out, tmp_path / "c", "steps=3"))
        one_line_error(refused, f"in use by pid {holder.pid}")
        one_line_error(run_cli(*train_args(tokenizer_dir, out, tmp_path / "c", "steps=3", "--fresh")), "in use")
        assert (out / "metrics.jsonl").exists()  # the holder's run is untouched
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    free = run_cli(*train_args(tokenizer_dir, out, tmp_path / "c", "steps=3", "--fresh"))
    assert free.returncode == 0, free.stderr


# 5. Caches and logs: atomic, rebuilt when corrupt, cut back to the checkpoint on resume.
def test_a_torn_cache_or_log_line_is_recovered_and_rows_are_never_doubled(tokenizer_dir, tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    assert run_cli(*train_args(tokenizer_dir, out, cache, "steps=2", "save_every=1", "log_every=1")).returncode == 0
    for tokens in cache.glob("tokens-*.safetensors"):
        tokens.write_bytes(tokens.read_bytes()[:100])  # cut short
    with open(out / "metrics.jsonl", "a") as log:
        log.write('{"step": 3, "loss": 1.')  # the last line of a killed run
    again = run_cli(*train_args(tokenizer_dir, out, cache, "steps=4", "save_every=1", "log_every=1"))
    assert again.returncode == 0, again.stderr
    assert "rebuilding it" in again.stderr
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    fresh = tmp_path / "never-saved"
    fresh.mkdir()
    (fresh / ".tessera-run").write_text("train\n")
    (fresh / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n{"step": 2, "loss": 9.0}\n')  # killed before a save
    assert run_cli(*train_args(tokenizer_dir, fresh, cache, "steps=2", "log_every=1")).returncode == 0
    rows = [json.loads(line) for line in (fresh / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(r["loss"] != 9.0 for r in rows)


# 6. No hangs: budgets no text fits, pipes named like images.
def test_impossible_budgets_and_pipes_end_instead_of_hanging(tokenizer_dir, tmp_path):
    one_line_error(run_cli(*train_args(tokenizer_dir, tmp_path / "r", tmp_path / "c", "data.text_len=1")), "text_len")
    data = tmp_path / "images"
    data.mkdir()
    for i in range(4):
        Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(data / f"{i}.png")
    os.mkfifo(data / "pipe.png")
    (data / "gone.png").symlink_to(tmp_path / "nowhere.png")
    done = run_cli("tokenizer", "train", "--data", str(data), "--preset", "smoke", "--out", str(tmp_path / "t"),
                   "canvas=32", "steps=2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "skipped 2 unreadable" in done.stdout
    one_line_error(run_cli("judge", "check", str(data / "pipe.png")), "not a regular file")


# 7. No wrong result without a word.
def test_texts_outside_the_grammar_are_refused_everywhere(t2i_ckpt, reader, tmp_path):
    for prompt, named in (
        ("seven circles", "seven"),
        ("a red blue circle", "blue"),
        ("circle red left of of", "circle"),
    ):
        one_line_error(run_cli("generate", prompt, "--ckpt", str(t2i_ckpt), "--out", str(tmp_path / "x.png")), named)
    image = tmp_path / "scene.png"
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(image)
    ckpt, _ = reader
    one_line_error(run_cli("ask", str(image), "how many seven circles are there ?", "--ckpt", str(ckpt)), "seven")
    one_line_error(run_cli("ask", str(image), "does this image show a red blue circle ?", "--ckpt", str(ckpt)), "blue")
    assert not (tmp_path / "x.png").exists()


def test_sixteen_bit_greyscale_is_read_by_its_range(tmp_path):
    grey = np.full((8, 8), 32768, np.uint16)  # mid-grey in 16 bits
    Image.fromarray(grey).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I")
    assert np.all(np.abs(load_image(tmp_path / "grey16.png").astype(int) - 128) <= 1)


def test_shapes_eval_counts_what_it_cannot_score(tmp_path):
    good = {"tag": "single_object", "include": [{"class": "star", "count": 1}], "prompt": "a star"}
    lines = [good, good | {"tag": "shininess"}, good | {"include": [{"class": "dodecahedron", "count": 1}]},
             good | {"include": [{"class": "star", "count": 1, "color": "mauve"}]}]  # fmt: skip
    for i, meta in enumerate(lines):
        (tmp_path / f"{i:05d}" / "samples").mkdir(parents=True)
        (tmp_path / f"{i:05d}" / "metadata.jsonl").write_text(json.dumps(meta) + "\n")
        Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(tmp_path / f"{i:05d}" / "samples" / "0000.png")
    (tmp_path / "00004" / "samples").mkdir(parents=True)  # an index without images
    (tmp_path / "00004" / "metadata.jsonl").write_text(json.dumps(good) + "\n")
    done = run_cli("eval", "shapes", "--images", str(tmp_path))
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "results.json").read_text())
    assert summary["images"] == 1 and len(summary["skipped"]) == 4
    assert any("shininess" in s for s in summary["skipped"]) and any("no samples" in s for s in summary["skipped"])


# 8. One line, never a traceback.
@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--temperature", "inf"], "temperature"),
        (["--cfg", "inf"], "cfg"),
        (["--cfg", "nan"], "cfg"),
        (["-n", "100000"], "-n"),
    ],
)
def test_sampling_settings_out_of_range(t2i_ckpt, tmp_path, args, named):
    one_line_error(
        run_cli("generate", "a red circle", "--ckpt", str(t2i_ckpt), "--out", str(tmp_path / "x.png"), *args), named
    )


def test_checkpoints_that_do_not_fit_or_are_broken(t2i_ckpt, tmp_path, monkeypatch):
    def broken(name, change):
        folder = tmp_path / name
        shutil.copytree(t2i_ckpt, folder)
        change(folder)
        return run_cli("generate", "a red circle", "--ckpt", str(folder), "--out", str(tmp_path / "x.png"))

    one_line_error(broken("text", lambda f: (f / "text.json").write_text("[1, 2]")), "text.json")
    one_line_error(
        broken("words", lambda f: (f / "text.json").write_text('{"kind": "world", "words": ["a"]}')), "words"
    )
    other = tmp_path / "other-tok"
    shutil.copytree(t2i_ckpt / "tokenizer", other)
    config = (other / "config.yaml").read_text().replace("codebook_size: 32", "codebook_size: 64")
    (other / "config.yaml").write_text(config)

    def swap(folder):
        shutil.rmtree(folder / "tokenizer")
        shutil.copytree(other, folder / "tokenizer")

    one_line_error(broken("codebook", swap), "tokenizer")
    one_line_error(
        broken("key", lambda f: (f / "config.yaml").write_text((f / "config.yaml").read_text() + "wings: 2\n")), "wings"
    )
    monkeypatch.chdir(tmp_path)
    one_line_error(run_cli("generate", "a red circle", "--ckpt", ".", "--out", "x.png"), "not a tessera checkpoint")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["lr=-1"], "lr"),
        (["lr=nan"], "lr"),
        (["batch_size=0"], "batch_size"),
        (["save_every=0"], "save_every"),
        (["crop=64"], "crop"),
        (["steps=0"], "steps"),
        (["tokenizer.conv.quantizer.codebook_size=0"], "codebook_size"),
        (["tokenizer.conv.quantizer.kind=lfq", "tokenizer.conv.quantizer.codebook_size=100"], "power of two"),
        (["tokenizer.conv.ch_mult=[]"], "ch_mult"),
        (["tokenizer.conv.norm_groups=5"], "norm_groups"),
        (["tokenizer.conv.ch=0"], "ch"),
    ],
)
def test_tokenizer_settings_out_of_range(args, named, tmp_path):
    out = tmp_path / "t"
    one_line_error(run_cli("tokenizer", "train", "--preset", "smoke", "--out", str(out), "canvas=32", *args), named)
    assert not out.exists()  # refused before the run folder is made


def test_a_full_disk_during_a_save_keeps_the_last_checkpoint(tokenizer_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert run_cli(*train_args(tokenizer_dir, out, tmp_path / "c", "steps=2", "save_every=2")).returncode == 0
    real = checkpoint.save_file

    def full(tensors, path):
        real(tensors, path)
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(checkpoint, "save_file", full)
    result = run_cli(*train_args(tokenizer_dir, out, tmp_path / "c", "steps=4", "save_every=2"))
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith("error: disk full")
    monkeypatch.undo()
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 2 and all_finite(out / "checkpoint")
    again = run_cli(*train_args(tokenizer_dir, out, tmp_path / "c", "steps=4", "save_every=2"))
    assert again.returncode == 0, again.stderr  # the torn copy is cleared by the next save


def test_images_are_written_as_they_are_drawn(t2i_ckpt, tmp_path, monkeypatch):
    import tessera.generate.images as images

    real, batches = images.generate, []

    def fails_on_the_second_batch(*args, **kwargs):
        if len(batches) == 1:
            raise OSError(errno.ENOSPC, "No space left on device", "x")
        batches.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(images, "generate", fails_on_the_second_batch)
    result = run_cli("generate", "a red circle", "--ckpt", str(t2i_ckpt), "-n", "100", "--out", str(tmp_path / "g.png"))
    assert result.returncode == 1
    assert len(list((tmp_path / "g").glob("*.png"))) == 64  # the first batch is on disk


@pytest.mark.parametrize(
    ("args", "named"),
    [(["model.max_grid=2"], "max_grid"), (["model.dim=0"], "dim"), (["model.n_head=3"], "n_head"), (["ema=1"], "ema")],
)
def test_model_settings_out_of_range(tokenizer_dir, tmp_path, args, named):
    out = tmp_path / "run"
    one_line_error(run_cli(*train_args(tokenizer_dir, out, tmp_path / "c", *args)), named)
