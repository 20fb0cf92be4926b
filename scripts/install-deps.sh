#!/usr/bin/env bash
# Installs what mtrank needs from Debian 12 packages, only what is missing. Safe to run twice.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config ccache
  libeigen3-dev libxtensor-dev libxsimd-dev nlohmann-json3-dev
  libdnnl-dev ocl-icd-opencl-dev  # dnnl-config.cmake finds OpenCL (a Recommends that --no-install-recommends drops)
  catch2 libbenchmark-dev
  python3  # the CLI smoke tests check JSON output with short python3 scripts
  clang libclang-rt-14-dev libomp-14-dev  # the fuzz build: clang with its own OpenMP runtime
  libcpp-httplib-dev libcli11-dev
  libspdlog-dev  # the ranking server's logs (tools/ranking_server only; pulls libfmt-dev)
)
if [[ "${MTRANK_WITH_TORCH:-0}" == 1 ]]; then
  packages+=(python3-torch python3-numpy libopenblas0-openmp)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
