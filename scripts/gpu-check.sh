#!/usr/bin/env bash
# The GPU check, in one command on a GPU machine: builds ringtrain with the CUDA backend, runs
# every GPU test (each CUDA op against its CPU op, and training on the GPU against the CPU),
# the GPU benchmarks (attention and GLR kernels, PyTorch's SDPA as the attention baseline, fla's
# chunk_gla as the GLR baseline, a ~125M hybrid's tokens/s and MFU), and prints one summary.
# About 8 minutes on an H100.
#
# A machine with the Debian packages of scripts/setup-deps.sh builds with them. A machine with
# only the CUDA toolkit, a compiler and CMake (the device machines of this workplace) uses the
# packages scripts/gpu-deps.sh unpacked on a Debian machine beforehand:
#   here:  scripts/gpu-deps.sh
#   there: scripts/gpu-check.sh          (device run with carry [".gpu-deps/root.tar.xz",
#                                         ".gpu-deps/whl"]: the second is fla's wheel)
# Logs go to $OUT (when set, as on the device tool) or to build-gpu/check/.
set -uo pipefail
cd "$(dirname "$0")/.."
build=$(realpath -m "${RINGTRAIN_GPU_BUILD_DIR:-build-gpu}")
logs=$(realpath -m "${OUT:-$build/check}")
mkdir -p "$logs"
jobs=$(nproc)
start=$(date +%s)
summary=()
failures=0
note() { summary+=("$*"); echo "== $*"; }
failed() { failures=$((failures + 1)); note "FAILED: $*"; }
# The unpacked Debian libraries serve ringtrain and MPI only; python3 (PyTorch) and nvidia-smi
# keep the machine's own.
system_ld=${LD_LIBRARY_PATH:-}
system() { LD_LIBRARY_PATH=$system_ld "$@"; }
elapsed() { echo "$(($(date +%s) - start)) s"; }

command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH  # CMake looks for nvcc on PATH

# ---- dependencies ---------------------------------------------------------------------------
cmake_args=(-DCMAKE_BUILD_TYPE=Release -DRINGTRAIN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=${RINGTRAIN_CUDA_ARCH:-90})
if [ -e /usr/include/yaml-cpp/yaml.h ] && [ -z "${RINGTRAIN_GPU_DEPS:-}" ]; then
  note "dependencies: the system's Debian packages"
elif [ -f .gpu-deps/root.tar.xz ]; then
  deps=${RINGTRAIN_GPU_DEPS:-/tmp/ringtrain-gpu-deps}
  if [ ! -f "$deps/.unpacked" ]; then
    mkdir -p "$deps" && tar -C "$deps" -xJf .gpu-deps/root.tar.xz && touch "$deps/.unpacked"
  fi
  lib=$deps/usr/lib/x86_64-linux-gnu
  mkdir -p "$deps/bin"  # the names the Debian alternatives would give
  for tool in mpirun mpiexec mpicxx mpicc; do ln -sfn "$deps/usr/bin/$tool.openmpi" "$deps/bin/$tool"; done
  ln -sfn "$deps/usr/bin/pkgconf" "$deps/bin/pkg-config"
  export PATH=$deps/bin:$deps/usr/bin:$PATH
  export LD_LIBRARY_PATH=$lib:$lib/openmpi/lib:$lib/openblas-openmp:$lib/hdf5/serial:${LD_LIBRARY_PATH:-}
  export OPAL_PREFIX=$deps/usr  # OpenMPI finds its components and help files under its prefix
  export PMIX_INSTALL_PREFIX=$lib/pmix2 PMIX_MCA_pcompress_base_silence_warning=1
  export PKG_CONFIG_SYSROOT_DIR=$deps PKG_CONFIG_LIBDIR=$lib/pkgconfig:$lib/openblas-openmp/pkgconfig
  cmake_args+=(-DCMAKE_PREFIX_PATH="$deps/usr;$lib/cmake"
               -DPKG_CONFIG_EXECUTABLE="$deps/usr/bin/pkgconf"
               -DMPI_CXX_COMPILER="$deps/usr/bin/mpicxx.openmpi" -DMPIEXEC_EXECUTABLE="$deps/bin/mpirun"
               -DHDF5_C_COMPILER_EXECUTABLE=/nonexistent -DHDF5_ROOT="$lib/hdf5/serial"
               -DHDF5_C_INCLUDE_DIR="$deps/usr/include/hdf5/serial"
               -DHDF5_C_LIBRARY_hdf5="$lib/hdf5/serial/libhdf5.so")
  note "dependencies: unpacked Debian packages in $deps"
