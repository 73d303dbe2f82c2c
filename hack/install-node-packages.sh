#!/usr/bin/env bash
# Debian's packages for the real node and the image builds: containerd and runc (the node's
# container runtime), iptables (the kubelet's), buildah and debootstrap (the images, without a
# daemon), and g++ (the compiler Inductor runs in the compile tests). Installed only where
# missing, and only where apt-get and root are at hand; elsewhere it says what is missing and
# the tests that need it skip with that reason. Where root and apt-get are at hand, those tests
# fail instead of skipping (tests/skips.py): a failed install here fails setup.
set -euo pipefail

packages=(containerd runc iptables buildah debootstrap g++)
commands=(containerd runc iptables buildah debootstrap g++)

missing=()
for i in "${!commands[@]}"; do
  command -v "${commands[$i]}" >/dev/null || missing+=("${packages[$i]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-node-packages: missing ${missing[*]} (needs root and apt-get); the real node is off" >&2
  exit 0
fi
echo "install-node-packages: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
