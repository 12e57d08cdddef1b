//! Fuzz the model loader: arbitrary bytes must give `Ok` or `Err`, never a panic or an
//! out-of-bounds read. Inputs that load are also run for a few tokens, their tokenizer encodes and
//! decodes, and a chat model renders a conversation and replies.
//!
//! Every input is tried twice: as given (which exercises the checks before and including the
//! CRC-32), and with its trailer replaced by the CRC-32 of the rest, so that mutated inputs pass
//! the checksum and reach the header, tokenizer and tensor checks.
//!
//! Run: `cd runtime/fuzz && cargo fuzz run loader corpus/loader` (cargo-fuzz needs a nightly
//! toolchain, or `RUSTC_BOOTSTRAP=1` on stable). `corpus/loader` starts from the seed corpus that
//! `cargo run -p tinygpt --example fuzz-seeds -- runtime/fuzz/corpus/loader` writes: small valid
//! files of every kind the reader accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinygpt_runtime::chat::{self, Message, Template};
use tinygpt_runtime::{KvDType, Model, Sampler, SamplerConfig, Session};

const MAX: usize = 1 << 16;

#[repr(C, align(16))]
struct Aligned([u8; MAX]);

fn exercise(bytes: &[u8]) {
    let Ok(model) = Model::from_bytes(bytes) else { return };
    let tok = model.tokenizer();
    let mut toks = [0u32; 64];
    if let Ok(n) = tok.encode("To be, or not <|im_end|> \u{e9}", &mut toks) {
        let mut text = [0u8; 256];
        let _ = tok.decode_into(&toks[..n], &mut text);
    }
    let ctx = (model.config().block_size as usize).min(16);
    for kv in [KvDType::I8, KvDType::F32] {
        let need = model.session_bytes(ctx, kv);
        if need > 1 << 22 {
            return;
        }
        let mut arena = vec![0u8; need];
        let Ok(mut s) = Session::new(&model, &mut arena, ctx, kv) else { return };
        let mut sampler = Sampler::new(SamplerConfig::default(), 1);
        let _ = tinygpt_runtime::generate(&mut s, &mut sampler, &[0], 3, |_| {});
        if let Ok(t) = Template::new(tok) {
            let mut prompt = [0u32; 16];
            if let Ok((_, n)) = t.render_fitting(&[Message::user("hi")], 1, &mut prompt[..ctx]) {
                let _ = chat::reply(&mut s, &mut sampler, &t, &prompt[..n], 4, |_| {});
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX {
        return;
    }
    let mut buf = Box::new(Aligned([0; MAX]));
    buf.0[..data.len()].copy_from_slice(data);
    exercise(&buf.0[..data.len()]);
    if data.len() >= 28 {
        let body = data.len() - 4;
        let crc = tinygpt_runtime::format::crc32(&buf.0[..body]);
        buf.0[body..data.len()].copy_from_slice(&crc.to_le_bytes());
        exercise(&buf.0[..data.len()]);
    }
});
