#!/usr/bin/env bash
# Builds the operator and runtime images from the project's Dockerfile without a daemon (buildah),
# on a base image made from Debian's packages (debootstrap of bookworm with its python3), and keeps
# each as an OCI archive in the cache, keyed by the content it is built from:
#   $CACHE/images/operator-<key>.tar   ghcr.io/torchship/operator:<version>
#   $CACHE/images/runtime-<key>.tar    ghcr.io/torchship/runtime:<version>
# An unchanged tree reuses its archives without starting buildah; a source change rebuilds only
# the last layer (buildah's layer cache in its own storage). Prints the archives' paths, one a line.
#
# Users with Docker build the same Dockerfile against the public bases instead (see its header).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${TORCHSHIP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/torchship}
IMAGES="$CACHE/images"
# One build at a time per cache: checkouts set up at once would make the same base twice.
mkdir -p "$IMAGES"
exec 9>"$CACHE/.images.lock"
flock 9
SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,python-is-python3,ca-certificates
# Bump when base_image() changes what it makes: the base's tag is keyed by all three.
BASE_REVISION=1
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
# The images' names, as the chart and the operator's defaults give them: imported into the local
# node under these names, they are found there and never pulled.
REGISTRY=${TORCHSHIP_IMAGE_REGISTRY:-ghcr.io/torchship}

log() { echo "build-images: $*" >&2; }
for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || { log "$tool is required (hack/install-node-packages.sh)"; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { log "building images needs root (buildah's rootful storage)"; exit 1; }

# Overlay storage: layers share their lower layers instead of copying them (vfs would copy the
# multi-gigabyte torch layer once per later layer).
bah() { buildah --storage-driver overlay "$@"; }

hash_of() { # files... -> short content hash (names and contents)
  find "$@" -type f ! -path '*/__pycache__/*' ! -name '*.py[cod]' -print0 | sort -z \
    | xargs -0 sha256sum | sha256sum | cut -c1-16
}

base_image() {
  local key tag
  key=$(printf '%s %s %s' "$SUITE" "$BASE_PACKAGES" "$BASE_REVISION" | sha256sum | cut -c1-12)
  tag="localhost/torchship/base:$SUITE-$key"
  if ! bah inspect --type image "$tag" >/dev/null 2>&1; then
    local root started=$SECONDS
    root=$(mktemp -d "${TMPDIR:-/tmp}/torchship-base.XXXXXX")
    log "making the base image $tag (debootstrap $SUITE: $BASE_PACKAGES)"
    debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$root" >&2
    # What an image needs no copy of: package lists and caches, docs, locales.
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* \
      "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/var/log/*
    local ctr mnt
    ctr=$(bah from scratch)
    mnt=$(bah mount "$ctr")
    cp -a "$root"/. "$mnt"/
    bah umount "$ctr" >/dev/null
    bah config --env LANG=C.UTF-8 \
      --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      --cmd '["python3"]' "$ctr"
    bah commit --rm --quiet "$ctr" "$tag" >/dev/null
    rm -rf "$root"
    log "base image made in $((SECONDS - started)) s"
  fi
  echo "$tag"
}

pip_settings() { # dir -> buildah flags handing the machine's pip settings to the RUN steps
  # The index, extra index and CA bundle that this machine's pip uses (its config files and
  # PIP_* variables), bind-mounted for the build's RUN steps and never committed to an image:
  # a build behind a TLS-inspecting proxy or a private index works as pip works here.
  local dir=$1
  python3 - "$dir" <<'PY'
import subprocess, sys
from pathlib import Path

out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                     text=True).stdout
settings = {}
for line in out.splitlines():
    key, _, value = line.partition("=")
    name = key.rpartition(".")[2]
    if name in ("cert", "index-url", "extra-index-url", "trusted-host"):
        settings[name] = value.strip().strip("'\"")
flags = []
cert = settings.pop("cert", "")
if cert and Path(cert).is_file():
    flags += ["-v", f"{cert}:/etc/torchship-build-ca.pem:ro"]
    settings["cert"] = "/etc/torchship-build-ca.pem"
conf = Path(sys.argv[1]) / "pip.conf"
conf.write_text("[global]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
flags += ["-v", f"{conf}:/etc/pip.conf:ro"]
print("\n".join(flags))
PY
}

build() { # target "source paths" base
  local target=$1 sources=$2 base=$3 key archive image
  # shellcheck disable=SC2086 # sources: the paths the final stage copies, split on spaces
  key=$(printf '%s %s' "$base" "$(hash_of Dockerfile .dockerignore pyproject.toml $sources)" \
    | sha256sum | cut -c1-16)
  archive="$IMAGES/$target-$key.tar"
  image="$REGISTRY/$target:$VERSION"
  if [ ! -f "$archive" ]; then
    local started=$SECONDS
    log "building $image (target $target)"
    local settings
    settings=$(mktemp -d)
    mapfile -t pip_flags < <(pip_settings "$settings")
    # --network host: RUN steps reach the package registry; --layers: cached by content.
    bah bud --layers --pull=never --network host --isolation oci "${pip_flags[@]}" \
      --build-arg PYTHON_IMAGE="$base" --build-arg RUNTIME_BASE="$base" \
      --build-arg TORCH_INDEX_URL="${TORCH_INDEX_URL-}" \
      --target "$target" -t "$image" -f Dockerfile . >&2
    mkdir -p "$IMAGES"
    # Uncompressed: the archive is imported on this machine, where gzip would only cost time.
    bah push --quiet --disable-compression "$image" "oci-archive:$archive.tmp:$image" >&2
    mv "$archive.tmp" "$archive"
    rm -rf "$settings"
    find "$IMAGES" -name "$target-*.tar" ! -name "$(basename "$archive")" -delete
    log "$image built in $((SECONDS - started)) s: $(du -h "$archive" | cut -f1)"
  fi
  echo "$archive"
}

base=$(base_image)
build operator operator/torchship_operator "$base"
build runtime "runtime/torchship_runtime sdk/torchship/__init__.py sdk/torchship/datatypes.py" "$base"
