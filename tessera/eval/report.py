"""One HTML page (run/report.html) of results: the end-to-end demo's ShapesEval scores, samples, curves and timings,
or the conditions set's tables, sheets and clips."""

from __future__ import annotations

import datetime
import html
import platform
from collections.abc import Iterable
from pathlib import Path

import yaml

from tessera.engine.checkpoint import write_atomically
from tessera.eval.shapes_eval import OUTCOMES
from tessera.world.language import CATEGORIES

STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1200px; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #999; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { image-rendering: pixelated; max-width: 100%; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
pre { background: #f4f4f4; padding: 0.7em; overflow-x: auto; }
"""
SHEET_CAPTION = "green: judged correct, red: wrong"
BEFORE_AFTER = "The same prompts and seeds: top row before RL, bottom row after; green: judged correct, red: wrong."
EDITS = (
    "Each row: the source scene, the tokens kept (the redrawn ones pale), the model's edit, and the scene the "
    "edit must leave. The kept tokens are copied exactly; the model draws the rest after them in a tree order."
)


def write_report(run: Path, sections: dict) -> Path:
    """Write run/report.html from `sections` (every key optional) and return its path.

    Keys: notes (list of str), shapes_eval (label -> `shapes_eval.summarize` dict), sample_grids (category -> PNG
    path relative to run), sample_sheet (PNG path relative to run), before_after (category -> PNG path: the same
    prompts before and after RL), edits (edit kind -> PNG path), curves (name -> metric rows) with curve_keys
    (name -> keys to plot), timings (stage -> seconds), config (name -> plain dict), tables (title -> {"head":
    [...], "rows": [[str, ...]]}), figures (title -> {"text": str, "images": {caption -> PNG or GIF path}}), title
    (the page's heading).
    """
    run = Path(run)
    title = html.escape(sections.get("title", "tessera demo report"))
    body = [f"<h1>{title}</h1>\n<p>{html.escape(_date())} &middot; {html.escape(_machine())}</p>"]
    if "notes" in sections:
        body.append(_bullets(sections["notes"]))
    if "shapes_eval" in sections:
        body.append(_section("ShapesEval", _scores_table(sections["shapes_eval"])))
    for title, table in sections.get("tables", {}).items():
        body.append(_section(title, _table(table["head"], table["rows"])))
    if "sample_grids" in sections or "sample_sheet" in sections:
        grids, sheet = sections.get("sample_grids", {}), sections.get("sample_sheet")
        body.append(_section("Samples per category", _samples(grids, sheet)))
    if "before_after" in sections:
        figures = "\n".join(_figure(str(path), category) for category, path in sections["before_after"].items())
        body.append(_section("Before and after RL", f"<p>{BEFORE_AFTER}</p>\n{figures}"))
    if "edits" in sections:
        figures = "\n".join(_figure(str(path), kind) for kind, path in sections["edits"].items())
        body.append(_section("Editing by prefix", f"<p>{EDITS}</p>\n{figures}"))
    for heading, figures in sections.get("figures", {}).items():
        shown = "\n".join(_figure(str(path), caption) for caption, path in figures["images"].items())
        body.append(_section(heading, f"<p>{html.escape(figures['text'])}</p>\n{shown}"))
    if "curves" in sections:
        body.append(_section("Training curves", _curves(run, sections["curves"], sections.get("curve_keys", {}))))
    if "timings" in sections:
        body.append(_section("Timings", _timings_table(sections["timings"])))
    if "config" in sections:
        body.append(_section("Configuration", _configs(sections["config"])))
    return write_atomically(run / "report.html", _page(title, "\n".join(body)))


def _date() -> str:
    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M")


def _machine() -> str:
    import torch

    text = f"{platform.machine()}, {torch.get_num_threads()} threads"
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name()}"
    return text


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _section(title: str, content: str) -> str:
    return f"<h2>{html.escape(title)}</h2>\n{content}"


def _bullets(items: Iterable[str]) -> str:
    return "<ul>\n" + "".join(f"<li>{html.escape(str(item))}</li>\n" for item in items) + "</ul>"


def _table(head: list[str], rows: list[list[str]]) -> str:
    """An HTML table; every cell is escaped here."""
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    lines = [f"<tr>{cells}</tr>"]
    lines += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
    return "<table>\n" + "\n".join(lines) + "\n</table>"


def _scores_table(summaries: dict[str, dict]) -> str:
    """One row per category and overall, by GenEval's rule and then by the strict one; objects per image read and
    asked for; the share of images of each outcome (`shapes_eval.outcome`); the image count. One column per summary
    label."""
    labels = list(summaries)
    categories = [c for c in CATEGORIES if any(c in s for s in summaries.values())]
    keys = [*categories, "overall", *[f"strict/{c}" for c in categories], "strict"]
    keys += ["objects_per_image", "objects_asked_per_image"]
    keys = [k for k in keys if any(k in s for s in summaries.values())]
    rows = [[key] + [_score(summaries[label].get(key)) for label in labels] for key in keys]
    outcomes = [s.get("outcomes") or {} for s in summaries.values()]  # category -> outcome -> share, per label
    for name in OUTCOMES if any(outcomes) else ():
        cells = [_score(sum(p[name] for p in per.values()) / len(per) if per else None) for per in outcomes]
        rows.append([f"images: {name} (mean over categories)", *cells])
    rows.append(["images"] + [str(summaries[label].get("images", "–")) for label in labels])
    return _table(["category", *labels], rows)


def _score(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _figure(src: str, caption: str) -> str:
    return (
        f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _samples(grids: dict[str, str], sheet: str | None) -> str:
    figures = [_figure(str(path), category) for category, path in grids.items()]
    if sheet is not None:
        figures.append(_figure(str(sheet), SHEET_CAPTION))
    return "\n".join(figures)


def _curves(run: Path, curves: dict[str, list[dict]], curve_keys: dict[str, list[str]]) -> str:
    figures = []
    for name, rows in curves.items():
        path = _plot(run / f"plot-{name}.png", rows, curve_keys.get(name, []))
        if path is not None:
            figures.append(_figure(path.name, name))
    return "\n".join(figures)


def _plot(path: Path, rows: list[dict], keys: list[str]) -> Path | None:
    """One subplot per key that some row has, against "step"; None (and no file) when no key has data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in keys if any(k in row for row in rows)]
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        points = [(row["step"], row[key]) for row in rows if key in row and "step" in row]
        ax.plot([p[0] for p in points], [p[1] for p in points])
        ax.set_title(key)
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _timings_table(timings: dict[str, float]) -> str:
    rows = [[stage, f"{seconds:.1f}"] for stage, seconds in timings.items()]
    rows.append(["total", f"{sum(timings.values()):.1f}"])
    return _table(["stage", "seconds"], rows)


def _configs(configs: dict[str, dict]) -> str:
    return "\n".join(
        f"<h3>{html.escape(name)}</h3>\n<pre>{html.escape(yaml.safe_dump(config, sort_keys=False))}</pre>"
        for name, config in configs.items()
    )
