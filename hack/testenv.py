#!/usr/bin/env python3
"""A real local Kubernetes control plane on loopback, for tests and the demo.

etcd, kube-apiserver (admission on, PodSecurity included, RBAC, an audit log of writes),
kube-controller-manager (Deployments, garbage collection, HPA, namespaces), kube-scheduler and
kwok, which runs fake Nodes (GPU nodes advertising ``nvidia.com/gpu``) and marks the Pods bound
to them Running and Ready without a kubelet. Fake pods get loopback addresses; nothing here ever
sends traffic to them.

With ``real_node``, a real node joins them (hack/localnode.py): the kubelet, containerd and runc
in a network namespace of their own, running the images built from the Dockerfile
(hack/build-images.sh), so pods really start, probe, serve and drain. It takes the place of
kwok's CPU node: CPU pods run for real, GPU pods stay on kwok's GPU nodes for placement.

    python hack/testenv.py up   [--dir DIR] [--no-real-node]   # start in the background
    python hack/testenv.py down [--dir DIR]                    # stop what `up` started

Only the standard library is used, so the script runs before any virtual environment exists.
The binaries come from hack/build-testenv.sh (built once per machine, cached by version).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import localnode  # a sibling in hack/: the script's own folder, or on pytest's pythonpath
from harness import free_port, run_tool, stop, wait_http

HACK = Path(__file__).resolve().parent

DEFAULT_DIR = HACK.parent / ".testenv"
SERVICE_CIDR = "10.96.0.0/16"  # allocation only: no test ever connects to a ClusterIP
POD_CIDR = "127.10.0.0/16"  # kwok hands its pods loopback addresses
# The controller manager's and the scheduler's own client: room for a burst of test objects.
CONTROLLER_CLIENT_ARGS = ("--kube-api-qps=200", "--kube-api-burst=400", "--v=1")
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


@dataclass(frozen=True)
class FakeNode:
    name: str
    gpus: int = 0
    product: str = ""
    cpu: str = "32"
    memory: str = "256Gi"
    pods: str = "110"


FAKE_NODES = (
    FakeNode("gpu-h100-0", gpus=4, product="NVIDIA-H100-80GB-HBM3"),
    FakeNode("gpu-h100-1", gpus=4, product="NVIDIA-H100-80GB-HBM3"),
    FakeNode("gpu-a10-0", gpus=2, product="NVIDIA-A10"),
    FakeNode("cpu-0"),
)

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  # Reads by the cluster's own controllers: not logged.
  - level: None
    userGroups: ["system:serviceaccounts:kube-system"]
    verbs: [get, list, watch]
  # Reads by ServiceAccounts (an operator run with the chart's credentials): a denied read
  # shows as a 403 here, as a denied write does.
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
    verbs: [get, list, watch]
  # Writes: enough to prove a converged operator writes nothing.
  - level: Metadata
    verbs: [create, update, patch, delete, deletecollection]
  - level: None
"""


