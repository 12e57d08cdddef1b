//! Supervised chat fine-tuning: rendering against the runtime's template, the loss mask, the
//! special tokens, vocabulary growth, bad data, and a small run end to end (train a base, fine-tune
//! it, export, chat with the runtime, resume).

mod common;

use std::path::Path;
use std::process::Command;

use tch::{Device, Kind, Tensor};
use tinygpt_runtime::chat::{Role, Template, CHAT_SPECIALS, IM_END, IM_SEP, IM_START, PAD};
use tinygpt_runtime::writer::{self, AlignedBytes, MetaData};
use tinygpt_runtime::{DType, Message, Model};
use tinygpt_train::config::TrainConfig;
use tinygpt_train::data::TextTokenizer;
use tinygpt_train::export;
use tinygpt_train::model::{Gpt, ModelDims};
use tinygpt_train::optim::AdamW;
use tinygpt_train::sft::{self, Conversation, SftConfig};
use tinygpt_train::train::{self, RunOptions, TrainState, TRAINER_VERSION};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const PIECES: [&str; 14] = [
    "hello", " ", "world", "<|im_end|>", "<|im_start|>", "<|pad|>", "<|im_sep|>", "assistant", "user", "\n", "héllo ☃", "<|", "|>", "ok.",
];

fn random_text(rng: &mut Rng) -> String {
    let n = 1 + rng.below(6);
    (0..n).map(|_| PIECES[rng.below(PIECES.len())]).collect()
}

fn random_conversation(rng: &mut Rng) -> Conversation {
    let mut messages = Vec::new();
    if rng.below(3) == 0 {
        messages.push((Role::System, random_text(rng)));
    }
    let turns = 1 + rng.below(3);
    for _ in 0..turns {
        messages.push((Role::User, random_text(rng)));
        messages.push((Role::Assistant, random_text(rng)));
    }
    if rng.below(4) == 0 {
        messages.push((Role::User, random_text(rng)));
    }
    Conversation { messages }
}

fn small_cfg(arch: &str, tie: bool) -> TrainConfig {
    TrainConfig::from_str_with(
        &format!(
            "corpus = \"-\"\narch = \"{arch}\"\nn_layer = 1\nn_head = 2\nn_embd = 16\nblock_size = 128\nbatch_size = 2\nmax_iters = 1\nlearning_rate = 1e-3\ntie_embeddings = {tie}\n"
        ),
        &[],
    )
    .unwrap()
}

/// A `.tgpt` of a random model with `tok`'s vocabulary (special tokens included).
fn runtime_file(tok: &TextTokenizer) -> AlignedBytes {
    let cfg = small_cfg("llama", true);
    let model = Gpt::new(ModelDims::new(&cfg, tok.vocab_size()), Device::Cpu, false).unwrap();
    export::encode(&model, tok, &MetaData::default(), DType::F32, 16).unwrap()
}

fn tokenizers() -> Vec<(&'static str, TextTokenizer)> {
    let text: String = PIECES.concat().repeat(20) + "system abcdefghijklmnopqrstuvwxyz";
    vec![
        ("char", TextTokenizer::train_char(&text).add_specials(&CHAT_SPECIALS)),
        ("bpe", TextTokenizer::train_bpe(&text, 300).unwrap().add_specials(&CHAT_SPECIALS)),
    ]
}

#[test]
fn rendering_matches_the_runtime_template_token_for_token() {
    for (kind, tok) in tokenizers() {
        let bytes = runtime_file(&tok);
        let model = Model::from_bytes(&bytes).unwrap();
        let template = Template::new(model.tokenizer()).expect("a chat model");
        let ids = template.tokens();
        assert_eq!(
            [ids.im_start, ids.im_sep, ids.im_end, ids.pad],
            [IM_START, IM_SEP, IM_END, PAD].map(|n| tok.special_id(n).unwrap())
        );
        let mut rng = Rng(0x9e3779b97f4a7c15);
        let mut buf = vec![0u32; 4096];
        let mut assistant_tokens = 0;
        for i in 0..300 {
            let conv = random_conversation(&mut rng);
            let msgs: Vec<Message<'_>> = conv.runtime_messages();
            let n = template.render(&msgs, false, &mut buf).unwrap();
            let (tokens, mask) = sft::render(&tok, &conv.messages).unwrap();
            assert_eq!(tokens, &buf[..n], "{kind} conversation {i}: {conv:?}");
            // The mask from the runtime's own pieces: each assistant turn after its opening.
            let mut expect = Vec::new();
            for m in &msgs {
                let mut t = vec![0u32; 1024];
                let open = template.render_open(m.role, &mut t).unwrap();
                let all = template.render_turn(m, &mut t).unwrap();
                expect.extend(std::iter::repeat_n(false, open));
                expect.extend(std::iter::repeat_n(m.role == Role::Assistant, all - open));
            }
            assert_eq!(mask, expect, "{kind} conversation {i}");
            assistant_tokens += mask.iter().filter(|&&b| b).count();
            // The prompt for the last reply is the runtime's rendering with the reply's opening.
            let (prompt, _) = conv.prompt_and_answer().unwrap();
            let pm: Vec<Message<'_>> = prompt.iter().map(|(r, c)| Message { role: *r, content: c }).collect();
            let n = template.render(&pm, true, &mut buf).unwrap();
            assert_eq!(sft::render_prompt(&tok, prompt).unwrap(), &buf[..n]);
        }
        assert!(assistant_tokens > 1000);
    }
}

