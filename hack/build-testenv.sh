#!/usr/bin/env bash
# Builds the local control plane's binaries from Go modules (through the Go module proxy) and
# caches them outside the repository, keyed by version: only the first run on a machine pays.
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet  (k8s.io/kubernetes)
#   etcd (go.etcd.io/etcd/server/v3), kwok, helm
#   the local node's CNI plugins (bridge, host-local, loopback, portmap) and its pause program
# Prints the bin directory on its last line.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
HELM_VERSION=${HELM_VERSION:-v3.21.4}
CNI_VERSION=${CNI_VERSION:-v1.9.1}
CACHE=${TORCHSHIP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/torchship}
BIN="$CACHE/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local

log() { echo "build-testenv: $*" >&2; }
have() { [ -x "$BIN/$1" ]; }

command -v go >/dev/null || { log "Go is required (https://go.dev/dl); none found on PATH"; exit 1; }
mkdir -p "$BIN"
# One build at a time per cache: two checkouts set up at once would share .gobin and the
# module work trees. The second waits, then finds the binaries built.
exec 9>"$CACHE/.build.lock"
flock 9

build_kubernetes() {
  local work="$CACHE/src/kubernetes-$K8S_VERSION" minor="${K8S_VERSION#v1.}"
  minor="${minor%%.*}"
  local staging="v0.${K8S_VERSION#v1.}"
  mkdir -p "$work"
  # k8s.io/kubernetes replaces its staging modules with ./staging paths, so it cannot be
  # `go install`ed: our own module requires it and points each staging module at its release.
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  {
    echo "module torchship.dev/testenv/kubernetes"
    echo
    echo "go 1.24"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk -v v="$staging" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } >"$work/go.mod"
  cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
  (cd "$work" && go mod tidy >&2)
  local ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet; do
    have "$cmd" && continue
    log "building $cmd $K8S_VERSION (first run on this machine: many minutes)"
    (cd "$work" && go build -trimpath -ldflags "$ldflags" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
    mv "$BIN/$cmd.tmp" "$BIN/$cmd"
  done
}

build_etcd() {
  local work="$CACHE/src/etcd-$ETCD_VERSION"
  mkdir -p "$work"
  # etcd's own main module carries replaces too: wrap etcdmain in a module of ours.
  cat >"$work/go.mod" <<GOMOD
module torchship.dev/testenv/etcd

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
  cat >"$work/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  log "building etcd $ETCD_VERSION"
  (cd "$work" && go mod tidy >&2 && go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" .)
  mv "$BIN/etcd.tmp" "$BIN/etcd"
}

go_install() { # name module@version
  log "building $1 ${2#*@}"
  GOBIN="$BIN/.gobin" go install -trimpath -ldflags "-s -w" "$2"
  mv "$BIN/.gobin/$1" "$BIN/$1"
}

kwok_stages() {
  # kwok ships no default stages in its binary; kwokctl assembles them from the module's
  # published stage configs. Same here: nodes Ready with lease heartbeats, pods Running/Ready.
  local src
  src="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage"
  [ -d "$src" ] || (cd "$CACHE" && go mod download "sigs.k8s.io/kwok@$KWOK_VERSION")
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo "---"
    cat "$src/$f"
  done >"$BIN/kwok-stages.yaml.tmp"
  mv "$BIN/kwok-stages.yaml.tmp" "$BIN/kwok-stages.yaml"
}

build_cni() {
  local plugins=github.com/containernetworking/plugins/plugins
  log "building the CNI plugins $CNI_VERSION"
  mkdir -p "$BIN/cni-$CNI_VERSION"
  GOBIN="$BIN/cni-$CNI_VERSION" go install -trimpath -ldflags "-s -w" \
    "$plugins/main/bridge@$CNI_VERSION" "$plugins/main/loopback@$CNI_VERSION" \
    "$plugins/ipam/host-local@$CNI_VERSION" "$plugins/meta/portmap@$CNI_VERSION"
}

build_pause() {
  # The pod sandbox's process: holds the pod's namespaces, reaps orphans, exits on a signal.
  # A static program of our own, since the sandbox image cannot be pulled here.
  local work="$CACHE/src/pause"
  mkdir -p "$work"
  printf 'module torchship.dev/testenv/pause\n\ngo 1.24\n' >"$work/go.mod"
  cat >"$work/main.go" <<'GO'
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
GO
  log "building pause"
  (cd "$work" && go build -trimpath -ldflags "-s -w" -o "$BIN/pause.tmp" .)
  mv "$BIN/pause.tmp" "$BIN/pause"
}

have etcd || build_etcd
have kwok || go_install kwok "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
have helm || go_install helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
[ -f "$BIN/kwok-stages.yaml" ] || kwok_stages
have pause || build_pause
have "cni-$CNI_VERSION/bridge" || build_cni
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet; do
  have "$cmd" || { build_kubernetes; break; }
done
echo "$BIN"
