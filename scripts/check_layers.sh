#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The layering check: each room (top-level source folder, one library target) includes only the
# rooms below it, so the dependency graph runs one way (docs/ARCHITECTURE.md "Layers"):
#
#   common → compression, transport → topology → collectives → api, net_plugin → tools
#
# Every #include "room/..." in a room's sources, and every library a room's CMakeLists.txt links
# (target_link_libraries naming a target another room's CMakeLists.txt adds), is checked against
# the rooms it may use; a violation names the file, the line and the rule, and the script exits 1.
# The public headers (include/gradpack, the generated gradpack/config.h and gradpack/version.h) may
# be included anywhere. Tests and benchmarks may include anything. Run by the build (target
# check_layers) and by ctest (layering_test).
#   scripts/check_layers.sh [SOURCE_DIR]
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}

# room: the rooms it may include besides itself.
declare -A allowed=(
  [common]=""
  [compression]="common"
  [transport]="common"
  [topology]="common compression transport"
  [collectives]="common compression transport topology"
  [api]="common compression transport topology collectives"
  [net_plugin]="common compression transport topology collectives"
  [tools]="common compression transport topology collectives api"
)
rooms="${!allowed[*]}"

violations=0
for room in $rooms; do
  [ -d "$root/$room" ] || { echo "check_layers: $root/$room is missing" >&2; exit 2; }
  while IFS= read -r hit; do
    file=${hit%%:*}
    rest=${hit#*:}
    line=${rest%%:*}
    [[ $rest =~ \"([^/\"]+)/ ]] || continue
    target=${BASH_REMATCH[1]}
    [ "$target" = "$room" ] && continue
    case " $rooms " in *" $target "*) ;; *) continue ;; esac  # gradpack/, system, tests/...
    case " ${allowed[$room]} " in
      *" $target "*) ;;
      *)
        echo "${file#"$root"/}:$line: $room includes $target/, a room above it" \
             "(allowed: ${allowed[$room]:-nothing})" >&2
        violations=$((violations + 1))
        ;;
    esac
  done < <(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"[^/"]+/' "$root/$room" \
             --include='*.h' --include='*.hpp' --include='*.cc' --include='*.cu' \
             --include='*.cuh' --include='*.inc' || true)
done
# Which room adds each library target (add_library in the room's CMakeLists.txt files).
declare -A room_of=()
for room in $rooms; do
  while IFS= read -r name; do
    room_of[$name]=$room
  done < <(find "$root/$room" -name CMakeLists.txt -exec grep -hoE 'add_library\([A-Za-z0-9_-]+' {} + |
             sed 's/add_library(//')
done
# Every token of a target_link_libraries(...) call (which may span lines) that names a library
# another room adds.
for room in $rooms; do
  while IFS= read -r -d '' cmakelists; do
    while IFS=: read -r line token; do
      target=${room_of[$token]:-}
      [ -n "$target" ] && [ "$target" != "$room" ] || continue
      case " ${allowed[$room]} " in
        *" $target "*) ;;
        *)
          echo "${cmakelists#"$root"/}:$line: $room links $token ($target), a room above it" \
               "(allowed: ${allowed[$room]:-nothing})" >&2
          violations=$((violations + 1))
          ;;
      esac
    done < <(awk '/target_link_libraries\(/ { on = 1 }
                  on { for (i = 1; i <= NF; i++) { t = $i; gsub(/[()]/, "", t); print NR ":" t } }
                  on && /\)/ { on = 0 }' "$cmakelists")
  done < <(find "$root/$room" -name CMakeLists.txt -print0)
done

if [ "$violations" -gt 0 ]; then
  echo "check_layers: $violations violation(s) of the layering" >&2
  exit 1
fi
echo "check_layers: ok ($(wc -w <<<"$rooms") rooms)"
