#!/usr/bin/env bash
# The embedded default: builds ringtrain, makes a corpus from the text this repository ships
# (its documentation and source code; nothing is downloaded), trains recipes/tiny.yaml on the
# CPU for a minute or two, and draws the loss curve.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
scripts/build.sh ringtrain
bin=${RINGTRAIN_BUILD_DIR:-build}/ringtrain

mkdir -p runs/demo
git ls-files '*.md' '*.h' '*.cpp' '*.cu' '*.yaml' '*.sh' '*.py' 'CMakeLists.txt' 2>/dev/null >runs/demo/files.txt ||
  find README.md kernels parallel model data trainer recipes scripts -type f >runs/demo/files.txt
xargs "$bin" data import --out runs/demo/corpus.h5 <runs/demo/files.txt

rm -rf runs/tiny
"$bin" train recipes/tiny.yaml "$@"

if /usr/bin/python3 -c "import matplotlib" 2>/dev/null; then
  /usr/bin/python3 scripts/plot_metrics.py runs/tiny/metrics.jsonl runs/tiny/metrics.png
fi
echo "demo: checkpoints in runs/tiny/checkpoints, metrics in runs/tiny/metrics.jsonl (plot: runs/tiny/metrics.png)"
