//! The sentencepiece tokenizer kind against a reference written here with `Vec`s and `String`s
//! (llama2.c's `encode` algorithm: BOS, a leading space, characters or byte tokens, then the
//! best-scoring adjacent merge, leftmost on ties, until none applies), and decoding as the inverse
//! of encoding, on random vocabularies and texts.

use proptest::prelude::*;
use tinygpt_runtime::writer::{encode_model, AlignedBytes, MetaData, Piece, PieceKind, TokenizerData};
use tinygpt_runtime::{Arch, Config, DType, Model};

/// `<unk>`, BOS, EOS, the 256 byte tokens, then `pieces` with their scores.
fn vocab(pieces: &[(String, f32)]) -> Vec<Piece> {
    let mut v = vec![
        Piece { bytes: b"<unk>".to_vec(), score: 0.0, kind: PieceKind::Control },
        Piece { bytes: b"<s>".to_vec(), score: 0.0, kind: PieceKind::Control },
        Piece { bytes: b"</s>".to_vec(), score: 0.0, kind: PieceKind::Control },
    ];
    v.extend((0..=255u8).map(|b| Piece { bytes: vec![b], score: 0.0, kind: PieceKind::Byte }));
    v.extend(pieces.iter().map(|(p, s)| Piece { bytes: p.as_bytes().to_vec(), score: *s, kind: PieceKind::Normal }));
    v
}

fn model_bytes(pieces: Vec<Piece>) -> AlignedBytes {
    let n = pieces.len() as u32;
    let cfg = Config {
        arch: Arch::Llama,
        n_layer: 1,
        n_head: 1,
        n_kv_head: 1,
        n_embd: 4,
        n_hidden: 4,
        block_size: 8,
        vocab_size: n,
        norm_eps: 1e-5,
        rope_theta: 10000.0,
        tie_embeddings: true,
        dtype: DType::F32,
        group_size: 4,
    };
    let tok = TokenizerData::SentencePiece { pieces, bos: Some(1), unk: Some(0), add_bos: true, space_prefix: true, eot: Some(1) };
    let bytes = encode_model(&cfg, &tok, &MetaData::default(), &|name| {
        let n = tinygpt_runtime::writer::tensor_layout(&cfg).into_iter().find(|t| t.0 == name)?.1.iter().product();
        Some(vec![0.5; n])
    })
    .unwrap();
    AlignedBytes::new(&bytes)
}

/// The reference encoder.
fn reference(pieces: &[Piece], text: &str) -> Vec<u32> {
    let find = |s: &[u8]| (0..pieces.len()).find(|&i| pieces[i].kind == PieceKind::Normal && pieces[i].bytes == s);
    let mut toks: Vec<u32> = Vec::new();
    let text = if text.is_empty() { String::new() } else { format!(" {text}") };
    for c in text.chars() {
        let mut b = [0u8; 4];
        let s = c.encode_utf8(&mut b).as_bytes();
        match find(s) {
            Some(i) => toks.push(i as u32),
            None => toks.extend(s.iter().map(|&x| 3 + x as u32)),
        }
    }
    loop {
        let mut best: Option<(f32, usize, usize)> = None;
        for i in 0..toks.len().saturating_sub(1) {
            let (a, b) = (&pieces[toks[i] as usize], &pieces[toks[i + 1] as usize]);
            if a.kind != PieceKind::Normal || b.kind != PieceKind::Normal {
                continue;
            }
            if let Some(j) = find(&[a.bytes.clone(), b.bytes.clone()].concat()) {
                if best.is_none_or(|(s, _, _)| pieces[j].score > s) {
                    best = Some((pieces[j].score, i, j));
                }
            }
        }
        let Some((_, i, j)) = best else { break };
        toks[i] = j as u32;
        toks.remove(i + 1);
    }
    let mut out = vec![1];
    out.extend(toks);
    out
}

fn piece() -> impl Strategy<Value = (String, f32)> {
    ("[ ab\u{e9}\u{4e16}]{1,4}", -20i32..0).prop_map(|(s, k)| (s, k as f32 / 2.0))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn encode_matches_the_reference_and_decode_inverts_it(
        pieces in prop::collection::vec(piece(), 1..40),
        text in "[ ab\u{e9}\u{4e16}c\n]{0,24}",
    ) {
        let v = vocab(&pieces);
        let bytes = model_bytes(v.clone());
        let m = Model::from_bytes(&bytes).unwrap();
        let tok = m.tokenizer();
        let mut ids = vec![0u32; text.len() + 2];
        let n = tok.encode(&text, &mut ids).unwrap();
        let want = reference(&v, &text);
        // Pieces with the same bytes: the file keeps the lowest id, the reference finds it too.
        prop_assert_eq!(&ids[..n], &want[..]);
        let mut out = vec![0u8; text.len() + 8];
        let k = tok.decode_into(&ids[..n], &mut out);
        prop_assert_eq!(std::str::from_utf8(&out[..k]).unwrap(), text.as_str());
    }

    /// Vocabularies whose pieces never put a space after another character: encoding then merges
    /// word by word, which must give the reference's (whole-text) tokens.
    #[test]
    fn word_by_word_merging_matches_the_reference(
        pieces in prop::collection::vec(("[ ]{0,2}[ab\u{e9}]{1,3}", -20i32..0).prop_map(|(s, k)| (s, k as f32 / 2.0)), 1..40),
        text in "[ ab\u{e9}c\n]{0,40}",
    ) {
        let mut pieces = pieces;
        pieces.push((" ".into(), -0.5));
        pieces.push(("  ".into(), -0.25));
        let v = vocab(&pieces);
        let bytes = model_bytes(v.clone());
        let m = Model::from_bytes(&bytes).unwrap();
        let mut ids = vec![0u32; text.len() + 2];
        let n = m.tokenizer().encode(&text, &mut ids).unwrap();
        prop_assert_eq!(&ids[..n], &reference(&v, &text)[..]);
    }

    #[test]
    fn a_too_small_buffer_is_an_error(text in "[ab]{1,10}") {
        let bytes = model_bytes(vocab(&[("a".into(), -1.0)]));
        let m = Model::from_bytes(&bytes).unwrap();
        let mut ids = vec![0u32; 1];
        prop_assert!(m.tokenizer().encode(&text, &mut ids).is_err());
    }
}

#[test]
fn control_tokens_decode_to_nothing_and_bos_drops_one_space() {
    let bytes = model_bytes(vocab(&[(" a".into(), -1.0), ("b".into(), -2.0)]));
    let m = Model::from_bytes(&bytes).unwrap();
    let tok = m.tokenizer();
    assert_eq!(tok.bos(), Some(1));
    let a = 259; // " a"
    let mut out = [0u8; 32];
    let k = tok.decode_into(&[1, a, 2, 0, a, 1, a], &mut out);
    assert_eq!(std::str::from_utf8(&out[..k]).unwrap(), "a aa");
}
