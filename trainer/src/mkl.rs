//! Which matrix kernels MKL runs on an x86-64 CPU that is not Intel's.
//!
//! libtorch's CPU library carries Intel MKL, and most of a training step on the CPU is MKL's
//! `sgemm` (about 55% of an iteration of the nanoGPT CPU recipe). MKL picks its kernels by the
//! CPU's vendor as well as by its instruction set: on a non-Intel CPU with AVX2 and FMA (every AMD
//! Zen) it still runs its generic code path. MKL asks one function, `mkl_serv_intel_cpu_true`,
//! which case it is in, and libtorch calls it through the dynamic symbol table, so a definition in
//! the executable takes precedence. `tinygpt-train` exports one (see `main.rs` and `build.rs`) that
//! answers with [`treat_as_intel`]: MKL then chooses by instruction set alone and runs its AVX2
//! kernels. On a 2-core AMD EPYC, `trainer/bench.sh` measured the same switch in PyTorch: 13% less
//! time per step of the nanoGPT CPU recipe. The kernels compute the same products, summed in
//! another order, so results differ in the last bits, as between any two BLAS builds.
//!
//! `TINYGPT_MKL_VENDOR_CHECK=1` in the environment restores MKL's own rule (Intel CPUs only).
//! Test binaries and programs other than `tinygpt-train` that link this library keep MKL's rule.

use std::sync::OnceLock;

/// Whether MKL may use the kernels it chooses for Intel CPUs: on an Intel CPU, or on any x86-64 CPU
/// with AVX2 and FMA unless `TINYGPT_MKL_VENDOR_CHECK=1`. Decided once.
pub fn treat_as_intel() -> bool {
    static ANSWER: OnceLock<bool> = OnceLock::new();
    *ANSWER.get_or_init(|| {
        let vendor_check = std::env::var_os("TINYGPT_MKL_VENDOR_CHECK").is_some_and(|v| v == "1");
        is_intel() || (!vendor_check && has_avx2_fma())
    })
}

#[cfg(target_arch = "x86_64")]
fn is_intel() -> bool {
    // Leaf 0: the vendor string, in EBX, EDX, ECX.
    let r = core::arch::x86_64::__cpuid(0);
    let mut vendor = [0u8; 12];
    vendor[..4].copy_from_slice(&r.ebx.to_le_bytes());
    vendor[4..8].copy_from_slice(&r.edx.to_le_bytes());
    vendor[8..].copy_from_slice(&r.ecx.to_le_bytes());
    &vendor == b"GenuineIntel"
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
fn is_intel() -> bool {
    false
}

#[cfg(not(target_arch = "x86_64"))]
fn has_avx2_fma() -> bool {
    false
}
