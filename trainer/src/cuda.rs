//! libtorch's CUDA half, loaded at run time.
//!
//! tch links `libtorch_cuda.so`, but nothing in the executable refers to its symbols, so the
//! linker's `--as-needed` drops it, and without it libtorch never registers CUDA:
//! `Cuda::is_available()` stays false even on a GPU machine. Nor can it be a hard link-time
//! dependency: the CPU-only install (`tools/setup-libtorch.sh`) has the file but not the CUDA
//! libraries it needs (cuBLAS, cuDNN, ...), so the program would not start. So it is loaded with
//! `dlopen` before the device is chosen: its static initialisers register CUDA with libtorch, and
//! where it cannot load, the reason is kept for the error `--device cuda` gives.

use std::ffi::{CStr, CString};
use std::sync::OnceLock;

/// libtorch's library directory at build time (empty if unknown).
const LIB_DIR: &str = env!("TINYGPT_LIBTORCH_LIB");

static LOADED: OnceLock<Result<(), String>> = OnceLock::new();

/// Loads `libtorch_cuda.so` once (from libtorch's directory, else the loader's search path);
/// `Err` holds the loader's reason when it cannot be loaded.
pub fn load() -> Result<(), String> {
    LOADED
        .get_or_init(|| {
            let mut reasons = Vec::new();
            let mut names = Vec::new();
            if !LIB_DIR.is_empty() {
                names.push(format!("{LIB_DIR}/libtorch_cuda.so"));
            }
            names.push("libtorch_cuda.so".to_owned());
            for name in names {
                let c = CString::new(name).map_err(|e| e.to_string())?;
                // SAFETY: a valid C string; the handle is kept for the life of the process.
                let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
                if !handle.is_null() {
                    return Ok(());
                }
                let why = last_dl_error();
                if !reasons.contains(&why) {
                    reasons.push(why);
                }
            }
            Err(reasons.join("; "))
        })
        .clone()
}

fn last_dl_error() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated string owned by the loader.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        "unknown loader error".to_owned()
    } else {
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

/// The compute capability (major, minor) of CUDA device `index`, asked of the CUDA runtime
/// (libcudart, which libtorch loads); `None` without a device or runtime.
pub fn compute_capability(index: i32) -> Option<(i32, i32)> {
    type GetAttribute = unsafe extern "C" fn(*mut i32, i32, i32) -> i32;
    // cudaDevAttrComputeCapabilityMajor and ...Minor.
    const MAJOR: i32 = 75;
    const MINOR: i32 = 76;
    let name = c"cudaDeviceGetAttribute";
    // SAFETY: looks a symbol up in the already loaded libraries.
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    if sym.is_null() {
        return None;
    }
    // SAFETY: cudaDeviceGetAttribute has this C signature (int*, enum, int) -> cudaError_t.
    let get: GetAttribute = unsafe { std::mem::transmute::<*mut libc::c_void, GetAttribute>(sym) };
    let (mut major, mut minor) = (0i32, 0i32);
    // SAFETY: valid out-pointers; an absent device or driver returns an error code.
    let ok = unsafe { get(&mut major, MAJOR, index) == 0 && get(&mut minor, MINOR, index) == 0 };
    ok.then_some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a machine without the CUDA libraries the load fails with the loader's reason (and is
    /// asked once); with them it succeeds. Either way it answers, and never panics.
    #[test]
    fn load_reports_a_reason_or_succeeds() {
        match load() {
            Ok(()) => assert_eq!(load(), Ok(())),
            Err(why) => {
                assert!(why.contains(".so"), "the reason should name a library: {why}");
                assert_eq!(load(), Err(why));
            }
        }
    }

    /// Without a GPU there is no compute capability; with one it is at least 3.0.
    #[test]
    fn compute_capability_is_none_or_plausible() {
        let _ = load();
        let cc = compute_capability(0);
        if tch::Cuda::is_available() {
            assert!(cc.is_some_and(|(major, _)| major >= 3), "{cc:?}");
        } else {
            assert_eq!(cc, None);
        }
    }
}
