"""The runtime's side of a pod's start phases: `torchship-runtime fetch` (the init container)
and its report, the startup probe passing at load (before the warm-up ends), and the metric of
each phase's seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
from modelsources import web_server
from served import mlp, save_torchscript, torchscript_env


def fetch(env: dict[str, str], workdir: Path) -> tuple[int, str]:
    """Run the init container's command; its exit code and termination message."""
    message = workdir / "termination-log"
    message.unlink(missing_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "torchship_runtime", "fetch"],
        env={
            **os.environ,
            "TORCHSHIP_MODEL_CACHE_DIR": str(workdir / "cache"),
            "TORCHSHIP_TERMINATION_MESSAGE_PATH": str(message),
            **env,
        },
        capture_output=True,
        timeout=120,
    )
    return done.returncode, message.read_text() if message.exists() else ""


def test_fetch_downloads_once_into_the_cache_and_reports_it(tmp_path: Path):
    www = tmp_path / "www"
    www.mkdir()
    model = save_torchscript(mlp(), www / "m.pt")
    with web_server(www) as base:
        env = torchscript_env(model) | {"TORCHSHIP_MODEL_URI": f"{base}/m.pt"}
        code, message = fetch(env, tmp_path)
        assert code == 0, message
        report = json.loads(message)
        assert report["bytes"] == model.stat().st_size
        assert report["cached"] is False and report["seconds"] >= 0
        code, message = fetch(env, tmp_path)  # a restarted pod: the cache volume has it
        assert json.loads(message)["cached"] is True

        missing = env | {"TORCHSHIP_MODEL_URI": f"{base}/nope.pt"}
        code, message = fetch(missing, tmp_path)
    assert code == 1
    assert message.startswith(f"the model could not be fetched from {base}/nope.pt: HTTPError")


def test_fetch_imports_neither_torch_nor_the_servers(tmp_path: Path):
    """An init container that finds its model cached is done before torch could have loaded."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "m.pt").write_bytes(b"w" * 1000)
    probe = (
        "import sys\n"
        "from torchship_runtime.__main__ import fetch_only\n"
        "code = fetch_only([])\n"
        "print(sorted(m for m in ('torch', 'uvicorn', 'grpc') if m in sys.modules))\n"
        "sys.exit(code)\n"
    )
    with web_server(www) as base:
        done = subprocess.run(
            [sys.executable, "-c", probe],
            env={
                **os.environ,
                **torchscript_env(www / "m.pt"),
                "TORCHSHIP_MODEL_URI": f"{base}/m.pt",
                "TORCHSHIP_MODEL_CACHE_DIR": str(tmp_path / "cache"),
                "TORCHSHIP_TERMINATION_MESSAGE_PATH": str(tmp_path / "termination-log"),
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_fetch_from_a_shared_cache_waits_for_it_and_never_downloads(tmp_path: Path):
    import threading

    from torchship_runtime.sources import cache_path

    uri = "http://127.0.0.1:9/m.pt"  # nothing listens: a download would fail
    env = torchscript_env(tmp_path / "m.pt") | {
        "TORCHSHIP_MODEL_URI": uri,
        "TORCHSHIP_FETCH_WAIT_SECONDS": "60",
    }
    target = cache_path(str(tmp_path / "cache"), uri)
    target.parent.mkdir(parents=True)

    def fill() -> None:  # the fill Job, elsewhere
        time.sleep(1.5)
        (target.parent / ".partial").write_bytes(b"w" * 1000)
        (target.parent / ".partial").rename(target)

    threading.Thread(target=fill).start()
    started = time.monotonic()
    code, message = fetch(env, tmp_path)
    assert code == 0, message
    assert time.monotonic() - started >= 1.5
    assert json.loads(message)["cached"] is True and json.loads(message)["bytes"] == 1000

    (tmp_path / "empty").mkdir()
    code, message = fetch(env | {"TORCHSHIP_FETCH_WAIT_SECONDS": "0.5"}, tmp_path / "empty")
    assert code == 1 and "is its fill Job done?" in message


SLOW_WARMUP = textwrap.dedent(
    """
    import time

    class Slow:
        def predict(self, data):
            return data["x"]

        def warmup(self):
            time.sleep(3)
    """
)


def test_started_at_load_ready_after_the_warm_up_and_seconds_of_each(tmp_path, start_runtime):
    (tmp_path / "slowhandler.py").write_text(SLOW_WARMUP)
    (tmp_path / "weights.bin").write_bytes(b"x")
    runtime = start_runtime(
        TORCHSHIP_MODEL_URI=f"file://{tmp_path / 'weights.bin'}",
        TORCHSHIP_MODEL_FORMAT="handler",
        TORCHSHIP_MODEL_ENTRYPOINT="slowhandler:Slow",
        TORCHSHIP_MODEL_NAME="slow",
    )
    runtime.wait_for("/v2/health/started", timeout=60)
    # Loaded, still warming up: the startup probe passes, readiness does not yet.
    assert httpx.get(f"{runtime.url}/v2/health/ready").status_code == 503
    runtime.wait_ready()
    text = httpx.get(f"{runtime.url}/metrics").text
    seconds = {
        line.split('phase="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("torchship_model_start_seconds{")
    }
    assert set(seconds) == {"fetch", "load", "warmup"}
    assert seconds["warmup"] >= 3