def build_binaries() -> Path:
    """Build (or reuse) the binaries and return their directory."""
    out = subprocess.run(
        [str(HACK / "build-testenv.sh")], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def gateway_api_crds() -> Path:
    """The Gateway API's standard CRDs (fetched once, cached by version): their directory."""
    out = subprocess.run(
        [str(HACK / "gateway-api-crds.sh")], check=True, stdout=subprocess.PIPE, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def build_images() -> list[Path]:
    """Build (or reuse) the operator and runtime images; their OCI archives."""
    out = subprocess.run(
        [str(HACK / "build-images.sh")], check=True, stdout=subprocess.PIPE, text=True
    )
    return [Path(line) for line in out.stdout.split()]


def real_node_unavailable() -> str | None:
    """Why this machine cannot run the real node (no root, no cgroups, ...), or None."""
    return localnode.unavailable_reason()


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(pki: Path, extra_ips: tuple[str, ...] = ()) -> None:
    """One CA; the apiserver's serving cert; an admin client cert; the apiserver's client cert
    for kubelets; the service-account key. `extra_ips`: more addresses the apiserver answers on
    (the real node's, where its relay forwards to the apiserver)."""
    pki.mkdir(parents=True, exist_ok=True)
    openssl("genrsa", "-out", "ca.key", "2048", cwd=pki)
    openssl(
        "req", "-x509", "-new", "-key", "ca.key", "-days", "3650",
        "-subj", "/CN=torchship-testenv-ca", "-out", "ca.crt", cwd=pki,
    )  # fmt: skip
    ips = "".join(f"IP:{ip}," for ip in extra_ips)
    (pki / "san.ext").write_text(
        f"subjectAltName=IP:127.0.0.1,IP:10.96.0.1,{ips}DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
        "extendedKeyUsage=serverAuth\n"
    )
    (pki / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subject, ext in (
        ("apiserver", "/CN=kube-apiserver", "san.ext"),
        ("admin", "/O=system:masters/CN=admin", "client.ext"),
        # The apiserver's identity towards kubelets (logs, exec, port-forward).
        ("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client",
         "client.ext"),
    ):  # fmt: skip
        openssl("genrsa", "-out", f"{name}.key", "2048", cwd=pki)
        openssl(
            "req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=pki
        )
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "3650", "-extfile", ext, "-out", f"{name}.crt", cwd=pki,
        )  # fmt: skip
    openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def issue_client_cert(pki: Path, name: str, user: str, groups: tuple[str, ...]) -> None:
    """A client certificate for `user` in `groups`, signed by the control plane's CA."""
    subject = "".join(f"/O={g}" for g in groups) + f"/CN={user}"
    openssl("genrsa", "-out", f"{name}.key", "2048", cwd=pki)
    openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=pki)
    openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "3650", "-extfile", "client.ext",
        "-out", f"{name}.crt", cwd=pki,
    )  # fmt: skip


def kubeconfig_text(server: str, pki: Path, user: str = "admin") -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "testenv",
                    "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")},
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate": str(pki / f"{user}.crt"),
                        "client-key": str(pki / f"{user}.key"),
                    },
                }
            ],
            "contexts": [{"name": "testenv", "context": {"cluster": "testenv", "user": user}}],
            "current-context": "testenv",
        },
        indent=2,
    )


def node_manifest(node: FakeNode) -> dict:
    labels = {
        "type": "kwok",
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "gpu" if node.gpus else "cpu",
    }
    capacity = {"cpu": node.cpu, "memory": node.memory, "pods": node.pods}
    spec: dict = {}
    if node.gpus:
        labels |= {"nvidia.com/gpu.product": node.product, "nvidia.com/gpu.count": str(node.gpus)}
        capacity["nvidia.com/gpu"] = str(node.gpus)
        spec["taints"] = [GPU_TAINT]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": labels,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
        },
        "spec": spec,
        # Capacity is set at creation so the scheduler sees the GPUs before kwok's first beat.
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
        },
    }


