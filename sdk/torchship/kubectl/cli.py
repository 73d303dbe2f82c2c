"""The plugin's commands. Each one is a call of torchship.kube or torchship.client, and an exit
code a script can branch on (see EXIT_CODES)."""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from enum import IntEnum
from pathlib import Path

import numpy as np

from ..client import InferenceClient, InferenceError, ServerUnavailable
from ..kube import KubeError, ModelService, ModelServices, NotFound, NothingToDo, NotReady
from . import inputs, show, trust
from .portforward import PortForwardError, forwarded

FIELD_MANAGER = "kubectl-torchship"


class Exit(IntEnum):
    OK = 0
    ERROR = 1  # the API server refused, or it could not be reached
    USAGE = 2  # bad arguments (argparse's own code)
    NOT_FOUND = 3  # no such ModelService
    NOTHING_TO_DO = 4  # not in a state for the command (nothing awaits promotion, ...)
    NOT_READY = 5  # wait: not Ready in time, or the rollout aborted
    INFERENCE_FAILED = 6  # the model server refused or failed the request, or was unreachable


EXIT_CODES = """exit codes:
  0  done
  1  the API server refused the request or could not be reached
  2  bad arguments
  3  no such ModelService
  4  nothing to do in this state (nothing awaits promotion, no rollout to abort, ...)
  5  wait: not Ready within the timeout, or the rollout aborted
  6  infer: the model server refused or failed the request, or could not be reached"""


