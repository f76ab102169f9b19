#!/usr/bin/env bash
# Configures and builds into build/ (or $RINGTRAIN_BUILD_DIR). Extra arguments are CMake targets.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${RINGTRAIN_BUILD_DIR:-build}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release ${RINGTRAIN_CMAKE_ARGS:-} >/dev/null
if [ $# -gt 0 ]; then
  cmake --build "$build_dir" -j"${RINGTRAIN_JOBS:-2}" --target "$@"
else
  cmake --build "$build_dir" -j"${RINGTRAIN_JOBS:-2}"
fi
