"""The GitOps health checks for ModelService, evaluated as the tools evaluate them.

- Argo CD: examples/argocd/.../health.lua, a Lua 5.1 chunk (Argo CD embeds gopher-lua) with the
  live object in the global `obj`, returning {status, message}.
- Flux: the `healthCheckExprs` of examples/flux/kustomization-models.yaml, CEL expressions over
  the object's top-level fields; kstatus order: inProgress, then failed, then current, else
  the object is still in progress.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
LUA_SCRIPT = ROOT / "examples/argocd/resource_customizations/torchship.dev/ModelService/health.lua"
FLUX_KUSTOMIZATION = ROOT / "examples/flux/kustomization-models.yaml"


def argocd_run(obj: dict[str, Any], script: str | None = None) -> tuple[dict[str, Any], Any]:
    """The script's {status, message} and the `obj` table as the script left it."""
    import lupa.lua51 as lua51

    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    # The object as Argo CD hands it over: JSON turned into nested Lua tables.
    lua.globals().obj = lua.table_from(json.loads(json.dumps(obj)), recursive=True)
    result = lua.execute(script if script is not None else LUA_SCRIPT.read_text())
    assert result is not None, "the script returned nothing"
    return {key: result[key] for key in ("status", "message")}, from_lua(lua.globals().obj)


def argocd_health(obj: dict[str, Any], script: str | None = None) -> dict[str, Any]:
    return argocd_run(obj, script)[0]


def from_lua(value: Any) -> Any:
    """A Lua table back as JSON-like data: 1..n keys are a list (an empty table is {})."""
    import lupa.lua51 as lua51

    if lua51.lua_type(value) != "table":
        return value
    items = dict(value.items())
    if items and set(items) == set(range(1, len(items) + 1)):
        return [from_lua(items[i]) for i in range(1, len(items) + 1)]
    return {k: from_lua(v) for k, v in items.items()}


def as_lua_sees(obj: Any) -> Any:
    """`obj` with empty lists as {}: how a Lua table holds them."""
    if isinstance(obj, dict):
        return {k: as_lua_sees(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [as_lua_sees(v) for v in obj] if obj else {}
    return obj


def flux_expressions() -> dict[str, str]:
    (check,) = yaml.safe_load(FLUX_KUSTOMIZATION.read_text())["spec"]["healthCheckExprs"]
    return {k: check[k] for k in ("inProgress", "failed", "current")}


CELEVAL = Path(__file__).resolve().parent / "celeval"


@functools.cache
def celeval() -> Path:
    """The CEL evaluator (cel-go, as Flux uses it), built once per run (Go caches the build)."""
    out = Path(tempfile.mkdtemp(prefix="celeval-")) / "celeval"
    subprocess.run(
        ["go", "build", "-o", str(out), "."],
        cwd=CELEVAL,
        env={**os.environ, "GOFLAGS": "-mod=mod"},
        check=True,
        timeout=600,
    )
    return out


def flux_evaluate(obj: dict[str, Any], expressions: dict[str, str]) -> dict[str, Any]:
    """Each expression's value on `obj`: a bool, or "error: ..." when it cannot be evaluated."""
    proc = subprocess.run(
        [str(celeval())],
        input=json.dumps({"object": obj, "expressions": expressions}),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(proc.stdout)


def flux_health(obj: dict[str, Any], expressions: dict[str, str] | None = None) -> str:
    """kstatus as Flux derives it from healthCheckExprs: InProgress, Failed or Current. An
    expression that cannot be evaluated (a field not there yet) leaves it in progress, as the
    kustomize-controller waits on it."""
    values = flux_evaluate(obj, expressions or flux_expressions())
    order = (("inProgress", "InProgress"), ("failed", "Failed"), ("current", "Current"))
    for name, status in order:
        value = values.get(name)
        if isinstance(value, str):
            return "InProgress"
        if value is True:
            return status
    return "InProgress"
