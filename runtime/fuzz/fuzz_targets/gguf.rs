//! Fuzz the GGUF reader of `tinygpt convert`: arbitrary bytes must give a model or one error,
//! never a panic, an out-of-bounds read or an allocation the input cannot describe. A file that
//! reads is converted (its own dtype, and int8), and the `.tgpt` bytes must load in the runtime and
//! run its tokenizer and a few tokens.
//!
//! Run: `cd runtime/fuzz && cargo fuzz run gguf corpus/gguf` (seeds: `tools/examples/fuzz-seeds.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinygpt::convert;
use tinygpt_fuzz_common::exercise_converted;

#[path = "common.rs"]
mod tinygpt_fuzz_common;

fuzz_target!(|data: &[u8]| {
    if data.len() > 1 << 17 {
        return;
    }
    if let Ok(m) = convert::gguf::read(data) {
        exercise_converted(&m);
    }
});
