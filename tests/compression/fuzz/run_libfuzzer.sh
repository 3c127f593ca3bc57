#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# A time-boxed libFuzzer run of decode_fuzzer (ctest: fuzz_libfuzzer).
#
# usage: run_libfuzzer.sh SOURCE_DIR FUZZ_BUILD_DIR FUZZ_MAKE_CORPUS
#
# Configures a clang build of SOURCE_DIR in FUZZ_BUILD_DIR with the whole build instrumented
# (libFuzzer coverage, AddressSanitizer, UndefinedBehaviorSanitizer), builds only decode_fuzzer,
# seeds a copy of the corpus from FUZZ_MAKE_CORPUS and fuzzes for GRADPACK_FUZZ_SECONDS
# (default 60) with -max_len=65536. Exits 0 when nothing was found, non-zero on a crash (the
# input is left in FUZZ_BUILD_DIR/artifacts/), 77 (skip) when clang or libFuzzer is missing.
# CMAKE_BUILD_PARALLEL_LEVEL limits the build's jobs.
set -u

if [ $# -ne 3 ]; then
  echo "usage: $0 SOURCE_DIR FUZZ_BUILD_DIR FUZZ_MAKE_CORPUS" >&2
  exit 2
fi
src=$1
build=$2
make_corpus=$3
seconds=${GRADPACK_FUZZ_SECONDS:-60}
case $seconds in
  ''|*[!0-9]*) echo "run_libfuzzer.sh: GRADPACK_FUZZ_SECONDS=$seconds is not a whole number of seconds" >&2; exit 2 ;;
esac

skip() {
  echo "SKIP: $*"
  exit 77
}

command -v clang >/dev/null 2>&1 || skip "clang is not installed (Debian: apt-get install clang)"
command -v clang++ >/dev/null 2>&1 || skip "clang++ is not installed (Debian: apt-get install clang)"

# libFuzzer and the sanitizer runtimes come with compiler-rt (Debian: libclang-rt-14-dev).
probe=$(mktemp -d) || exit 1
trap 'rm -rf "$probe"' EXIT
cat > "$probe/probe.cc" <<'PROBE'
#include <cstddef>
#include <cstdint>
extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }
PROBE
if ! clang++ -fsanitize=fuzzer,address,undefined "$probe/probe.cc" -o "$probe/probe" \
    >"$probe/log" 2>&1; then
  skip "clang++ cannot link -fsanitize=fuzzer,address,undefined (libFuzzer is in" \
       "libclang-rt-14-dev): $(head -n 3 "$probe/log")"
fi

generator="Unix Makefiles"
command -v ninja >/dev/null 2>&1 && generator=Ninja
# The whole build is instrumented, so the fuzzer sees coverage of the decoder, not only of its
# own file. -Wno-unknown-warning-option: the project's warning set is written for gcc.
instrument="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -Wno-unknown-warning-option"

echo "== configuring the clang fuzz build in $build"
mkdir -p "$build" || exit 1
cmake -S "$src" -B "$build" -G "$generator" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang \
  "-DCMAKE_CXX_FLAGS=$instrument" "-DCMAKE_C_FLAGS=$instrument" \
  -DGRADPACK_FUZZ=ON -DGRADPACK_WITH_CUDA=OFF -DGRADPACK_BUILD_TESTS=ON \
  -DGRADPACK_BUILD_BENCH=OFF >"$build/configure.log" 2>&1 || {
  cat "$build/configure.log"
  echo "run_libfuzzer.sh: configuring the clang build failed" >&2
  exit 1
}

echo "== building decode_fuzzer"
cmake --build "$build" --target decode_fuzzer || {
  echo "run_libfuzzer.sh: building decode_fuzzer with clang failed" >&2
  exit 1
}
fuzzer=$build/tests/compression/fuzz/decode_fuzzer
[ -x "$fuzzer" ] || { echo "run_libfuzzer.sh: $fuzzer was not built" >&2; exit 1; }

echo "== seeding"
seeds=$build/fuzz-seeds
corpus=$build/fuzz-corpus
artifacts=$build/artifacts
"$make_corpus" "$seeds" || { echo "run_libfuzzer.sh: fuzz_make_corpus failed" >&2; exit 1; }
rm -rf "$corpus"
mkdir -p "$corpus" "$artifacts"
cp "$seeds"/* "$corpus"/ 2>/dev/null

echo "== fuzzing for ${seconds}s"
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1} \
"$fuzzer" -max_len=65536 -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 \
  -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus"
rc=$?
if [ $rc -ne 0 ]; then
  echo "run_libfuzzer.sh: decode_fuzzer failed (exit $rc); inputs that crash are in $artifacts/:"
  ls -l "$artifacts"
  echo "reproduce with: $fuzzer <artifact>   (or decode_fuzz_replay --mutations 0 <artifact>)"
  exit 1
fi
echo "run_libfuzzer.sh: ${seconds}s of fuzzing found nothing"
