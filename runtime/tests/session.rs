//! Session buffers: `session_bytes` is enough at any alignment and grows with the context as the
//! KV cache's documented cost says; too small a buffer, a bad context length and a token outside
//! the vocabulary are errors, not panics.

mod common;

use common::*;
use tinygpt_runtime::writer::AlignedBytes;
use tinygpt_runtime::{Arch, DType, Error, KvDType, Model, Session};

const KVS: [KvDType; 3] = [KvDType::F32, KvDType::F16, KvDType::I8];

fn models() -> Vec<(String, AlignedBytes)> {
    let mut out = Vec::new();
    for arch in [Arch::Gpt2, Arch::Llama] {
        for dtype in [DType::F32, DType::I8] {
            let cfg = config(arch, dtype);
            let w = random_weights(&cfg, 5);
            let bytes = build(&cfg, &char_tokenizer(cfg.vocab_size as usize), &w);
            out.push((format!("{arch:?} {dtype:?}"), bytes));
        }
    }
    out
}

/// A session in exactly `session_bytes` bytes, starting at every offset from a 64-byte boundary
/// that matters, runs past its context (so every region, the KV cache's last row included, is
/// written) and gives the same logits, bit for bit, as one in a roomy buffer.
#[test]
fn session_bytes_suffice_at_any_alignment() {
    for (name, bytes) in models() {
        let model = Model::from_bytes(&bytes).unwrap();
        let vocab = model.config().vocab_size;
        for kv in KVS {
            for ctx in [1usize, 7, 33, 64] {
                let toks: Vec<u32> = (0..ctx as u32 + 3).map(|i| (i * 7 + 1) % vocab).collect();
                let mut roomy = vec![0u8; model.session_bytes(ctx, kv) + 4096];
                let want: Vec<Vec<f32>> = {
                    let mut s = Session::new(&model, &mut roomy, ctx, kv).unwrap();
                    toks.iter().map(|&t| s.step(t).unwrap().to_vec()).collect()
                };
                let need = model.session_bytes(ctx, kv);
                for offset in [0usize, 1, 2, 3, 4, 8, 17, 31, 32, 63] {
                    let mut backing = vec![0u8; need + 128];
                    let base = backing.as_ptr().align_offset(64);
                    let buf = &mut backing[base + offset..base + offset + need];
                    let mut s = Session::new(&model, buf, ctx, kv)
                        .unwrap_or_else(|e| panic!("{name} {kv:?} ctx {ctx} offset {offset}: {e}"));
                    for (i, &t) in toks.iter().enumerate() {
                        let got = s.step(t).unwrap();
                        assert_eq!(got, &want[i][..], "{name} {kv:?} ctx {ctx} offset {offset} step {i}");
                    }
                }
            }
        }
    }
}

#[test]
fn a_buffer_one_byte_short_is_an_error() {
    for (name, bytes) in models() {
        let model = Model::from_bytes(&bytes).unwrap();
        for kv in KVS {
            for ctx in [1usize, 20, 64] {
                let need = model.session_bytes(ctx, kv);
                for short in [need - 1, need / 2, 0] {
                    let mut buf = vec![0u8; short];
                    match Session::new(&model, &mut buf, ctx, kv) {
                        Err(Error::BufferTooSmall { needed, got }) => assert_eq!((needed, got), (need, short)),
                        Err(e) => panic!("{name} {kv:?} ctx {ctx}: wrong error {e}"),
                        Ok(_) => panic!("{name} {kv:?} ctx {ctx}: {short} bytes accepted, {need} needed"),
                    }
                }
            }
        }
    }
}

#[test]
fn context_lengths_outside_one_to_block_size_are_errors() {
    let cfg = config(Arch::Llama, DType::F32);
    let bytes = build(&cfg, &char_tokenizer(cfg.vocab_size as usize), &random_weights(&cfg, 1));
    let model = Model::from_bytes(&bytes).unwrap();
    let block = cfg.block_size as usize;
    let mut buf = vec![0u8; model.session_bytes(block, KvDType::F32) * 2];
    for ctx in [0, block + 1, usize::MAX] {
        match Session::new(&model, &mut buf, ctx, KvDType::F32) {
            Err(Error::ContextLength { requested, max }) => assert_eq!((requested, max), (ctx, block)),
            Err(e) => panic!("ctx {ctx}: wrong error {e}"),
            Ok(_) => panic!("ctx {ctx} accepted"),
        }
    }
    assert_eq!(model.session_bytes(usize::MAX, KvDType::I8), usize::MAX, "an impossible size saturates");
}

#[test]
fn tokens_outside_the_vocabulary_are_errors_and_change_nothing() {
    let cfg = config(Arch::Gpt2, DType::I8);
    let bytes = build(&cfg, &char_tokenizer(cfg.vocab_size as usize), &random_weights(&cfg, 1));
    let model = Model::from_bytes(&bytes).unwrap();
    let mut buf = vec![0u8; model.session_bytes(16, KvDType::F32)];
    let mut s = Session::new(&model, &mut buf, 16, KvDType::F32).unwrap();
    let first = s.step(3).unwrap().to_vec();
    for bad in [cfg.vocab_size, cfg.vocab_size + 1, u32::MAX] {
        assert!(matches!(s.step(bad), Err(Error::InvalidToken(t)) if t == bad), "token {bad}");
        assert_eq!(s.pos(), 1, "a rejected token moved the position");
    }
    let second = s.step(4).unwrap().to_vec();
    // The same two tokens in a fresh session: the rejected ones left no trace.
    let mut buf2 = vec![0u8; model.session_bytes(16, KvDType::F32)];
    let mut fresh = Session::new(&model, &mut buf2, 16, KvDType::F32).unwrap();
    assert_eq!(fresh.step(3).unwrap(), &first[..]);
    assert_eq!(fresh.step(4).unwrap(), &second[..]);
}

