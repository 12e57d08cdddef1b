//! `tinygpt`: generate text with a `.tgpt` model, chat with it, inspect it, evaluate it, benchmark it,
//! convert llama2.c and GGUF models into it.
//!
//! With the `tiny` feature (the static build) the program is `no_std`: its own entry point over
//! the C library, `malloc` as the allocator and a panic handler that prints one line. Without it
//! the same code runs on std's (tests, and builds together with the trainer, link std anyway).
#![cfg_attr(feature = "tiny", no_std, no_main)]

#[cfg(all(feature = "tiny", feature = "serve"))]
compile_error!("`tiny` builds the no_std binary, `serve` needs std: enable one of them");

extern crate alloc;

mod bench;
mod chat;
mod cli;
mod convert_cmd;
mod eval;
mod generate;
mod inspect;
mod modelfile;
mod out;
#[cfg(feature = "serve")]
mod serve;
mod sys;

use tinygpt::prelude::*;

/// Runs the command line `args` (without the program's name); returns the exit status.
fn run(args: &[String]) -> i32 {
    let cmd = match cli::parse(args) {
        cli::Parsed::Run(c) => c,
        cli::Parsed::Print(text) => {
            // A closed stdout while printing help is not worth reporting.
            let _ = sys::Write::write_all(&mut sys::stdout(), text.as_bytes());
            return 0;
        }
        cli::Parsed::Overview(text) => {
            let _ = sys::Write::write_all(&mut sys::stderr(), text.as_bytes());
            return 2;
        }
        cli::Parsed::Error(e) => {
            out::error_line(&format!("{e} (see 'tinygpt --help')"));
            return 2;
        }
    };
    let result = match cmd {
        cli::Command::Generate(a) => generate::run(&a),
        cli::Command::Chat(a) => chat::run(&a),
        cli::Command::Inspect(a) => inspect::run(&a),
        cli::Command::Eval(a) => eval::run(&a),
        cli::Command::Bench(a) => bench::run(&a),
        cli::Command::Convert(a) => convert_cmd::run(&a),
        #[cfg(feature = "serve")]
        cli::Command::Serve(a) => serve::run(&a),
    };
    match result {
        Ok(()) => 0,
        Err(e) if out::is_broken_pipe(&e) => 0,
        Err(e) => {
            out::error_line(&format!("{e:#}"));
            1
        }
    }
}

/// A panic is a bug; still, the user gets one line on stderr, `error: internal error: MESSAGE at
/// FILE:LINE (this is a bug in tinygpt)`, and exit status 101, no backtrace.
fn report_panic(msg: &dyn core::fmt::Display, place: Option<(&str, u32)>) -> ! {
    let msg = msg.to_string();
    let first = msg.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("unknown panic");
    let place = place.map_or(String::new(), |(file, line)| {
        format!(" at {}:{line}", file.rsplit(['/', '\\']).next().unwrap_or(""))
    });
    out::error_line(&format!("internal error: {first}{place} (this is a bug in tinygpt)"));
    sys::exit(101)
}

#[cfg(not(feature = "tiny"))]
fn main() {
    std::panic::set_hook(Box::new(|info| {
        let msg: &dyn core::fmt::Display = if let Some(s) = info.payload().downcast_ref::<&str>() {
            s
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s
        } else {
            &"unknown panic"
        };
        report_panic(msg, info.location().map(|l| (l.file(), l.line())));
    }));
    let args: Vec<String> = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    std::process::exit(run(&args))
}

/// The static build's entry point, called by the C library's start-up code.
#[cfg(feature = "tiny")]
#[no_mangle]
extern "C" fn main(argc: core::ffi::c_int, argv: *const *const core::ffi::c_char) -> core::ffi::c_int {
    // As std does: a write to a closed pipe fails with EPIPE (reported or ignored) rather than
    // killing the process.
    // SAFETY: setting a signal's disposition to "ignore" is always sound.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let mut args = Vec::new();
    for i in 1..argc.max(0) as usize {
        // SAFETY: the C start-up code passes `argc` valid NUL-terminated strings.
        let arg = unsafe { core::ffi::CStr::from_ptr(*argv.add(i)) };
        args.push(String::from_utf8_lossy(arg.to_bytes()).into_owned());
    }
    run(&args)
}

#[cfg(feature = "tiny")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    report_panic(&info.message(), info.location().map(|l| (l.file(), l.line())))
}

/// The C library's `malloc`: its blocks are aligned to 16 bytes, enough for every type but the
/// rare over-aligned one, which gets `aligned_alloc`.
#[cfg(feature = "tiny")]
struct Malloc;

#[cfg(feature = "tiny")]
const MALLOC_ALIGN: usize = 16;

#[cfg(feature = "tiny")]
// SAFETY: the blocks come from the C allocator with at least the requested size and alignment.
unsafe impl core::alloc::GlobalAlloc for Malloc {
    unsafe fn alloc(&self, l: core::alloc::Layout) -> *mut u8 {
        if l.align() <= MALLOC_ALIGN {
            unsafe { libc::malloc(l.size()) as *mut u8 }
        } else {
            unsafe { libc::aligned_alloc(l.align(), l.size().next_multiple_of(l.align())) as *mut u8 }
        }
    }
    unsafe fn alloc_zeroed(&self, l: core::alloc::Layout) -> *mut u8 {
        if l.align() <= MALLOC_ALIGN {
            unsafe { libc::calloc(1, l.size()) as *mut u8 }
        } else {
            let p = unsafe { self.alloc(l) };
            if !p.is_null() {
                unsafe { core::ptr::write_bytes(p, 0, l.size()) };
            }
            p
        }
    }
    unsafe fn dealloc(&self, p: *mut u8, _l: core::alloc::Layout) {
        unsafe { libc::free(p.cast()) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: core::alloc::Layout, new_size: usize) -> *mut u8 {
        if l.align() <= MALLOC_ALIGN {
            return unsafe { libc::realloc(p.cast(), new_size) as *mut u8 };
        }
        let new = unsafe { self.alloc(core::alloc::Layout::from_size_align_unchecked(new_size, l.align())) };
        if !new.is_null() {
            unsafe {
                core::ptr::copy_nonoverlapping(p, new, l.size().min(new_size));
                self.dealloc(p, l);
            }
        }
        new
    }
}

#[cfg(feature = "tiny")]
#[global_allocator]
static ALLOCATOR: Malloc = Malloc;

// The C library itself (musl, or static glibc on 32-bit ARM; glibc's objects name the ARM
// unwinder's personality routines, which libgcc_eh holds).
#[cfg(feature = "tiny")]
#[link(name = "c")]
extern "C" {}
#[cfg(all(feature = "tiny", target_env = "gnu"))]
#[link(name = "gcc_eh")]
#[link(name = "gcc")]
#[link(name = "c")]
extern "C" {}

/// The precompiled `core` and `alloc` keep unwinding landing pads that call this; with
/// `panic = "abort"` (the workspace's release profiles) nothing unwinds, so it is never reached.
#[cfg(all(feature = "tiny", not(target_env = "gnu")))]
#[no_mangle]
extern "C" fn _Unwind_Resume() -> ! {
    // SAFETY: ends the process at once.
    unsafe { libc::abort() }
}

/// Named by the same landing pads' unwind tables; never called either (nothing unwinds). (With
/// glibc, libgcc_eh brings the unwinder's own.)
#[cfg(feature = "tiny")]
#[no_mangle]
extern "C" fn rust_eh_personality() {}
