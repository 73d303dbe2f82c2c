"""The runtime's HTTP routes as data: a path pattern, the methods it takes, whether it needs the
bearer token, and its handler. One table drives dispatch, 404, 405 and the `Allow` header."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import MethodNotAllowed, NotFound

Handler = Callable[..., Awaitable[None]]  # (scope, receive, send, **path parameters)
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
    hot path, inference, first)."""

    def __init__(self, routes: Sequence[Route]) -> None:
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