def parser() -> argparse.ArgumentParser:
    # Options are accepted before and after the command, as kubectl users type them;
    # SUPPRESS keeps a subcommand's unset copy from hiding the value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-n", "--namespace", default=argparse.SUPPRESS)
    common.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context")
    common.add_argument("--kubeconfig", default=argparse.SUPPRESS)
    common.add_argument(
        "-o", "--output", dest="format", choices=["text", "json"], default=argparse.SUPPRESS
    )
    main = argparse.ArgumentParser(
        prog="kubectl torchship",
        description="Operate torchship ModelServices: status, rollouts, inference.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, description=summary, parents=[common])
        sub.add_argument("name", metavar="NAME", help="the ModelService")
        return sub

    status = command("status", "revisions, weights, rollout, conditions and recent events")
    status.add_argument("--events", type=int, default=5, help="how many recent events (5)")
    command("history", "the kept revisions, newest first")
    promote = command("promote", "release the canary step that waits for a person")
    promote.add_argument("--step", type=int, help="the step index to release (default: current)")
    command("abort", "stop the rollout: the spec goes back to the stable revision")
    rollback = command("rollback", "set the spec back to a kept revision")
    rollback.add_argument("--to", metavar="REV", help="revision hash (or prefix) or version")
    wait = command("wait", "wait until rolled out and Ready")
    wait.add_argument("--timeout", type=float, default=300, help="seconds (300)")
    infer = command("infer", "send one inference request to the ModelService")
    infer.add_argument(
        "--input",
        "-i",
        action="append",
        required=True,
        metavar="NAME=FILE",
        help="an input tensor from FILE.npy or FILE.json (repeatable)",
    )
    infer.add_argument("--select", action="append", metavar="OUTPUT", help="outputs to return")
    infer.add_argument("--url", help="the model server's URL (default: kubectl port-forward)")
    infer.add_argument(
        "--ca",
        type=Path,
        metavar="FILE",
        help="CA certificate (PEM) for a ModelService with spec.tls (default: the TLS Secret's "
        "ca.crt when readable, else the system's)",
    )
    infer.add_argument("--token", help="bearer token (default: $TORCHSHIP_TOKEN, or the Secret)")
    infer.add_argument("--timeout", type=float, default=30, help="request timeout, seconds")
    infer.add_argument("--save-dir", type=Path, help="also write each output to DIR/NAME.npy")
    return main


def run(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    opts = Options(
        namespace=getattr(args, "namespace", None),
        context=getattr(args, "context", None),
        kubeconfig=getattr(args, "kubeconfig", None),
        json=getattr(args, "format", "text") == "json",
    )
    handler = COMMANDS[args.command]
    try:
        services = ModelServices(
            opts.namespace,
            context=opts.context,
            kubeconfig=opts.kubeconfig,
            field_manager=FIELD_MANAGER,
        )
    except Exception as error:  # no kubeconfig, unknown context, ...
        return fail(Exit.ERROR, f"cannot load the cluster configuration: {error}")
    try:
        return handler(services, opts, args)
    except NotFound as error:
        return fail(Exit.NOT_FOUND, error.message)
    except NothingToDo as error:
        return fail(Exit.NOTHING_TO_DO, error.message)
    except NotReady as error:
        return fail(Exit.NOT_READY, str(error))
    except KubeError as error:
        return fail(Exit.ERROR, error.message)
    except (InferenceError, PortForwardError) as error:
        return fail(Exit.INFERENCE_FAILED, str(error))
    except (ValueError, OSError) as error:
        return fail(Exit.USAGE if isinstance(error, ValueError) else Exit.ERROR, str(error))
    finally:
        services.close()


@dataclass(frozen=True)
class Options:
    namespace: str | None
    context: str | None
    kubeconfig: str | None
    json: bool


def fail(code: Exit, message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return int(code)


def say(text: str) -> None:
    print(text, flush=True)


def qualified(services: ModelServices, name: str) -> str:
    return f"modelservice {services.namespace}/{name}"


# -- commands --------------------------------------------------------------------------------


def status(services: ModelServices, opts: Options, args: argparse.Namespace) -> int:
    ms = services.get(args.name)
    revisions = services.history(args.name)
    events = services.events(args.name, limit=args.events)
    render = show.status_json if opts.json else show.status_text
    say(render(ms, revisions, events))
    return Exit.OK


def history(services: ModelServices, opts: Options, args: argparse.Namespace) -> int:
    revisions = services.history(args.name)
    if opts.json:
        say(json.dumps([asdict(r) for r in revisions], indent=2))
    else:
        say(show.history_text(revisions))
    return Exit.OK


def changed(opts: Options, ms: ModelService, text: str) -> int:
    say(ms.model_dump_json(by_alias=True, exclude_none=True, indent=2) if opts.json else text)
    return Exit.OK


def promote(services: ModelServices, opts: Options, args: argparse.Namespace) -> int:
    ms = services.promote(args.name, step=args.step)
    step = ms.spec.rollout.promoted_step
    text = f"{qualified(services, args.name)} promoted: spec.rollout.promotedStep is {step}"
    return changed(opts, ms, text)


def abort(services: ModelServices, opts: Options, args: argparse.Namespace) -> int:
    before = services.get(args.name)
    stable = before.rollout.get("stableRevision")
    ms = services.abort(args.name)
    version = f" ({ms.spec.model.version})" if ms.spec.model.version else ""
    text = (
        f"{qualified(services, args.name)} aborted: the spec is back on the stable revision "
        f"{stable}{version}; traffic returns to it"
    )
    return changed(opts, ms, text)


def rollback(services: ModelServices, opts: Options, args: argparse.Namespace) -> int:
    ms = services.rollback(args.name, to=args.to)
    version = ms.spec.model.version
    text = (
        f"{qualified(services, args.name)} rolling back: the spec is set to the revision of "
        f"version {version}"
        if version
        else f"{qualified(services, args.name)} rolling back"
    )
    return changed(opts, ms, text)


def wait(services: ModelServices, opts: Options, args: argparse.Namespace) -> int:
    ms = services.wait_ready(args.name, timeout=args.timeout)
    ready = ms.condition("Ready")
    message = ready.message if ready else ""
    say(f"{qualified(services, args.name)} is ready: {message}")
    return Exit.OK


def infer(services: ModelServices, opts: Options, args: argparse.Namespace) -> int:
    ms = services.get(args.name)
    model = ms.spec.model.name or args.name
    token = args.token or os.environ.get("TORCHSHIP_TOKEN") or secret_token(services, ms)
    verify = trust.verification(services, ms, args.ca, forwarded=not args.url)
    with (
        endpoint(services, opts, args, ms) as url,
        InferenceClient(url, token=token, timeout=args.timeout, verify=verify) as client,
    ):
        declared = declared_inputs(client, model)
        arrays = inputs.parse(args.input, declared)
        try:
            result = client.infer(model, arrays, outputs=args.select)
        except ServerUnavailable as error:
            raise InferenceError(f"{model} at {url}: {trust.hint(error.message)}") from error
    if args.save_dir:
        args.save_dir.mkdir(parents=True, exist_ok=True)
        for name, array in result.outputs.items():
            np.save(args.save_dir / f"{name}.npy", array, allow_pickle=False)
    say(show.result_json(result) if opts.json else show.result_text(result))
    return Exit.OK


@contextmanager
def endpoint(
    services: ModelServices, opts: Options, args: argparse.Namespace, ms: ModelService
) -> Iterator[str]:
    """--url as given, else a port-forward to the ModelService's Service for this request
    (https when the ModelService serves TLS)."""
    if args.url:
        yield args.url
        return
    with forwarded(
        ms.name,
        ms.spec.service.port,
        services.namespace,
        opts.context,
        opts.kubeconfig,
        scheme="https" if ms.spec.tls else "http",
    ) as url:
        yield url


def declared_inputs(client: InferenceClient, model: str) -> dict[str, str]:
    """Input datatypes from the model's metadata; none when the server cannot say."""
    try:
        meta = client.model_metadata(model)
    except InferenceError:
        return {}
    return {i["name"]: i["datatype"] for i in meta.get("inputs") or [] if "name" in i}


def secret_token(services: ModelServices, ms: ModelService) -> str | None:
    """The token the ModelService's auth names, read from its Secret (needs get on it)."""
    if ms.spec.auth is None:
        return None
    ref = ms.spec.auth.token_secret_ref
    path = f"/api/v1/namespaces/{services.namespace}/secrets/{ref.name}"
    try:
        secret = services.session.request("GET", path)
    except KubeError as error:
        raise KubeError(
            f"{ms.name} requires a token and its Secret {ref.name} cannot be read "
            f"({error.message}): pass --token"
        ) from error
    value = (secret.get("data") or {}).get(ref.key)
    if value is None:
        raise KubeError(f"Secret {ref.name} has no key {ref.key}: pass --token")
    return base64.b64decode(value).decode().strip()


COMMANDS: dict[str, Callable[[ModelServices, Options, argparse.Namespace], int]] = {
    "status": status,
    "history": history,
    "promote": promote,
    "abort": abort,
    "rollback": rollback,
    "wait": wait,
    "infer": infer,
}
