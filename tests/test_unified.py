"""`tessera unified` end to end at toy size: every stage, its measurements, the report, the rerun, and the
introspective chain through `tessera generate --introspect` and `tessera eval understanding`."""

import json

from conftest import one_line_error, run_cli

STAGES = ("sft", "draw-only", "read-only", "unified", "unified-half", "refined-draw", "refined-read")


def test_every_stage_is_measured_and_reported(unified_run):
    results = json.loads((unified_run / "results.json").read_text())
    for stage in STAGES:  # every model: a ShapesEval subset and reading on held-out scenes
        assert {"shapes/overall", "read/qa", "read/caption", "read/judge"} <= set(results[stage]), stage
    introspection = {"one_shot", "introspective", "self_eval_agreement", "redrawn", "tokens_per_image"}
    for stage in ("introspect-sft", "introspect-rl"):
        assert introspection <= results[stage].keys()
    for route in ("think-zero-shot", "think-sft", "think-rl"):  # TwiG: zero-shot, SFT, GRPO, measured alike
        scores = results[route]
        assert scores["tokens_per_image"] > 8 * 8, route  # the smoke grid's 64 tokens, and thoughts and critiques
        assert all(0 <= scores[k] <= 1 for k in ("one_shot", "first", "final", "strict", "critiques_parsed")), route
    rl_steps = [
        json.loads(line)["step"] for line in (unified_run / "unified" / "metrics.jsonl").read_text().splitlines()
    ]
    assert rl_steps == [1, 2]  # equal budgets: every variant runs rl.steps (2 in the smoke preset)
    report = (unified_run / "report.html").read_text()
    assert "CoRL ablation at equal RL steps" in report and "Introspective generation" in report
    assert "Thinking while drawing (TwiG)" in report and "TwiG SFT + GRPO" in report
    cache = f"model.data.cache={unified_run.parent / 'cache'}"
    again = run_cli("unified", "--preset", "smoke", "--out", str(unified_run), cache)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("finished earlier, reused") == len(STAGES) + 6  # + tokenizer, introspections, thinking


def test_generate_shows_the_introspective_chain(unified_run, tmp_path):
    out = tmp_path / "chain.png"
    made = run_cli("generate", "a red circle", "--ckpt", str(unified_run / "introspect" / "checkpoint"), "-n", "3",
                   "--introspect", "--out", str(out))  # fmt: skip
    assert made.returncode == 0, made.stderr
    lines = [json.loads(line) for line in (tmp_path / "chain" / "chain.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and all((tmp_path / "chain" / line["final"]).exists() for line in lines) and out.exists()
    refused = run_cli("generate", "a red circle", "--ckpt", str(unified_run / "sft" / "checkpoint"), "--introspect")
    one_line_error(refused, "not trained to introspect")


def test_eval_understanding_reads_only_the_reading_tasks(unified_run, tmp_path):
    """An introspection checkpoint knows five tasks; only caption, qa and judge are questions to evaluate."""
    ckpt = unified_run / "introspect" / "checkpoint"
    done = run_cli("eval", "understanding", "--ckpt", str(ckpt), "-n", "3", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted({r["task"] for r in rows}) == ["caption", "judge", "qa"] and len(rows) == 9
    summary = json.loads((tmp_path / "results.json").read_text())
    assert set(summary) >= {"qa", "caption", "judge"} and "introspect" not in summary
    drawing_only = run_cli("eval", "understanding", "--ckpt", str(unified_run / "draw-only" / "checkpoint"), "-n", "3")
    assert drawing_only.returncode == 0  # it was trained on the multi-task mixture too


def test_a_thinking_rl_run_needs_its_thinking_model(tmp_path):
    one_line_error(run_cli("unified", "--preset", "smoke", "--out", str(tmp_path), "think_rl_steps=2", "think_steps=0"),
                   "set think_steps")  # fmt: skip
