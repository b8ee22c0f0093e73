"""The layout of DESIGN.md, enforced: who may import whom (walked with `ast`, nothing imported).

- `sae/` never imports `interp`;
- no library module imports a command-line module (`cli.py`, `cli_common.py`);
- `interp/viz/` imports no capability;
- a capability imports the base, `sae/`, `viz/` and only the capabilities upstream of it;
- `experiments/` uses the public API: no `_private` names from `interp` or `sae`.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = {
    "organism": set(),
    "capture": set(),
    "train_sae": {"capture"},
    "dashboard": {"capture", "train_sae"},
    "patching": {"capture"},
    "explain": {"capture", "patching"},
    "steering": {"capture", "patching"},
    "evals": {"capture", "steering"},
    "align": {"capture", "steering", "evals"},
}
"""Each capability folder and the capabilities it may import (the flow in DESIGN.md)."""
CLI_MODULES = ("interp.cli", "interp.cli_common", "interp.cli_reference")


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every import in the file, relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            names = [alias.name for alias in node.names]
            found.append((module, names))
            found.extend((f"{module}.{n}", []) for n in names)  # `from interp import cli`
    return found


def _modules(folder: str) -> list[Path]:
    """The tree's Python files, leaving out hidden folders (a benchmark's own venv, caches)."""
    base = ROOT / folder
    return sorted(
        p
        for p in base.rglob("*.py")
        if not any(part.startswith(".") for part in p.relative_to(base).parts)
    )


def _is_cli(path: Path) -> bool:
    # cli.py, cli_common.py, cli_reference.py, and a capability's command modules split out of
    # its cli.py (interp/align/cli_edits.py, cli_train.py, cli_output.py)
    return path.name.startswith("cli") or path.name == "__main__.py"


def _capability(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "interp" and parts[1] in UPSTREAM else None


def test_every_capability_folder_is_in_the_table():
    folders = {p.name for p in (ROOT / "interp").iterdir() if (p / "__init__.py").is_file()}
    assert folders - {"viz"} <= set(UPSTREAM), "add the new folder to UPSTREAM (DESIGN.md's flow)"


def test_sae_never_imports_interp():
    bad = [
        (p.name, m) for p in _modules("sae") for m, _ in _imports(p) if m.split(".")[0] == "interp"
    ]
    assert not bad


def test_no_library_module_imports_a_cli_module():
    bad = []
    for path in _modules("interp"):
        if _is_cli(path):
            continue
        for module, _ in _imports(path):
            if module in CLI_MODULES or module.endswith(".cli"):
                bad.append((str(path.relative_to(ROOT)), module))
    assert not bad


def test_viz_imports_no_capability():
    bad = [
        (p.name, m)
        for p in _modules("interp/viz")
        for m, _ in _imports(p)
        if m.startswith("interp.") and not m.startswith("interp.viz")
    ]
    assert not bad


@pytest.mark.parametrize("capability", sorted(UPSTREAM))
def test_capabilities_import_only_upstream(capability):
    folder = ROOT / "interp" / capability
    if not folder.is_dir():
        pytest.skip(f"interp/{capability}/ is not built yet")
    allowed = UPSTREAM[capability] | {capability, "organism"}
    bad = []
    for path in sorted(folder.rglob("*.py")):
        for module, _ in _imports(path):
            other = _capability(module)
            if other is not None and other not in allowed:
                bad.append((path.name, module))
    assert not bad, f"{capability} may import only {sorted(allowed)} of the capabilities"


def test_the_base_imports_no_capability_but_the_organism():
    base = [p for p in (ROOT / "interp").glob("*.py") if not _is_cli(p)]
    bad = [
        (p.name, m)
        for p in base
        for m, _ in _imports(p)
        if _capability(m) not in (None, "organism")
    ]
    assert not bad


def test_experiments_use_the_public_api():
    bad = []
    for path in _modules("experiments"):
        for module, names in _imports(path):
            if module.split(".")[0] in ("interp", "sae"):
                bad += [(path.name, module, n) for n in names if n.startswith("_")]
    assert not bad


def test_the_checker_sees_a_violation(tmp_path):
    """The walk is not vacuous: planted imports in a copy of the tree are found."""
    import shutil

    shutil.copytree(ROOT / "interp", tmp_path / "interp", ignore=shutil.ignore_patterns("weights"))
    (tmp_path / "interp" / "capture" / "planted.py").write_text(
        "from interp.train_sae.cli import run\n"
    )
    (tmp_path / "interp" / "viz" / "planted.py").write_text("from ..capture import core\n")
    globals()["ROOT"] = tmp_path
    try:
        with pytest.raises(AssertionError):
            test_no_library_module_imports_a_cli_module()
        with pytest.raises(AssertionError):
            test_capabilities_import_only_upstream("capture")
        with pytest.raises(AssertionError):
            test_viz_imports_no_capability()
    finally:
        globals()["ROOT"] = Path(__file__).resolve().parents[1]
