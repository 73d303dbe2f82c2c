#!/usr/bin/env bash
# The Gateway API's CRDs (standard channel: HTTPRoute, Gateway, GatewayClass, ...) from the
# sigs.k8s.io/gateway-api Go module's config/, through the Go module proxy, cached by version.
# Prints the directory of the YAML files.
set -euo pipefail

GATEWAY_API_VERSION=${GATEWAY_API_VERSION:-v1.4.1}
CACHE=${TORCHSHIP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/torchship}
OUT="$CACHE/gateway-api-$GATEWAY_API_VERSION"

if [ ! -f "$OUT/.complete" ]; then
  command -v go >/dev/null || { echo "gateway-api-crds: Go is required" >&2; exit 1; }
  dir=$(GOFLAGS=-mod=mod GOTOOLCHAIN=local go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" |
    sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  mkdir -p "$OUT"
  cp "$dir"/config/crd/standard/*.yaml "$OUT/"
  chmod u+w "$OUT"/*.yaml
  touch "$OUT/.complete"
fi
echo "$OUT"
