//! Fuzz the llama2.c readers of `tinygpt convert`. An input is a u32 length `n`, then `n` bytes of
//! `tokenizer.bin`, then a checkpoint (legacy, version 1 or version 2); the checkpoint is also read
//! alone. A pair that reads is converted and must load and run in the runtime.
//!
//! Run: `cd runtime/fuzz && cargo fuzz run llama2c corpus/llama2c` (seeds: `tools/examples/fuzz-seeds.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinygpt::convert::{self, llama2c};
use tinygpt_fuzz_common::exercise_converted;

#[path = "common.rs"]
mod tinygpt_fuzz_common;

fuzz_target!(|data: &[u8]| {
    if data.len() > 1 << 17 || data.len() < 4 {
        return;
    }
    let n = u32::from_le_bytes(data[..4].try_into().unwrap()) as usize;
    let rest = &data[4..];
    let (tok, ck) = rest.split_at(n.min(rest.len()));
    let _ = llama2c::read_checkpoint(ck);
    if let Ok(m) = convert::read(ck, Some(tok)) {
        exercise_converted(&m);
    }
});
