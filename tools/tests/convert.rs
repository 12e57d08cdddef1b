//! `tinygpt convert` against independent oracles: llama2.c's own `model.py` and `export.py` write
//! the checkpoints, llama.cpp's `gguf` package writes the GGUF files (`tests/interop/make_models.py`),
//! llama2.c's `run.c` (float) and `runq.c` (Q8_0), built with gcc, give the greedy token ids and
//! the text, and the `sentencepiece` package checks the tokenizer.
//!
//! They need `../shared/third_party/llama2.c` (or `TINYGPT_LLAMA2C`), gcc and the repository's
//! `.venv` with torch, numpy, gguf and sentencepiece (`tools/test-interop.sh` installs the Python
//! packages); without them the tests fail and say what is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use tinygpt_runtime::writer::read_aligned;
use tinygpt_runtime::{KvDType, Model, Session};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn llama2c() -> PathBuf {
    let d = std::env::var_os("TINYGPT_LLAMA2C").map(PathBuf::from).unwrap_or_else(|| repo().join("../shared/third_party/llama2.c"));
    assert!(d.join("run.c").is_file(), "llama2.c's sources are not in {} (set TINYGPT_LLAMA2C)", d.display());
    d
}

fn python() -> PathBuf {
    let p = repo().join(".venv/bin/python");
    assert!(p.exists(), "no Python venv at {} (tools/setup-libtorch.sh makes it)", p.display());
    p
}

fn run(cmd: &mut Command) -> Output {
    let o = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?} failed: {}\n{}", String::from_utf8_lossy(&o.stderr), String::from_utf8_lossy(&o.stdout));
    o
}

/// The oracle programs and test models, made once.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A program that runs llama2.c's own `encode` and `forward` (from `run.c` or `runq.c`, included
/// as they are) and prints the token ids its `generate` loop produces with greedy sampling: the
/// prompt's ids after BOS, then the generated ones, ending before a generated BOS.
const HARNESS: &str = r#"
#define TESTING
#include SOURCE
int main(int argc, char **argv) {
    Transformer t;
    build_transformer(&t, argv[1]);
    Tokenizer tok;
    build_tokenizer(&tok, argv[2], t.config.vocab_size);
    int steps = atoi(argv[3]);
    char *prompt = argv[4];
    int *ids = malloc((strlen(prompt) + 3) * sizeof(int));
    int n = 0;
    encode(&tok, prompt, 1, 0, ids, &n);
    int token = ids[0], pos = 0, next;
    while (pos < steps) {
        float *logits = forward(&t, token, pos);
        next = pos < n - 1 ? ids[pos + 1] : sample_argmax(logits, t.config.vocab_size);
        pos++;
        if (next == 1) break;
        printf("%d ", next);
        token = next;
    }
    printf("\n");
    return 0;
}
"#;

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let src = llama2c();
        let dir = tempfile::tempdir().unwrap();
        let f = Fixture { dir };
        run(Command::new(python())
            .arg(repo().join("tools/tests/interop/make_models.py"))
            .arg(&src)
            .arg(f.dir.path()));
        for prog in ["run", "runq"] {
            let c = src.join(format!("{prog}.c"));
            run(Command::new("gcc").args(["-O2", "-o"]).arg(f.path(prog)).arg(&c).arg("-lm"));
            let h = f.path(&format!("{prog}-ids.c"));
            std::fs::write(&h, HARNESS.replace("SOURCE", &format!("{:?}", c.display().to_string()))).unwrap();
            run(Command::new("gcc").args(["-O2", "-o"]).arg(f.path(&format!("{prog}-ids"))).arg(&h).arg("-lm"));
        }
        f
    })
}

fn tinygpt(args: &[&str]) -> Output {
    Command::new(std::env::var("TINYGPT_EXE").unwrap_or_else(|_| env!("CARGO_BIN_EXE_tinygpt").to_owned())).args(args).output().unwrap()
}

