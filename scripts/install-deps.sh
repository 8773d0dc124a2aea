#!/usr/bin/env bash
# Installs what kvtier needs on Debian 12 (as root, or with sudo), skipping
# what is already there. CUDA is optional: the CUDA parts build when nvcc is
# found (PATH or /usr/local/cuda/bin).
set -euo pipefail
pkgs=(build-essential cmake pkg-config git
      liburing-dev librocksdb-dev libcapnp-dev capnproto libcpp-httplib-dev
      libspdlog-dev libgtest-dev libgmock-dev libbenchmark-dev libxxhash-dev
      libsystemd-dev prometheus systemd  # prometheus: promtool, systemd: systemd-analyze (deploy checks)
      nlohmann-json3-dev libcli11-dev libssl-dev libarchive-dev
      python3 python3-xxhash python3-matplotlib python3-yaml curl
      python3-dev pybind11-dev python3-numpy  # the Python module (python/) and its tests
      clang libclang-rt-14-dev)  # libFuzzer harnesses (scripts/fuzz.sh)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "kvtier: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
