#!/usr/bin/env bash
# The whole test suite under AddressSanitizer + UndefinedBehaviorSanitizer:
#   scripts/sanitize.sh [ctest arguments...]
# Builds into build-asan/ (or $RINGTRAIN_ASAN_BUILD_DIR) with -DRINGTRAIN_SANITIZE=ON (the
# default compiler, the CUDA backend off: its kernels cannot be instrumented and the GPU tests
# skip here anyway) and runs ctest. A sanitizer report fails its test (UBSan stops at the first
# error). Leaks inside OpenMPI and OpenBLAS are suppressed by scripts/lsan.supp, nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${RINGTRAIN_ASAN_BUILD_DIR:-build-asan}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRINGTRAIN_SANITIZE=ON -DRINGTRAIN_CUDA=OFF \
  -DRINGTRAIN_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j"${RINGTRAIN_JOBS:-2}" >"$build/sanitize-build.log" 2>&1 ||
  { grep -E "error" "$build/sanitize-build.log" | head -20; exit 1; }
# halt_on_error: a report ends the process with a failing exit code, so the test fails.
# fast_unwind_on_malloc=0: the frame-pointer unwinder stops at the first frame of a library built
# without frame pointers (OpenMPI's plugins), leaving '<unknown module>' stacks that no
# suppression can name; the DWARF unwinder records the whole stack, library names included.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=0:fast_unwind_on_malloc=0}
export LSAN_OPTIONS=suppressions=$PWD/scripts/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# OpenMPI unloads its plugins at MPI_Finalize, and their leaks then show '<unknown module>'
# frames that no suppression can name: keep them loaded so that the library names appear.
export OMPI_MCA_mca_base_component_disable_dlclose=1
# RINGTRAIN_SANITIZE_LEAKS=0 runs the suite with ASan + UBSan and leak detection off.
if [ "${RINGTRAIN_SANITIZE_LEAKS:-1}" = 0 ]; then ASAN_OPTIONS=${ASAN_OPTIONS/detect_leaks=1/detect_leaks=0}; fi
cd "$build"
ctest --output-on-failure -j"${RINGTRAIN_JOBS:-2}" --timeout 900 "$@"
