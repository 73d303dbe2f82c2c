#!/usr/bin/env python3
"""A real Kubernetes node on this machine, for the local control plane (hack/testenv.py).

containerd (Debian's), runc and the kubelet (built with the control plane) run in a network
namespace of their own, joined to the host by a veth pair, as a kind node has its own: the kubelet
refuses a loopback node address, and the API server must reach it for logs, exec and
port-forward. Pods get addresses from a CNI bridge inside that namespace. Addresses come from
198.18.0.0/15, the range set aside for benchmarking on isolated networks (RFC 2544): slot N has

    host end of the veth   198.18.N.1/30        (in the host's namespace)
    the node               198.18.N.2/30        (eth0 in the node's namespace)
    its pods               198.19.N.0/24        (bridge cni0 in the node's namespace)

and the host routes 198.19.N.0/24 to the node, so tests may reach a pod's own address; no route
takes either range off the machine. The kubelet reaches the API server (on the host's loopback)
through a relay listening in the node's namespace, on the same port; pods reach it there too, at
the node's address. Images are imported into containerd, never pulled.

Several nodes (one per control plane) can run at once: each takes a free slot, a cgroup root, a
state directory and a containerd socket of its own. `LocalNode.stop` (and `python
hack/localnode.py sweep`) leaves no process, mount, network namespace, interface or route behind.

Only the standard library is used, like hack/testenv.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import stop

HACK = Path(__file__).resolve().parent
SLOTS = Path("/run/torchship/nodes")  # one file per slot in use: who owns it, what to clean
MAX_SLOTS = 64
NETNS_PREFIX = "torchship-node-"
NODE_NAME = "torchship-node"
CONTAINERD_NAMESPACE = "k8s.io"  # the CRI plugin's
PAUSE_IMAGE = "localhost/torchship/pause:1"
CLONE_NEWNET = 0x40000000
REQUIRED_TOOLS = ("containerd", "runc", "ip", "iptables")


def cache_root() -> Path:
    """hack/build-testenv.sh's cache: the nodes keep their image stores there, per slot."""
    if env := os.environ.get("TORCHSHIP_CACHE"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "torchship"


def unavailable_reason() -> str | None:
    """Why this machine cannot run a local node, or None when it can."""
    if os.geteuid() != 0:
        return "the local node needs root (network namespaces, mounts, cgroups)"
    if not Path("/sys/fs/cgroup").is_dir() or not any(Path("/sys/fs/cgroup").iterdir()):
        return "the local node needs cgroups (/sys/fs/cgroup is empty)"
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"the local node needs {', '.join(missing)} (hack/install-node-packages.sh)"
    return None


def cni_dir(bin_dir: Path) -> Path:
    """The CNI plugins hack/build-testenv.sh built (a directory named by their version)."""
    dirs = sorted(bin_dir.glob("cni-*"))
    if not dirs:
        raise FileNotFoundError(f"no CNI plugins in {bin_dir} (hack/build-testenv.sh)")
    return dirs[-1]


def run(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True, **kwargs)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr.strip() or proc.stdout}")
    return proc


def enter_netns(netns: str) -> None:
    """Move the calling thread into a named network namespace."""
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {netns}")
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- slots --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    index: int

    @property
    def netns(self) -> str:
        return f"{NETNS_PREFIX}{self.index}"

    @property
    def host_link(self) -> str:
        return f"tsnode{self.index}"

    @property
    def host_ip(self) -> str:
        return f"198.18.{self.index}.1"

    @property
    def node_ip(self) -> str:
        return f"198.18.{self.index}.2"

    @property
    def pod_cidr(self) -> str:
        return f"198.19.{self.index}.0/24"

    @property
    def cgroup_root(self) -> str:
        return f"/torchship-node-{self.index}"

    @property
    def record(self) -> Path:
        return SLOTS / f"{self.index}.json"

    @property
    def run_dir(self) -> Path:
        """The kubelet's root, containerd's state and socket: a short path of its own (unix
        socket paths are limited to about a hundred bytes), emptied at every stop."""
        return Path(f"/var/lib/torchship/node-{self.index}")

    @property
    def image_store(self) -> Path:
        """containerd's root (content, snapshots, metadata), kept between runs: an imported
        image stays, and is imported again only when it changed."""
        return cache_root() / "nodes" / f"slot-{self.index}" / "containerd"


