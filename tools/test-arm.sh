#!/usr/bin/env bash
# The runtime's own tests (unit, reference cross-checks, kernel property tests, corrupt input) on
# 32-bit ARM Linux in Thumb-2 mode (thumbv7neon-unknown-linux-gnueabihf), run under qemu-arm.
# That target has the DSP instructions (SMLAD, SXTB16), so the int8 kernels the Cortex-M4
# firmware uses run here against the portable reference, bit for bit, with proptest's full input
# range; the firmware itself only runs whole models.
#
# Usage: tools/test-arm.sh [extra cargo test arguments]
# Installs what it needs when missing (idempotent): the rustup target, Debian's
# gcc-arm-linux-gnueabihf, libc6-dev-armhf-cross and qemu-user-static.
set -euo pipefail
cd "$(dirname "$0")/.."

target=thumbv7neon-unknown-linux-gnueabihf
tools/need-debs gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user-static
rustup target list --installed | grep -qx "$target" || rustup target add "$target"

export CARGO_TARGET_THUMBV7NEON_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
export CARGO_TARGET_THUMBV7NEON_UNKNOWN_LINUX_GNUEABIHF_RUSTFLAGS="-C target-feature=+crt-static"
export CARGO_TARGET_THUMBV7NEON_UNKNOWN_LINUX_GNUEABIHF_RUNNER="qemu-arm-static -L /usr/arm-linux-gnueabihf"
exec cargo test -p tinygpt-runtime --features std,int4 --target "$target" "$@"
