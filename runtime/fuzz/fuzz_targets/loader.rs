//! Fuzz the model loader: arbitrary bytes must give `Ok` or `Err`, never a panic or an
//! out-of-bounds read. Inputs that load are also run for a few tokens.
//!
//! Run: `cd runtime/fuzz && cargo fuzz run loader` (cargo-fuzz needs a nightly toolchain, or
//! `RUSTC_BOOTSTRAP=1` on stable).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinygpt_runtime::{KvDType, Model, Sampler, SamplerConfig, Session};

#[repr(C, align(16))]
struct Aligned([u8; 1 << 16]);

fuzz_target!(|data: &[u8]| {
    if data.len() > (1 << 16) {
        return;
    }
    let mut buf = Box::new(Aligned([0; 1 << 16]));
    buf.0[..data.len()].copy_from_slice(data);
    let bytes = &buf.0[..data.len()];
    let Ok(model) = Model::from_bytes(bytes) else { return };
    let ctx = (model.config().block_size as usize).min(8);
    let need = model.session_bytes(ctx, KvDType::I8);
    if need > 1 << 22 {
        return;
    }
    let mut arena = vec![0u8; need];
    let Ok(mut s) = Session::new(&model, &mut arena, ctx, KvDType::I8) else { return };
    let mut sampler = Sampler::new(SamplerConfig::default(), 1);
    let _ = tinygpt_runtime::generate(&mut s, &mut sampler, &[0], 3, |_| {});
    let mut toks = [0u32; 16];
    let _ = model.tokenizer().encode("To be, or not", &mut toks);
});