def claim_slot(workdir: Path) -> Slot:
    """The first free slot, its network namespace created (which makes the claim atomic). Slots
    whose owner died are swept first."""
    sweep()
    SLOTS.mkdir(parents=True, exist_ok=True)
    for index in range(MAX_SLOTS):
        slot = Slot(index)
        if run("ip", "netns", "add", slot.netns, check=False).returncode == 0:
            slot.record.write_text(json.dumps({"owner": os.getpid(), "workdir": str(workdir)}))
            return slot
    raise RuntimeError(f"all {MAX_SLOTS} local node slots are in use (ip netns list)")


def sweep() -> None:
    """Clean up the slots whose owner process is gone (a killed test run, a lost `up`)."""
    for netns in run("ip", "netns", "list", check=False).stdout.split():
        if not netns.startswith(NETNS_PREFIX):
            continue
        slot = Slot(int(netns.removeprefix(NETNS_PREFIX)))
        try:
            record = json.loads(slot.record.read_text())
        except (OSError, ValueError):
            record = {}
        if record.get("owner") and pid_alive(record["owner"]):
            continue
        workdir = Path(record["workdir"]) if record.get("workdir") else None
        teardown(slot, workdir / "node" if workdir else None)


def teardown(slot: Slot, node_dir: Path | None) -> None:
    """Everything a node of this slot may have left: processes, mounts, cgroups, links."""
    netns_inodes: set[int] = set()
    for pid in cgroup_pids(slot):
        with contextlib.suppress(OSError):
            netns_inodes.add(os.stat(f"/proc/{pid}/ns/net").st_ino)
    kill_pods(slot)
    # The kubelet, containerd, its shims and the relay name the node's directories.
    markers = [str(slot.run_dir)] + ([str(node_dir)] if node_dir is not None else [])
    leftovers = [pid for marker in markers for pid in processes_mentioning(marker)]
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_gone(leftovers, 10)
    for netns_file in Path("/run/netns").glob("cni-*"):
        with contextlib.suppress(OSError):
            if os.stat(netns_file).st_ino in netns_inodes:
                remove_netns_file(netns_file)
    if node_dir is not None:
        unmount_under(node_dir)
    unmount_under(slot.run_dir)
    unmount_under(slot.image_store)
    shutil.rmtree(slot.run_dir, ignore_errors=True)
    remove_cgroups(slot)
    run("ip", "link", "del", slot.host_link, check=False)
    run("ip", "netns", "del", slot.netns, check=False)
    slot.record.unlink(missing_ok=True)


def remove_netns_file(path: Path) -> None:
    """A pod's network namespace, as containerd pinned it (a bind mount of nsfs)."""
    run("umount", str(path), check=False)
    with contextlib.suppress(OSError):
        path.unlink()