else
  echo "gpu-check: no yaml-cpp, HDF5, OpenMPI here and no .gpu-deps/root.tar.xz: run scripts/gpu-deps.sh on a Debian machine and carry .gpu-deps/root.tar.xz" >&2
  exit 2
fi
# NCCL: the CUDA toolkit's, else the pip wheel beside PyTorch (nvidia/nccl: include/, lib/).
if [ ! -e /usr/local/cuda/include/nccl.h ] && [ ! -e /usr/include/nccl.h ]; then
  nccl_root=$(system python3 -c 'import nvidia.nccl as n; print(list(n.__path__)[0])' 2>/dev/null) &&
    cmake_args+=(-DNCCL_ROOT="$nccl_root") && export LD_LIBRARY_PATH=$nccl_root/lib:${LD_LIBRARY_PATH:-}
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_plm_rsh_agent=false
note "host: $(uname -m), $(ldd --version 2>&1 | head -1), $(cmake --version | head -1), $(nvcc --version 2>&1 | tail -1)"
command -v nvidia-smi >/dev/null && system nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/gpu: /' | tee "$logs/gpu.txt"

# ---- build ----------------------------------------------------------------------------------
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if ! cmake -S . -B "$build" "${generator[@]}" "${cmake_args[@]}" >"$logs/configure.log" 2>&1; then
  tail -20 "$logs/configure.log"
  note "configure FAILED ($(elapsed)): $logs/configure.log"
  printf '%s\n' "${summary[@]}"
  exit 1
fi
if ! cmake --build "$build" -j"$jobs" >"$logs/build.log" 2>&1; then
  grep -E "error|Error" "$logs/build.log" | head -20
  note "build FAILED ($(elapsed)): $logs/build.log"
  printf '%s\n' "${summary[@]}"
  exit 1
fi
note "build with RINGTRAIN_CUDA=ON: ok ($(elapsed)); $("$build/ringtrain" --version); $(grep -o 'NCCL [A-Z]*' "$logs/configure.log" | head -1)"

# ---- GPU tests ------------------------------------------------------------------------------
(cd "$build" && ctest -R 'Cuda|NcclComm|gpu_comm|e2e_cuda' --output-on-failure -j4 >"$logs/gpu-tests.log" 2>&1) ||
  failed "GPU tests (see gpu-tests.log)"
note "GPU tests: $(grep -E 'tests passed|tests failed' "$logs/gpu-tests.log" | tail -1) ($(elapsed))"
grep -E '^\s+[0-9]+ - .*(Failed|Not Run|Timeout)' "$logs/gpu-tests.log" | head -20 | sed 's/^/   /'
grep -E '^cuda( sp=2 \([a-z]+\))?: largest' "$build"/Testing/Temporary/LastTest.log 2>/dev/null | sed 's/^/   /'

# ---- benchmarks -----------------------------------------------------------------------------
if "$build/ringtrain" --version | grep -q " 0 GPUs"; then
  note "no GPU visible: benchmarks skipped"
  printf '%s\n' "${summary[@]}" | tee "$logs/summary.txt"
  exit 1
fi
export RINGTRAIN_BENCH_DEVICE=cuda
"$build/bench/bench_attention" --benchmark_filter='Sgemm|ForwardBackward' --benchmark_min_time=0.2s \
  >"$logs/bench-attention.txt" 2>&1 || failed "bench_attention"
