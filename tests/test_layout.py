"""Project layout guards: the `operator` trap, package separation, lint."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_no_importable_top_level_package_named_operator():
    assert not (ROOT / "operator" / "__init__.py").exists()
    # The standard library's module still wins the name.
    out = subprocess.run(
        [sys.executable, "-c", "import operator; print(operator.__file__)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "site-packages" not in out.stdout
    assert str(ROOT / "operator") not in out.stdout


def test_runtime_imports_nothing_from_the_operator():
    for path in (ROOT / "runtime").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(("torchship_operator", "kopf", "kubernetes")), (
                    f"{path}: runtime imports {name}"
                )


def test_ruff_lint_and_format_are_clean():
    ruff = [sys.executable, "-m", "ruff"]
    lint = subprocess.run([*ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run(
        [*ruff, "format", "--check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def imported_names(root: Path) -> list[tuple[Path, str]]:
    found = []
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(path, a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((path, node.module))
    return found


def test_the_sdk_needs_no_torch_and_no_kopf():
    # What `pip install torchship` gives: the clients and the plugin, on numpy, httpx and the
    # kubernetes client; the operator's API types are shared, its runtime parts are not.
    for path, name in imported_names(ROOT / "sdk"):
        assert not name.startswith(("torch.", "kopf", "torchship_runtime")) and name != "torch", (
            f"{path}: the SDK imports {name}"
        )
    code = (
        "import sys, torchship.client, torchship.kube, torchship.kubectl.cli;"
        "print(sorted(m for m in ('torch', 'kopf', 'torchship_runtime') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_base_distribution_carries_the_sdk_and_the_plugin():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    base = {r.split(">")[0].split("=")[0].split("<")[0] for r in project["project"]["dependencies"]}
    assert {"numpy", "httpx", "kubernetes", "pydantic"} <= base
    assert project["project"]["scripts"]["kubectl-torchship"] == "torchship.kubectl.__main__:main"
    find = project["tool"]["setuptools"]["packages"]["find"]
    assert "sdk" in find["where"] and "torchship.*" in find["include"]
    assert not (ROOT / "sdk" / "operator").exists()


def test_modules_that_start_control_planes_of_their_own_are_marked_cluster():
    """`make unit` (-m "not cluster") must start no control plane: the shared fixtures mark
    their users; a module that builds its own marks itself."""
    for path in (ROOT / "tests").rglob("test_*.py"):
        text = path.read_text()
        if "ControlPlane(" in text:
            assert "pytest.mark.cluster" in text, f"{path}: starts a control plane, not marked"


def test_test_modules_have_unique_names():
    """pytest imports test files by basename (rootdir-relative, no packages): two files of one
    name in different folders stop the whole collection."""
    names: dict[str, Path] = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        assert path.name not in names, f"{path} and {names[path.name]} share a name"
        names[path.name] = path