@dataclass
class ControlPlane:
    """Processes of one local control plane, rooted in ``workdir``."""

    workdir: Path
    bin_dir: Path
    real_node: bool = False
    images: list[Path] = field(default_factory=list)
    """OCI archives imported into the real node."""
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    node: localnode.LocalNode | None = None

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, *, detach: bool = False, timeout: float = 120) -> None:
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        (self.workdir / "logs").mkdir(parents=True)
        self.ports = {
            name: free_port()
            for name in ("etcd", "etcd-peer", "apiserver", "kcm", "scheduler", "kwok")
        }
        slot = localnode.claim_slot(self.workdir) if self.real_node else None
        make_pki(self.pki, extra_ips=(slot.node_ip,) if slot else ())
        (self.workdir / "audit-policy.yaml").write_text(AUDIT_POLICY)
        self.kubeconfig.write_text(kubeconfig_text(self.server, self.pki))
        if slot:
            self.node = localnode.LocalNode(
                workdir=self.workdir,
                bin_dir=self.bin_dir,
                cni_dir=localnode.cni_dir(self.bin_dir),
                apiserver_port=self.ports["apiserver"],
                slot=slot,
            )
        try:
            self._spawn("etcd", self._etcd_args(), detach)
            self._wait_http(f"http://127.0.0.1:{self.ports['etcd']}/health", "etcd", timeout)
            self._spawn("kube-apiserver", self._apiserver_args(), detach)
            self._wait_http(f"{self.server}/readyz", "kube-apiserver", timeout)
            self._spawn("kube-controller-manager", self._kcm_args(), detach)
            self._spawn("kube-scheduler", self._scheduler_args(), detach)
            self._spawn("kwok", self._kwok_args(), detach)
            self._create_nodes()
            if self.node:
                self._start_node(detach, timeout)
            self._wait_nodes_ready(timeout)
            self._wait_default_service_account(timeout)
        except BaseException:
            self.stop()
            raise
        state = {"ports": self.ports, "pids": {n: p.pid for n, p in self.procs.items()}}
        if self.node:
            state["node"] = self.node.state()
        (self.workdir / "state.json").write_text(json.dumps(state))

    @classmethod
    def attach(cls, workdir: Path, bin_dir: Path) -> ControlPlane:
        """A handle on a control plane that `up` started earlier (no process control)."""
        state = json.loads((workdir / "state.json").read_text())
        plane = cls(workdir=workdir, bin_dir=bin_dir, ports=state["ports"])
        if "node" in state:
            plane.real_node = True
            plane.node = localnode.LocalNode(
                workdir=workdir,
                bin_dir=bin_dir,
                cni_dir=localnode.cni_dir(bin_dir),
                apiserver_port=state["ports"]["apiserver"],
                slot=localnode.Slot(state["node"]["slot"]),
            )
        return plane

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
        # Reverse order: kwok and controllers first, etcd last.
        for name, proc in reversed(list(self.procs.items())):
            stop(proc)  # the apiserver waits on open watches: the kill is enough
            self.procs.pop(name)

    def restart(self, component: str) -> None:
        """Stop one component and start it again with the same flags (fault tests)."""
        proc = self.procs[component]
        stop(proc)
        self._spawn(component, proc.args[1:], detach=False)
        if component == "kube-apiserver":
            self._wait_http(f"{self.server}/readyz", component, 120)

    # -- clients -----------------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        input: str | None = None,  # noqa: A002 (mirrors subprocess.run)
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        kubectl = [str(self.bin_dir / "kubectl"), *args]
        return run_tool(kubectl, input=input, env=self.env, check=check, timeout=timeout)

    def wait_established(self, *names: str, timeout: float = 60) -> None:
        """Wait until the named CRDs (all of them when none is named) exist and are Established.

        Polled here, not with `kubectl wait`: that fails at once on a CRD whose status has
        no conditions yet, as one just applied may not."""
        deadline = time.monotonic() + timeout
        while True:
            crds = json.loads(self.kubectl("get", "crd", "-o", "json").stdout)["items"]
            established = {
                crd["metadata"]["name"]
                for crd in crds
                if any(
                    c["type"] == "Established" and c["status"] == "True"
                    for c in crd.get("status", {}).get("conditions") or []
                )
            }
            pending = set(names or (crd["metadata"]["name"] for crd in crds)) - established
            if not pending:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"CRDs not Established after {timeout:.0f} s: {sorted(pending)}")
            time.sleep(0.2)

    def model_volume(self, namespace: str, claim: str, files: dict[str, Path]) -> None:
        """A PersistentVolume holding `files` (name in the volume -> file here) and its claim,
        bound to each other: what a `pvc://claim/name` model source reads on the real node."""
        root = self.workdir / "volumes" / f"{namespace}-{claim}"
        root.mkdir(parents=True, exist_ok=True)
        for name, source in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, root / name)
            (root / name).chmod(0o644)
        pv_name = f"{namespace}-{claim}"[:253]
        objects = [
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": pv_name},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadOnlyMany"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": "",
                    "hostPath": {"path": str(root), "type": "Directory"},
                    "claimRef": {"namespace": namespace, "name": claim},
                },
            },
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": namespace},
                "spec": {
                    "accessModes": ["ReadOnlyMany"],
                    "storageClassName": "",
                    "volumeName": pv_name,
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        ]
        self.kubectl(
            "apply", "--server-side", "-f", "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
        )  # fmt: skip

    def writable_volume(self, name: str, storage_class: str, size: str = "1Gi") -> Path:
        """A ReadWriteMany PersistentVolume of `storage_class` for a claim of that class to bind
        (there is no provisioner here): a directory here that the pods' uid may write."""
        root = self.workdir / "volumes" / name
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o777)
        pv = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": storage_class,
                "hostPath": {"path": str(root), "type": "Directory"},
            },
        }
        self.kubectl("apply", "-f", "-", input=json.dumps(pv))
        return root

    @contextlib.contextmanager
    def port_forward(self, namespace: str, target: str, port: int, timeout: float = 60):
        """`kubectl port-forward` of `target` (svc/NAME, pod/NAME) to a free loopback port;
        yields that port. The stream goes apiserver -> kubelet -> the pod."""
        proc = subprocess.Popen(
            [str(self.bin_dir / "kubectl"), "port-forward", "--address", "127.0.0.1",
             "-n", namespace, target, f":{port}"],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + timeout
            assert proc.stdout is not None
            line = proc.stdout.readline()
            while "Forwarding from 127.0.0.1:" not in line:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"port-forward {target} failed: {proc.stderr.read()}")
                line = proc.stdout.readline()
            yield int(line.split("127.0.0.1:")[1].split()[0])
        finally:
            proc.terminate()
            proc.wait(10)

    def kubeconfig_for(self, user: str, groups: tuple[str, ...] = ()) -> Path:
        """A kubeconfig for another identity (its own client certificate), e.g. to tell the
        operator's requests apart in the audit log, or to test RBAC with real credentials."""
        path = self.workdir / f"kubeconfig-{user}"
        if not path.exists():
            issue_client_cert(self.pki, user, user, groups)
            path.write_text(kubeconfig_text(self.server, self.pki, user))
        return path

    def get(self, path: str) -> bytes:
        """GET a path on the apiserver as the admin (e.g. '/metrics')."""
        with urllib.request.urlopen(f"{self.server}{path}", context=self._ssl(), timeout=30) as r:
            return r.read()

    def metrics_text(self) -> str:
        return self.get("/metrics").decode()

    def audit_events(self) -> list[dict]:
        """Requests seen by the apiserver so far: every write, and the reads of ServiceAccounts
        outside kube-system (AUDIT_POLICY)."""
        if not self.audit_log.exists():
            return []
        with self.audit_log.open() as f:
            return [json.loads(line) for line in f if line.strip()]

    # -- internals ---------------------------------------------------------------------------

    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    def _spawn(self, name: str, args: list[str], detach: bool) -> None:
        log = (self.workdir / "logs" / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [str(self.bin_dir / name), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=detach,
            # Attached children die with their parent, even when it is SIGKILLed.
            preexec_fn=None if detach else _die_with_parent,
        )

    def _wait_http(self, url: str, name: str, timeout: float) -> None:
        context = self._ssl() if url.startswith("https") else None
        try:
            wait_http(
                url, timeout=timeout, alive=lambda: self._check_alive(name), context=context,
                interval=0.2, what=f"{name} at {url}",
            )  # fmt: skip
        except TimeoutError as error:
            raise TimeoutError(f"{error}; see {self._log(name)}") from None

    def _check_alive(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is not None:
            tail = self._log(name).read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def _log(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def _etcd_args(self) -> list[str]:
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        return [
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--unsafe-no-fsync",  # test data: durability is not worth the latency
            "--quota-backend-bytes=4294967296",
            "--log-level=warn",
        ]

    def _apiserver_args(self) -> list[str]:
        pki = self.pki
        return [
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports['apiserver']}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            # The default plugins (PodSecurity, ServiceAccount, ...) plus NodeRestriction.
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            f"--audit-policy-file={self.workdir / 'audit-policy.yaml'}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=batch",
            "--audit-log-batch-max-wait=1s",
            "--endpoint-reconciler-type=none",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--profiling=false",
            "--v=1",
        ]

    def _component_kubeconfig(self) -> list[str]:
        kc = str(self.kubeconfig)
        return [
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
        ]

    def _kcm_args(self) -> list[str]:
        return [
            *self._component_kubeconfig(),
            f"--secure-port={self.ports['kcm']}",
            f"--service-account-private-key-file={self.pki / 'sa.key'}",
            f"--root-ca-file={self.pki / 'ca.crt'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--cluster-name=torchship-testenv",
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route",
            # Quicker feedback for tests than the production defaults.
            "--horizontal-pod-autoscaler-sync-period=5s",
            "--concurrent-deployment-syncs=10",
            "--concurrent-replicaset-syncs=10",
            "--concurrent-gc-syncs=40",
            *CONTROLLER_CLIENT_ARGS,
        ]

    def _scheduler_args(self) -> list[str]:
        return [
            *self._component_kubeconfig(),
            f"--secure-port={self.ports['scheduler']}",
            *CONTROLLER_CLIENT_ARGS,
        ]

    def _kwok_args(self) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            f"--config={self.bin_dir / 'kwok-stages.yaml'}",
            "--node-lease-duration-seconds=40",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            f"--cidr={POD_CIDR}",
            "--node-ip=127.0.0.1",
            f"--server-address=127.0.0.1:{self.ports['kwok']}",
        ]

    def _create_nodes(self) -> None:
        # The real node takes the place of kwok's CPU node.
        items = [node_manifest(n) for n in FAKE_NODES if not (self.node and not n.gpus)]
        self.kubectl(
            "apply",
            "--server-side",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )

    def _start_node(self, detach: bool, timeout: float) -> None:
        assert self.node is not None
        issue_client_cert(self.pki, "kubelet", f"system:node:{self.node.name}", ("system:nodes",))
        self.node.start(self.images, detach=detach, timeout=timeout)
        self.procs |= self.node.procs
        self._wait_node_registered(self.node.name, timeout)

    def _wait_node_registered(self, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.kubectl("get", "node", name, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {name} did not register; see {self.node.dir}/logs")
            time.sleep(0.2)

    def _wait_nodes_ready(self, timeout: float) -> None:
        self.kubectl(
            "wait", "--for=condition=Ready", "node", "--all", f"--timeout={int(timeout)}s",
            timeout=timeout + 10,
        )  # fmt: skip

    def _wait_default_service_account(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.kubectl("get", "serviceaccount", "default", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise TimeoutError("the default ServiceAccount never appeared")
            time.sleep(0.2)


def _die_with_parent() -> None:
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def stop_detached(workdir: Path) -> bool:
    """Stop the processes a detached `up` started; True when something was running."""
    state_file = workdir / "state.json"
    if not state_file.exists():
        return False
    state = json.loads(state_file.read_text())
    pids = state["pids"]
    for pid in reversed(list(pids.values())):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for pid in pids.values():
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if "node" in state:
        localnode.teardown(localnode.Slot(state["node"]["slot"]), workdir / "node")
    state_file.unlink()
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state directory")
    parser.add_argument(
        "--no-real-node", action="store_true", help="kwok's nodes only (no kubelet, no images)"
    )
    args = parser.parse_args(argv)
    workdir = args.dir.resolve()
    if args.command == "down":
        print("stopped" if stop_detached(workdir) else f"nothing running in {workdir}")
        return 0
    stop_detached(workdir)
    started = time.monotonic()
    real_node = not args.no_real_node
    if real_node and (reason := real_node_unavailable()):
        print(f"no real node: {reason}", file=sys.stderr)
        real_node = False
    plane = ControlPlane(
        workdir=workdir,
        bin_dir=build_binaries(),
        real_node=real_node,
        images=build_images() if real_node else [],
    )
    plane.start(detach=True)
    print(f"control plane up in {time.monotonic() - started:.1f}s", file=sys.stderr)
    print(f"export KUBECONFIG={plane.kubeconfig} PATH={plane.bin_dir}:$PATH")
    return 0


if __name__ == "__main__":
    sys.exit(main())