note "attention fwd+bwd, ringtrain f32 kernels (causal, H=8, D=64): $(elapsed)"
grep -E 'BM_' "$logs/bench-attention.txt" | sed 's/^/   /'
if system python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  system python3 bench/attention_torch.py >"$logs/attention-torch.txt" 2>&1 || failed "bench/attention_torch.py"
  note "attention fwd+bwd, PyTorch SDPA baseline: $(elapsed)"
  sed 's/^/   /' "$logs/attention-torch.txt"
else
  note "attention baseline: no PyTorch with CUDA here (bench/attention_torch.py skipped)"
fi
"$build/bench/bench_glr" --benchmark_filter='/(1024|4096|16384|65536)/' --benchmark_min_time=0.2s \
  >"$logs/bench-glr.txt" 2>&1 || failed "bench_glr"
note "GLR fwd+bwd, ringtrain kernels (GLA: 2 heads dk 64 dv 128; Mamba-2: 4 heads 64 x 64): $(elapsed)"
grep -E 'BM_' "$logs/bench-glr.txt" | sed 's/^/   /'
# fla's chunk_gla (Triton) as the GLA baseline: its wheel comes from scripts/gpu-deps.sh.
fla_site=/tmp/ringtrain-fla
if ls .gpu-deps/whl/fla_core-*.whl >/dev/null 2>&1 &&
   system python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
     --target "$fla_site" .gpu-deps/whl/fla_core-*.whl >"$logs/fla-install.txt" 2>&1; then
  PYTHONPATH=$fla_site system python3 bench/glr_fla.py >"$logs/glr-fla.txt" 2>&1 || failed "bench/glr_fla.py"
  note "GLA fwd+bwd, fla chunk_gla baseline: $(elapsed)"
  sed 's/^/   /' "$logs/glr-fla.txt"
else
  note "GLR baseline: no fla wheel in .gpu-deps/whl or no pip (bench/glr_fla.py skipped)"
fi
unset RINGTRAIN_BENCH_DEVICE

# ---- a ~125M hybrid on the GPU ----------------------------------------------------------------
data=$build/check-data
mkdir -p "$data"
[ -f "$data/train.h5" ] || "$build/ringtrain" data synth --task passkey --out "$data/train.h5" --docs 400 \
  --min-len 65536 --max-len 65536 --length-dist fixed >/dev/null
# bf16 (run.precision's default on cuda) from 8K to 64K tokens, and f32 at 8K beside it;
# RINGTRAIN_GPU_CHECK_RUNS="262144:bf16 ..." for longer ones (the dry run's estimate allows about
# 256K on an 80 GB H100, 512K on an H200).
for run in ${RINGTRAIN_GPU_CHECK_RUNS:-8192:bf16 8192:f32 32768:bf16 65536:bf16}; do
  len=${run%:*} precision=${run#*:}
  log="$logs/train-$len-$precision.log"
  "$build/ringtrain" train recipes/gpu-hybrid-125m.yaml --set data.corpus="$data/train.h5" \
    --set data.seq_len=$len --set train.tokens_per_step=$((2 * len > 16384 ? len : 16384)) \
    --set run.precision=$precision --set train.steps=6 --set schedule.warmup_steps=2 \
    --set run.out_dir="$data/run-$len-$precision" >"$log" 2>&1
  if grep -qE '^step +6/' "$log"; then
    note "125M hybrid at $len tokens, $precision GEMMs: $(grep -E '^step +6/' "$log") ($(elapsed))"
  else
    failed "125M hybrid at $len tokens, $precision GEMMs: $(tail -1 "$log")"
  fi
done
grep -E '^model:' "$logs/train-8192-bf16.log" | sed 's/^/   /'

echo
echo "==== gpu-check summary ($(elapsed), $failures failed) ===="
printf '%s\n' "${summary[@]}" | tee "$logs/summary.txt"
[ "$failures" -eq 0 ]
