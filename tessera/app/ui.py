"""The Gradio page: a tab per capability, each answer shown with the judge's verdict; errors as the CLI's line."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import gradio as gr

from tessera.app.service import ORDERS, SCALE, Service, Shown
from tessera.errors import TesseraError, one_line

EXAMPLE = "a red circle left of a blue star"


def _served(work: Callable[..., Shown | str], outputs: int) -> Callable:
    """`work` behind the page: its answer, or (for bad input) empty outputs and the CLI's one-line error."""

    def run(*args, progress=gr.Progress()):  # noqa: B008 (Gradio reads the progress tracker from the default)
        try:
            shown = work(*args, report=lambda done, what: progress(done, desc=what))
        except TesseraError as e:
            message = one_line(e)
            gr.Warning(message)
            return (*[None] * (outputs - 1), message)
        if isinstance(shown, str):
            return shown, "done"
        pictures = [str(p) if isinstance(p, Path) else p for p in shown.pictures]  # (GIFs as files)
        return list(zip(pictures, shown.captions, strict=True)), shown.report, "done"

    return run


def _answer(tab: str, columns: int = 4) -> tuple[gr.Gallery, gr.Markdown, gr.Markdown]:
    gallery = gr.Gallery(label="drawn", columns=columns, format="png", elem_id=f"{tab}-gallery", height="auto",
                         object_fit="contain")  # fmt: skip
    report = gr.Markdown(elem_id=f"{tab}-report")
    status = gr.Markdown(elem_id=f"{tab}-status")
    return gallery, report, status


def _count(service: Service, value: int = 4) -> gr.Slider:
    return gr.Slider(1, service.limits.images, value=min(value, service.limits.images), step=1, label="images")


def _seed() -> gr.Number:
    return gr.Number(0, precision=0, minimum=0, label="seed")


