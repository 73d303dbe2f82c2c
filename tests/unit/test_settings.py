"""Operator settings: every knob from the environment, in one place, with the documented names."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from torchship_operator.settings import Settings


def test_defaults():
    s = Settings.from_env({})
    assert s.runtime_image == "ghcr.io/torchship/runtime:0.1.0"
    assert s.namespaces == [] and s.clusterwide
    assert (s.metrics_port, s.health_port) == (8080, 8081)
    assert s.log_level == "INFO"
    assert s.leader_election is False
    assert s.lease_name == "torchship"
    assert s.lease_namespace == "default"  # outside a pod: no service account mount


def test_environment_names():
    s = Settings.from_env(
        {
            "TORCHSHIP_RUNTIME_IMAGE": "registry.local/runtime:dev",
            "TORCHSHIP_NAMESPACES": " ml, serving ,,",
            "TORCHSHIP_METRICS_PORT": "9090",
            "TORCHSHIP_HEALTH_PORT": "9091",
            "TORCHSHIP_LOG_LEVEL": "DEBUG",
            "TORCHSHIP_LEADER_ELECTION": "true",
            "TORCHSHIP_LEASE_NAME": "blue",
            "TORCHSHIP_LEASE_NAMESPACE": "serving",
            "UNRELATED": "x",
        }
    )
    assert s.runtime_image == "registry.local/runtime:dev"
    assert s.namespaces == ["ml", "serving"] and not s.clusterwide
    assert (s.metrics_port, s.health_port) == (9090, 9091)
    assert s.log_level == "DEBUG"
    assert s.leader_election is True
    assert (s.lease_name, s.lease_namespace) == ("blue", "serving")


def test_log_level_is_case_insensitive():
    assert Settings.from_env({"TORCHSHIP_LOG_LEVEL": "debug"}).log_level == "DEBUG"


@pytest.mark.parametrize(
    ("name", "value"),
    [("METRICS_PORT", "eighty"), ("HEALTH_PORT", "70000"), ("LOG_LEVEL", "LOUD")],
)
def test_a_bad_value_fails_at_start_with_its_name(name: str, value: str):
    with pytest.raises(ValidationError, match=name.lower()):
        Settings.from_env({f"TORCHSHIP_{name}": value})
