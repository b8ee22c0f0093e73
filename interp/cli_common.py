"""What every command shares: options generated from its config, the error boundary, progress.

A command is declared once, as a frozen config dataclass (`interp.config.JSONConfig`) with a
docstring under each field. `config_command(Config, run)` turns it into a typer command:

- each field is an option `--field-name` with the field's docstring as help and its default;
- a nested config field (a `TrainConfig` inside `TrainSAEConfig`) contributes its own fields, so
  a field added to the library config is an option with no other edit; a nested field whose name
  an outer field already takes is `--<nested>-<name>` (`--sae-dtype`);
- `Config.DERIVED` names nested fields that the command sets itself (an SAE's `d_in` is the
  hook's width); they are listed under the help instead of being options;
- `Config.ALIASES` adds other flags for a field (`--tokens` for `train.total_tokens`).

Types: bool is `--x/--no-x`; `tuple[T, ...]` is repeatable and takes comma lists (`--layer 4,8
--layer 12`); a fixed tuple takes one comma list; `Literal` is a choice; `T | None` takes `none`.
This module imports no torch, so `interp --help` answers at once.
"""

import ast
import dataclasses
import inspect
import sys
import textwrap
import time
import types
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from interp.errors import InterpError
from sae.errors import SAEError

USER_ERRORS: tuple[type[BaseException], ...] = (InterpError, SAEError, OSError)
"""What the CLI prints as one line: the toolkit's own user errors and the environment's (an
unwritable folder, a full disk). Anything else is a bug and keeps its traceback."""


@contextmanager
def user_errors(console: Console | None = None) -> Iterator[None]:
    """Print a user error as one `error:` line on stderr and exit with code 2."""
    try:
        yield
    except USER_ERRORS as err:
        console = console or Console(stderr=True)
        text = str(err) if not isinstance(err, OSError) else _os_error(err)
        console.print(f"[red]error:[/] {text}", highlight=False, soft_wrap=True, markup=True)
        raise typer.Exit(code=getattr(err, "exit_code", 2)) from None


def _os_error(err: OSError) -> str:
    where = f": {err.filename}" if err.filename else ""
    return f"{err.strerror or err}{where}"


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass, read from its source (and its bases')."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, after in zip(body, body[1:], strict=False):
            if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr):
                value = after.value
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    docs[node.target.id] = " ".join(value.value.split())  # type: ignore[attr-defined]
    return docs


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    """One command-line option: the config field it sets and how its text is parsed."""

    path: tuple[str, ...]
    """Field names from the command config down, e.g. ('train', 'lr')."""
    flags: tuple[str, ...]
    kind: Any
    """The field's type annotation."""
    default: Any
    help: str
    panel: str | None = None
    """The --help section it is listed under (one per nested config)."""

    @property
    def param(self) -> str:
        return "__".join(self.path)


def _is_nested(kind: Any) -> bool:
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


def _optional(kind: Any) -> tuple[Any, bool]:
    """(T, True) for `T | None`, else (kind, False)."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(kind)) == 2:
            return args[0], True
    return kind, False


def option_specs(cls: type) -> list[OptionSpec]:
    """The options of a command config: its fields, then its nested configs' fields."""
    derived = set(getattr(cls, "DERIVED", {}))
    aliases = getattr(cls, "ALIASES", {})
    default = cls()
    specs: list[OptionSpec] = []
    taken = {f.name for f in dataclasses.fields(cls) if not _is_nested(f.type)}

    def add(owner: type, instance: Any, prefix: tuple[str, ...], panel: str | None) -> None:
        docs = field_docs(owner)
        for f in dataclasses.fields(owner):
            path = (*prefix, f.name)
            dotted = ".".join(path)
            if dotted in derived:
                continue
            if _is_nested(f.type):
                continue
            name = f.name if (not prefix or f.name not in taken) else f"{prefix[-1]}_{f.name}"
            flag = "--" + name.replace("_", "-")
            flags = (flag, *aliases.get(dotted, ()))
            value = getattr(instance, f.name)
            specs.append(OptionSpec(path, flags, f.type, value, docs.get(f.name, ""), panel))
        for f in dataclasses.fields(owner):
            if _is_nested(f.type) and ".".join((*prefix, f.name)) not in derived:
                title = f"{f.name}: {docs.get(f.name, f.type.__name__)}"
                add(f.type, getattr(instance, f.name), (*prefix, f.name), title)

    add(cls, default, (), None)
    return specs


