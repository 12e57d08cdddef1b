//! Generation that can be stopped from outside (`generate_while`, `chat::reply_while`): until
//! `go_on` says no, the text is exactly `generate_until`'s / `chat::reply`'s, and it stops at
//! once, between tokens.

mod common;

use std::cell::Cell;

use tinygpt_runtime::chat::{self, Message, Template, CHAT_SPECIALS};
use tinygpt_runtime::writer::{encode_model_with_specials, MetaData};
use tinygpt_runtime::{generate_until, generate_while, Arch, DType, KvDType, Model, Sampler, SamplerConfig, Session};

const CFG: SamplerConfig = SamplerConfig { temperature: 1.0, top_k: 0, top_p: 1.0 };

#[test]
fn generation_stops_when_asked_and_keeps_the_same_text_until_then() {
    let cfg = common::config(Arch::Llama, DType::F32);
    let tok = common::char_tokenizer(cfg.vocab_size as usize);
    let bytes = common::build(&cfg, &tok, &common::random_weights(&cfg, 3));
    let model = Model::from_bytes(&bytes).unwrap();
    let ctx = model.config().block_size as usize;
    let mut buf = vec![0u8; model.session_bytes(ctx, KvDType::F32)];
    let prompt = [1u32, 2, 3];
    let n = 20;
    let mut full = Vec::new();
    {
        let mut s = Session::new(&model, &mut buf, ctx, KvDType::F32).unwrap();
        let mut sampler = Sampler::new(CFG, 9);
        let stats = generate_until(&mut s, &mut sampler, &prompt, n, &[], false, |t| full.extend(t.chars())).unwrap();
        assert_eq!(stats.generated, n);
    }
    // A character vocabulary: one character per token.
    assert_eq!(full.len(), n);
    for k in 0..prompt.len() + n + 2 {
        let mut s = Session::new(&model, &mut buf, ctx, KvDType::F32).unwrap();
        let mut sampler = Sampler::new(CFG, 9);
        let asked = Cell::new(0);
        let mut text = String::new();
        let go_on = || {
            asked.set(asked.get() + 1);
            asked.get() <= k
        };
        let stats = generate_while(&mut s, &mut sampler, &prompt, n, &[], false, |t| text.push_str(t), go_on).unwrap();
        let fed = k.min(prompt.len());
        let generated = k.saturating_sub(prompt.len()).min(n);
        assert_eq!(stats.prompt_tokens, fed, "k = {k}");
        assert_eq!(stats.generated, generated, "k = {k}");
        assert!(!stats.stopped);
        assert_eq!(text, full[..generated].iter().collect::<String>(), "k = {k}");
        // Asked once per step, and once more for the step it refused.
        assert_eq!(asked.get(), (k + 1).min(prompt.len() + n), "k = {k}");
    }
}

#[test]
fn reply_while_is_reply_until_stopped() {
    let mut cfg = common::config(Arch::Gpt2, DType::F32);
    let tok = common::char_tokenizer(96);
    cfg.vocab_size = 96 + CHAT_SPECIALS.len() as u32;
    let w = common::random_weights(&cfg, 5);
    let meta = MetaData { name: "chat-test".into(), ..Default::default() };
    let bytes = tinygpt_runtime::writer::AlignedBytes::new(
        &encode_model_with_specials(&cfg, &tok, &CHAT_SPECIALS, &meta, &|n| w.get(n).cloned()).unwrap(),
    );
    let model = Model::from_bytes(&bytes).unwrap();
    let tpl = Template::new(model.tokenizer()).unwrap();
    let ctx = model.config().block_size as usize;
    let mut prompt = vec![0u32; ctx];
    let (_, len) = tpl.render_fitting(&[Message::user("hello")], 1, &mut prompt).unwrap();
    let mut buf = vec![0u8; model.session_bytes(ctx, KvDType::F32)];
    for seed in 0..10u64 {
        let (mut a, mut b) = (String::new(), String::new());
        let sa = {
            let mut s = Session::new(&model, &mut buf, ctx, KvDType::F32).unwrap();
            chat::reply(&mut s, &mut Sampler::new(CFG, seed), &tpl, &prompt[..len], 30, |t| a.push_str(t)).unwrap()
        };
        let sb = {
            let mut s = Session::new(&model, &mut buf, ctx, KvDType::F32).unwrap();
            chat::reply_while(&mut s, &mut Sampler::new(CFG, seed), &tpl, &prompt[..len], 30, |t| b.push_str(t), || true).unwrap()
        };
        assert_eq!((a, sa), (b, sb), "seed {seed}");
        // Stopped before the first reply token: nothing generated, the prompt fed.
        let mut s = Session::new(&model, &mut buf, ctx, KvDType::F32).unwrap();
        let calls = Cell::new(0);
        let st = chat::reply_while(&mut s, &mut Sampler::new(CFG, seed), &tpl, &prompt[..len], 30, |_| panic!("no text"), || {
            calls.set(calls.get() + 1);
            calls.get() <= len
        })
        .unwrap();
        assert_eq!((st.prompt_tokens, st.generated, st.stopped), (len, 0, false));
    }
}
