"""The Dockerfile read statically: hadolint, its stage layout, and the commands of its build
stages run here (the requirements program, the torch pick, the dependency resolution). The
images themselves are built by hack/build-images.sh and run as real pods in tests/node."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for ins, args in self.instructions if ins == instruction]


def parse(text: str) -> tuple[dict[str, str], dict[str, Stage]]:
    """Global ARGs and the stages, with continuation lines joined."""
    logical, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    global_args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    stage = None
    for line in logical:
        instruction, _, args = line.strip().partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            match = re.fullmatch(r"(\S+)(?: AS (\S+))?", args.strip(), flags=re.I)
            assert match, line
            stage = Stage(base=match.group(1), name=match.group(2) or str(len(stages)))
            stages[stage.name] = stage
        elif stage is None:
            assert instruction == "ARG", f"before the first FROM: {line}"
            name, _, default = args.partition("=")
            global_args[name] = default
        else:
            stage.instructions.append((instruction, args.strip()))
    return global_args, stages


GLOBAL_ARGS, STAGES = parse(DOCKERFILE.read_text())
TARGETS = {"operator": "torchship_operator", "runtime": "torchship_runtime"}


def test_hadolint_is_clean():
    proc = subprocess.run(
        [str(HADOLINT), "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_hadolint_catches_a_root_user(tmp_path: Path):
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text() + "USER root\n")
    proc = subprocess.run(
        [str(HADOLINT), "--config", str(ROOT / ".hadolint.yaml"), str(bad)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "DL3002" in proc.stdout


def test_targets_and_bases():
    assert {"requirements", "operator-build", "operator", "runtime-build", "runtime"} <= set(STAGES)
    assert GLOBAL_ARGS["PYTHON_IMAGE"].startswith("python:3.")
    assert STAGES["operator"].base == STAGES["operator-build"].base == "${PYTHON_IMAGE}"
    # The runtime's base is a build argument (CPU by default, a CUDA image by choice), and its
    # builder stands on the same base so that the virtual environment fits.
    assert STAGES["runtime"].base == STAGES["runtime-build"].base == "${RUNTIME_BASE}"
    assert "RUNTIME_BASE" in GLOBAL_ARGS
    torch_index = [
        a for a in STAGES["runtime-build"].all("ARG") if a.startswith("TORCH_INDEX_URL=")
    ]
    assert torch_index == ["TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu"]


@pytest.mark.parametrize("target", TARGETS)
def test_final_images_run_as_a_numeric_non_root_user(target: str):
    users = STAGES[target].all("USER")
    assert users, f"{target}: no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0, users[-1]
    assert not gid or (gid.isdigit() and int(gid) > 0), users[-1]
    entrypoint = STAGES[target].all("ENTRYPOINT")[-1]
    assert entrypoint == f'["python", "-m", "{TARGETS[target]}"]'


PACKAGE_DIRS = {"operator": "operator/torchship_operator", "runtime": "runtime/torchship_runtime"}
# Beside its package, the runtime carries the protocol's datatype table from the base distribution.
SHARED_COPY = "sdk/torchship/__init__.py sdk/torchship/datatypes.py /opt/torchship/app/torchship/"
SHARED = {"operator": [], "runtime": [SHARED_COPY]}


@pytest.mark.parametrize("target", TARGETS)
def test_final_images_carry_no_build_tools(target: str):
    stage = STAGES[target]
    copies = stage.all("COPY")
    assert copies == [
        f"--from={target}-build /opt/torchship /opt/torchship",
        *SHARED[target],
        f"{PACKAGE_DIRS[target]} /opt/torchship/app/{TARGETS[target]}",
    ], copies
    for run in stage.all("RUN"):
        assert not re.search(r"pip\S* install|gcc|g\+\+|build-essential|-dev\b", run), run
        # The base's installers are removed.
        assert "pip uninstall --yes" in run
    build_runs = " ".join(STAGES[f"{target}-build"].all("RUN"))
    assert "pip uninstall --yes pip" in build_runs, "pip stays in the copied environment"


@pytest.mark.parametrize("target", TARGETS)
def test_the_package_is_the_last_layer_and_the_dependencies_never_see_it(target: str):
    """A source change rebuilds one small layer: the builder copies no source at all, and the
    final stage copies the package after the dependencies' environment."""
    build = STAGES[f"{target}-build"]
    assert not [c for c in build.all("COPY") if not c.startswith("--from=")], build.all("COPY")
    assert any("-r /tmp/requirements.txt" in run for run in build.all("RUN"))
    final = [ins for ins, _ in STAGES[target].instructions]
    copies = [i for i, ins in enumerate(final) if ins == "COPY"]
    assert final[copies[-1] + 1 :] and all(
        ins in ("ENV", "USER", "EXPOSE", "ENTRYPOINT", "LABEL") for ins in final[copies[-1] + 1 :]
    ), final
    env = " ".join(STAGES[target].all("ENV"))
    assert "PYTHONPATH=/opt/torchship/app" in env
    # What the dependency layer depends on: the requirements stage, which copies pyproject only.
    assert STAGES["requirements"].all("COPY") == ["pyproject.toml ./"]


