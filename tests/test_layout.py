"""Project layout guards: the `operator` trap, package separation, lint, sizes, import cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

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


def code_files(*roots: str) -> list[Path]:
    """The project's own Python under `roots`, without the generated gRPC stubs."""
    return [
        path
        for root in roots
        for path in sorted((ROOT / root).rglob("*.py"))
        if "_pb2" not in path.name
    ]


def test_no_class_over_200_lines_and_no_function_over_80():
    too_long = []
    for path in code_files("operator", "runtime", "sdk"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ClassDef):
                limit = 200
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                limit = 80
            else:
                continue
            lines = node.end_lineno - node.lineno + 1
            if lines > limit:
                where = path.relative_to(ROOT)
                too_long.append(f"{where}:{node.lineno} {node.name}: {lines} lines > {limit}")
    assert not too_long, "\n".join(too_long)


def module_imports(path: Path, package_root: Path) -> set[str]:
    """The project modules `path` imports at module level (not inside functions), as dotted
    names; `from . import x` names the submodule x, not the package that holds it."""
    package = list(path.relative_to(package_root).parts[:-1])
    found: set[str] = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom | ast.If)]
    for node in nodes:
        statements = node.body if isinstance(node, ast.If) else [node]
        for statement in statements:
            if isinstance(statement, ast.ImportFrom):
                base = package[: len(package) - statement.level + 1] if statement.level else []
                module = [*base, *(statement.module.split(".") if statement.module else [])]
                for alias in statement.names:
                    sub = package_root.joinpath(*module, alias.name)
                    if sub.with_suffix(".py").exists() or (sub / "__init__.py").exists():
                        found.add(".".join([*module, alias.name]))
                    else:
                        found.add(".".join(module))
            elif isinstance(statement, ast.Import):
                found.update(a.name for a in statement.names)
    return found


@pytest.mark.parametrize("root", ["operator", "runtime", "sdk"])
def test_no_import_cycles(root: str):
    package_root = ROOT / root
    modules = {}
    for path in code_files(root):
        parts = list(path.relative_to(package_root).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph = {
        name: {m for m in module_imports(path, package_root) if m in modules and m != name}
        for name, path in modules.items()
    }
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        assert name not in visiting, "import cycle: " + " -> ".join(
            [*visiting[visiting.index(name) :], name]
        )
        visiting.append(name)
        for imported in sorted(graph[name]):
            visit(imported)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


# The operator's pure modules: object shapes and decisions, no client (docs/architecture.md).
PURE = [
    "api",
    "analysis",
    "autoscaling",
    "budget",
    "cache",
    "cache_mount",
    "phases",
    "render",
    "revisions",
    "rollout",
    "room",
    "routing",
    "status",
    "vocabulary",
]


def test_the_pure_modules_never_import_the_client():
    package_root = ROOT / "operator"
    imports = {}
    for path in code_files("operator"):
        parts = list(path.relative_to(package_root).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        imports[name] = module_imports(path, package_root)
    impure = ("kubernetes", "kopf", "torchship_operator.kube", "torchship_operator.transport")
    for pure in PURE:
        seen, todo = set(), [f"torchship_operator.{pure}"]
        todo += [m for m in imports if m.startswith(f"torchship_operator.{pure}.")]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            assert not name.startswith(impure), f"{pure} imports {name}"
            todo += imports.get(name, ())
