#!/usr/bin/env bash
# Builds the static `tinygpt` binaries:
#   x86_64-unknown-linux-musl     static, stripped
#   aarch64-unknown-linux-musl    static, stripped, linked with rust-lld
#   armv7-unknown-linux-gnueabihf static (crt-static) glibc, stripped, linked with arm-linux-gnueabihf-gcc
# Installs missing rustup targets and Debian packages first (idempotent), then prints the sizes.
#
# Usage: tools/build-static.sh [TARGET...]     (default: all three)
# The binaries end up in $CARGO_TARGET_DIR (default target/)/<triple>/<profile>/tinygpt.
# The binary is the `no_std` build (`--features tiny`: the C library's entry point, files and
# clocks, no std, hand-written argument parsing), linked static and not position-independent.
# BUILD_PROFILE picks the cargo profile: release (default: opt-level 3, fat LTO) or release-small
# (opt-level "s", for the smallest binary, at about half the speed).
# Fails when the x86_64 release binary is larger than MAX_X86_64_BYTES (default 614,400, 600 KiB).
set -euo pipefail

cd "$(dirname "$0")/.."
ALL_TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf)
if [ "$#" -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi

# --- prerequisites --------------------------------------------------------------------------
need_pkgs=()
for t in "${TARGETS[@]}"; do
  case "$t" in
    x86_64-unknown-linux-musl) ;;            # rustup ships musl's crt and libc for this target
    aarch64-unknown-linux-musl) ;;           # self-contained musl + rust-lld
    armv7-unknown-linux-gnueabihf) need_pkgs+=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross) ;;
    *) echo "error: unsupported target '$t' (supported: ${ALL_TARGETS[*]})" >&2; exit 2 ;;
  esac
done
tools/need-debs "${need_pkgs[@]}"
installed_targets="$(rustup target list --installed)"
for t in "${TARGETS[@]}"; do
  grep -qx "$t" <<<"$installed_targets" || rustup target add "$t"
done

# --- cross configuration (environment only; .cargo/config.toml stays untouched) ---------------
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
# Static and not position-independent: no dynamic relocations to carry (about 20 KB on x86_64);
# the price is a fixed load address.
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static"
# No .eh_frame_hdr on x86_64 either: with panic = "abort" nothing unwinds, so nothing looks it up.
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static -C link-arg=-Wl,--no-eh-frame-hdr"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static"
# The workspace's profile (panic=abort, fat LTO), plus stripped symbols.
profile="${BUILD_PROFILE:-release}"
case "$profile" in
  release) export CARGO_PROFILE_RELEASE_STRIP=symbols ;;
  release-small) export CARGO_PROFILE_RELEASE_SMALL_STRIP=symbols ;;
  *) echo "error: BUILD_PROFILE must be release or release-small, not '$profile'" >&2; exit 2 ;;
esac

target_dir="${CARGO_TARGET_DIR:-target}"
for t in "${TARGETS[@]}"; do
  echo "building tinygpt for $t" >&2
  cargo build --profile "$profile" -p tinygpt --bin tinygpt --features tiny --target "$t"
done

# --- report -------------------------------------------------------------------------------------
printf '%-32s %10s  %s\n' target bytes linkage
for t in "${TARGETS[@]}"; do
  bin="$target_dir/$t/$profile/tinygpt"
  size=$(stat -c %s "$bin")
  kind=$(file -b "$bin" 2>/dev/null | grep -oE 'static-pie linked|statically linked' | head -n1 || true)
  printf '%-32s %10s  %s\n' "$t" "$size" "${kind:-see: file $bin}"
  if [ "$t" = x86_64-unknown-linux-musl ] && [ "$profile" = release ] && [ "$size" -gt "${MAX_X86_64_BYTES:-614400}" ]; then
    echo "error: $bin is $size bytes, over the limit of ${MAX_X86_64_BYTES:-614400} (MAX_X86_64_BYTES)" >&2
    too_big=1
  fi
done
[ -z "${too_big:-}" ]
