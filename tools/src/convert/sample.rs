//! Small llama2.c and GGUF files with random weights, written the way llama2.c's `export.py` and
//! llama.cpp's writer lay them out: the fuzz targets' seed corpora and the readers' refusal tests.
//! (The conversion itself is checked against files written by those projects' own code, in
//! `tools/tests/convert.rs`.)

use half::f16;

use crate::prelude::*;

use super::llama2c::MAGIC;

/// The shape of a sample model.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Width.
    pub dim: usize,
    /// MLP width.
    pub hidden: usize,
    /// Layers.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Tokens (at least 3 + the byte tokens).
    pub vocab: usize,
    /// Context.
    pub seq_len: usize,
    /// Classifier shared with the token embedding.
    pub shared: bool,
}

/// A few regular pieces, after `<unk>`, BOS, EOS and 16 byte tokens.
const PIECES: [&str; 8] = [" ", "a", "b", " a", "ab", " ab", "\u{e9}", " b"];

/// Piece texts (llama2.c's spelling: spaces, `<0xXX>`), scores and GGUF token types.
pub fn vocab(n: usize) -> Vec<(String, f32, i32)> {
    let mut v = vec![("<unk>".to_owned(), 0.0, 2), ("\n<s>\n".to_owned(), 0.0, 3), ("\n</s>\n".to_owned(), 0.0, 3)];
    for b in 0..16u8 {
        v.push((format!("<0x{:02X}>", b * 16 + 0x0A), 0.0, 6));
    }
    for (i, p) in PIECES.iter().enumerate() {
        v.push((p.to_string(), -(i as f32), 1));
    }
    let mut k = 0;
    while v.len() < n {
        v.push((format!("t{k}"), -10.0 - k as f32, 1));
        k += 1;
    }
    v.truncate(n);
    v
}

struct Rng(u64);

impl Rng {
    fn f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.5
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f32()).collect()
    }
}

/// Tensors in llama2.c's order: (name, rows, cols); vectors have `rows == 0`.
fn tensors(s: &Shape) -> Vec<(String, usize, usize)> {
    let kv = s.dim / s.n_heads * s.n_kv_heads;
    let mut t = vec![("tok_embeddings".to_owned(), s.vocab, s.dim)];
    for (n, r, c) in [("attn_norm", 0, s.dim), ("wq", s.dim, s.dim), ("wk", kv, s.dim), ("wv", kv, s.dim), ("wo", s.dim, s.dim), ("ffn_norm", 0, s.dim), ("w1", s.hidden, s.dim), ("w2", s.dim, s.hidden), ("w3", s.hidden, s.dim)] {
        t.extend((0..s.n_layers).map(|l| (format!("layers.{l}.{n}"), r, c)));
    }
    t.push(("norm".to_owned(), 0, s.dim));
    if !s.shared {
        t.push(("output".to_owned(), s.vocab, s.dim));
    }
    t
}

fn f32s(out: &mut Vec<u8>, v: &[f32]) {
    v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
}

fn q8(w: &[f32], group: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = Vec::new();
    let mut s = Vec::new();
    for g in w.chunks(group) {
        let m = g.iter().fold(0f32, |a, x| a.max(x.abs())) / 127.0;
        s.push(m);
        q.extend(g.iter().map(|x| if m == 0.0 { 0 } else { libm::roundf(x / m) as i8 }));
    }
    (q, s)
}

/// A llama2.c checkpoint: `version` 0 (legacy), 1 or 2 (Q8_0 with `group`).
pub fn llama2c(s: &Shape, version: u32, group: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let ts = tensors(s);
    let w: Vec<(String, usize, usize, Vec<f32>)> =
        ts.into_iter().map(|(n, r, c)| { let v = rng.vec(r.max(1) * c); (n, r, c, v) }).collect();
    let get = |n: &str| &w.iter().find(|t| t.0 == n).expect("tensor").3;
    let params = [s.dim, s.hidden, s.n_layers, s.n_heads, s.n_kv_heads, s.vocab, s.seq_len].map(|x| x as i32);
    let mut out = Vec::new();
    let kinds = ["wq", "wk", "wv", "wo", "w1", "w2", "w3"];
    let n_layers = s.n_layers;
    let per_layer = move |name: &'static str| (0..n_layers).map(move |l| format!("layers.{l}.{name}"));
    if version == 0 {
        let mut p = params;
        if !s.shared {
            p[5] = -p[5];
        }
        p.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        f32s(&mut out, get("tok_embeddings"));
        for k in ["attn_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w2", "w3"] {
            per_layer(k).for_each(|n| f32s(&mut out, get(&n)));
        }
        f32s(&mut out, get("norm"));
        f32s(&mut out, &vec![0.5; 2 * s.seq_len * (s.dim / s.n_heads / 2)]);
        if !s.shared {
            f32s(&mut out, get("output"));
        }
        return out;
    }
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&(version as i32).to_le_bytes());
    params.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    out.push(s.shared as u8);
    if version == 2 {
        out.extend_from_slice(&(group as i32).to_le_bytes());
    }
    out.resize(256, 0);
    per_layer("attn_norm").chain(per_layer("ffn_norm")).for_each(|n| f32s(&mut out, get(&n)));
    f32s(&mut out, get("norm"));
    let mut mats = vec!["tok_embeddings".to_owned()];
    for k in kinds {
        mats.extend(per_layer(k));
    }
    if !s.shared {
        mats.push("output".to_owned());
    }
    for m in mats {
        if version == 1 {
            f32s(&mut out, get(&m));
        } else {
            let (q, sc) = q8(get(&m), group);
            out.extend(q.iter().map(|&x| x as u8));
            f32s(&mut out, &sc);
        }
    }
    out
}

