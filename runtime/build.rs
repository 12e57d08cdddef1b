//! Enables the DSP kernels (`SMLAD`, `SXTB16`; Thumb-2 inline assembly) on targets that have
//! those instructions: Cortex-M4/M7/M33 (`thumbv7em`, `thumbv8m.main`) and 32-bit ARM Linux in
//! Thumb-2 mode (`thumbv7neon-*`, which the test suite runs under qemu-user to check the kernels
//! against the portable ones). Stable Rust does not expose `target_feature = "dsp"` to `cfg`, so
//! the target name decides.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tinygpt_dsp)");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("thumbv7em") || target.starts_with("thumbv8m.main") || target.starts_with("thumbv7neon") {
        println!("cargo::rustc-cfg=tinygpt_dsp");
    }
}