#[test]
fn special_tokens_are_never_encoded_and_decode_as_nothing() {
    for (kind, tok) in tokenizers() {
        let n_regular = tok.n_regular();
        assert_eq!(tok.vocab_size(), n_regular + 4, "{kind}");
        assert_eq!(tok.specials(), CHAT_SPECIALS.map(String::from).as_slice());
        let text = "<|im_start|>user<|im_sep|>hello<|im_end|><|pad|>";
        let ids = tok.encode(text).unwrap();
        assert!(ids.iter().all(|&i| (i as usize) < n_regular), "{kind}: {ids:?}");
        assert_eq!(tok.decode(&ids), text);
        let end = tok.special_id(IM_END).unwrap();
        assert!(tok.is_special(end) && !tok.is_special(ids[0]));
        let mut with = tok.encode("hello").unwrap();
        with.insert(with.len().min(2), end);
        with.push(tok.special_id(PAD).unwrap());
        assert_eq!(tok.decode(&with), "hello", "{kind}");
        // Adding the chat tokens again changes nothing.
        assert_eq!(tok.add_specials(&CHAT_SPECIALS).vocab_size(), tok.vocab_size());
    }
}

/// Cross-entropy over the masked targets, computed position by position in f64.
fn oracle_loss(logits: &Tensor, targets: &Tensor) -> f64 {
    let (b, t, v) = logits.size3().unwrap();
    let lg = Vec::<f32>::try_from(&logits.contiguous().view([-1])).unwrap();
    let tg = Vec::<i64>::try_from(&targets.contiguous().view([-1])).unwrap();
    let (mut sum, mut n) = (0.0f64, 0);
    for p in 0..(b * t) as usize {
        if tg[p] == -100 {
            continue;
        }
        let row = &lg[p * v as usize..(p + 1) * v as usize];
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
        let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
        sum += lse - row[tg[p] as usize] as f64;
        n += 1;
    }
    sum / n as f64
}

#[test]
fn the_loss_is_the_mean_over_assistant_tokens_only() {
    let (_, tok) = tokenizers().remove(0);
    let cfg = small_cfg("gpt2", true);
    tch::manual_seed(3);
    let model = Gpt::new(ModelDims::new(&cfg, tok.vocab_size()), Device::Cpu, false).unwrap();
    let pad = tok.special_id(PAD).unwrap();
    let long = Conversation {
        messages: vec![
            (Role::System, "hello world".into()),
            (Role::User, "hello".into()),
            (Role::Assistant, "world ok.".into()),
            (Role::User, "ok.".into()),
            (Role::Assistant, "hello".into()),
        ],
    };
    let short = Conversation { messages: vec![(Role::User, "héllo ☃".into()), (Role::Assistant, "ok.".into())] };
    let a = sft::render(&tok, &long.messages).unwrap();
    let b = sft::render(&tok, &short.messages).unwrap();
    let (x, y, real) = sft::batch_tensors(&[&a, &b], pad, 128);
    assert_eq!(x.size(), [2, a.0.len() as i64 - 1]);
    assert_eq!(real as usize, a.0.len() + b.0.len() - 2);
    let n_targets = y.ne(-100i64).sum(Kind::Int64).int64_value(&[]);
    let assistant = a.1.iter().filter(|&&m| m).count() + b.1.iter().filter(|&&m| m).count();
    assert_eq!(n_targets as usize, assistant, "one target per assistant token");
    let loss = |x: &Tensor, y: &Tensor| tch::no_grad(|| model.loss(x, y, false).double_value(&[]));
    let base = loss(&x, &y);
    let logits = tch::no_grad(|| model.forward(&x, false));
    assert!((base - oracle_loss(&logits, &y)).abs() < 1e-5, "{base} vs the oracle {}", oracle_loss(&logits, &y));

    // A different token in a user turn, on the target side only: the targets, and the loss, stay.
    let user_pos = a.1.iter().position(|&m| !m).unwrap() + 3;
    let mut a2 = a.clone();
    a2.0[user_pos] = tok.encode("w").unwrap()[0];
    let (_, y2, _) = sft::batch_tensors(&[&a2, &b], pad, 128);
    assert_eq!(Vec::<i64>::try_from(&y2.view([-1])).unwrap(), Vec::<i64>::try_from(&y.view([-1])).unwrap());
    assert_eq!(loss(&x, &y2), base);
    // Padding inputs replaced by other tokens, and the padding's targets: nothing changes.
    let bl = b.0.len() as i64 - 1;
    let tail = x.size()[1] - bl;
    let x3 = x.copy();
    let _ = x3.get(1).narrow(0, bl, tail).fill_(tok.encode("h").unwrap()[0] as i64);
    assert_eq!(loss(&x3, &y), base);
    // The batch's loss is the token-weighted mean of each conversation's own loss (no padding).
    let one = |r: &sft::Rendered| {
        let (x, y, _) = sft::batch_tensors(&[r], pad, 128);
        (loss(&x, &y), r.1.iter().filter(|&&m| m).count() as f64)
    };
    let ((la, na), (lb, nb)) = (one(&a), one(&b));
    assert!((base - (la * na + lb * nb) / (na + nb)).abs() < 1e-5);
    // An assistant target changed: the loss changes.
    let asst_pos = a.1.iter().position(|&m| m).unwrap();
    let mut a4 = a.clone();
    a4.0[asst_pos] = tok.encode("z").unwrap()[0];
    let (_, y4, _) = sft::batch_tensors(&[&a4, &b], pad, 128);
    assert!((loss(&x, &y4) - base).abs() > 1e-4);
    assert!((sft::masked_loss(&model, &[a, b], pad, 1) - base).abs() < 1e-5);
}