def build(service: Service) -> gr.Blocks:
    """The page, its events wired to `service` (one request at a time through the queue)."""
    defaults = next(iter(service.bundles.values())).cfg.sampling
    with gr.Blocks(title="tessera", analytics_enabled=False) as page:
        gr.Markdown("# tessera\nEvery picture is read by the judge: what it sees, and whether the request holds.")
        gr.Markdown(service.overview(), elem_id="checkpoints")
        with gr.Tab("Text to image", id="t2i"):
            prompt = gr.Textbox(EXAMPLE, label="prompt", max_length=service.limits.prompt_chars, elem_id="t2i-prompt")
            with gr.Row():
                n, seed = _count(service, 8), _seed()
                order = gr.Dropdown(list(ORDERS), value=ORDERS[0], label="order")
            with gr.Accordion("sampling", open=False):
                cfg = gr.Slider(0, 10, value=defaults.cfg_scale, step=0.5, label="guidance (1: none)")
                temperature = gr.Slider(0.05, 2, value=defaults.temperature, step=0.05, label="temperature")
                top_k = gr.Number(defaults.top_k, precision=0, minimum=0, label="top-k (0: all)")
                top_p = gr.Slider(0.05, 1, value=defaults.top_p, step=0.05, label="top-p (1: all)")
            go = gr.Button("Generate", variant="primary", elem_id="t2i-go")
            shown = _answer("t2i")
            go.click(_served(service.draw, 3), [prompt, n, cfg, temperature, top_k, top_p, order, seed], shown)
        with gr.Tab("Introspection", id="introspect"):
            prompt = gr.Textbox(EXAMPLE, label="prompt", max_length=service.limits.prompt_chars)
            with gr.Row():
                n, seed = _count(service), _seed()
            go = gr.Button("Draw, judge, redraw", variant="primary", elem_id="introspect-go")
            go.click(_served(service.introspect, 3), [prompt, n, seed], _answer("introspect"))
        with gr.Tab("Thinking", id="think"):
            prompt = gr.Textbox(EXAMPLE, label="prompt", max_length=service.limits.prompt_chars)
            with gr.Row():
                n, seed = _count(service, 2), _seed()
                bands = gr.Slider(1, 8, value=3, step=1, label="bands")
            go = gr.Button("Think while drawing", variant="primary", elem_id="think-go")
            go.click(_served(service.think, 3), [prompt, n, bands, seed], _answer("think", columns=1))
        with gr.Tab("Editing", id="edit"):
            gr.Markdown("Paint over what to redraw and describe the whole scene after the edit, or paint nothing "
                        "and give an instruction (*make the red circle blue*).")  # fmt: skip
            with gr.Row():
                scene = gr.Textbox(EXAMPLE, label="render a source scene", max_length=service.limits.prompt_chars)
                render = gr.Button("Render", elem_id="edit-render")
            source = gr.ImageEditor(type="filepath", label="source", sources=["upload"], elem_id="edit-source")
            text = gr.Textbox("make the red circle blue", label="instruction or scene")
            with gr.Row():
                n, seed = _count(service), _seed()
            go = gr.Button("Edit", variant="primary", elem_id="edit-go")
            shown = _answer("edit")
            render.click(_rendered(service, editor=True), [scene, gr.State("image"), seed], [source, shown[2]])
            go.click(_served(service.edit, 3), [source, text, n, seed], shown)
        with gr.Tab("Conditions", id="conditions"):
            with gr.Row():
                kind = gr.Radio(["segmentation", "edges"], value="segmentation", label="condition")
                scene = gr.Textbox(EXAMPLE, label="render a map of a scene", max_length=service.limits.prompt_chars)
                render = gr.Button("Render", elem_id="conditions-render")
            condition = gr.Image(type="filepath", label="map", sources=["upload"], image_mode="RGB")
            prompt = gr.Textbox(EXAMPLE, label="caption of the scene to draw", max_length=service.limits.prompt_chars)
            with gr.Row():
                n, seed = _count(service), _seed()
                scale = gr.Slider(0, 6, value=defaults.image_scale, step=0.5, label="map guidance (1: none)")
            go = gr.Button("Draw on the map", variant="primary", elem_id="conditions-go")
            shown = _answer("conditions")
            render.click(_rendered(service), [scene, kind, seed], [condition, shown[2]])
            go.click(_served(service.condition, 3), [kind, condition, prompt, n, scale, seed], shown)
        with gr.Tab("Video", id="video"):
            prompt = gr.Textbox("a red circle moving right", label="prompt", max_length=service.limits.prompt_chars)
            with gr.Row():
                n, seed = _count(service, 2), _seed()
            go = gr.Button("Draw clips", variant="primary", elem_id="video-go")
            go.click(_served(service.video, 3), [prompt, n, seed], _answer("video", columns=2))
        with gr.Tab("Reading", id="read"):
            with gr.Row():
                scene = gr.Textbox(EXAMPLE, label="render a scene", max_length=service.limits.prompt_chars)
                render = gr.Button("Render", elem_id="read-render")
            picture = gr.Image(
                type="filepath", label="image", sources=["upload"], image_mode="RGB", elem_id="read-image"
            )
            mode = gr.Radio(["ask", "caption", "show"], value="caption", label="ask a question | caption it | "
                            "does it show ...?")  # fmt: skip
            text = gr.Textbox("how many circles are there?", label="question, or description for show")
            go = gr.Button("Read", variant="primary", elem_id="read-go")
            answer, status = gr.Markdown(elem_id="read-report"), gr.Markdown(elem_id="read-status")
            render.click(_rendered(service), [scene, gr.State("image"), gr.State(0)], [picture, status])
            go.click(_served(service.read, 2), [picture, mode, text], [answer, status])
    return page


def _rendered(service: Service, editor: bool = False) -> Callable:
    """Render a world scene for a description, as `kind` (image | segmentation | edges), into an image input (the
    editor takes it as its background)."""

    def run(description: str, kind: str, seed: float):
        try:
            picture = service.render(description, kind, seed)
        except TesseraError as e:
            return None, one_line(e)
        value = {"background": picture, "layers": [], "composite": picture} if editor else picture
        return value, f"rendered at {SCALE}x the model's canvas"

    return run


def serve(service: Service, host: str, port: int, block: bool = True) -> gr.Blocks:
    """Start the page on host:port; one request at a time, uploads capped at the service's limits and kept, with
    every answer, in the service's folder."""
    os.environ["GRADIO_TEMP_DIR"] = str(service.folder)  # read as the page is built and launched
    page = build(service).queue(default_concurrency_limit=1, max_size=service.limits.queue)
    page.launch(server_name=host, server_port=port, max_file_size=service.limits.upload_bytes, quiet=True,
                prevent_thread_lock=not block, ssr_mode=False, mcp_server=False, footer_links=[],
                show_error=False)  # fmt: skip
    return page
