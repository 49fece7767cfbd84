"""The `tessera` command: each subcommand parses its options, calls one library function and prints."""

from __future__ import annotations

import errno
import sys

import typer

from tessera.cli import app as app_command
from tessera.cli import eval as eval_commands
from tessera.cli import judge, model, runs, tokenizer, world
from tessera.errors import DivergedError, TesseraError, one_line

app = typer.Typer(
    help="tessera: autoregressive visual generation over discrete visual tokens.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(world.app, name="world")
app.add_typer(judge.app, name="judge")
app.add_typer(eval_commands.app, name="eval")
app.add_typer(tokenizer.app, name="tokenizer")
app.add_typer(model.checkpoints, name="model")
for command in (
    model.train,
    runs.rl,
    model.generate,
    model.edit,
    model.predict,
    model.ask,
    model.caption,
    runs.demo,
    runs.unified,
    app_command.app,
):
    app.command(command.__name__)(command)

# A path the user gave that is missing, not allowed or of the wrong kind: bad input, not a bug.
BAD_PATHS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad input (and bad usage) ends with one line on stderr and exit code 2; a full disk or a run
    that diverged with one line and exit code 1; anything else is a bug and shows its traceback."""
    from PIL import Image
    from typer.exceptions import TyperException

    try:
        code = app(args=argv, standalone_mode=False)
    except TyperException as e:  # usage: unknown option, missing argument, a value out of range
        message = " ".join(e.format_message().split())
        if message:  # (an empty one follows the help that a bare group prints)
            print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except DivergedError as e:  # the run failed, though its input may be fine; its last checkpoint is kept
        print(one_line(e), file=sys.stderr)
        sys.exit(1)
    except (TesseraError, Image.DecompressionBombError) as e:
        print(one_line(e), file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            print(f"error: disk full: {e.filename or e.strerror}", file=sys.stderr)
            sys.exit(1)
        if isinstance(e, BAD_PATHS):
            print(f"error: {e.strerror}: {e.filename}", file=sys.stderr)
            sys.exit(2)
        raise
    sys.exit(code if isinstance(code, int) else 0)