/// A checkpoint of a freshly initialised model with `tok`'s vocabulary.
fn save_base(dir: &Path, cfg: &TrainConfig, tok: &TextTokenizer) -> (std::path::PathBuf, Gpt) {
    tch::manual_seed(11);
    let model = Gpt::new(ModelDims::new(cfg, tok.vocab_size()), Device::Cpu, false).unwrap();
    let opt = AdamW::new(&model, 0.9, 0.99, 1e-8, 0.1);
    let state = TrainState {
        trainer_version: TRAINER_VERSION.into(),
        config: cfg.clone(),
        vocab: tok.vocab().clone(),
        specials: tok.specials().to_vec(),
        sft: None,
        step: 5,
        tokens_seen: 50,
        best_val: None,
        best_step: 0,
        last_val: None,
        evals_since_best: 0,
        lr_scale: 1.0,
    };
    let p = dir.join("base.pt");
    train::save_checkpoint(&p, &state, &model, &opt).unwrap();
    (p, model)
}

#[test]
fn growing_the_vocabulary_keeps_the_base_logits() {
    let dir = common::tempdir();
    let text = "the quick brown fox jumps over the lazy dog\n";
    for (arch, tie) in [("gpt2", true), ("llama", false)] {
        let tok = TextTokenizer::train_char(text);
        let cfg = small_cfg(arch, tie);
        let (path, base_model) = save_base(dir.path(), &cfg, &tok);
        let base = sft::load_base(&path).unwrap();
        assert_eq!(base.tok.vocab_size(), tok.vocab_size());
        let (model, chat_tok) = sft::chat_model(&base, &cfg, Device::Cpu, false).unwrap();
        let v = tok.vocab_size() as i64;
        assert_eq!(model.dims.vocab_size, v + 4);
        assert_eq!(chat_tok.special_id(IM_START), Some(v as u32));
        let ids: Vec<i64> = tok.encode("the lazy fox").unwrap().into_iter().map(i64::from).collect();
        let x = Tensor::from_slice(&ids).view([1, -1]);
        let (old, new) = tch::no_grad(|| (base_model.forward(&x, false), model.forward(&x, false)));
        let diff = (new.narrow(2, 0, v) - &old).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{arch}: base logits changed by {diff}");
        // The new rows: near the mean of the old ones, and distinct from each other.
        for name in if tie { vec!["tok_embeddings"] } else { vec!["tok_embeddings", "output"] } {
            let w = model.vs.variables()[name].shallow_clone();
            let mean = Tensor::ones([1, v], (Kind::Float, Device::Cpu)).matmul(&w.narrow(0, 0, v)) / v as f64;
            let spread = (w.narrow(0, 0, v) - &mean).square().mean(Kind::Float).sqrt().double_value(&[]);
            let new_rows = w.narrow(0, v, 4);
            let off = (&new_rows - &mean).square().mean(Kind::Float).sqrt().double_value(&[]);
            assert!(off > 0.01 * spread && off < 0.5 * spread, "{name}: {off} vs spread {spread}");
            let d01 = (new_rows.get(0) - new_rows.get(1)).abs().max().double_value(&[]);
            assert!(d01 > 0.0);
        }
        // A base that already has the chat tokens does not grow.
        let (again, _) = sft::chat_model(&sft::load_base(&path).unwrap(), &cfg, Device::Cpu, false).unwrap();
        assert_eq!(again.dims.vocab_size, v + 4);
        let (path2, _) = save_base(dir.path(), &cfg, &chat_tok);
        let b2 = sft::load_base(&path2).unwrap();
        let (m2, t2) = sft::chat_model(&b2, &cfg, Device::Cpu, false).unwrap();
        assert_eq!((m2.dims.vocab_size, t2.vocab_size()), (v + 4, v as usize + 4));
    }
}

