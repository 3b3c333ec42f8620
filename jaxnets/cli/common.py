"""Options shared by all commands, and `--config FILE` (TOML; flags given on the command line win)."""

from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from jaxnets.data.classes import parse_classes  # noqa: F401  (re-exported for the commands)
from jaxnets.errors import JaxnetsError

ModelArg = Annotated[str, typer.Argument(help="Registered model name (see `jaxnets models`).")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Run folder (default runs/<command>/<model>-<time>).")]
SeedOpt = Annotated[int, typer.Option(help="Random seed.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", "-b", help="Batch size (global, over all devices).")]
DevicesOpt = Annotated[str, typer.Option(help="Number of devices for data parallelism, or 'auto'.")]
CoordinatorOpt = Annotated[str | None, typer.Option(help="Multi-host: host:port of process 0 (jax.distributed.initialize); see docs/multi-device.md.")]
NumProcessesOpt = Annotated[int | None, typer.Option(help="Multi-host: number of processes (hosts).")]
ProcessIdOpt = Annotated[int | None, typer.Option(help="Multi-host: this process's id in [0, --num-processes).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="TOML file of option values; command-line flags override it.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Resolve the options (flags over --config), print them as JSON and exit without running.")]
VerboseOpt = Annotated[int, typer.Option("--verbose", "-v", count=True, help="More output (-vv for debug).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and the final result.")]
PrecisionOpt = Annotated[str, typer.Option(help="fp32 | bf16 (bf16 compute, fp32 master weights) | auto (bf16 on GPU/TPU).")]
CheckpointEveryOpt = Annotated[int | None, typer.Option(help="Also checkpoint every N steps (for resume after a kill).")]
# main.py's --gpu (Decomposing the Deep) picks a CUDA device; jaxnets runs on the JAX devices it sees.
GpuOpt = Annotated[int | None, typer.Option("--gpu", "-g", hidden=True, help="Original flag; ignored.")]
DataOpt = Annotated[str, typer.Option("--data", "-d", help="Data spec: digits | cifar10:DIR | cifar100:DIR | cifar10-py:DIR | imagefolder:DIR | cub200:DIR | dogs120:DIR | flowers102:DIR | mit67:DIR | actions40:DIR | tfds:NAME (docs/data.md).")]
SplitOpt = Annotated[str, typer.Option(help="Split: train | test | val.")]
LimitOpt = Annotated[int | None, typer.Option(help="Use only the first N images.")]
ClassesOpt = Annotated[str | None, typer.Option(help="Keep only these classes, e.g. 0,3,7.")]
NormOpt = Annotated[str | None, typer.Option("--normalize", help="Normalisation override (imagenet, cifar, cifar_std, cifar_2020, …); default: the model's.")]
WeightsOpt = Annotated[Path | None, typer.Option("--weights", "-w", help="Checkpoint: PyTorch .th/.pth/.pt/.tar, .npz, or a jaxnets checkpoint folder.")]


# The options every command has, added by @run_options (not repeated in each signature).
_RUN_OPTIONS = [
    inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ConfigOpt),
    inspect.Parameter("dry_run", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=DryRunOpt),
    inspect.Parameter("verbose", inspect.Parameter.KEYWORD_ONLY, default=0, annotation=VerboseOpt),
    inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=QuietOpt),
]


def run_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command ``--config``, ``--dry-run``, ``--verbose`` and ``--quiet`` (after its own flags).

    The command declares ``**run_options``; typer sees the four in the signature and passes them
    there, and :func:`resolve_options` reads them from the command's ``locals()``.
    """
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    command.__signature__ = signature.replace(parameters=own + _RUN_OPTIONS)
    return command


def load_config(path: Path | None, section: str) -> dict[str, Any]:
    """Option values from a TOML file: top-level keys, then the ``[section]`` table on top."""
    if path is None:
        return {}
    import tomllib

    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise JaxnetsError(f"--config file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise JaxnetsError(f"--config {path} is not valid TOML: {exc}") from None
    flat = {k.replace("-", "_"): v for k, v in data.items() if not isinstance(v, dict)}
    flat.update({k.replace("-", "_"): v for k, v in data.get(section, {}).items()})
    return flat


def resolve_options(ctx: typer.Context, values: dict[str, Any], section: str) -> dict[str, Any]:
    """Merge ``--config`` values under the options the user did not type on the command line."""
    values = {k: v for k, v in {**values, **values.get("run_options", {})}.items()
              if k not in ("ctx", "run_options")}
    config = load_config(values.get("config"), section)
    unknown = sorted(set(config) - set(values))
    if unknown:
        raise JaxnetsError(f"--config: unknown option(s) for '{section}': {', '.join(unknown)}")
    out = dict(values)
    params = {p.name: p for p in ctx.command.params}
    for key, value in config.items():
        source = ctx.get_parameter_source(key)
        # typer vendors click; compare by name (DEFAULT = the user did not type the flag).
        if source is None or source.name == "DEFAULT":
            out[key] = _typed_config_value(params.get(key), key, value, values.get("config"))
    from jaxnets.ui import set_verbosity

    set_verbosity(out.get("verbose", 0) or 0, bool(out.get("quiet", False)))
    if out.pop("dry_run", False):
        import json

        shown = {k: (str(v) if isinstance(v, Path) else v) for k, v in out.items()}
        print(json.dumps({"command": section, "options": shown}, indent=2, default=str))
        raise typer.Exit(0)
    return out


def _typed_config_value(param: Any, key: str, value: Any, path: Any) -> Any:
    """A TOML value checked against the option's declared type, as the same flag would be.

    Stricter than string parsing where TOML has types of its own: an int option refuses 12.7, a
    text option refuses a list or a table, a flag refuses anything but true/false.
    """
    descriptor = getattr(param, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    where = f"--config {path}: {key} = {value!r}"
    if annotation is None:
        return value
    if getattr(param, "count", False):
        annotation = int
    element = typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else None
    if element is not None:
        if not isinstance(value, list):
            value = [value]
        return [_typed_scalar(element, v, where) for v in value]
    return _typed_scalar(annotation, value, where)


def _typed_scalar(annotation: Any, value: Any, where: str) -> Any:
    if isinstance(value, (list, dict)):
        raise JaxnetsError(f"{where}: expected one value, not a {'list' if isinstance(value, list) else 'table'}")
    if annotation is bool:
        if not isinstance(value, bool):
            raise JaxnetsError(f"{where}: expected true or false")
        return value
    if isinstance(value, bool):
        raise JaxnetsError(f"{where}: expected {_TYPE_WORDS.get(annotation, 'text')}, not true/false")
    if annotation is int:
        if not isinstance(value, int):
            raise JaxnetsError(f"{where}: expected a whole number")
        return value
    if annotation is float:
        if not isinstance(value, (int, float)):
            raise JaxnetsError(f"{where}: expected a number")
        return float(value)
    if annotation is Path:
        if not isinstance(value, str) or not value:
            raise JaxnetsError(f"{where}: expected a path (text)")
        return Path(value)
    if annotation is str:
        if not isinstance(value, (str, int, float)):
            raise JaxnetsError(f"{where}: expected text")
        return str(value)
    return value


_TYPE_WORDS = {int: "a whole number", float: "a number", str: "text", Path: "a path"}


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(2)


# Original flags with no meaning here: option name → why it is ignored (one warning line each).
IGNORED_FLAGS = {"gpu": "--gpu is ignored: jaxnets runs on the JAX devices it sees (choose them with "
                        "CUDA_VISIBLE_DEVICES; --devices N for data parallelism where a command has it)"}


def drop_ignored_flags(opts: dict, flags: Mapping[str, str]) -> None:
    """Remove the original-only flags from ``opts`` (they are not recorded), with one warning line
    for each one given."""
    from jaxnets.ui import warn

    for key, message in flags.items():
        if opts.pop(key, None) is not None:
            warn(message)


def one_model(positional: str | None, flag: str | None, flag_text: str = "--model") -> str:
    """The MODEL argument and an original script's model flag are one setting; both given must agree."""
    if positional and flag and positional != flag:
        raise JaxnetsError(f"got the model twice: '{positional}' and {flag_text} '{flag}'")
    if not (positional or flag):
        raise JaxnetsError(f"give the model: MODEL or {flag_text} NAME (see `jaxnets models`)")
    return positional or flag


def take_model(opts: dict) -> None:
    """MODEL (``opts["model_arg"]``) and ``--model`` into ``opts["model"]``."""
    positional = opts.pop("model_arg", None)
    opts["model"] = one_model(positional, opts.get("model"))
    opts["model_from_flag"] = positional is None


def data_of_dataset(name: str, kind: str, data: str, aliases: Mapping[str, str] | None = None) -> str:
    """The original scripts' ``--dataset NAME`` with ``--data DIR`` → ``<kind>:DIR``; a ``--data``
    that names its kind already (``aliases``: other spellings of kinds) must name the same one."""
    head, sep, _ = data.partition(":")
    if sep:
        given = (aliases or {}).get(head.lower(), head.lower())
        if given.removesuffix("-py") != kind.removesuffix("-py"):
            raise JaxnetsError(f"--dataset {name} and --data {data} name different data sets")
        return data
    if data == "digits":
        raise JaxnetsError(f"--dataset {name} needs --data DIR (the original reads a fixed folder): "
                           f"the data set's folder, read as {kind}:DIR")
    return f"{kind}:{data}"


def is_number(token: str) -> bool:
    """A command-line token that is a number (``-8`` too: a value, not an option)."""
    try:
        float(token)
    except ValueError:
        return False
    return True
