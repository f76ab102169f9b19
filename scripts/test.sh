#!/usr/bin/env bash
# The test command: installs missing dependencies, builds everything, runs every test.
#   scripts/test.sh [ctest arguments...]      e.g. scripts/test.sh -R Attention
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
scripts/setup-interop.sh
scripts/build.sh
cd "${RINGTRAIN_BUILD_DIR:-build}"
ctest --output-on-failure -j"${RINGTRAIN_JOBS:-2}" "$@"
