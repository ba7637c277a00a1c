#!/bin/sh
# The int8 tests on an emulated AVX2 CPU without VNNI or AVX-512, where ONNX Runtime's u8×s8
# kernel saturates on 8-bit weights (src/engine/int8-mode.ts): what `npm test` checks on such a
# CPU, from any x86-64 machine. Needs QEMU's user-mode emulator (Debian/Ubuntu: qemu-user); not
# part of `npm test`. QEMU_CPU picks another model (`qemu-x86_64 -cpu help`).
set -eu
cd "$(dirname "$0")/.."
if ! command -v qemu-x86_64 >/dev/null; then
  echo "qemu-x86_64 not found: install QEMU's user-mode emulator (apt-get install qemu-user)" >&2
  exit 2
fi
# Haswell without the features QEMU's TCG cannot emulate, so it runs without warnings.
cpu="${QEMU_CPU:-Haswell,-pcid,-x2apic,-tsc-deadline,-hle,-invpcid,-rtm}"
node="$(command -v node)"
status=0
# Each file runs in one emulated process: tap would start its test processes natively.
for file in test/engine/int8-mode.test.ts test/engine/int8.test.ts; do
  echo "# $file on -cpu $cpu"
  # Emulation runs some tens of times slower than the CPU itself: no timeout of tap's.
  TAP_TIMEOUT=0 qemu-x86_64 -cpu "$cpu" "$node" --import tsx "$file" || status=1
done
exit $status
