#!/usr/bin/env bash
# Prepares, on this machine (Debian, with its package registry), what scripts/gpu-check.sh
# needs on a GPU machine that has the CUDA toolkit, a compiler and CMake but none of the Debian
# packages: the -dev packages ringtrain builds with and the libraries they load, downloaded
# with apt-get and unpacked (dpkg -x) into .gpu-deps/root. Base libraries every Linux image
# has (glibc, libstdc++, zlib, OpenSSL, PAM...) are left out, and so are static libraries,
# hwloc's optional plugins (X11, libxml2, ICU) and Fortran modules, to stay well inside the
# device tool's 64 MiB: the tree travels as .gpu-deps/root.tar.xz (about 20 MB). Idempotent.
# It also fetches fla-core's wheel (flash-linear-attention's Triton kernels, pure Python; the GPU
# machines have PyTorch and Triton) into .gpu-deps/whl for the GLA baseline, bench/glr_fla.py.
#   scripts/gpu-deps.sh    then: device run with carry [".gpu-deps/root.tar.xz", ".gpu-deps/whl"]
set -euo pipefail
cd "$(dirname "$0")/.."
out=.gpu-deps
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qx '/.gpu-deps/' "$exclude" 2>/dev/null || echo '/.gpu-deps/' >>"$exclude"

# Built against: headers, CMake/pkg-config files, link-time libraries.
dev=(libyaml-cpp-dev nlohmann-json3-dev libhdf5-dev libopenmpi-dev libopenblas-openmp-dev libopenblas-dev
     libgtest-dev libbenchmark-dev pkgconf pkgconf-bin libpkgconf3 hdf5-helpers)
# Loaded at run time: their recursive Depends, without what any base image has.
runtime=(libhdf5-103-1 libhdf5-hl-100 libopenmpi3 openmpi-bin openmpi-common libopenblas0-openmp
         libyaml-cpp0.7 libbenchmark1debian)
base='^(adduser|cdebconf|debconf|dpkg|gcc-.*-base|install-info|libc6|libgcc-s1|libstdc\+\+6|libpam.*|libselinux1|libsemanage.*|libsepol2|passwd|tar|openssh-client|readline-common|libreadline8|libtinfo6|libnewt0.52|libslang2|libtextwrap1|libdebian-installer4|libaudit.*|libcap-ng0|libdb5.3|libcrypt1|zlib1g|libuuid1|libbz2-1.0|liblzma5|libzstd1|libpcre2-8-0|libmd0|libbsd0|libffi8|libgmp10|libssl3|libudev1|libgomp1|libatomic1|libhwloc-plugins|libxml2|libicu.*|libx11-.*|libxcb.*|libxau6|libxdmcp6|libxext6|libxnvctrl0|ocl-icd-libopencl1|libpciaccess0)$'
closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
            --no-replaces --no-enhances --no-pre-depends "${runtime[@]}" | grep '^\w' | sort -u |
          grep -Ev "$base")
packages=$(printf '%s\n' "${dev[@]}" $closure | sort -u)

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$out/debs"
(cd "$out/debs" && for p in $packages; do
   ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download -q "$p" >/dev/null 2>&1 ||
     { apt-get update -q >/dev/null && apt-get download -q "$p" >/dev/null; }
 done)
for p in $packages; do dpkg -x "$(ls "$out"/debs/"${p}"_*.deb | head -1)" "$root"; done
# Absolute symlinks become relative ones, so the tree works wherever it is unpacked.
find "$root" -type l -lname '/*' | while read -r link; do
  ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$root$(readlink "$link")")" "$link"
done
# What neither the build nor the run reads; static libraries except the test frameworks'.
rm -rf "$root"/usr/share/{doc,man,locale,lintian} "$root"/usr/lib/x86_64-linux-gnu/fortran
find "$root" -name '*.a' ! -name 'libgtest*' ! -name 'libgmock*' ! -name 'libbenchmark*' -delete
find "$root" -name 'liblapack*' -delete
tar -C "$root" -cJf "$out/root.tar.xz" .
echo "gpu-deps: $(echo "$packages" | wc -w) packages, $(du -sh "$root" | cut -f1) unpacked, $(du -h "$out/root.tar.xz" | cut -f1) as $out/root.tar.xz"
mkdir -p "$out/whl"
ls "$out"/whl/fla_core-*.whl >/dev/null 2>&1 ||
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$out/whl" "fla-core==0.6.0" ||
  echo "gpu-deps: no fla-core wheel (pip download failed): gpu-check will skip the GLA baseline" >&2
echo "gpu-deps: carry [\"$out/root.tar.xz\", \"$out/whl\"] to the GPU machine"