#[test]
fn a_tgpt_base_loads_with_its_weights_dequantized() {
    let dir = common::tempdir();
    let tok = TextTokenizer::train_char("the quick brown fox jumps over the lazy dog\n");
    let cfg = small_cfg("llama", true);
    let (_, model) = save_base(dir.path(), &cfg, &tok);
    let meta = MetaData { name: "fox".into(), corpus: "fox.txt".into(), train_steps: 9, ..MetaData::default() };
    for dtype in [DType::F32, DType::F16, DType::I8] {
        let bytes = export::encode(&model, &tok, &meta, dtype, 8).unwrap();
        let path = dir.path().join(format!("m-{}.tgpt", dtype.name()));
        writer::write_atomic(&path, &bytes).unwrap();
        let base = sft::load_base(&path).unwrap();
        assert_eq!(base.tok.vocab(), tok.vocab());
        assert_eq!((base.config.n_layer, base.config.n_embd, base.config.block_size), (1, 16, 128));
        assert_eq!((base.steps, base.corpus_name.as_str()), (9, "fox.txt"));
        for (name, t) in model.named_params() {
            let w = Vec::<f32>::try_from(&t.contiguous().view([-1])).unwrap();
            let got = Vec::<f32>::try_from(&base.weights[&name].contiguous().view([-1])).unwrap();
            let shape = t.size();
            let expect: Vec<f32> = match dtype {
                _ if shape.len() == 1 => w.clone(),
                DType::F32 => w.clone(),
                DType::F16 => w.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect(),
                DType::I8 => {
                    let (rows, cols) = (shape[0] as usize, shape[1] as usize);
                    let (scales, q) = writer::quantize_matrix(&w, rows, cols, 8);
                    let groups = cols.div_ceil(8);
                    (0..rows * cols).map(|i| q[i] as f32 * scales[(i / cols) * groups + (i % cols) / 8]).collect()
                }
            };
            assert_eq!(got, expect, "{} {name}", dtype.name());
        }
        let (tok2, block) = sft::base_tokenizer(&path).unwrap();
        assert_eq!((tok2.vocab_size(), block), (tok.vocab_size() + 4, 128));
    }
}

fn write_lines(dir: &Path, name: &str, lines: &[&str]) -> std::path::PathBuf {
    common::write(dir, name, (lines.join("\n") + "\n").as_bytes())
}

const GOOD: &str = r#"{"messages":[{"role":"user","content":"the fox"},{"role":"assistant","content":"the dog"}],"task":"x"}"#;

