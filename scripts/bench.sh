#!/usr/bin/env bash
# The main job: builds and installs gradpack into ./out/install, then measures the codecs against
# memcpy in one run (gradpack-codec's table, then the Google Benchmark codec_bench).
# Until the collectives exist (issue 3), this codec comparison is gradpack's main benchmark.
#   BENCH_ARGS: extra flags for codec_bench (e.g. --benchmark_filter=16MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"
cmake --install build --prefix out/install >/dev/null
echo "== installed into $(pwd)/out/install"
export LD_LIBRARY_PATH="$(pwd)/out/install/lib:${LD_LIBRARY_PATH:-}"
echo "== gradpack-codec: wire ratio, error and speed vs memcpy (64 Mi fp32 gradient-like values)"
out/install/bin/gradpack-codec --synthetic 64M --dist gradient \
  --spec fp16 --spec bf16 --spec q8 --spec q4 --spec q2 --spec topk:0.01 --spec topk:0.01+q8
echo "== codec_bench: single thread, error feedback on, ratios vs memcpy of the same buffer"
# shellcheck disable=SC2086
build/bench/codec_bench ${BENCH_ARGS:-}