fn convert(input: &Path, out: &Path, extra: &[&str]) {
    let tok = llama2c().join("tokenizer.bin");
    let mut args = vec![input.to_str().unwrap(), "--out", out.to_str().unwrap()];
    let is_gguf = input.extension().is_some_and(|e| e == "gguf");
    if !is_gguf {
        args.extend(["--tokenizer", tok.to_str().unwrap()]);
    }
    args.extend(extra);
    let o = tinygpt(&["convert"].iter().chain(&args).copied().collect::<Vec<_>>());
    assert!(o.status.success(), "convert {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// The prompts the comparisons use: plain text, leading and doubled spaces, a newline, an empty
/// prompt (BOS only) and characters that need byte fallback.
const PROMPTS: &[&str] = &["Once upon a time", "  The  cat", "Lily\nand Tom", "", "caf\u{e9} \u{1f999} \u{4f60}\u{597d}"];

/// The runtime's greedy ids on the converted model, in the harness's form.
fn tinygpt_ids(model: &Path, prompt: &str, steps: usize) -> Vec<u32> {
    let bytes = read_aligned(model).unwrap();
    let m = Model::from_bytes(&bytes).unwrap();
    let tok = m.tokenizer();
    let mut ids = vec![0u32; prompt.len() + 2];
    let n = tok.encode(prompt, &mut ids).unwrap();
    ids.truncate(n);
    assert_eq!(ids[0], 1, "sentencepiece encoding starts with BOS");
    let ctx = m.config().block_size as usize;
    let mut buf = vec![0u8; m.session_bytes(ctx, KvDType::F32)];
    let mut s = Session::new(&m, &mut buf, ctx, KvDType::F32).unwrap();
    let mut out = Vec::new();
    let mut token = ids[0];
    for pos in 0..steps {
        let logits = s.step(token).unwrap();
        let next = if pos + 1 < ids.len() { ids[pos + 1] } else { tinygpt_runtime::sampler::argmax(logits) };
        if next == 1 {
            break;
        }
        out.push(next);
        token = next;
    }
    out
}

fn oracle_ids(prog: &str, ckpt: &Path, prompt: &str, steps: usize) -> Vec<u32> {
    let f = fixture();
    let o = run(Command::new(f.path(&format!("{prog}-ids")))
        .arg(ckpt)
        .arg(llama2c().join("tokenizer.bin"))
        .arg(steps.to_string())
        .arg(prompt));
    String::from_utf8(o.stdout).unwrap().split_whitespace().map(|t| t.parse().unwrap()).collect()
}

/// Same ids as the oracle for every prompt, and the same text as its own program prints.
fn check(prog: &str, ckpt: &Path, model: &Path) {
    let f = fixture();
    // run.c clips the steps to the context.
    let steps = 40.min(Model::from_bytes(&read_aligned(model).unwrap()).unwrap().config().block_size as usize);
    let mut texts = 0;
    for p in PROMPTS {
        let want = oracle_ids(prog, ckpt, p, steps);
        let got = tinygpt_ids(model, p, steps);
        assert_eq!(got, want, "{prog} on {}: greedy ids for prompt {p:?}", ckpt.display());
        assert!(want.len() >= steps - 1, "the oracle generated {} tokens (a BOS ended it early)", want.len());
        if p.is_ascii() {
            // run.c prints what it decodes, but drops unprintable byte tokens: compare ASCII prompts.
            let n_prompt = {
                let bytes = read_aligned(model).unwrap();
                let m = Model::from_bytes(&bytes).unwrap();
                let mut ids = vec![0u32; p.len() + 2];
                m.tokenizer().encode(p, &mut ids).unwrap()
            };
            let n_gen = steps + 1 - n_prompt;
            let o = run(Command::new(f.path(prog))
                .arg(ckpt)
                .args(["-z", llama2c().join("tokenizer.bin").to_str().unwrap(), "-t", "0", "-n", &steps.to_string(), "-i", p]));
            let c_text = String::from_utf8_lossy(&o.stdout).trim_end_matches('\n').to_string();
            let mut args = vec!["generate", "-m", model.to_str().unwrap(), "--temp", "0", "-n"];
            let n = n_gen.to_string();
            args.push(&n);
            args.extend(["-p", p]);
            if p.is_empty() {
                continue; // tinygpt generate refuses an empty prompt
            }
            let t = tinygpt(&args);
            assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
            assert_eq!(String::from_utf8_lossy(&t.stdout), c_text, "{prog}: text for prompt {p:?}");
            texts += 1;
        }
    }
    assert!(texts >= 3);
}

#[test]
fn llama2c_legacy_float_matches_run_c() {
    let f = fixture();
    let out = f.path("legacy.tgpt");
    convert(&f.path("model-legacy.bin"), &out, &[]);
    check("run", &f.path("model-legacy.bin"), &out);
}

#[test]
fn llama2c_untied_legacy_matches_run_c() {
    let f = fixture();
    let out = f.path("untied.tgpt");
    convert(&f.path("model-untied-legacy.bin"), &out, &[]);
    let bytes = read_aligned(&out).unwrap();
    assert!(!Model::from_bytes(&bytes).unwrap().config().tie_embeddings);
    check("run", &f.path("model-untied-legacy.bin"), &out);
}

#[test]
fn llama2c_version2_q8_0_matches_runq_c() {
    let f = fixture();
    let out = f.path("v2.tgpt");
    convert(&f.path("model-v2.bin"), &out, &[]);
    let bytes = read_aligned(&out).unwrap();
    let m = Model::from_bytes(&bytes).unwrap();
    assert_eq!((m.config().dtype, m.config().group_size), (tinygpt_runtime::DType::I8, 64));
    check("runq", &f.path("model-v2.bin"), &out);
}

#[test]
fn gguf_f32_matches_run_c() {
    let f = fixture();
    let out = f.path("gguf-f32.tgpt");
    convert(&f.path("model-f32.gguf"), &out, &[]);
    check("run", &f.path("model-legacy.bin"), &out);
}

#[test]
fn gguf_f16_matches_run_c_on_the_same_values() {
    let f = fixture();
    for dtype in ["f32", "f16"] {
        let out = f.path(&format!("gguf-f16-{dtype}.tgpt"));
        convert(&f.path("model-f16.gguf"), &out, &["--dtype", dtype]);
        check("run", &f.path("gguf-f16-legacy.bin"), &out);
    }
}

#[test]
fn gguf_q8_0_matches_runq_c_on_the_same_values() {
    let f = fixture();
    let out = f.path("gguf-q8.tgpt");
    convert(&f.path("model-q8_0.gguf"), &out, &[]);
    let bytes = read_aligned(&out).unwrap();
    let m = Model::from_bytes(&bytes).unwrap();
    assert_eq!((m.config().dtype, m.config().group_size), (tinygpt_runtime::DType::I8, 32));
    check("runq", &f.path("gguf-q8_0-v2.bin"), &out);
}

/// The converted tokenizer against the `sentencepiece` package on `tokenizer.model`: the same ids
/// (with BOS) and the same decoded text, for text with spaces, newlines, punctuation, digits,
/// accents, CJK and characters that need byte fallback.
#[test]
fn tokenizer_matches_sentencepiece() {
    let f = fixture();
    let model = f.path("tok-legacy.tgpt");
    convert(&f.path("model-untied-legacy.bin"), &model, &[]);
    let texts = [
        "Hello world",
        " leading space",
        "two  spaces and   three",
        "new\nlines\n\n",
        "tabs\tand 123456789 digits, punctuation!?",
        "caf\u{e9} na\u{ef}ve \u{e0} la r\u{e9}sum\u{e9}",
        "\u{4f60}\u{597d}\u{4e16}\u{754c} \u{1f999}\u{1f600} \u{2603}",
        "a",
        "It was a sunny day. Lily and Tom went to the park to play.",
    ];
    // Texts go to Python as hex lines; ids come back one line per text.
    let script = r#"
import sys, sentencepiece
sp = sentencepiece.SentencePieceProcessor(model_file=sys.argv[1])
for line in sys.stdin.read().split():
    print(" ".join(str(i) for i in [sp.bos_id()] + sp.encode(bytes.fromhex(line).decode())))
"#;
    let hex: String = texts.iter().map(|t| t.bytes().map(|b| format!("{b:02x}")).collect::<String>() + "\n").collect();
    let mut child = Command::new(python())
        .args(["-c", script])
        .arg(llama2c().join("tokenizer.model"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(hex.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    let want: Vec<Vec<u32>> =
        String::from_utf8(o.stdout).unwrap().lines().map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect()).collect();
    assert_eq!(want.len(), texts.len());
    let bytes = read_aligned(&model).unwrap();
    let m = Model::from_bytes(&bytes).unwrap();
    let tok = m.tokenizer();
    for (t, w) in texts.iter().zip(&want) {
        let mut ids = vec![0u32; t.len() + 2];
        let n = tok.encode(t, &mut ids).unwrap();
        assert_eq!(&ids[..n], &w[..], "ids of {t:?}");
        let mut out = vec![0u8; 4 * t.len() + 8];
        let k = tok.decode_into(&ids[..n], &mut out);
        assert_eq!(std::str::from_utf8(&out[..k]).unwrap(), *t, "decoding {t:?}");
    }
}


/// `--dtype int4` stores the checkpoint's own weights quantized as FORMAT.md says, re-stated
/// here: per row, groups of `--group-size` columns (the last may be shorter), scale
/// `s = f16(max|w| / 7)`, `q = round(w / s)` half away from zero, clamped to ±7. Every
/// dequantized weight of the int4 file equals `q · s` computed from the f32 conversion of the
/// same checkpoint (whose weights are the checkpoint's, as the run.c comparison shows), and the
/// int4 model generates.
#[test]
fn llama2c_to_int4_is_the_checkpoint_quantized() {
    use tinygpt_runtime::format::{for_each_tensor, parse, tensor_shape};
    use tinygpt_runtime::weights::tensor_f32;
    let f = fixture();
    let (f32_path, i4_path) = (f.path("int4-base-f32.tgpt"), f.path("int4.tgpt"));
    convert(&f.path("model-legacy.bin"), &f32_path, &[]);
    for group in [32usize, 48] {
        let g = group.to_string();
        convert(&f.path("model-legacy.bin"), &i4_path, &["--dtype", "int4", "--group-size", &g]);
        let (a, b) = (read_aligned(&f32_path).unwrap(), read_aligned(&i4_path).unwrap());
        let (pa, pb) = (parse(&a).unwrap(), parse(&b).unwrap());
        let cfg = pb.header.config;
        assert_eq!((cfg.dtype, cfg.group_size as usize), (tinygpt_runtime::DType::I4, group));
        let (mut checked, mut nonzero) = (0usize, 0usize);
        for_each_tensor(&cfg, |id| {
            let s = tensor_shape(&cfg, id);
            let (mut w, mut q) = (vec![0f32; s.rows * s.cols], vec![0f32; s.rows * s.cols]);
            tensor_f32(&pa, id, &mut w);
            tensor_f32(&pb, id, &mut q);
            if s.vector {
                assert_eq!(w, q, "{id}: vectors stay f32");
                return;
            }
            for (wr, qr) in w.chunks(s.cols).zip(q.chunks(s.cols)) {
                for (wg, qg) in wr.chunks(group).zip(qr.chunks(group)) {
                    let amax = wg.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let scale = half::f16::from_f32(amax / 7.0).to_f32();
                    for (&x, &y) in wg.iter().zip(qg) {
                        let want = if scale == 0.0 { 0.0 } else { (x / scale).round().clamp(-7.0, 7.0) * scale };
                        assert_eq!(y, want, "{id} group {group}: {x} stored as {y}, not {want}");
                        nonzero += (y != 0.0) as usize;
                        checked += 1;
                    }
                }
            }
        });
        assert!(checked > 100_000 && nonzero * 2 > checked, "{checked} weights, {nonzero} nonzero");
        // Half the size of int8 or less, and it runs.
        assert!(b.len() * 7 < a.len() * 2, "int4 file {} bytes against f32 {}", b.len(), a.len());
        let ids = tinygpt_ids(&i4_path, "Once upon a time", 12);
        assert!(ids.len() >= 8, "the int4 model generated {ids:?}");
    }
}
