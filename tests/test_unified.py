"""`tessera unified` end to end at toy size: every stage, its measurements, the report, and the introspective
chain through `tessera generate --introspect`."""

import json
import subprocess
import sys

import pytest

STAGES = ("sft", "draw-only", "read-only", "unified", "unified-half", "refined-draw", "refined-read")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tessera.cli", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def unified_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("unified") / "run"
    done = run("unified", "--preset", "smoke", "--out", str(out), f"model.data.cache={out.parent / 'cache'}")
    assert done.returncode == 0, done.stderr
    return out


def test_every_stage_is_measured_and_reported(unified_run):
    results = json.loads((unified_run / "results.json").read_text())
    for stage in STAGES:  # every model: a ShapesEval subset and reading on held-out scenes
        assert {"shapes/overall", "read/qa", "read/caption", "read/judge"} <= set(results[stage]), stage
        assert all(0.0 <= v <= 1.0 for v in results[stage].values())
    for stage in ("introspect-sft", "introspect-rl"):
        assert {"one_shot", "introspective", "self_eval_agreement", "redrawn"} <= set(results[stage])
    rl_steps = [
        json.loads(line)["step"] for line in (unified_run / "unified" / "metrics.jsonl").read_text().splitlines()
    ]
    assert rl_steps == [1, 2]  # equal budgets: every variant runs rl.steps (2 in the smoke preset)
    report = (unified_run / "report.html").read_text()
    assert "CoRL ablation at equal RL steps" in report and "Introspective generation" in report
    again = run("unified", "--preset", "smoke", "--out", str(unified_run))
    assert again.returncode == 0 and again.stdout.count("finished earlier, reused") >= len(STAGES)


def test_generate_shows_the_introspective_chain(unified_run, tmp_path):
    out = tmp_path / "chain.png"
    made = run("generate", "a red circle", "--ckpt", str(unified_run / "introspect" / "checkpoint"), "-n", "3",
               "--introspect", "--out", str(out))  # fmt: skip
    assert made.returncode == 0, made.stderr
    lines = [json.loads(line) for line in (tmp_path / "chain" / "chain.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and all((tmp_path / "chain" / line["final"]).exists() for line in lines) and out.exists()
    refused = run("generate", "a red circle", "--ckpt", str(unified_run / "sft" / "checkpoint"), "--introspect")
    assert refused.returncode == 2 and "not trained to introspect" in refused.stderr