/// The KV cache's cost per position, as docs and the board's budget state it: keys and values,
/// `2 · n_layer · kv_dim` elements of the cache type, plus for int8 one f32 scale per KV head for
/// each, plus per position the attention row (f32) and the token history (u32), plus for int8 the
/// int16 attention weights and their widened pairs (2 + 2 bytes). Between two context lengths that
/// are multiples of 64 (so no region rounds differently), `session_bytes` grows by exactly that.
#[test]
fn session_bytes_grow_by_the_kv_cost_per_position() {
    for (name, bytes) in models() {
        let model = Model::from_bytes(&bytes).unwrap();
        let c = model.config();
        let (layers, kv_dim, kv_heads) = (c.n_layer as usize, c.kv_dim(), c.n_kv_head as usize);
        for kv in KVS {
            let per_pos = match kv {
                KvDType::F32 => 2 * layers * kv_dim * 4 + 4 + 4,
                KvDType::F16 => 2 * layers * kv_dim * 2 + 4 + 4,
                KvDType::I8 => 2 * layers * kv_dim + 2 * layers * kv_heads * 4 + 4 + 4 + 2 + 2,
            };
            // The test model's block is 64: compare contexts 64 apart on a larger copy.
            let mut big = *c;
            big.block_size = 192;
            let bytes2 = build(&big, &char_tokenizer(big.vocab_size as usize), &random_weights(&big, 1));
            let m2 = Model::from_bytes(&bytes2).unwrap();
            let grow = m2.session_bytes(192, kv) - m2.session_bytes(128, kv);
            // (int8 also keeps one f32 scale per 64 attention weights: 2 or 3 of them here, which
            // fit the same 64-byte region.)
            assert_eq!(grow, 64 * per_pos, "{name} {kv:?}");
            // And the whole buffer is that cost times the context plus a context-independent part
            // no larger than the activations (a few vectors of the model's widths) and alignment.
            let fixed = m2.session_bytes(64, kv) as isize - (64 * per_pos) as isize;
            let widths = (big.n_embd.max(big.n_hidden) + big.vocab_size) as isize;
            assert!(fixed > 0 && fixed < 64 * widths, "{name} {kv:?}: {fixed} bytes beyond the per-position cost");
        }
    }
}

/// A rewound session continues as a fresh one fed the same tokens, bit for bit: feeding a
/// prompt once and rewinding to its last token for each continuation gives every continuation's
/// logits exactly. A rewind past what the context holds, or after a llama context has rolled,
/// changes nothing and says so.
#[test]
fn rewind_continues_exactly_as_a_fresh_prefill() {
    for (name, bytes) in models() {
        let model = Model::from_bytes(&bytes).unwrap();
        let vocab = model.config().vocab_size;
        for kv in KVS {
            let ctx = 24;
            let prompt: Vec<u32> = (0..10u32).map(|i| (i * 5 + 2) % vocab).collect();
            let mut buf = vec![0u8; model.session_bytes(ctx, kv)];
            let mut shared = Session::new(&model, &mut buf, ctx, kv).unwrap();
            for &t in &prompt {
                shared.step(t).unwrap();
            }
            for cont in 0..4u32 {
                let tail: Vec<u32> = (0..6u32).map(|i| (i * 3 + cont * 11 + 1) % vocab).collect();
                let mut fresh_buf = vec![0u8; model.session_bytes(ctx, kv)];
                let mut fresh = Session::new(&model, &mut fresh_buf, ctx, kv).unwrap();
                let want: Vec<Vec<f32>> = prompt.iter().chain(&tail).map(|&t| fresh.step(t).unwrap().to_vec()).collect();
                assert!(shared.rewind(prompt.len() - 1), "{name} {kv:?}");
                assert_eq!(shared.pos(), prompt.len() - 1);
                let got = shared.step(prompt[prompt.len() - 1]).unwrap().to_vec();
                assert_eq!(got, want[prompt.len() - 1], "{name} {kv:?} continuation {cont}: the prompt's last logits");
                for (i, &t) in tail.iter().enumerate() {
                    let got = shared.step(t).unwrap();
                    assert_eq!(got, &want[prompt.len() + i][..], "{name} {kv:?} continuation {cont} step {i}");
                }
            }
            // Past the end of what the context holds: refused, nothing changed.
            let len = shared.pos();
            assert!(!shared.rewind(len + 1), "{name} {kv:?}");
            assert_eq!(shared.pos(), len);
            // A context run past its length: a llama one has rolled and refuses; a gpt2 one has
            // been halved, its rows still in order, and may rewind.
            for i in 0..ctx as u32 {
                shared.step(i % vocab).unwrap();
            }
            let rolled = model.config().arch == Arch::Llama;
            assert_eq!(shared.rewind(3), !rolled, "{name} {kv:?}");
        }
    }
}
