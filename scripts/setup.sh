#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian packages gradpack needs that this machine lacks. Idempotent: when everything
# is present it installs nothing and needs no network. CUDA (nvcc) is not a Debian package here:
# the build uses it when it is installed and skips the CUDA parts otherwise.
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config   # build
  libgtest-dev libgmock-dev          # tests
  dataset-fashion-mnist zlib1g-dev
  libbenchmark-dev                   # bench/codec_bench
  clang libclang-rt-14-dev           # libFuzzer for tests/compression/fuzz
  clang-format clang-tidy            # style, scripts/clang_tidy.sh
  libgloo-dev                        # bench/peers/gloo_perf (Gloo baseline)
  openmpi-bin libopenmpi-dev         # bench/peers/mpi_perf (Open MPI baseline)
  libibverbs-dev                     # ibverbs transport
  libhwloc-dev                       # topology/node (cores, NUMA nodes, NIC and GPU locality)
  iproute2 iperf3 gnuplot-nox        # scripts/vcluster.sh, bench/compare.sh
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
