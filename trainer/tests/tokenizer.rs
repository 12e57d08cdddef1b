//! The trainer tokenizes exactly as the runtime does (character vocabulary and byte-level BPE), and
//! its BPE encoding agrees with the `tokenizers` crate that trained the merges.

mod common;

use tinygpt_runtime::writer::MetaData;
use tinygpt_runtime::DType;
use tinygpt_train::config::TrainConfig;
use tinygpt_train::data::{bpe, TextTokenizer};
use tinygpt_train::export;
use tinygpt_train::model::{Gpt, ModelDims};

/// A small untrained model carrying `tok`, as a `.tgpt` file.
fn file_with(tok: &TextTokenizer) -> tinygpt_runtime::writer::AlignedBytes {
    let cfg = TrainConfig::from_str_with(
        r#"corpus = "unused"
           arch = "gpt2"
           n_layer = 1
           n_head = 1
           n_embd = 8
           block_size = 8
           batch_size = 1
           max_iters = 1
           learning_rate = 1e-3"#,
        &[],
    )
    .unwrap();
    let model = Gpt::new(ModelDims::new(&cfg, tok.vocab_size()), tch::Device::Cpu, false).unwrap();
    export::encode(&model, tok, &MetaData::default(), DType::F32, 64).unwrap()
}

fn runtime_encode(bytes: &[u8], text: &str) -> Vec<u32> {
    let model = export::load(bytes).unwrap();
    let mut out = vec![0u32; text.len() + 1];
    let n = model.tokenizer().encode(text, &mut out).unwrap();
    out.truncate(n);
    out
}

#[test]
fn char_tokenizer_matches_runtime() {
    let text = common::corpus(common::WHOLE);
    let tok = TextTokenizer::train_char(&text);
    let bytes = file_with(&tok);
    let ours = tok.encode(&text).unwrap();
    assert_eq!(ours.len(), text.chars().count());
    assert_eq!(ours, runtime_encode(&bytes, &text));
    assert_eq!(tok.decode(&ours), text);
}

#[test]
fn bpe_tokenizer_matches_runtime_and_tokenizers_crate() {
    let text = common::corpus(400_000);
    let (train_text, test_text) = text.split_at(text.char_indices().nth(text.chars().count() * 9 / 10).unwrap().0);
    let tk = bpe::train_tokenizers(train_text, 512).unwrap();
    let tok = TextTokenizer::train_bpe(train_text, 512).unwrap();
    assert_eq!(tok.vocab_size(), 512, "BPE learned fewer merges than asked");
    let bytes = file_with(&tok);
    let rt_model = export::load(&bytes).unwrap();
    let rt_tok = rt_model.tokenizer();

    for (what, t) in [("train text", train_text), ("held-out text", test_text), ("odd text", "  double  spaces\n\n\tTABS ünïcödé ☃☃ 123 ")] {
        let ours = tok.encode(t).unwrap();
        let theirs = runtime_encode(&bytes, t);
        assert_eq!(ours, theirs, "{what}: trainer and runtime ids differ");
        assert!(ours.len() < t.len() || t.len() < 50, "{what}: BPE does not compress ({} tokens, {} bytes)", ours.len(), t.len());

        // Independent check: the tokenizers crate's own encoding, compared as byte strings.
        let enc = tk.encode(t, false).unwrap();
        let table = bpe::byte_chars();
        let from_chars = |s: &str| -> Vec<u8> { s.chars().map(|c| table.iter().position(|&x| x == c).unwrap() as u8).collect() };
        let crate_pieces: Vec<Vec<u8>> = enc.get_tokens().iter().map(|s| from_chars(s)).collect();
        let rt_pieces: Vec<Vec<u8>> = theirs.iter().map(|&id| rt_tok.token_bytes(id).to_vec()).collect();
        assert_eq!(crate_pieces, rt_pieces, "{what}: tokenizers crate and runtime split differently");
    }
}
