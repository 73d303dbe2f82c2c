#!/usr/bin/env bash
# Copy the CRDs from crds/ (the source of truth, generated and committed) into the Helm chart,
# which renders them as templates so that `helm upgrade` upgrades them too.
#   hack/sync-chart-crds.sh          # copy
#   hack/sync-chart-crds.sh --check  # exit 1 when the chart's copy differs (CI)
set -euo pipefail
cd "$(dirname "$0")/.."

src=crds
dst=charts/torchship/files/crds
check=false
[ "${1:-}" = "--check" ] && check=true

shopt -s nullglob
stale=0
for file in "$src"/*.yaml; do
  target="$dst/$(basename "$file")"
  if ! cmp -s "$file" "$target"; then
    if $check; then
      echo "out of date: $target (run hack/sync-chart-crds.sh)" >&2
      stale=1
    else
      mkdir -p "$dst"
      cp "$file" "$target"
      echo "copied $file -> $target"
    fi
  fi
done
# A CRD removed from crds/ leaves the chart too.
for target in "$dst"/*.yaml; do
  if [ ! -e "$src/$(basename "$target")" ]; then
    if $check; then
      echo "not in $src/: $target" >&2
      stale=1
    else
      rm "$target"
      echo "removed $target"
    fi
  fi
done
exit "$stale"
