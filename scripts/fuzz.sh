#!/usr/bin/env bash
# Fuzzes the readers with libFuzzer under ASan + UBSan (clang): the recipe (YAML and --set),
# one JSONL line, corpus and checkpoint HDF5 files, `op` inputs (tests/fuzz/).
#   scripts/fuzz.sh [RUNS] [HARNESS...]     RUNS executions per harness (default 100000)
# Builds into build-fuzz/ (or $RINGTRAIN_FUZZ_BUILD_DIR) with clang-14, starts each harness from
# its seed corpus (tests/fuzz/corpus/<harness>, copied: what libFuzzer adds stays in
# build-fuzz/corpus/<harness>) and the regression inputs, and prints executions, time and
# result per harness. A crash leaves crash-* in build-fuzz/artifacts/<harness>/: add it to
# tests/fuzz/regressions/<harness>/ with the fix. Needs clang-14 and libclang-rt-14-dev.
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-100000}
shift || true
harnesses=("$@")
[ ${#harnesses[@]} -eq 0 ] && harnesses=(recipe jsonl corpus checkpoint op)
build=${RINGTRAIN_FUZZ_BUILD_DIR:-build-fuzz}
cxx=${CXX_FUZZ:-clang++-14}
cc=${CC_FUZZ:-clang-14}
command -v "$cxx" >/dev/null || { echo "fuzz: $cxx not found (apt-get install clang-14 libclang-rt-14-dev)" >&2; exit 2; }
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_C_COMPILER="$cc" \
  -DRINGTRAIN_FUZZ=ON -DRINGTRAIN_CUDA=OFF -DRINGTRAIN_BUILD_BENCH=OFF -DRINGTRAIN_NATIVE=OFF >/dev/null || exit 1
cmake --build "$build" -j"${RINGTRAIN_JOBS:-2}" --target "${harnesses[@]/#/fuzz_}" >"$build/fuzz-build.log" 2>&1 ||
  { tail -30 "$build/fuzz-build.log"; exit 1; }
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export LSAN_OPTIONS=suppressions=$PWD/scripts/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export OMP_NUM_THREADS=1
failures=0
for h in "${harnesses[@]}"; do
  work=$build/corpus/$h
  artifacts=$build/artifacts/$h
  mkdir -p "$work" "$artifacts"
  cp -n tests/fuzz/corpus/"$h"/* "$work"/ 2>/dev/null
  [ -d tests/fuzz/regressions/"$h" ] && cp -n tests/fuzz/regressions/"$h"/* "$work"/ 2>/dev/null
  start=$(date +%s)
  "$build/tests/fuzz/fuzz_$h" -runs="$runs" -max_len=4096 -timeout=10 -rss_limit_mb=4096 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 "$work" >"$build/fuzz-$h.log" 2>&1
  rc=$?
  secs=$(($(date +%s) - start))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$build/fuzz-$h.log" | grep -o '[0-9]*$')
  crashes=$(ls "$artifacts" | wc -l)
  echo "fuzz_$h: ${execs:-?} executions in ${secs} s, exit $rc, ${crashes} artifacts ($build/fuzz-$h.log)"
  [ "$rc" -eq 0 ] && [ "$crashes" -eq 0 ] || failures=$((failures + 1))
done
echo "fuzz: ${#harnesses[@]} harnesses, $failures failed"
[ "$failures" -eq 0 ]
