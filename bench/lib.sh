# SPDX-License-Identifier: Apache-2.0
# What bench/compare.sh, compress.sh and collnet.sh share. Sourced from the repository root after
# `set -euo pipefail`, with `name` set to the script's name (the prefix of its messages).
# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154  # the variables are the sourcing script's; it sets name
root=$PWD
build=${BUILD_DIR:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
jobs=${JOBS:-2}
vcluster=$root/scripts/vcluster.sh

die() {
  echo "$name: $*" >&2
  exit 1
}
# The script's header comment, from line 2 to `set -euo`, is its usage text.
usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  exit "${1:-2}"
}

# Configures $build (Release, tools on, and the -D options given) unless it is configured already.
configure_build() {
  [ -f "$build/CMakeCache.txt" ] && return 0
  local generator=() log="${TMPDIR:-/tmp}/$name-cmake.$$.log"
  if command -v ninja >/dev/null; then generator=(-G Ninja); fi
  echo "$name: configuring $build"
  cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DGRADPACK_BUILD_TOOLS=ON "$@" >"$log" || { cat "$log"; die "cmake failed"; }
  rm -f "$log"
}

# Everything a script starts in the background is stopped by PID at exit (pids+=(PID)), the
# vcluster it brought up is taken down (made_vcluster=1), and its scratch directories are removed
# (scratch+=(DIR)). install_cleanup arms it.
pids=()
made_vcluster=0
scratch=()
cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$made_vcluster" = 1 ]; then "$vcluster" down || true; fi
  if [ "${#scratch[@]}" -gt 0 ]; then rm -rf "${scratch[@]}"; fi
  exit "$rc"
}
install_cleanup() {
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