# -- the build context ---------------------------------------------------------------------------


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        line = os.path.normpath(line.lstrip("!")).lstrip("/")
        regex = ""
        i = 0
        while i < len(line):
            if line.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif line.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif line[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif line[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif line[i] == "[":
                end = line.index("]", i)
                regex, i = regex + line[i : end + 1], end + 1
            else:
                regex, i = regex + re.escape(line[i]), i + 1
        patterns.append((negate, re.compile(regex)))
    return patterns


def in_context(relative: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negate, regex in dockerignore_patterns():
        if any(regex.fullmatch(c) for c in candidates):
            excluded = not negate
    return not excluded


def context_files() -> list[str]:
    files = []
    for path in ROOT.rglob("*"):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith((".git/", ".venv")) or not path.is_file():
            continue
        if in_context(relative):
            files.append(relative)
    return sorted(files)


def test_the_context_is_what_the_images_need():
    assert in_context("pyproject.toml") and in_context("operator/torchship_operator/api.py")
    assert not in_context("tests/conftest.py") and not in_context(".venv/bin/python")
    assert not in_context("runtime/torchship_runtime/__pycache__/x.cpython-311.pyc")
    tops = {f.split("/")[0] for f in context_files()}
    assert tops == {"pyproject.toml", "operator", "runtime", "sdk"}, tops
    assert [f for f in context_files() if f.startswith("sdk/")] == [
        "sdk/torchship/__init__.py",
        "sdk/torchship/datatypes.py",
    ]


def copied_sources(stage: Stage) -> list[str]:
    sources = []
    for args in stage.all("COPY"):
        if args.startswith("--from="):
            continue
        *srcs, _dest = args.split()
        sources += srcs
    return sources


@pytest.mark.parametrize("stage", ["requirements", "operator", "runtime"])
def test_copied_files_exist_in_the_context(stage: str):
    for source in copied_sources(STAGES[stage]):
        assert (ROOT / source).exists(), source
        assert in_context(source), f"{source} is excluded by .dockerignore"


# -- the build stages' commands, run here --------------------------------------------------------


def requirements_program() -> str:
    (arg,) = [a for a in STAGES["requirements"].all("ARG") if a.startswith("REQUIREMENTS=")]
    value = arg.partition("=")[2]
    assert value[0] == value[-1] == "'", "REQUIREMENTS is one single-quoted Python program"
    return value[1:-1]


@pytest.fixture(scope="module")
def requirements(tmp_path_factory) -> dict[str, Path]:
    """Run the requirements stage's RUN lines on the project's pyproject.toml."""
    workdir = tmp_path_factory.mktemp("requirements")
    shutil.copy(ROOT / "pyproject.toml", workdir)
    (run,) = STAGES["requirements"].all("RUN")
    outputs = {}
    for extras, name in re.findall(r'python -c "\$REQUIREMENTS" ([a-z0-9 ]+?) > (\S+)', run):
        out = subprocess.run(
            [sys.executable, "-c", requirements_program(), *extras.split()],
            cwd=workdir,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (workdir / name).write_text(out)
        outputs[name] = workdir / name
    assert set(outputs) == {"operator.txt", "runtime.txt"}
    return outputs


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def names(lines: list[str]) -> set[str]:
    return {re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0].lower() for line in lines}


def test_requirements_are_the_base_plus_each_images_extras(requirements):
    project = pyproject()
    extras = project["optional-dependencies"]
    operator = requirements["operator.txt"].read_text().split()
    runtime = requirements["runtime.txt"].read_text().splitlines()
    assert operator == project["dependencies"] + extras["operator"]
    assert runtime == project["dependencies"] + extras["runtime"] + extras["s3"]
    assert "torch" not in names(operator) and "kopf" in names(operator)
    assert "kopf" not in names(runtime) and {"torch", "boto3"} <= names(runtime)


def test_torch_is_picked_from_the_requirements_for_its_own_index(requirements):
    run = next(r for r in STAGES["runtime-build"].all("RUN") if "TORCH_INDEX_URL" in r)
    assert '--index-url "${TORCH_INDEX_URL}"' in run
    (command,) = re.findall(r'"\$\((grep .*?)\)"', run)
    command = command.replace("/tmp/requirements.txt", str(requirements["runtime.txt"]))
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True)
    (torch,) = out.stdout.splitlines()
    assert torch in pyproject()["optional-dependencies"]["runtime"] and names([torch]) == {"torch"}


@pytest.mark.parametrize("name", ["operator.txt", "runtime.txt"])
def test_requirements_resolve(requirements, name: str):
    """pip resolves each list; offline, against the versions installed here."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--quiet",
         "--disable-pip-version-check", "-r", str(requirements[name])],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
