"""The route table alone: which route a path finds, its parameters, 404, 405 with Allow, and
which error shape a path's errors take."""

from __future__ import annotations

import pytest

from torchship_runtime.errors import InferenceError, MethodNotAllowed, NotFound
from torchship_runtime.routes import GET, POST, Route, Router


async def handler(scope, receive, send, **parameters) -> None:
    return None


def plain(error: InferenceError) -> bytes:
    return b"plain"


def openai(error: InferenceError) -> bytes:
    return b"openai"


ROUTER = Router(
    [
        Route("/v2/models/{name}(?:/versions/(?P<version>[^/]+))?/infer", POST, handler),
        Route("/v2/models/{name}(?:/versions/(?P<version>[^/]+))?", GET, handler),
        Route("/v1/models/(?P<name>[^/:]+):predict", POST, handler),
        Route("/v2/health/ready", GET, handler, auth=False),
    ],
    {"": plain, "/v1": openai},
)

ROUTER_ROUTES = [
    *(r for _, r in ROUTER.patterns[:3]),
    ROUTER.exact["/v2/health/ready"],
]


@pytest.mark.parametrize(
    ("path", "index", "parameters"),
    [
        ("/v2/models/mlp/infer", 0, {"name": "mlp", "version": None}),
        ("/v2/models/mlp/versions/3/infer", 0, {"name": "mlp", "version": "3"}),
        ("/v2/models/mlp", 1, {"name": "mlp", "version": None}),
        ("/v2/models/mlp/versions/ready", 1, {"name": "mlp", "version": "ready"}),
        ("/v1/models/mlp:predict", 2, {"name": "mlp"}),
        ("/v2/health/ready", 3, {}),
    ],
)
def test_a_path_finds_its_route_and_parameters(path, index, parameters):
    route, found = ROUTER.match("GET", path)
    assert route is ROUTER_ROUTES[index]
    assert found == parameters


@pytest.mark.parametrize("path", ["/v2/models/mlp/other", "/v2/models/", "/v3", "/v1/models/a/b"])
def test_no_route_is_404_naming_method_and_path(path):
    with pytest.raises(NotFound, match=f"no route for POST {path}"):
        ROUTER.match("POST", path)


def test_a_method_the_route_does_not_take_is_405_with_allow():
    route, _ = ROUTER.match("GET", "/v2/models/mlp/infer")
    with pytest.raises(MethodNotAllowed) as refused:
        Router.check_method(route, "GET")
    assert refused.value.allow == "POST"
    assert refused.value.message == "GET is not allowed here (POST)"
    get_route, _ = ROUTER.match("POST", "/v2/models/mlp")
    Router.check_method(get_route, "HEAD")
    with pytest.raises(MethodNotAllowed) as refused:
        Router.check_method(get_route, "DELETE")
    assert refused.value.allow == "GET"


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/v1", openai),
        ("/v1/models/mlp:predict", openai),
        ("/v1/no/such/route", openai),
        ("/v1x", plain),
        ("/v2/models/mlp/infer", plain),
        ("/", plain),
        ("*", plain),
    ],
)
def test_a_path_takes_the_error_shape_of_its_longest_prefix(path, shape):
    assert ROUTER.error_shape(path) is shape


def test_a_router_without_a_default_error_shape_is_refused():
    with pytest.raises(ValueError, match="default"):
        Router([], {"/v1": openai})
