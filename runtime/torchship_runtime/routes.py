"""The runtime's HTTP routes as data: a path pattern, the methods it takes, whether it needs the
bearer token, and its handler. One table drives dispatch, 404, 405, the `Allow` header, and the
shape of every error body under a path prefix (OpenAI's error object under `/v1` for a
generative model, `{"error": "..."}` elsewhere), matched paths or not."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InferenceError, MethodNotAllowed, NotFound

Handler = Callable[..., Awaitable[None]]  # (scope, receive, send, **path parameters)
ErrorShape = Callable[[InferenceError], bytes]  # an error's JSON body
GET = ("GET", "HEAD")
POST = ("POST",)
_PARAMETER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Route:
    """`path` is a regular expression over the whole path; `{name}` stands for one segment."""

    path: str
    methods: Sequence[str]
    handler: Handler
    auth: bool = True

    def compile(self) -> re.Pattern[str]:
        return re.compile("^" + _PARAMETER.sub(r"(?P<\1>[^/]+)", self.path) + "$")

    @property
    def allow(self) -> str:
        """The `Allow` header of a 405 (HEAD goes without saying where GET is allowed)."""
        return ", ".join(m for m in self.methods if m != "HEAD")


class Router:
    """Finds the route of a request: exact paths by lookup, patterns in table order (the
    hot path, inference, first). `error_shapes`: a path prefix ("" for every path) and the body
    its errors answer; the longest prefix that covers the path wins."""

    def __init__(self, routes: Sequence[Route], error_shapes: Mapping[str, ErrorShape]) -> None:
        if "" not in error_shapes:
            raise ValueError("error_shapes needs a default (the prefix '')")
        self.shapes = sorted(error_shapes.items(), key=lambda item: -len(item[0]))
        self.exact: dict[str, Route] = {}
        self.patterns: list[tuple[re.Pattern[str], Route]] = []
        for route in routes:
            if re.escape(route.path) == route.path:
                self.exact[route.path] = route
            else:
                self.patterns.append((route.compile(), route))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, Any]]:
        """The route and its path parameters; NotFound for no route, MethodNotAllowed (with
        the route, for its `Allow`) for a method the route does not take."""
        route, parameters = self.exact.get(path), {}
        if route is None:
            for pattern, candidate in self.patterns:
                if (found := pattern.match(path)) is not None:
                    route, parameters = candidate, found.groupdict()
                    break
            else:
                raise NotFound(f"no route for {method} {path}")
        return route, parameters

    @staticmethod
    def check_method(route: Route, method: str) -> None:
        if method not in route.methods:
            raise MethodNotAllowed(method, route.allow)

    def error_shape(self, path: str) -> ErrorShape:
        """The error body for `path`: by whole segments (`/v1` covers `/v1` and `/v1/x`, not
        `/v1x`)."""
        for prefix, shape in self.shapes:
            if not prefix or path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return shape
        raise AssertionError("unreachable: the prefix '' covers every path")
