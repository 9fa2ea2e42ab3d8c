#!/usr/bin/env bash
# Cross-compiles cpp/tests for aarch64 and runs them under qemu-user twice: cortex-a53 (NEON,
# no dotprod) and max (dotprod + i8mm), checking that dispatch picked the expected path each time
# and that every kernel matches its reference. Non-zero exit on any mismatch.
set -euo pipefail
cd "$(dirname "$0")/.."
build=build-aarch64
cmake -S . -B "$build" -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-toolchain.cmake \
  -DCMAKE_BUILD_TYPE=Release -DEDGEPACK_BUILD_PYTHON=OFF -DEDGEPACK_BUILD_TESTS=ON >/dev/null
cmake --build "$build"
run() {
  local cpu=$1 isa=$2
  echo "--- qemu-aarch64 -cpu $cpu (expect $isa)"
  qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu "$cpu" "$build/edgepack_tests" --expect-isa "$isa"
}
run cortex-a53 neon
run max i8mm
# The middle rung (dotprod without i8mm) is forced through EDGEPACK_ISA on the max CPU.
echo "--- qemu-aarch64 -cpu max, EDGEPACK_ISA=neondot"
QEMU_SET_ENV=EDGEPACK_ISA=neondot qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu max \
  "$build/edgepack_tests" --expect-isa neondot
echo "aarch64 tests passed"
