//! Enables the DSP kernels (`SMLAD`, `SXTB16`; Thumb-2 inline assembly) on targets that have
//! those instructions: Cortex-M4/M7/M33 (`thumbv7em`, `thumbv8m.main`) and 32-bit ARM Linux in
//! Thumb-2 mode (`thumbv7neon-*`, which the test suite runs under qemu-user to check the kernels
//! against the portable ones). Stable Rust does not expose `target_feature = "dsp"` to `cfg`, so
//! the target name decides.

//!
//! `tinygpt_fpu_f16` marks the 32-bit ARM targets with a hardware FPU (`*-eabihf`: FPv4-SP on the
//! Cortex-M4F, FPv5 on the M7 and M33, VFPv3 and later on ARMv7-A), where half-precision group
//! scales are widened by one float multiply (`ops::f16_to_f32_by_multiply`) instead of half's
//! software routine.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tinygpt_dsp)");
    println!("cargo::rustc-check-cfg=cfg(tinygpt_fpu_f16)");
    let target = std::env::var("TARGET").unwrap_or_default();
    let dsp = target.starts_with("thumbv7em") || target.starts_with("thumbv8m.main") || target.starts_with("thumbv7neon");
    if dsp {
        println!("cargo::rustc-cfg=tinygpt_dsp");
    }
    if dsp && target.ends_with("eabihf") {
        println!("cargo::rustc-cfg=tinygpt_fpu_f16");
    }
}
