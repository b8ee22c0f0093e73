"""The API reference (`docs/api.md`), generated from the public names' docstrings.

    python experiments/api_reference.py > docs/api.md

The public names are the lazy `_EXPORTS` of `interp`, of each capability package that has them
(`interp.capture`, `interp.patching`, ...) and of `sae`. Each name is shown with its signature
and its docstring; a dataclass also lists its fields with their docstrings, a class its public
methods, a module its public functions. `tests/test_api_reference.py` regenerates the text and
compares it with the file, so the reference cannot drift from the code. (It lives beside
the library, not in it, because it reads the field docstrings with `interp.cli_common`, which
library modules may not import.)
"""

import dataclasses
import importlib
import inspect
import pkgutil
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

HEADER = """# API reference

Generated from the docstrings by `python experiments/api_reference.py > docs/api.md`;
`tests/test_api_reference.py` fails when this file and the code disagree. The public names of
a package are its `_EXPORTS` (they load on first use, so `import interp` imports no torch);
`dir(package)` lists them. The command line is in [cli.md](cli.md), the words and formulas in
[concepts.md](concepts.md).
"""

ADDRESS = re.compile(r" at 0x[0-9a-f]+")
"""Object reprs carry memory addresses; they are removed so that the output is reproducible."""


def packages() -> list[str]:
    """`interp`, every `interp.<pkg>` whose `__init__` declares `_EXPORTS`, then `sae`."""
    import interp

    found = ["interp"]
    for info in pkgutil.iter_modules(interp.__path__):
        if info.ispkg:
            init = Path(interp.__path__[0]) / info.name / "__init__.py"
            if "_EXPORTS" in init.read_text():
                found.append(f"interp.{info.name}")
    return [*found, "sae"]


def exports(package: str) -> dict[str, tuple[str, str]]:
    """name -> (module, attribute) of `package`'s `_EXPORTS`; attribute "" for a submodule.
    `sae` maps a name to its module only, the attribute being the name itself."""
    table = importlib.import_module(package)._EXPORTS
    out = {}
    for name, target in sorted(table.items()):
        module, _, attribute = target.partition(":")
        if package == "sae":
            attribute = name
        out[name] = (module, attribute)
    return out


def signature(obj: Any) -> str:
    """`(args) -> ret` of a callable, addresses removed; "" where there is none."""
    try:
        text = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""
    return ADDRESS.sub("", text)


def docstring(obj: Any) -> str:
    """The object's own docstring, dedented ("" if it has none, or only an inherited one)."""
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    if (
        isinstance(obj, type)
        and dataclasses.is_dataclass(obj)
        and doc
        and doc.startswith(obj.__name__ + "(")
    ):
        return ""  # the repr dataclass puts there when the class has no docstring
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


def quote(text: str) -> str:
    """A docstring as markdown: kept as written, in a block so that its layout survives."""
    return f"```text\n{text}\n```\n" if text else "*(no docstring)*\n"


def field_lines(cls: type) -> list[str]:
    """One bullet per dataclass field: name, type, docstring (from the source)."""
    from interp.cli_common import field_docs

    docs = field_docs(cls)
    lines = []
    for f in dataclasses.fields(cls):
        if f.name.startswith("_"):
            continue
        kind = f.type if isinstance(f.type, str) else inspect.formatannotation(f.type)
        lines.append(f"- `{f.name}: {kind}`" + (f": {docs[f.name]}" if f.name in docs else ""))
    return lines


def first_line(obj: Any) -> str:
    return docstring(obj).split("\n\n")[0].replace("\n", " ")


def method_lines(cls: type) -> list[str]:
    """One bullet per public method or property defined on the class itself."""
    lines = []
    for name, member in sorted(vars(cls).items()):
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            lines.append(f"- `.{name}` (property): {first_line(member.fget)}".rstrip(": "))
        elif isinstance(member, staticmethod | classmethod):
            fn = member.__func__
            lines.append(f"- `.{name}{signature(fn)}`: {first_line(fn)}".rstrip(": "))
        elif inspect.isfunction(member):
            lines.append(f"- `.{name}{signature(member)}`: {first_line(member)}".rstrip(": "))
    return lines


def module_lines(module: Any) -> list[str]:
    """One bullet per public function or class defined in the module itself."""
    lines = []
    for name, member in sorted(vars(module).items()):
        if name.startswith("_") or getattr(member, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(member) or inspect.isclass(member):
            lines.append(f"- `{name}{signature(member)}`: {first_line(member)}".rstrip(": "))
    return lines


def entry(package: str, name: str, module: str, attribute: str) -> str:
    """The markdown section of one public name."""
    obj = importlib.import_module(module)
    if attribute:
        obj = getattr(obj, attribute)
    where = f"{module}:{attribute}" if attribute else module
    if inspect.ismodule(obj):
        title, body = f"### `{package}.{name}` (module `{where}`)\n", [quote(docstring(obj))]
        body += ["\n".join(module_lines(obj)) + "\n"] if module_lines(obj) else []
    elif inspect.isclass(obj):
        title = f"### `{package}.{name}` (class, `{where}`)\n"
        body = [f"```python\n{name}{signature(obj)}\n```\n", quote(docstring(obj))]
        if dataclasses.is_dataclass(obj) and field_lines(obj):
            body.append("Fields:\n\n" + "\n".join(field_lines(obj)) + "\n")
        if method_lines(obj):
            body.append("Methods:\n\n" + "\n".join(method_lines(obj)) + "\n")
    elif callable(obj):
        title = f"### `{package}.{name}` (`{where}`)\n"
        body = [f"```python\n{name}{signature(obj)}\n```\n", quote(docstring(obj))]
    else:
        title = f"### `{package}.{name}` (value, `{where}`)\n"
        text = ADDRESS.sub("", repr(obj))
        shown = text if len(text) <= 300 else text[:300] + " ..."
        body = [f"```text\n{shown}\n```\n"]
    return "\n".join([title, *body])


def section(package: str) -> str:
    """A package's summary (its docstring's first paragraph) and one entry per public name."""
    mod = importlib.import_module(package)
    summary = textwrap.dedent(docstring(mod).split("\n\n")[0])
    parts = [f"## `{package}`\n", summary + "\n"]
    parts += [entry(package, n, m, a) for n, (m, a) in exports(package).items()]
    return "\n".join(parts)


def reference() -> str:
    """The whole reference as markdown."""
    names = packages()
    toc = "\n".join(f"- [`{p}`](#{p.replace('.', '')})" for p in names)
    return "\n".join([HEADER, toc + "\n", *(section(p) for p in names)])


def main() -> None:
    sys.stdout.write(reference())


if __name__ == "__main__":
    main()