/// A `tokenizer.bin` for `vocab(n)`.
pub fn tokenizer_bin(n: usize) -> Vec<u8> {
    let v = vocab(n);
    let mut out = (v.iter().map(|p| p.0.len()).max().unwrap_or(1) as i32).to_le_bytes().to_vec();
    for (p, score, _) in v {
        out.extend_from_slice(&score.to_le_bytes());
        out.extend_from_slice(&(p.len() as i32).to_le_bytes());
        out.extend_from_slice(p.as_bytes());
    }
    out
}

fn gstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// GGUF tensor types: F32 = 0, F16 = 1, Q8_0 = 8 (for the matrices; vectors stay F32).
pub fn gguf(s: &Shape, matrix_type: u32, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let names = |n: &str| -> String {
        match n {
            "tok_embeddings" => "token_embd.weight".into(),
            "norm" => "output_norm.weight".into(),
            "output" => "output.weight".into(),
            _ => {
                let (l, k) = n.trim_start_matches("layers.").split_once('.').expect("layer");
                let g = match k {
                    "wq" => "attn_q",
                    "wk" => "attn_k",
                    "wv" => "attn_v",
                    "wo" => "attn_output",
                    "w1" => "ffn_gate",
                    "w2" => "ffn_down",
                    "w3" => "ffn_up",
                    k => k,
                };
                format!("blk.{l}.{g}.weight")
            }
        }
    };
    let ts = tensors(s);
    let mut kv: Vec<(String, Vec<u8>)> = Vec::new();
    let mut put = |k: &str, ty: u32, v: Vec<u8>| {
        let mut b = ty.to_le_bytes().to_vec();
        b.extend(v);
        kv.push((k.to_owned(), b));
    };
    let u32v = |x: usize| (x as u32).to_le_bytes().to_vec();
    let mut st = Vec::new();
    gstr(&mut st, "llama");
    put("general.architecture", 8, st.clone());
    put("llama.context_length", 4, u32v(s.seq_len));
    put("llama.embedding_length", 4, u32v(s.dim));
    put("llama.block_count", 4, u32v(s.n_layers));
    put("llama.feed_forward_length", 4, u32v(s.hidden));
    put("llama.attention.head_count", 4, u32v(s.n_heads));
    put("llama.attention.head_count_kv", 4, u32v(s.n_kv_heads));
    put("llama.attention.layer_norm_rms_epsilon", 6, 1e-5f32.to_le_bytes().to_vec());
    put("llama.rope.freq_base", 6, 10000f32.to_le_bytes().to_vec());
    put("tokenizer.ggml.model", 8, st);
    let v = vocab(s.vocab);
    let arr = |ty: u32, items: Vec<Vec<u8>>| {
        let mut b = ty.to_le_bytes().to_vec();
        b.extend((items.len() as u64).to_le_bytes());
        items.into_iter().for_each(|i| b.extend(i));
        b
    };
    put("tokenizer.ggml.tokens", 9, arr(8, v.iter().map(|p| { let mut b = Vec::new(); gstr(&mut b, &p.0.replace(' ', "\u{2581}").replace("\n<s>\n", "<s>").replace("\n</s>\n", "</s>")); b }).collect()));
    put("tokenizer.ggml.scores", 9, arr(6, v.iter().map(|p| p.1.to_le_bytes().to_vec()).collect()));
    put("tokenizer.ggml.token_type", 9, arr(5, v.iter().map(|p| p.2.to_le_bytes().to_vec()).collect()));
    put("tokenizer.ggml.bos_token_id", 4, u32v(1));
    put("tokenizer.ggml.eos_token_id", 4, u32v(2));
    put("tokenizer.ggml.unknown_token_id", 4, u32v(0));

    let mut data = Vec::new();
    let mut infos = Vec::new();
    for (n, r, c) in &ts {
        let w = rng.vec(r.max(&1) * c);
        let ty = if *r == 0 { 0 } else { matrix_type };
        while data.len() % 32 != 0 {
            data.push(0);
        }
        let off = data.len() as u64;
        match ty {
            0 => f32s(&mut data, &w),
            1 => w.iter().for_each(|x| data.extend_from_slice(&f16::from_f32(*x).to_le_bytes())),
            _ => {
                let (q, sc) = q8(&w, 32);
                for (g, s) in q.chunks(32).zip(sc) {
                    data.extend_from_slice(&f16::from_f32(s).to_le_bytes());
                    data.extend(g.iter().map(|&x| x as u8));
                }
            }
        }
        let mut b = Vec::new();
        gstr(&mut b, &names(n));
        if *r == 0 {
            b.extend(1u32.to_le_bytes());
            b.extend((*c as u64).to_le_bytes());
        } else {
            b.extend(2u32.to_le_bytes());
            b.extend((*c as u64).to_le_bytes());
            b.extend((*r as u64).to_le_bytes());
        }
        b.extend(ty.to_le_bytes());
        b.extend(off.to_le_bytes());
        infos.push(b);
    }
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((infos.len() as u64).to_le_bytes());
    out.extend((kv.len() as u64).to_le_bytes());
    for (k, v) in kv {
        gstr(&mut out, &k);
        out.extend(v);
    }
    infos.into_iter().for_each(|i| out.extend(i));
    while out.len() % 32 != 0 {
        out.push(0);
    }
    out.extend(data);
    out
}
