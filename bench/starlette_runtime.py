"""The runtime behind a minimal Starlette app, for runtime_bench.py's A/B cell: the same route
table and handlers as the bare ASGI app (server.App), with Starlette's router and its default
middleware (server errors, exceptions) in front. Configured like `python -m torchship_runtime`.

    PYTHONPATH=<starlette> python bench/starlette_runtime.py
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import BaseRoute
from starlette.routing import Route as StarletteRoute

import torchship_runtime.__main__ as runtime_main
import torchship_runtime.serving as runtime_serving
from torchship_runtime.asgi import Receive, Scope, Send, authorize
from torchship_runtime.dataplane import DataPlane
from torchship_runtime.errors import InferenceError
from torchship_runtime.routes import Route
from torchship_runtime.server import App

# The two regular-expression forms of the route table, in Starlette's path syntax.
NAME = "(?P<name>[^/:]+)"
VERSION = "(?:/versions/(?P<version>[^/]+))?"


class Endpoint:
    """One route of the table as a Starlette ASGI endpoint: the bare app's auth, method check,
    handler and error answers, with the path parameters Starlette found."""

    def __init__(self, app: App, route: Route) -> None:
        self.app, self.route = app, route
        # As the bare router passes them: every group of the pattern, None where absent.
        self.unset = dict.fromkeys(route.compile().groupindex)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app, route = self.app, self.route
        try:
            if route.auth and app.token is not None:
                authorize(scope, app.token)
            app.router.check_method(route, scope["method"])
            parameters = self.unset | scope.get("path_params", {})
            await route.handler(scope, receive, send, **parameters)
        except InferenceError as error:
            await app.error(send, error.status, error.message, error)


def paths(pattern: str) -> list[str]:
    pattern = pattern.replace(NAME, "{name}")
    if VERSION in pattern:
        return [pattern.replace(VERSION, ""), pattern.replace(VERSION, "/versions/{version}")]
    return [pattern]


def starlette_app(plane: DataPlane) -> Starlette:
    app = App(plane)
    table = [route for _, route in app.router.patterns] + list(app.router.exact.values())
    routes: list[BaseRoute] = [
        StarletteRoute(path, Endpoint(app, route)) for route in table for path in paths(route.path)
    ]
    return Starlette(routes=routes)


if __name__ == "__main__":
    runtime_serving.App = starlette_app  # type: ignore[assignment,misc]
    runtime_main.main()
