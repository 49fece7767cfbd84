"""tessera app: the web app."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from tessera.cli.common import Device, console, device
from tessera.errors import ConfigError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def app(
    ckpt: Annotated[
        list[Path],
        typer.Option(help="A model checkpoint; repeat it to serve several (each tab uses the first that can)."),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on; only this machine by default.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 7860,
    device_name: Device = "auto",
) -> None:
    """Serve a web app for everything the checkpoints do: draw, introspect, think, edit, draw on maps, draw clips,
    read; every picture judged beside it. Needs Gradio, the project's `app` extra."""
    from tessera.eval.judge import Judge
    from tessera.model.bundle import load as load_bundle

    try:
        import gradio  # noqa: F401
    except ImportError as e:
        raise ConfigError("tessera app needs Gradio: pip install -e '.[app]'") from e
    from tessera.app.service import Service
    from tessera.app.ui import serve

    bundles = {str(path): load_bundle(path, device(device_name)) for path in ckpt}
    folder = Path(tempfile.mkdtemp(prefix="tessera-app-"))  # uploads and answers live here and nowhere else
    try:
        service = Service(bundles, Judge.load(), folder)
        if host not in LOOPBACK:
            console.print(f"[bold]serving on {host}: anyone who can reach this machine can use the app[/bold]")
        console.print(f"tessera app on http://{host}:{port} (ctrl-c stops it); uploads in {folder}")
        serve(service, host, port)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
