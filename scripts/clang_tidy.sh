#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs clang-tidy (the checks in .clang-tidy) over every non-test .cc of gradpack.
#
#   scripts/clang_tidy.sh [BUILD_DIR]     (default: build)
#
# The files and their flags come from BUILD_DIR/compile_commands.json (CMake writes it; the build
# need not be finished, but generated headers such as BUILD_DIR/gradpack/config.h must exist).
# Left out:
#   - tests/: gtest's macros trip many checks, and the tests are not held to clang-tidy.
#   - CUDA .cu files: clang-tidy 14 cannot parse them with nvcc's flags (and knows no CUDA 13).
# Headers are checked from the .cc files that include them when they are under one of the
# repository's source folders (never the build directory's generated headers); a header's finding
# is printed once.
#
# Prints each finding as `file:line: check: message`, then one line with the count and the wall
# time, and exits 1 if there is any finding (a file clang-tidy cannot compile is a finding too), 2
# on a usage error. Runs `nproc` clang-tidy processes at a time.
#
# Cache: the static analyzer makes a cold run take minutes (about 7 CPU-seconds a file), so each
# file's result is kept under the key of everything it depends on: clang-tidy's version, its
# configuration, this script's flags and the file preprocessed with its own compile command (every
# header it includes, system ones too). A rerun analyzes only the files whose key changed.
# Environment: CLANG_TIDY names the binary (default clang-tidy); CLANG_TIDY_CACHE the cache folder
# (default BUILD_DIR/clang-tidy-cache; empty: no cache).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
build="${1:-build}"
[[ "$build" = /* ]] || build="$PWD/$build"
clang_tidy="${CLANG_TIDY:-clang-tidy}"
cache="${CLANG_TIDY_CACHE-$build/clang-tidy-cache}"
if [ ! -f "$build/compile_commands.json" ]; then
  echo "clang_tidy.sh: no $build/compile_commands.json (configure with cmake first)" >&2
  exit 2
fi
if ! command -v "$clang_tidy" >/dev/null; then
  echo "clang_tidy.sh: $clang_tidy not found (scripts/setup.sh installs clang-tidy)" >&2
  exit 2
fi
start_ms=$(($(date +%s%N) / 1000000))

# One line per translation unit to check: file, its directory, and the shell-quoted command that
# preprocesses it (the compile command with -E instead of -c and without its outputs).
jobs="$(/usr/bin/python3 - "$build/compile_commands.json" "$root" "$build" <<'EOF'
import json, os, shlex, sys
db, root, build = sys.argv[1], os.path.realpath(sys.argv[2]), os.path.realpath(sys.argv[3])
jobs = {}
for entry in json.load(open(db)):
    directory = entry.get('directory', '.')
    path = os.path.realpath(os.path.join(directory, entry['file']))
    rel = os.path.relpath(path, root)
    if (rel.startswith('..') or path.startswith(build + os.sep) or rel.startswith('tests/')
            or not rel.endswith('.cc')):
        continue
    args = entry['arguments'] if 'arguments' in entry else shlex.split(entry['command'])
    pp, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in ('-o', '-MF', '-MT', '-MQ'):
            skip = True
        elif a not in ('-c', '-MD', '-MMD'):
            pp.append(a)
    pp.insert(1, '-E')
    jobs[path] = '\t'.join([path, directory, shlex.join(pp)])
print('\n'.join(jobs[p] for p in sorted(jobs)))
EOF
)"
nfiles=$(printf '%s\n' "$jobs" | grep -c . || true)
if [ "$nfiles" -eq 0 ]; then
  echo "clang_tidy.sh: no source files in $build/compile_commands.json" >&2
  exit 2
fi

# Headers: only the repository's own source folders. This is .clang-tidy's HeaderFilterRegex
# anchored at this checkout, so a build directory inside it is not matched.
root_re="$(printf '%s' "$root" | sed 's/[][\.*^$+?(){}|]/\\&/g')"
header_filter="^$root_re/(common|compression|transport|topology|collectives|api|net_plugin|include|tools|bench)/"
# GCC's warning flags that clang does not know are not findings.
extra_arg="-Wno-unknown-warning-option"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
[ -z "$cache" ] || mkdir -p "$cache"
# What every result depends on besides the file itself (the effective configuration, so editing a
# comment of .clang-tidy keeps the cache).
{
  "$clang_tidy" --version
  (cd "$root" && "$clang_tidy" --dump-config)
  printf '%s\n' "$header_filter" "$extra_arg"
} >"$out/tool.id"

# Checks one file into $out/<name>.log, from the cache when its key is there. clang-tidy's own exit
# status is kept as a line of the log, so xargs does not stop at the first file with findings.
check_one() {
  local file dir pp name key log
  IFS=$'\t' read -r file dir pp <<<"$1"
  name="$(printf '%s' "${file#"$root"/}" | tr / _)"
  log="$out/$name.log"
  if [ -n "$cache" ]; then
    key="$({ cat "$out/tool.id"; echo "$pp"; (cd "$dir" && eval "$pp" 2>&1) || true; } | sha256sum | cut -c1-40)"
    if [ -f "$cache/$name.$key" ]; then
      cp "$cache/$name.$key" "$log"
      return 0
    fi
  fi
  "$clang_tidy" -p "$build" --quiet --header-filter="$header_filter" --extra-arg="$extra_arg" \
    "$file" >"$log" 2>&1 || echo "clang_tidy.sh: exit $? on $file" >>"$log"
  # A failed run (a compile error, or a crash that may not happen again) is not kept.
  if [ -n "$cache" ] && ! grep -q '^clang_tidy.sh: exit ' "$log"; then
    rm -f "$cache/$name".*
    cp "$log" "$cache/$name.$key.tmp" && mv "$cache/$name.$key.tmp" "$cache/$name.$key"
  fi
}
export -f check_one
export root build out cache clang_tidy header_filter extra_arg
printf '%s\n' "$jobs" | xargs -d '\n' -P "$(nproc)" -n 1 bash -c 'check_one "$1"' _

# `/abs/file:line:col: warning|error: message [check]` -> `file:line: check: message`, sorted,
# each once (a header's finding comes from every file that includes it). A clang-tidy that failed
# without a finding (a crash, a bad flag) is a finding too.
findings="$(/usr/bin/python3 - "$root" "$out" <<'EOF'
import glob, re, sys
root = sys.argv[1].rstrip("/") + "/"
pat = re.compile(r"^(/[^:]+):(\d+):\d+: (?:warning|error): (.*) \[([^\]]+)\]$")
found = set()
for log in glob.glob(sys.argv[2] + "/*.log"):
    lines = open(log, errors="replace").read().splitlines()
    matches = [m.groups() for m in map(pat.match, lines) if m]
    for path, lineno, msg, check in matches:
        check = check.replace(",-warnings-as-errors", "")
        found.add((path[len(root):] if path.startswith(root) else path, int(lineno), check, msg))
    for line in lines:
        if line.startswith("clang_tidy.sh: exit ") and not matches:
            status, _, path = line[len("clang_tidy.sh: exit "):].partition(" on ")
            found.add((path[len(root):], 0, "clang-tidy", f"exit status {status}, no diagnostic"))
for rel, lineno, check, msg in sorted(found):
    print(f"{rel}:{lineno}: {check}: {msg}")
EOF
)"
elapsed_ms=$(($(date +%s%N) / 1000000 - start_ms))
elapsed="$((elapsed_ms / 1000)).$((elapsed_ms % 1000 / 100))s"

count=0
if [ -n "$findings" ]; then
  printf '%s\n' "$findings"
  count=$(printf '%s\n' "$findings" | wc -l)
fi
echo "clang_tidy.sh: $count findings in $nfiles files, $elapsed on $(nproc) jobs"
[ "$count" -eq 0 ]
