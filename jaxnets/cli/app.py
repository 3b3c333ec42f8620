"""`jaxnets` — the command-line entry point.

Command modules import only typer and the standard library at import time, so `jaxnets --help`
answers quickly; JAX, Flax and friends load inside the command that needs them.
"""

from __future__ import annotations

import sys

import typer
from typer import Abort

from jaxnets.cli import (
    convert_cmd,
    decompose_cmd,
    demo_cmd,
    hyperplanes_cmd,
    models_cmd,
    probe_cmd,
    seam_cmd,
    validate_cmd,
    wfn_cmd,
)

app = typer.Typer(
    name="jaxnets",
    help="Analyse and compress convolutional networks in JAX/Flax (PyTorch weights imported exactly).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("models")(models_cmd.models)
app.command("info")(models_cmd.info)
app.command("convert")(convert_cmd.convert)
app.command("validate")(validate_cmd.validate)
app.command("demo")(demo_cmd.demo)
# Each method module adds its own commands (a flat command or a sub-app such as `jaxnets wfn …`);
# `train` comes with the hyperplane commands (it is the original train.py).
for _module in (decompose_cmd, wfn_cmd, probe_cmd, seam_cmd, hyperplanes_cmd):
    _module.register(app)


def main() -> None:
    """Run the app; user errors become one line on stderr and exit code 2."""
    try:
        from typer._click.exceptions import NoArgsIsHelpError, UsageError
    except ImportError:  # a typer that uses the click package instead of its own copy
        import click.exceptions

        UsageError = click.exceptions.UsageError
        NoArgsIsHelpError = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click < 8.2: none

    from jaxnets.errors import ConfigError, JaxnetsError
    from jaxnets.runtime import configure_xla_flags, forget_created_run_dirs, remove_unused_run_dirs

    configure_xla_flags()  # XLA reads XLA_FLAGS when its first backend starts, so before any command
    forget_created_run_dirs()
    try:
        code = app(standalone_mode=False)
    except UsageError as exc:
        if isinstance(exc, NoArgsIsHelpError):  # the help is already printed
            sys.exit(exc.exit_code)
        # A wrong flag or flag value: one line like every other bad input, not Typer's box.
        where = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        print(f"error: {exc.format_message()}{where}", file=sys.stderr)
        sys.exit(2)
    except Abort:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except ConfigError as exc:  # a Config field's message, in the flag's words
        remove_unused_run_dirs()
        print(f"error: {exc.flag} {exc.problem}", file=sys.stderr)
        sys.exit(2)
    except JaxnetsError as exc:
        remove_unused_run_dirs()
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        # The file system said no (disk full, permissions, a path under a file): the user's
        # environment, not a bug; one line naming the file.
        remove_unused_run_dirs()
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