#[test]
fn bad_conversations_are_named_with_their_line() {
    let dir = common::tempdir();
    let tok = TextTokenizer::train_char("the quick brown fox jumps over the lazy dog\nsystemuserassistant").add_specials(&CHAT_SPECIALS);
    let long = format!(r#"{{"messages":[{{"role":"user","content":"{}"}},{{"role":"assistant","content":"the"}}]}}"#, "fox ".repeat(20));
    let cases: [(&str, &str); 11] = [
        ("{not json", "not JSON"),
        (r#"{"conversation":[]}"#, "no \"messages\""),
        (r#"{"messages":[]}"#, "empty"),
        (r#"{"messages":[{"role":"robot","content":"the"}]}"#, "unknown role \"robot\""),
        (r#"{"messages":[{"role":"user","content":""},{"role":"assistant","content":"the"}]}"#, "empty content"),
        (r#"{"messages":[{"role":"user","content":"the fox"}]}"#, "no assistant turn"),
        (r#"{"messages":[{"role":"user","content":"the cat!"},{"role":"assistant","content":"the"}]}"#, "'!'"),
        (&long, "block_size 48"),
        (r#"{"messages":[{"role":"user"},{"role":"assistant","content":"the"}]}"#, "no \"content\""),
        (r#"{"messages":[{"role":"user","content":"a"},{"role":"system","content":"the"}]}"#, "system turn may only come first"),
        (r#"[1, 2]"#, "not a JSON object"),
    ];
    for (i, (bad, want)) in cases.iter().enumerate() {
        let p = write_lines(dir.path(), &format!("bad{i}.jsonl"), &[GOOD, "", bad, GOOD]);
        let e = format!("{:#}", sft::read_jsonl(&p, &tok, 48, false).unwrap_err());
        assert!(e.starts_with(&format!("{}:3: ", p.display())), "case {i}: {e}");
        assert!(e.contains(want), "case {i}: {e:?} lacks {want:?}");
        assert_eq!(e.lines().count(), 1, "{e}");
        let kept = sft::read_jsonl(&p, &tok, 48, true).unwrap();
        assert_eq!(kept.len(), 2, "case {i}");
    }
    let ok = sft::read_jsonl(&write_lines(dir.path(), "good.jsonl", &[GOOD]), &tok, 48, false).unwrap();
    assert_eq!(ok, vec![Conversation { messages: vec![(Role::User, "the fox".into()), (Role::Assistant, "the dog".into())] }]);
    let p = common::write(dir.path(), "latin1.jsonl", b"{\"messages\": \"\xe9\"}\n");
    assert!(format!("{:#}", sft::read_jsonl(&p, &tok, 48, false).unwrap_err()).contains(":1: not UTF-8"));
    let p = write_lines(dir.path(), "allbad.jsonl", &["{", "[]"]);
    assert!(format!("{:#}", sft::read_jsonl(&p, &tok, 48, true).unwrap_err()).contains("no usable conversation"));
}

#[test]
fn the_validation_split_is_deterministic_and_disjoint() {
    let convs: Vec<Conversation> =
        (0..50).map(|i| Conversation { messages: vec![(Role::User, format!("q{i}")), (Role::Assistant, "a".into())] }).collect();
    let (t1, v1) = sft::split_conversations(&convs, 0.1, 7).unwrap();
    let (t2, v2) = sft::split_conversations(&convs, 0.1, 7).unwrap();
    assert_eq!((t1.len(), v1.len()), (45, 5));
    assert_eq!((&t1, &v1), (&t2, &v2));
    assert!(v1.iter().all(|c| !t1.contains(c)));
    let (_, v3) = sft::split_conversations(&convs, 0.1, 8).unwrap();
    assert_ne!(v1, v3);
    assert!(sft::split_conversations(&convs[..1], 0.1, 7).is_err());
}

#[test]
fn sft_configurations_reject_unknown_keys_and_bad_values() {
    let c = SftConfig::from_str_with("max_iters = 20\nlearning_rate = 1e-3\n", &["batch_size=4".into()]).unwrap();
    assert_eq!((c.max_iters, c.batch_size, c.learning_rate), (20, 4, 1e-3));
    assert_eq!(c.min_lr, SftConfig::default().min_lr);
    let e = format!("{:#}", SftConfig::from_str_with("max_iter = 20\n", &[]).unwrap_err());
    assert!(e.contains("max_iter"), "{e}");
    let e = format!("{:#}", SftConfig::default().with_overrides(&["n_layer=3".into()]).unwrap_err());
    assert!(e.contains("n_layer"), "{e}");
    for bad in ["learning_rate=-1", "val_fraction=1.5", "max_iters=0", "eval_interval=0", "dropout=1", "precision=\"f8\""] {
        assert!(SftConfig::default().with_overrides(&[bad.into()]).is_err(), "{bad}");
    }
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/sft-board.toml");
    SftConfig::load(&shipped, &[]).unwrap();
}

/// Conversations the alphabet model can learn: a letter, answered by the four that follow it.
fn alphabet_conversations() -> Vec<Conversation> {
    let letters: Vec<char> = ('a'..='z').collect();
    (0..22)
        .map(|i| Conversation {
            messages: vec![(Role::User, letters[i].to_string()), (Role::Assistant, letters[i + 1..i + 5].iter().collect())],
        })
        .collect()
}

fn alphabet_base(dir: &Path) -> std::path::PathBuf {
    let cfg = TrainConfig::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/alphabet.toml"), &["max_iters=150".into(), "sample_tokens=0".into()]).unwrap();
    let out = dir.join("base");
    common::run(&cfg, &out, false);
    out
}

fn finetune(base: &Path, out: &Path, sets: &[&str], resume: bool) -> train::RunSummary {
    let (tok, block) = sft::base_tokenizer(base).unwrap();
    let convs = alphabet_conversations();
    assert!(convs.iter().all(|c| sft::render(&tok, &c.messages).unwrap().0.len() <= block + 1));
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let cfg = SftConfig::default()
        .with_overrides(&[
            vec!["max_iters=300".to_string(), "learning_rate=3e-3".into(), "min_lr=3e-4".into(), "warmup_iters=10".into()],
            vec!["eval_interval=50".into(), "batch_size=16".into(), "threads=1".into(), "seed=5".into()],
            sets,
        ]
        .concat())
        .unwrap();
    // Validation on the training questions: the test asks whether they are learnt.
    let _turn = common::training_turn();
    train::set_threads(1);
    sft::finetune(base, &convs, &convs[..6], &cfg, &RunOptions { out: out.to_path_buf(), resume, device: Device::Cpu, verbose: false })
        .unwrap()
}

#[test]
fn a_fine_tuned_alphabet_model_answers_and_exports_as_a_chat_model() {
    let dir = common::tempdir();
    let base = alphabet_base(dir.path());
    let out = dir.path().join("sft");
    let s = finetune(&base, &out, &[], false);
    assert_eq!((s.steps, s.reason.as_str()), (300, "finished"));
    let (first, last) = (s.val_losses[0].1, s.best_val.unwrap());
    assert!(last < 0.2 && last < first / 3.0, "val loss {first} -> {last}");
    for f in ["best.pt", "last.pt", "log.jsonl", "loss.svg"] {
        assert!(out.join(f).exists(), "{f}");
    }
    let ck = common::best(&out);
    assert_eq!(ck.state.specials, CHAT_SPECIALS.map(String::from).to_vec());
    assert!(ck.state.sft.as_ref().is_some_and(|o| o.base_steps == 150 && o.train_conversations == 22));

    // Export through the command line (int8, validated on the base's alphabet text).
    let file = dir.path().join("chat.tgpt");
    let o = Command::new(env!("CARGO_BIN_EXE_tinygpt-train"))
        .args(["export", "--dtype", "int8", "--checkpoint"])
        .arg(&out)
        .arg("--out")
        .arg(&file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = writer::read_aligned(&file).unwrap();
    let model = Model::from_bytes(&bytes).unwrap();
    assert!(Template::new(model.tokenizer()).is_ok(), "a chat model");
    assert!(model.metadata().val_loss_i8.is_some_and(|l| l.is_finite()));
    assert_eq!(model.config().vocab_size, 27 + 4);
    let convs = alphabet_conversations();
    let prompts: Vec<&[(Role, String)]> = convs.iter().map(|c| c.prompt_and_answer().unwrap().0).collect();
    let replies = sft::runtime_replies(&bytes, &prompts, 16).unwrap();
    let correct = convs.iter().zip(&replies).filter(|(c, r)| c.prompt_and_answer().unwrap().1 == r.as_str()).count();
    eprintln!("fine-tuning: validation loss {first:.4} -> {last:.4}; {correct} of {} greedy replies correct", convs.len());
    assert!(correct * 10 >= convs.len() * 8, "{correct} of {} greedy replies correct: {replies:?}", convs.len());

    // The base, grown but not fine-tuned, does not answer (the replies were learnt).
    let b = sft::load_base(&base).unwrap();
    let (m0, t0) = sft::chat_model(&b, &b.config, Device::Cpu, false).unwrap();
    let bytes0 = export::encode(&m0, &t0, &MetaData::default(), DType::F32, 64).unwrap();
    let replies0 = sft::runtime_replies(&bytes0, &prompts, 16).unwrap();
    let correct0 = convs.iter().zip(&replies0).filter(|(c, r)| c.prompt_and_answer().unwrap().1 == r.as_str()).count();
    assert!(correct0 <= 2, "the base already answers {correct0}: {replies0:?}");

    // The fine-tuned model fine-tunes again without growing; from its .tgpt too.
    let again = sft::load_base(&file).unwrap();
    assert_eq!(again.tok.vocab_size(), 31);
    let (m, _) = sft::chat_model(&again, &again.config, Device::Cpu, false).unwrap();
    assert_eq!(m.dims.vocab_size, 31);
}

#[test]
fn a_paused_fine_tuning_run_resumes_to_the_same_result() {
    let dir = common::tempdir();
    let base = alphabet_base(dir.path());
    let whole = dir.path().join("whole");
    let parts = dir.path().join("parts");
    let a = finetune(&base, &whole, &["max_iters=120"], false);
    let p = finetune(&base, &parts, &["max_iters=120", "stop_at=70"], false);
    assert_eq!((p.steps, p.reason.as_str()), (70, "paused"));
    // Running again without --resume is refused; with it, the run continues from step 70.
    let again = {
        let _turn = common::training_turn();
        sft::finetune(&base, &alphabet_conversations(), &alphabet_conversations()[..6], &SftConfig::default(), &RunOptions {
            out: parts.clone(),
            resume: false,
            device: Device::Cpu,
            verbose: false,
        })
    };
    assert!(format!("{:#}", again.unwrap_err()).contains("--resume"));
    let r = finetune(&base, &parts, &["max_iters=120"], true);
    assert_eq!(r.steps, 120);
    assert_eq!(r.train_losses.first().map(|l| l.0), Some(71));
    assert_eq!(a.best_val, r.best_val, "an interrupted run ends where an uninterrupted one does");
    let (wa, wb) = (common::best(&whole), common::best(&parts));
    for (name, t) in &wa.tensors {
        if name.starts_with("model.") {
            assert!(t.equal(&wb.tensors[name]), "{name} differs");
        }
    }
    let rows = |dir: &Path| -> Vec<(u64, String, f64)> {
        std::fs::read_to_string(dir.join("log.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["step"].as_u64().unwrap(), v["split"].as_str().unwrap().to_owned(), v["loss"].as_f64().unwrap())
            })
            .collect()
    };
    let (ra, rb) = (rows(&whole), rows(&parts));
    assert_eq!(ra.iter().filter(|r| r.1 == "train").count(), 12, "a train row every 10 steps: {ra:?}");
    assert_eq!(ra, rb, "the resumed run's log is the uninterrupted run's");
    // Other conversations are refused on resume.
    let other: Vec<Conversation> = alphabet_conversations().into_iter().rev().collect();
    let cfg = SftConfig::default().with_overrides(&["max_iters=200".into()]).unwrap();
    let e = {
        let _turn = common::training_turn();
        sft::finetune(&base, &other, &other[..3], &cfg, &RunOptions { out: parts.clone(), resume: true, device: Device::Cpu, verbose: false })
            .unwrap_err()
    };
    assert!(format!("{e:#}").contains("differ"), "{e:#}");
}

#[test]
fn the_command_line_refuses_bad_data_and_skips_it_on_request() {
    let dir = common::tempdir();
    let tok = TextTokenizer::train_char("abcdefghijklmnopqrstuvwxyz\n");
    let cfg = TrainConfig::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/alphabet.toml"), &[]).unwrap();
    let (base, _) = save_base(dir.path(), &cfg, &tok);
    let good = r#"{"messages":[{"role":"user","content":"abc"},{"role":"assistant","content":"def"}]}"#;
    let data = write_lines(dir.path(), "d.jsonl", &[good, good, r#"{"messages":[{"role":"user","content":"ABC"},{"role":"assistant","content":"d"}]}"#, good, good]);
    let run = |extra: &[&str], out: &str| {
        Command::new(env!("CARGO_BIN_EXE_tinygpt-train"))
            .args(["sft", "--device", "cpu", "--set", "max_iters=4", "--set", "eval_interval=2", "--set", "threads=1", "--checkpoint"])
            .arg(&base)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(dir.path().join(out))
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&[], "refused");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(err.trim(), format!("tinygpt-train: error: {}:3: character 'A' is not in the model's vocabulary", data.display()));
    assert!(!dir.path().join("refused/last.pt").exists());
    let o = run(&["--skip-bad"], "skipped");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains(":3: character 'A'") && err.contains("skipped 1 bad line(s), kept 4"), "{err}");
    assert!(dir.path().join("skipped/best.pt").exists());
    let o = run(&["--set", "learning_rat=1"], "unknown");
    assert!(String::from_utf8_lossy(&o.stderr).contains("learning_rat"));
    let o = Command::new(env!("CARGO_BIN_EXE_tinygpt-train"))
        .args(["sft", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("--checkpoint"));
}

#[test]
fn a_run_from_a_tgpt_base_exports_with_the_base_corpus_validation() {
    let dir = common::tempdir();
    let run = alphabet_base(dir.path());
    let base = dir.path().join("base.tgpt");
    let exe = env!("CARGO_BIN_EXE_tinygpt-train");
    let o = Command::new(exe).args(["export", "--dtype", "int8", "--no-eval", "--checkpoint"]).arg(&run).arg("--out").arg(&base).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A .tgpt of a corpus file names the file only: without `corpus`, export says what to pass.
    let text = common::write(dir.path(), "letters.txt", "abcdefghijklmnopqrstuvwxyz\n".repeat(200).as_bytes());
    let bytes = writer::read_aligned(&base).unwrap();
    let mut meta = MetaData::from_file(Model::from_bytes(&bytes).unwrap().metadata());
    assert_eq!(meta.corpus, "alphabet task (generated)");
    meta.corpus = "letters.txt".into();
    let b = sft::load_base(&base).unwrap();
    let base_model = Gpt::new(ModelDims::new(&b.config, b.tok.vocab_size()), Device::Cpu, false).unwrap();
    for (name, w) in base_model.named_params() {
        let mut w = w.shallow_clone();
        tch::no_grad(|| w.copy_(&b.weights[&name]));
    }
    let named = dir.path().join("named.tgpt");
    writer::write_atomic(&named, &export::encode(&base_model, &b.tok, &meta, DType::F32, 64).unwrap()).unwrap();
    let export = |run: &Path, extra: &[&str]| {
        Command::new(exe).args(["export", "--eval-tokens", "500", "--checkpoint"]).arg(run).arg("--out").arg(dir.path().join("chat.tgpt")).args(extra).output().unwrap()
    };
    let corpus_set = format!("corpus={:?}", text.display().to_string());
    for (src, sets, ok) in [(&base, vec!["max_iters=20"], true), (&named, vec!["max_iters=20"], false), (&named, vec!["max_iters=20", corpus_set.as_str()], true)] {
        let out = dir.path().join(format!("sft-{}-{}", src.file_stem().unwrap().to_string_lossy(), sets.len()));
        let s = finetune(src, &out, &sets, false);
        assert_eq!(s.steps, 20);
        let o = export(&out, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.success(), ok, "{}: {err}", out.display());
        if ok {
            let m = writer::read_aligned(&dir.path().join("chat.tgpt")).unwrap();
            let model = Model::from_bytes(&m).unwrap();
            assert!(Template::new(model.tokenizer()).is_ok());
            assert!(model.metadata().val_loss_f32.is_some_and(|l| l.is_finite() && l < 1.0), "the alphabet survived");
        } else {
            assert!(err.contains("letters.txt") && err.contains("--corpus"), "{err}");
            assert!(export(&out, &["--corpus", &text.display().to_string()]).status.success());
        }
    }
}

#[test]
fn prose_rows_are_mixed_into_batches_with_the_loss_on_every_token() {
    use tinygpt_train::train::Batches;
    let (_, tok) = tokenizers().remove(0);
    let mut rng = Rng(7);
    let convs: Vec<Conversation> = (0..20).map(|_| random_conversation(&mut rng)).collect();
    let mut cfg = small_cfg("llama", true);
    cfg.batch_size = 8;
    let prose: Vec<u32> = tok.encode(&"abcdefghijklmnopqrstuvwxyz ".repeat(20)).unwrap();
    let plain = sft::ChatBatches::new(&tok, &convs, &convs, &cfg).unwrap();
    let mixed = sft::ChatBatches::new(&tok, &convs, &convs, &cfg).unwrap().with_prose(prose.clone(), 0.25).unwrap();
    assert_eq!(mixed.prose_rows(), 2);
    for step in 0..5 {
        let (a, b) = (plain.batch(step, 0), mixed.batch(step, 0));
        assert_eq!(b.inputs.size()[0], 8);
        let t = b.inputs.size()[1];
        let y = Vec::<i64>::try_from(b.targets.view([-1])).unwrap();
        let x = Vec::<i64>::try_from(b.inputs.view([-1])).unwrap();
        // The last two rows are prose: every position has a target, the next character.
        for row in 6..8 {
            let (xs, ys) = (&x[row * t as usize..(row + 1) * t as usize], &y[row * t as usize..(row + 1) * t as usize]);
            assert!(ys.iter().all(|&v| v >= 0), "a prose target is masked");
            assert_eq!(&xs[1..], &ys[..ys.len() - 1], "prose targets are the next tokens");
            let start = prose.windows(xs.len()).position(|w| w.iter().zip(xs).all(|(&p, &q)| p as i64 == q));
            assert!(start.is_some(), "a prose row is not a window of the prose");
        }
        // The conversation rows keep their mask: some targets are masked.
        assert!(y[..6 * t as usize].iter().any(|&v| v == -100));
        // The plain batches are all conversations.
        assert_eq!(a.inputs.size()[0], 8);
    }
    // Bad fractions are refused.
    assert!(sft::ChatBatches::new(&tok, &convs, &convs, &cfg).unwrap().with_prose(prose.clone(), 1.0).is_err());
    assert!(sft::ChatBatches::new(&tok, &convs, &convs, &cfg).unwrap().with_prose(prose[..10].to_vec(), 0.25).is_err());
    assert!(SftConfig::default().with_overrides(&["prose_fraction=0.95".into()]).is_err());
}
