"""A ModelService that serves TLS (spec.tls) on the real node, reached by `kubectl torchship
infer` through its own port-forward: https, the certificate checked against the CA of the TLS
Secret (ca.crt), or the one `--ca` names when the Secret has none."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from certs import authority, issue
from workload import apply, model_service, wait_ready

pytestmark = pytest.mark.usefixtures("real_operator")


def plugin(plane, namespace: str, name: str, rows: Path, *extra: str):
    return subprocess.run(
        [sys.executable, "-m", "torchship.kubectl", "infer", name, "-n", namespace,
         "--input", f"input__0={rows}", "-o", "json", *extra],
        env=plane.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_infer_speaks_https_to_a_tls_modelservice_with_the_ca_it_implies(
    real_plane, restricted_namespace, mlp_file, tmp_path
):
    ns, name = restricted_namespace, "secure"
    ca = authority(tmp_path, "node")
    secret = tmp_path / "secret"
    secret.mkdir()
    # Named as the Service is inside the cluster: nothing names 127.0.0.1, where the
    # port-forward listens, so only the chain can be checked there.
    issue(ca, secret, names=(f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"), addresses=())
    real_plane.kubectl(
        "create", "secret", "generic", "secure-tls", "-n", ns, "--type=kubernetes.io/tls",
        f"--from-file=tls.crt={secret / 'tls.crt'}", f"--from-file=tls.key={secret / 'tls.key'}",
        f"--from-file=ca.crt={ca[2]}",
    )  # fmt: skip
    real_plane.model_volume(ns, "models", {"mlp.pt": mlp_file})
    apply(
        real_plane,
        ns,
        model_service(name, "pvc://models/mlp.pt", tls={"secretRef": {"name": "secure-tls"}}),
    )
    wait_ready(real_plane, ns, name)

    rows = np.random.default_rng(1).random((2, 64), dtype=np.float32)
    np.save(tmp_path / "rows.npy", rows)
    with torch.inference_mode():
        expected = torch.jit.load(str(mlp_file))(torch.from_numpy(rows)).numpy()

    # The CA from the Secret's ca.crt.
    answered = plugin(real_plane, ns, name, tmp_path / "rows.npy")
    assert answered.returncode == 0, answered.stderr
    output = json.loads(answered.stdout)["outputs"]["output__0"]
    np.testing.assert_allclose(np.asarray(output["data"]), expected, rtol=1e-5, atol=1e-6)

    # A Secret without ca.crt: the system's trust store does not know this CA, and says so.
    real_plane.kubectl(
        "patch", "secret", "secure-tls", "-n", ns, "--type=json",
        "-p", '[{"op": "remove", "path": "/data/ca.crt"}]',
    )  # fmt: skip
    refused = plugin(real_plane, ns, name, tmp_path / "rows.npy", "--timeout", "5")
    assert refused.returncode == 6, refused.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr and "pass --ca FILE" in refused.stderr

    # --ca names the CA.
    answered = plugin(real_plane, ns, name, tmp_path / "rows.npy", "--ca", str(ca[2]))
    assert answered.returncode == 0, answered.stderr
    output = json.loads(answered.stdout)["outputs"]["output__0"]
    np.testing.assert_allclose(np.asarray(output["data"]), expected, rtol=1e-5, atol=1e-6)
