//! Support code shared by the `tinygpt` command's tests, examples and benchmark script.
//!
//! The command itself lives in `main.rs`; this library builds synthetic models (random weights,
//! real file format) with the runtime's writer, so that every subcommand can be exercised without
//! a trained model, and holds the command-line conventions `tinygpt-train` shares.
#![deny(missing_docs)]

pub mod args;
pub mod convert;
pub mod synth;
