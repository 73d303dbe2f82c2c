"""Fixtures of the delivery tests (the chart, the images, the GitOps examples)."""

from __future__ import annotations

import pytest
from helmchart import ROOT


@pytest.fixture(scope="session")
def installed_crds(control_plane) -> None:
    """The CRDs of crds/ in the cluster, unless something (a release) installed them already."""
    if control_plane.kubectl("get", "crd", "modelservices.torchship.dev", check=False).returncode:
        control_plane.kubectl(
            "apply", "--server-side", "--field-manager=torchship-tests", "-f", str(ROOT / "crds")
        )
    control_plane.wait_established()
