"""The demo report: an HTML page with scores, pictures, curves, timings and escaped configuration."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from PIL import Image

from tessera.eval.report import write_report
from tessera.eval.shapes_eval import OUTCOMES
from tessera.world.language import CATEGORIES


def _summary(overall: float, base: float) -> dict:
    outcomes = {c: dict.fromkeys(OUTCOMES, 0.0) | {"exact": base, "no clean shape": 1 - base} for c in CATEGORIES}
    scores = {c: base + i / 100 for i, c in enumerate(CATEGORIES)}
    return {"overall": overall, **scores, "outcomes": outcomes, "images": 24, "skipped": []}


def _png(path: Path) -> None:
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)


class _Sources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def _image_sources(text: str) -> list[str]:
    parser = _Sources()
    parser.feed(text)
    return parser.sources


def test_report_has_every_section(tmp_path: Path) -> None:
    _png(tmp_path / "grid-counting.png")
    _png(tmp_path / "sheet.png")
    rows = [{"step": s, "loss": 1 / (s + 1), "psnr": 20 + s} for s in range(5)]
    sections = {
        "notes": ["tiny run & quick"],
        "shapes_eval": {"ground truth": _summary(0.98765, 0.9), "model": _summary(0.4321, 0.3)},
        "sample_grids": {"counting": "grid-counting.png"},
        "sample_sheet": "sheet.png",
        "before_after": {"counting": "grid-counting.png"},
        "curves": {"tokenizer": rows},
        "curve_keys": {"tokenizer": ["loss", "psnr", "missing"]},
        "timings": {"tokenizer": 12.34, "model": 5.0},
        "config": {"model": {"name": "<script>alert(1)</script>", "layers": 2}},
    }
    path = write_report(tmp_path, sections)
    text = path.read_text()
    assert path == tmp_path / "report.html" and not (tmp_path / "report.html.tmp").exists()
    for category in [*CATEGORIES, "overall"]:
        assert category in text
    assert "0.988" in text and "0.432" in text
    assert "images: no clean shape (mean over categories)" in text and "0.700" in text  # 1 - 0.3
    assert "tiny run &amp; quick" in text
    sources = _image_sources(text)
    assert {"grid-counting.png", "sheet.png", "plot-tokenizer.png"} <= set(sources)
    assert all((tmp_path / s).is_file() for s in sources)
    assert "green: judged correct, red: wrong" in text and "Before and after RL" in text
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "17.3" in text  # the timings' total


def test_empty_sections_still_make_a_page(tmp_path: Path) -> None:
    text = write_report(tmp_path, {}).read_text()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "tessera demo report" in text
    assert "<h2>" not in text
