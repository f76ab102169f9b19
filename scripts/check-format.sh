#!/usr/bin/env bash
# Fails (exit 1) when a tracked C++ or CUDA file differs from what clang-format makes of it
# (.clang-format at the root; clang-format 14, Debian 12's). Lists the files and the command
# that fixes them.
#   scripts/check-format.sh          check
#   scripts/check-format.sh --fix    format them in place
set -euo pipefail
cd "$(dirname "$0")/.."
fmt=$(command -v clang-format-14 || command -v clang-format || true)
if [ -z "$fmt" ]; then
  echo "check-format: clang-format not found; install it (apt-get install clang-format)" >&2
  exit 1
fi
version=$("$fmt" --version | sed -E 's/.*version ([0-9]+).*/\1/')
[ "$version" = 14 ] || echo "check-format: warning: $fmt is version $version; the tree is formatted with 14" >&2

mapfile -t files < <(git ls-files '*.h' '*.cpp' '*.cu' '*.cuh')
if [ "${1:-}" = --fix ]; then
  "$fmt" -i "${files[@]}"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  "$fmt" --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
  echo "check-format: ${#bad[@]} file(s) not formatted: ${bad[*]}" >&2
  echo "check-format: run scripts/check-format.sh --fix" >&2
  exit 1
fi
echo "check-format: ${#files[@]} files formatted"