def kill_pods(slot: Slot) -> None:
    """SIGKILL every process in the node's cgroups (its pods), until none is left."""
    for _ in range(50):
        pids = cgroup_pids(slot)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def archive_image(archive: Path) -> tuple[str, str]:
    """The image name and manifest digest an OCI archive's index names (first manifest)."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        index = json.load(member) if member else {}
    manifests = index.get("manifests") or [{}]
    annotations = manifests[0].get("annotations", {})
    return annotations.get("org.opencontainers.image.ref.name", ""), manifests[0].get("digest", "")


def cgroup_pids(slot: Slot) -> list[int]:
    pids: set[int] = set()
    for controller in cgroup_controllers():
        root = controller / slot.cgroup_root.lstrip("/")
        if root.is_dir():
            for procs in root.rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    pids |= {int(p) for p in procs.read_text().split()}
    return sorted(pids)


def cgroup_controllers() -> list[Path]:
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():  # cgroup v2: one hierarchy
        return [base]
    return [p for p in base.iterdir() if p.is_dir() and not p.is_symlink()]


def remove_cgroups(slot: Slot) -> None:
    for controller in cgroup_controllers():
        root = controller / slot.cgroup_root.lstrip("/")
        if root.is_dir():
            for path in sorted(
                (p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)
            ):
                with contextlib.suppress(OSError):
                    path.rmdir()
            with contextlib.suppress(OSError):
                root.rmdir()


def processes_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if text.encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
    return pids


def wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


def unmount_under(directory: Path) -> None:
    prefix = str(directory.resolve())
    mounts = [
        line.split()[4].replace("\\040", " ")
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
    ]
    for point in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        run("umount", "-l", point, check=False)


# -- the pause image ----------------------------------------------------------------------------


def pause_image_archive(bin_dir: Path, out: Path) -> Path:
    """An OCI archive holding the pause program alone, written by hand: the sandbox image
    cannot be pulled here, and it is too small to need a builder."""
    if out.exists():
        return out
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tar.gettarinfo(str(bin_dir / "pause"), arcname="pause")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        info.mode = 0o755
        with (bin_dir / "pause").open("rb") as f:
            tar.addfile(info, f)
    diff = layer.getvalue()
    compressed = gzip.compress(diff, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha256(diff)}"]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", compressed)],
        }
    ).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            descriptor("application/vnd.oci.image.manifest.v1+json", manifest)
            | {"annotations": {"org.opencontainers.image.ref.name": PAUSE_IMAGE}}
        ],
    }
    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, mode="w") as tar:
        files = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode()}
        files["index.json"] = json.dumps(index).encode()
        for blob in (config, manifest, compressed):
            files[f"blobs/sha256/{sha256(blob)}"] = blob
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tmp.rename(out)
    return out


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes) -> dict:
    return {"mediaType": media_type, "digest": f"sha256:{sha256(data)}", "size": len(data)}


# -- the node -----------------------------------------------------------------------------------


@dataclass
class LocalNode:
    """containerd and a kubelet in their own network namespace, registered with one control
    plane. `workdir` is the control plane's; the node keeps its state in `workdir/node`."""

    workdir: Path
    bin_dir: Path
    cni_dir: Path
    apiserver_port: int
    slot: Slot
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return self.workdir / "node"

    @property
    def containerd_socket(self) -> Path:
        return self.slot.run_dir / "containerd.sock"

    @property
    def name(self) -> str:
        return NODE_NAME

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, images: list[Path], *, detach: bool, timeout: float = 120) -> None:
        started = time.monotonic()
        for sub in ("logs", "cni/net.d", "pki"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        for sub in ("kubelet", "containerd", "ipam"):
            (self.slot.run_dir / sub).mkdir(parents=True, exist_ok=True)
        self._network()
        self._cgroups()
        self._write_config()
        self._spawn("relay", self._relay_args(), detach, netns=None)
        self._spawn("containerd", ["containerd", "--config", str(self._path("containerd.toml"))],
                    detach, netns=self.slot.netns)  # fmt: skip
        self._wait(lambda: self.containerd_socket.exists(), "containerd's socket", timeout)
        self._forget_containers()  # a previous run's, if it was killed before its clean-up
        for archive in [pause_image_archive(self.bin_dir, self.dir / "pause.tar"), *images]:
            self.import_image(archive)
        self._spawn("kubelet", self._kubelet_args(), detach, netns=self.slot.netns)
        self.started_in = time.monotonic() - started

    def stop(self) -> None:
        self._stop_process("kubelet")
        containerd = self.procs.get("containerd")
        if containerd is not None and containerd.poll() is None:
            try:
                self._forget_containers()
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                print(f"localnode: clean-up through containerd failed: {error}", file=sys.stderr)
        self._stop_process("containerd")
        self._stop_process("relay")
        teardown(self.slot, self.dir)

    def import_image(self, archive: Path) -> None:
        """Import an OCI archive, unless the image store holds that very image already."""
        name, digest = archive_image(archive)
        listed = self.ctr("images", "ls", f"name=={name}") if name else ""
        if digest and digest in listed:
            return
        self.ctr("images", "import", str(archive), timeout=900)

    def _forget_containers(self) -> None:
        """Kill the pods and remove every container and sandbox from the image store (the
        images stay), and the network namespaces the sandboxes held."""
        containers = self.ctr("containers", "ls", "-q").split()
        netns_files = []
        for container in containers:
            with contextlib.suppress(RuntimeError, ValueError):
                spec = json.loads(self.ctr("containers", "info", container)).get("Spec") or {}
                for ns in spec.get("linux", {}).get("namespaces", []):
                    if ns.get("type") == "network" and ns.get("path", "").startswith("/var/run"):
                        netns_files.append(Path(ns["path"]))
        kill_pods(self.slot)
        # Tasks and containers may vanish meanwhile (the CRI plugin cleans up exited ones).
        for task in self.ctr("tasks", "ls", "-q").split():
            self.ctr("tasks", "delete", "--force", task, check=False)
        for container in containers:
            self.ctr("containers", "delete", container, check=False)
        for path in netns_files:
            remove_netns_file(path)

    def _stop_process(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            stop(proc)

    def ctr(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        return run(
            "ctr", "--address", str(self.containerd_socket), "--namespace", CONTAINERD_NAMESPACE,
            *args, timeout=timeout, check=check,
        ).stdout  # fmt: skip

    def state(self) -> dict:
        return {"slot": self.slot.index, "pids": {n: p.pid for n, p in self.procs.items()}}

    # -- internals ---------------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        return self.dir / name

    def _network(self) -> None:
        slot, ns = self.slot, self.slot.netns
        run("ip", "link", "add", slot.host_link, "type", "veth", "peer", "name", "eth0",
            "netns", ns)  # fmt: skip
        run("ip", "addr", "add", f"{slot.host_ip}/30", "dev", slot.host_link)
        run("ip", "link", "set", slot.host_link, "up")
        run("ip", "-n", ns, "addr", "add", f"{slot.node_ip}/30", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "route", "add", slot.pod_cidr, "via", slot.node_ip, "dev", slot.host_link)
        # The node routes between its pods and the host (the bridge plugin sets it as well).
        run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")

    def _cgroups(self) -> None:
        """The kubelet's cgroup root, in every hierarchy (it must exist beforehand)."""
        for controller in cgroup_controllers():
            root = controller / self.slot.cgroup_root.lstrip("/")
            root.mkdir(exist_ok=True)
            for knob in ("cpuset.cpus", "cpuset.mems"):  # cpuset children start empty
                if (root / knob).exists() and not (root / knob).read_text().strip():
                    (root / knob).write_text((controller / knob).read_text())

    def _write_config(self) -> None:
        d = self.dir
        self._path("containerd.toml").write_text(
            CONTAINERD_CONFIG.format(
                root=self.slot.image_store,
                state=self.slot.run_dir / "containerd",
                socket=self.containerd_socket,
                pause=PAUSE_IMAGE,
                cni_bin=self.cni_dir,
                cni_conf=d / "cni" / "net.d",
            )
        )
        (d / "cni" / "net.d" / "10-torchship.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "torchship",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": "cni0",
                            "isGateway": True,
                            "ipMasq": False,  # nothing leaves the machine: no NAT rules
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": self.slot.pod_cidr}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(self.slot.run_dir / "ipam"),
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                },
                indent=2,
            )
        )
        pki = self.workdir / "pki"
        self._path("kubelet.yaml").write_text(
            KUBELET_CONFIG.format(
                address=self.slot.node_ip,
                ca=pki / "ca.crt",
                cgroup_root=self.slot.cgroup_root,
                socket=self.containerd_socket,
                pod_cidr=self.slot.pod_cidr,
                resolv=self._resolv_conf(),
            )
        )
        user = f"system:node:{self.name}"
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {
                        # The relay in the node's namespace listens on the same port.
                        "server": f"https://127.0.0.1:{self.apiserver_port}",
                        "certificate-authority": str(pki / "ca.crt"),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate": str(pki / "kubelet.crt"),
                        "client-key": str(pki / "kubelet.key"),
                    },
                }
            ],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
            "current-context": "local",
        }
        self._path("kubelet.kubeconfig").write_text(json.dumps(kubeconfig, indent=2))

    def _resolv_conf(self) -> Path:
        # No DNS server is reachable, and none is needed: pods get an empty search list.
        path = self._path("resolv.conf")
        path.write_text("options ndots:1\n")
        return path

    def _relay_args(self) -> list[str]:
        return [
            sys.executable, str(Path(__file__).resolve()), "relay",
            "--netns", self.slot.netns,
            "--listen", f"0.0.0.0:{self.apiserver_port}",
            "--to", f"127.0.0.1:{self.apiserver_port}",
            "--mark", str(self.dir),
        ]  # fmt: skip

    def _kubelet_args(self) -> list[str]:
        return [
            str(self.bin_dir / "kubelet"),
            f"--config={self._path('kubelet.yaml')}",
            f"--kubeconfig={self._path('kubelet.kubeconfig')}",
            f"--root-dir={self.slot.run_dir / 'kubelet'}",
            f"--cert-dir={self.dir / 'pki'}",
            f"--hostname-override={self.name}",
            f"--node-ip={self.slot.node_ip}",
            "--node-labels=torchship.dev/local-node=true,node.kubernetes.io/instance-type=cpu",
            "--v=1",
        ]

    def _spawn(self, name: str, args: list[str], detach: bool, netns: str | None) -> None:
        log = (self.dir / "logs" / f"{name}.log").open("ab")

        def prepare() -> None:
            if netns:
                enter_netns(netns)
            if not detach:  # attached children die with their parent, even a SIGKILLed one
                ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

        self.procs[name] = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=detach,
            preexec_fn=prepare,
        )

    def _wait(self, ready, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    log = (self.dir / "logs" / f"{name}.log").read_text(errors="replace")
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not appear within {timeout:.0f}s")
            time.sleep(0.1)


CONTAINERD_CONFIG = """\
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # The machine lacks CAP_SYS_RESOURCE: the kubelet's negative oom_score_adj for sandboxes
  # would be refused, and runc would fail to start them.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  enable_selinux = false
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
"""

KUBELET_CONFIG = """\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {address}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {ca}}}
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://{socket}
imageServiceEndpoint: unix://{socket}
# This machine: cgroup v1 without systemd, no swap accounting.
cgroupDriver: cgroupfs
cgroupRoot: {cgroup_root}
failCgroupV1: false
failSwapOn: false
podCIDR: {pod_cidr}
resolvConf: {resolv}
# No DNS server runs here: lookups fail at once on the node's address rather than warn per pod.
clusterDNS: [{address}]
clusterDomain: cluster.local
serializeImagePulls: false
# The images were imported and cannot be pulled again: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
nodeStatusUpdateFrequency: 5s
syncFrequency: 10s
shutdownGracePeriod: 0s
"""


# -- the relay ----------------------------------------------------------------------------------


async def relay(netns: str, listen: str, target: str) -> None:
    """Accept in the node's network namespace, connect in the host's: the kubelet (and pods)
    reach the API server that listens on the host's loopback only."""
    host_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
    enter_netns(netns)
    listen_host, listen_port = listen.rsplit(":", 1)
    server_sock = socket.create_server((listen_host, int(listen_port)), reuse_port=False)
    if ctypes.CDLL(None, use_errno=True).setns(host_ns, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns back to the host")
    target_host, target_port = target.rsplit(":", 1)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(target_host, int(target_port))
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, sock=server_sock)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    relay_cmd = sub.add_parser("relay", help="relay TCP from the node's namespace to the host's")
    relay_cmd.add_argument("--netns", required=True)
    relay_cmd.add_argument("--listen", required=True)
    relay_cmd.add_argument("--to", required=True)
    relay_cmd.add_argument("--mark", help="ignored: names the node directory for clean-up")
    sub.add_parser("sweep", help="clean up local nodes whose owner is gone")
    args = parser.parse_args(argv)
    if args.command == "relay":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        asyncio.run(relay(args.netns, args.listen, args.to))
    else:
        sweep()
    return 0


if __name__ == "__main__":
    sys.exit(main())
