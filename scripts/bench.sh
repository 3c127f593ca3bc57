#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The main job: builds gradpack (and the Gloo and Open MPI peers), installs it into ./out/install,
# then runs the local multi-rank comparison: gradpack-perf, Gloo and MPI_Allreduce back to back on
# this machine, side by side per size with ratios (bench/compare.sh local; results and a PNG plot
# in bench/out/).
#   bash scripts/bench.sh [-n RANKS] [compare.sh options...]    e.g. -b 1M -e 64M -f 4
# The namespaced-cluster runs (shaped links, iperf3) are `bench/compare.sh vcluster|iperf3`
# (docs/benchmarks.md); the codec benchmarks are in docs/codecs.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"
cmake --install build --prefix out/install >/dev/null
echo "== installed into $(pwd)/out/install"
if [ $# -eq 0 ]; then set -- -n 4; fi
BUILD_DIR=build exec bench/compare.sh local "$@"
