//! Support code shared by the `tinygpt` command's tests, examples and benchmark script.
//!
//! The command itself lives in `main.rs`; this library reads llama2.c and GGUF files, builds synthetic models (random weights,
//! real file format) with the runtime's writer, so that every subcommand can be exercised without
//! a trained model, and holds the value parsers `tinygpt-train` shares. `no_std` with `alloc`, as the
//! static `tinygpt` is.
#![no_std]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

/// What `std`'s prelude would bring: the allocating types and macros of `alloc`.
pub mod prelude {
    pub use alloc::borrow::ToOwned;
    pub use alloc::boxed::Box;
    pub use alloc::format;
    pub use alloc::string::{String, ToString};
    pub use alloc::vec;
    pub use alloc::vec::Vec;
}

pub mod args;
pub mod convert;
pub mod synth;