def _scalar_parser(kind: Any, flag: str) -> Callable[[str], Any]:
    kind, optional = _optional(kind)
    if typing.get_origin(kind) is Literal:
        choices = typing.get_args(kind)

        def choice(text: str) -> Any:
            if text not in choices:
                raise typer.BadParameter(f"{text!r} is not one of {', '.join(choices)}")
            return text

        base: Callable[[str], Any] = choice
    else:
        base = {int: int, float: float, str: str}.get(kind, str)

    def parse(text: Any) -> Any:
        if not isinstance(text, str):
            return text
        if optional and text.strip().lower() == "none":
            return None
        try:
            # A str keeps its spaces: a token such as `--answer " Mary"` starts with one.
            return base(text if base is str else text.strip())
        except ValueError:
            raise typer.BadParameter(
                f"expected {getattr(base, '__name__', 'a value')}, got {text!r}"
            ) from None

    return parse


def _metavar(kind: Any) -> str:
    kind, optional = _optional(kind)
    if typing.get_origin(kind) is Literal:
        text = "|".join(map(str, typing.get_args(kind)))
    else:
        text = {int: "INT", float: "FLOAT", str: "TEXT"}.get(kind, "TEXT")
    return f"{text}|none" if optional else text


def _parameter(spec: OptionSpec) -> inspect.Parameter:
    kind = spec.kind
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    help_text = spec.help
    if kind is bool:
        decls = [f"{spec.flags[0]}/--no-{spec.flags[0][2:]}", *spec.flags[1:]]
        annotation: Any = Annotated[
            bool, typer.Option(*decls, help=help_text, rich_help_panel=spec.panel)
        ]
        default = spec.default
    elif origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        annotation = Annotated[
            list[str],
            typer.Option(
                *spec.flags,
                help=f"{help_text} Repeatable; takes comma lists.",
                metavar=_metavar(args[0]),
                rich_help_panel=spec.panel,
            ),
        ]
        default = [",".join(map(str, spec.default))] if spec.default else []
    elif origin is tuple:
        annotation = Annotated[
            str,
            typer.Option(
                *spec.flags,
                help=f"{help_text} Comma-separated.",
                metavar="A,B",
                rich_help_panel=spec.panel,
            ),
        ]
        default = ",".join(map(str, spec.default))
    else:
        parse = _scalar_parser(kind, spec.flags[0])
        annotation = Annotated[
            Any,
            typer.Option(
                *spec.flags,
                help=help_text,
                parser=parse,
                metavar=_metavar(kind),
                rich_help_panel=spec.panel,
            ),
        ]
        default = spec.default
    return inspect.Parameter(
        spec.param, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


def _convert(spec: OptionSpec, value: Any) -> Any:
    """The CLI's value as the field's type (lists and comma lists become tuples)."""
    origin, args = typing.get_origin(spec.kind), typing.get_args(spec.kind)
    if origin is tuple:
        texts = value if isinstance(value, list) else [value]
        parts = [p for t in texts for p in str(t).split(",") if p.strip()]
        element = args[0] if args[-1] is Ellipsis else None
        parsers = (
            [_scalar_parser(element, spec.flags[0])] * len(parts)
            if element is not None
            else [_scalar_parser(a, spec.flags[0]) for a in args]
        )
        if element is None and len(parts) != len(args):
            raise typer.BadParameter(
                f"{spec.flags[0]} takes {len(args)} comma-separated values, got {value!r}"
            )
        return tuple(p(x) for p, x in zip(parsers, parts, strict=True))
    return value


def build_config(cls: type, values: dict[str, Any], base: Any = None) -> Any:
    """The config that the parsed options `{param: value}` describe (nested ones included), on
    top of `base` (default: the class's defaults)."""
    specs = {s.param: s for s in option_specs(cls)}

    def build(owner: type, instance: Any, prefix: tuple[str, ...]) -> Any:
        changes = {}
        for f in dataclasses.fields(owner):
            path = (*prefix, f.name)
            param = "__".join(path)
            if param in specs and param in values:
                changes[f.name] = _convert(specs[param], values[param])
            elif _is_nested(f.type):
                changes[f.name] = build(f.type, getattr(instance, f.name), path)
        return dataclasses.replace(instance, **changes)

    return build(cls, cls() if base is None else base, ())


def derived_epilog(cls: type) -> str:
    """The help's closing lines: the nested fields that the command sets itself."""
    derived = getattr(cls, "DERIVED", {})
    if not derived:
        return ""
    lines = [f"{name}: {why}" for name, why in derived.items()]
    return "Set by the command, not options: " + "; ".join(lines) + "."


def config_command(
    cls: type,
    run: Callable[[Any], None],
    base: Callable[[dict[str, Any]], Any] | None = None,
) -> Callable[..., None]:
    """A typer command whose options are the fields of `cls` and which calls `run(config)`.

    `base(given)`, if passed, receives the options given on the command line (not defaulted)
    and may return a config to apply them to instead of the defaults: `train-sae --resume DIR`
    starts from the run's saved config, so only what changes needs to be given. Building the
    config happens inside the error boundary, so a value out of range is one line.
    """
    specs = option_specs(cls)

    def command(ctx: typer.Context, **values: Any) -> None:
        with user_errors(), shown_warnings():
            given = {k: v for k, v in values.items() if _given(ctx, k)}
            start = base(given) if base is not None else None
            cfg = build_config(cls, given if start is not None else values, start)
            run(cfg)

    context = inspect.Parameter(
        "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
    )
    command.__signature__ = inspect.Signature([context, *(_parameter(s) for s in specs)])  # type: ignore[attr-defined]
    command.__doc__ = (run.__doc__ or "").strip()
    return command


def _given(ctx: typer.Context, param: str) -> bool:
    """Whether the option was given (command line or environment), not defaulted. Compared by
    name: typer may carry its own copy of click's ParameterSource enum."""
    source = ctx.get_parameter_source(param)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


@contextmanager
def shown_warnings(console: Console | None = None) -> Iterator[None]:
    """The toolkit's warnings (a checkpoint passed over, ...) as one `warning:` line each."""
    import warnings

    from interp.errors import InterpWarning
    from sae.errors import CheckpointWarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, CheckpointWarning | InterpWarning):
            (console or Console(stderr=True)).print(
                f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True
            )
        else:
            previous(message, category, filename, lineno, file, line)

    previous = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


class ProgressBar:
    """A rich progress bar on stderr, fed `update(done, total, stats)` by a library callback.

    It shows from the first update on (not while inputs are checked), with the rate in
    `unit`/s and a free-text stats column.
    """

    def __init__(self, label: str, unit: str = "tok", console: Console | None = None) -> None:
        self.unit = unit
        self.progress = Progress(
            TextColumn(label),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[speed]}"),
            TextColumn("{task.fields[stats]}"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
        )
        self.task = self.progress.add_task(label, total=None, count="", speed="", stats="")
        self.start: tuple[float, int] | None = None

    def update(self, done: int, total: int | None, stats: str = "") -> None:
        now = time.perf_counter()
        if self.start is None:
            self.start = (now, done)
            self.progress.start()
        t0, d0 = self.start
        speed = f"{(done - d0) / (now - t0):,.0f} {self.unit}/s" if now > t0 and done > d0 else ""
        count = f"{done:,}/{total:,} {self.unit}" if total else f"{done:,} {self.unit}"
        self.progress.update(
            self.task, completed=done, total=total, count=count, speed=speed, stats=stats
        )

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


def stdout() -> Console:
    """The console for results (tables, paths); progress and errors go to stderr."""
    return Console(file=sys.stdout)
