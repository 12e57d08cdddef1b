//! Adds an rpath to libtorch's library directory so `tinygpt-train` and its tests find libtorch
//! without LD_LIBRARY_PATH, and records the libtorch version for the start-up banner.
//! LIBTORCH is set by the workspace's `.cargo/config.toml`.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let mut version = String::from("unknown");
    let mut lib_dir = String::new();
    if let Some(dir) = std::env::var_os("LIBTORCH") {
        let dir = PathBuf::from(dir);
        let lib = dir.join("lib");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        // src/cuda.rs loads libtorch_cuda.so from here at run time.
        lib_dir = lib.display().to_string();
        let header = dir.join("include/torch/headeronly/version.h");
        println!("cargo:rerun-if-changed={}", header.display());
        if let Ok(text) = std::fs::read_to_string(&header) {
            let num = |key: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("#define {key} ")))
                    .map(|v| v.trim().to_string())
            };
            if let (Some(a), Some(b), Some(c)) =
                (num("TORCH_VERSION_MAJOR"), num("TORCH_VERSION_MINOR"), num("TORCH_VERSION_PATCH"))
            {
                version = format!("{a}.{b}.{c}");
            }
        }
    }
    println!("cargo:rustc-env=TINYGPT_LIBTORCH_VERSION={version}");
    println!("cargo:rustc-env=TINYGPT_LIBTORCH_LIB={lib_dir}");
    // The binary's `mkl_serv_intel_cpu_true` (src/main.rs, src/mkl.rs) must be in its dynamic
    // symbol table for libtorch's MKL to call it.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if arch == "x86_64" && os == "linux" {
        println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic-symbol=mkl_serv_intel_cpu_true");
    }
}
