"""A screenshot of each tab of `tessera app` after one request with the page's defaults, for the README; prints
each request's time from click to answer.

python scripts/app_screenshots.py --ckpt A --ckpt B ... --out docs/app
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from PIL import Image

from tessera.app.browser import chromium, free_port, open_tab, status, wait
from tessera.app.service import Service
from tessera.app.ui import serve
from tessera.eval.judge import Judge
from tessera.model.bundle import load

# tab name, its id, the buttons pressed in turn (a render first where the tab needs a picture)
TABS = (
    ("Text to image", "t2i", ("t2i-go",)),
    ("Introspection", "introspect", ("introspect-go",)),
    ("Thinking", "think", ("think-go",)),
    ("Editing", "edit", ("edit-render", "edit-go")),
    ("Conditions", "conditions", ("conditions-render", "conditions-go")),
    ("Video", "video", ("video-go",)),
    ("Reading", "read", ("read-render", "read-go")),
)


def _settled(said: str, before: str) -> str | None:
    """The tab's new status line once its request is over (while it runs, Gradio's progress adds lines)."""
    return said if said not in ("", before) and "\n" not in said else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", action="append", required=True, type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/app"))
    args = parser.parse_args()
    service = Service({p.parent.name: load(p) for p in args.ckpt}, Judge.load(), Path(tempfile.mkdtemp()))
    port = free_port()
    page, browser = serve(service, "127.0.0.1", port, block=False), chromium(1200, 1500)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        browser.get(f"http://127.0.0.1:{port}")
        time.sleep(2)
        for name, tab, buttons in TABS:
            open_tab(browser, name)
            for button in buttons:
                before = status(browser, tab)  # each step of a tab says something new: rendered, then done
                start = time.monotonic()
                browser.find_element("id", button).click()
                said = wait(lambda tab=tab, before=before: _settled(status(browser, tab), before), timeout=300)
                print(f"{name}: {button} -> {said!r} in {time.monotonic() - start:.1f} s")
            time.sleep(2)  # the pictures load
            shot = args.out / f"{tab}.png"
            browser.save_screenshot(str(shot))
            picture = Image.open(shot).convert("RGB")
            picture = picture.resize((picture.width * 3 // 4, picture.height * 3 // 4), Image.LANCZOS)
            picture.quantize(128).save(shot, optimize=True)  # small enough to keep in the repository
    finally:
        browser.quit()
        page.close()


if __name__ == "__main__":
    main()
