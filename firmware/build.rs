//! Build-time configuration of the firmware.
//!
//! Environment variables (all optional; the defaults are those of `tinygpt generate`):
//!
//! | variable              | meaning                                   | default                  |
//! |-----------------------|-------------------------------------------|--------------------------|
//! | `TINYGPT_MODEL`       | `.tgpt` file embedded in flash            | `DEFAULT_MODEL` below    |
//! | `TINYGPT_PROMPT`      | prompt text (base models only)            | a newline                |
//! | `TINYGPT_SEED`        | sampler seed (u64)                        | 42                       |
//! | `TINYGPT_TOKENS`      | tokens to generate                        | 256                      |
//! | `TINYGPT_TEMPERATURE` | sampling temperature, 0 = greedy          | 0.8                      |
//! | `TINYGPT_TOP_K`       | top-k, 0 = off                            | 40                       |
//! | `TINYGPT_TOP_P`       | top-p, 1 = off                            | 1                        |
//! | `TINYGPT_CTX`         | context length (≤ the model's block size) | the model's block size   |
//! | `TINYGPT_HSE_HZ`      | crystal frequency on the board            | 8000000                  |
//! | `TINYGPT_SERIAL_PROMPT` | `1`: read prompts typed over USART1, one per line (Ctrl-D ends) | off |
//! | `TINYGPT_TEST_PANIC`  | `1`: panic after the banner (tests the failure path) | off           |
//!
//! The model header is read here (with the runtime's own parser) so that the session
//! buffer is sized exactly and a model that cannot fit the board fails the build with
//! a clear message instead of failing on the board.
//!
//! A chat model (one whose special tokens include the four chat tokens,
//! `tinygpt_runtime::ChatTokens::find`) builds the chat firmware: questions are typed over
//! USART1 and answered with the chat template, so `TINYGPT_PROMPT` does not apply to it.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;

use tinygpt_runtime::board::STM32F405;
use tinygpt_runtime::writer::read_aligned;
use tinygpt_runtime::format::ScaleDType;
use tinygpt_runtime::{ChatTokens, DType, KvDType, Message, Model, Template};

/// Relative to this crate's directory.
const DEFAULT_MODEL: &str = "../models/shakespeare-board.tgpt";

/// The board's budgets (shared with `tinygpt-train tune`'s `fits = "stm32f405"`). RAM the
/// firmware keeps for itself besides the session buffer: the stack (measured high-water is a few
/// KiB; keep a generous margin) and its own statics.
const RAM_RESERVE: usize = STM32F405.ram_reserve;
const RAM_SIZE: usize = STM32F405.ram;
const FLASH_SIZE: usize = STM32F405.flash;
/// Room for code and read-only data besides the model (48 to 52 KB today, see the README's
/// "Code size"; this is a floor for an early message, the linker has the last word).
const CODE_RESERVE: usize = 64 * 1024;

fn fail(msg: impl AsRef<str>) -> ! {
    eprintln!("error: {}", msg.as_ref());
    std::process::exit(1);
}

fn var(name: &str) -> Option<String> {
    println!("cargo:rerun-if-env-changed={name}");
    match env::var(name) {
        Ok(v) => Some(v),
        Err(env::VarError::NotPresent) => None,
        Err(env::VarError::NotUnicode(_)) => fail(format!("{name} is not valid UTF-8")),
    }
}

fn parse<T: std::str::FromStr>(name: &str, default: T) -> T {
    match var(name) {
        None => default,
        Some(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| fail(format!("{name}={s:?} is not a valid {}", std::any::type_name::<T>()))),
    }
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());

    // memory.x where the linker looks for it.
    fs::copy(manifest.join("memory.x"), out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");

    let model_path = match var("TINYGPT_MODEL") {
        Some(p) => {
            let p = PathBuf::from(p);
            // Relative paths are taken from where cargo was started... which cargo does
            // not tell build scripts; tools/board-qemu always passes an absolute path.
            if p.is_absolute() { p } else { manifest.join(p) }
        }
        None => manifest.join(DEFAULT_MODEL),
    };
    let model_path = model_path
        .canonicalize()
        .unwrap_or_else(|e| fail(format!("model {}: {e} (set TINYGPT_MODEL to a .tgpt file)", model_path.display())));
    println!("cargo:rerun-if-changed={}", model_path.display());

    let prompt_var = var("TINYGPT_PROMPT");
    let prompt = prompt_var.clone().unwrap_or_else(|| "\n".to_string());
    if prompt.is_empty() {
        fail("TINYGPT_PROMPT is empty: give at least one character");
    }
    let seed: u64 = parse("TINYGPT_SEED", 42);
    let tokens: u32 = parse("TINYGPT_TOKENS", 256);
    let temperature: f32 = parse("TINYGPT_TEMPERATURE", 0.8);
    let top_k: u32 = parse("TINYGPT_TOP_K", 40);
    let top_p: f32 = parse("TINYGPT_TOP_P", 1.0);
    let hse_hz: u32 = parse("TINYGPT_HSE_HZ", 8_000_000);
    let test_panic = var("TINYGPT_TEST_PANIC").is_some_and(|v| v == "1");
    let serial_prompt = var("TINYGPT_SERIAL_PROMPT").is_some_and(|v| v == "1");
    if !(4_000_000..=26_000_000).contains(&hse_hz) || hse_hz % 1_000_000 != 0 {
        fail(format!("TINYGPT_HSE_HZ={hse_hz}: the crystal must be a whole number of MHz from 4 to 26 MHz"));
    }
    if !(temperature.is_finite() && temperature >= 0.0) {
        fail(format!("TINYGPT_TEMPERATURE={temperature}: must be a finite number ≥ 0"));
    }
    if !(top_p > 0.0 && top_p <= 1.0) {
        fail(format!("TINYGPT_TOP_P={top_p}: must be in (0, 1]"));
    }

    let bytes = read_aligned(&model_path).unwrap_or_else(|e| fail(format!("model {}: {e}", model_path.display())));
    let model = Model::from_bytes(&bytes)
        .unwrap_or_else(|e| fail(format!("model {}: {e}", model_path.display())));
    let block_size = model.config().block_size as usize;
    let ctx: usize = parse("TINYGPT_CTX", block_size);
    if ctx == 0 || ctx > block_size {
        fail(format!("TINYGPT_CTX={ctx}: must be from 1 to the model's block size {block_size}"));
    }
    let session_bytes = model.session_bytes(ctx, KvDType::I8);
    if session_bytes + RAM_RESERVE > RAM_SIZE {
        fail(format!(
            "model {}: a session at context {ctx} with an int8 KV cache needs {session_bytes} bytes of RAM; \
             the board has {RAM_SIZE} and keeps {RAM_RESERVE} for stack and statics (try a smaller TINYGPT_CTX)",
            model_path.display()
        ));
    }
    if bytes.len() + CODE_RESERVE > FLASH_SIZE {
        fail(format!(
            "model {}: {} bytes do not fit in {FLASH_SIZE} bytes of flash with {CODE_RESERVE} kept for code",
            model_path.display(),
            bytes.len()
        ));
    }
    let chat = ChatTokens::find(&model.tokenizer()).is_some();
    let n_prompt = if chat {
        if prompt_var.is_some() {
            fail(format!(
                "TINYGPT_PROMPT is set but model {} is a chat model: its questions are typed over USART1 \
                 (unset TINYGPT_PROMPT)",
                model_path.display()
            ));
        }
        // The shortest conversation, one empty question, must leave room for a reply token.
        let template = Template::new(model.tokenizer()).unwrap_or_else(|e| fail(format!("model {}: {e}", model_path.display())));
        let mut ids = vec![0u32; ctx];
        if let Err(e) = template.render_fitting(&[Message::user("")], 1, &mut ids) {
            fail(format!(
                "model {}: context {ctx} cannot hold the chat template and a question ({e}); use a larger TINYGPT_CTX",
                model_path.display()
            ));
        }
        0
    } else {
        // Refuse a prompt the tokenizer cannot encode now rather than on the board.
        // Room for a sentencepiece tokenizer's BOS and leading space too.
        let mut ids = vec![0u32; prompt.len() + 2];
        let n_prompt = model
            .tokenizer()
            .encode(&prompt, &mut ids)
            .unwrap_or_else(|e| fail(format!("TINYGPT_PROMPT={prompt:?}: {e}")));
        if n_prompt > ctx {
            fail(format!("TINYGPT_PROMPT is {n_prompt} tokens, longer than the context {ctx}"));
        }
        n_prompt
    };

    // The banner's model and sampler lines, formatted here so that the image carries no float
    // formatting.
    let c = model.config();
    let mut banner = String::new();
    writeln!(
        banner,
        "model: {}, {} parameters, {} weights, {:?} {}x{} (heads {}/{}, hidden {}), vocab {}, context {} of {}",
        model.metadata().name,
        model.param_count(),
        c.dtype.name(),
        c.arch,
        c.n_layer,
        c.n_embd,
        c.n_head,
        c.n_kv_head,
        c.n_hidden,
        c.vocab_size,
        ctx,
        c.block_size,
    )
    .unwrap();
    let tokens_what = if chat { format!("up to {tokens} tokens per reply") } else { format!("{tokens} tokens") };
    writeln!(
        banner,
        "seed {seed}, {tokens_what}, temperature {temperature}, top-k {top_k}, top-p {top_p}, KV cache int8"
    )
    .unwrap();

    let mut cfg = String::new();
    writeln!(cfg, "/// The banner's model and sampler lines.").unwrap();
    writeln!(cfg, "pub const BANNER: &str = {banner:?};").unwrap();
    writeln!(cfg, "/// The prompt as a Rust string literal (quoted and escaped).").unwrap();
    writeln!(cfg, "pub const PROMPT_QUOTED: &str = {:?};", format!("{prompt:?}")).unwrap();
    writeln!(cfg, "/// Parameters (tied embeddings counted once).").unwrap();
    writeln!(cfg, "pub const PARAMS: u64 = {};", model.param_count()).unwrap();
    writeln!(cfg, "/// Path of the embedded model.").unwrap();
    writeln!(cfg, "pub const MODEL_PATH: &str = {:?};", model_path.display().to_string()).unwrap();
    writeln!(cfg, "/// The prompt.").unwrap();
    writeln!(cfg, "pub const PROMPT: &str = {prompt:?};").unwrap();
    writeln!(cfg, "/// Tokens in the prompt (checked on the host).").unwrap();
    writeln!(cfg, "pub const PROMPT_TOKENS: usize = {n_prompt};").unwrap();
    writeln!(cfg, "/// Sampler seed.").unwrap();
    writeln!(cfg, "pub const SEED: u64 = {seed};").unwrap();
    writeln!(cfg, "/// Tokens to generate.").unwrap();
    writeln!(cfg, "pub const TOKENS: usize = {tokens};").unwrap();
    writeln!(cfg, "/// Sampling temperature (0 = greedy).").unwrap();
    writeln!(cfg, "pub const TEMPERATURE: f32 = {temperature:?};").unwrap();
    writeln!(cfg, "/// Top-k (0 = off).").unwrap();
    writeln!(cfg, "pub const TOP_K: u32 = {top_k};").unwrap();
    writeln!(cfg, "/// Top-p (1 = off).").unwrap();
    writeln!(cfg, "pub const TOP_P: f32 = {top_p:?};").unwrap();
    writeln!(cfg, "/// Context length of the session.").unwrap();
    writeln!(cfg, "pub const CTX: usize = {ctx};").unwrap();
    writeln!(cfg, "/// Bytes of the session buffer (int8 KV cache at `CTX`).").unwrap();
    writeln!(cfg, "pub const SESSION_BYTES: usize = {session_bytes};").unwrap();
    writeln!(cfg, "/// A chat model: questions typed over the serial line, answered with the chat template.").unwrap();
    writeln!(cfg, "pub const CHAT: bool = {chat};").unwrap();
    writeln!(cfg, "/// Read prompts typed over the serial line.").unwrap();
    writeln!(cfg, "pub const SERIAL_PROMPT: bool = {serial_prompt};").unwrap();
    writeln!(cfg, "/// Panic after the banner (tests the failure path).").unwrap();
    writeln!(cfg, "pub const TEST_PANIC: bool = {test_panic};").unwrap();
    // Only the forward pass of this weight type and the int8 KV cache is linked
    // (`Session::new_typed`): the others would take flash the model needs.
    // For quantized weights, the group-scale type too.
    let scales = match model.scale_dtype() {
        ScaleDType::F32 => "f32",
        ScaleDType::F16 => "tinygpt_runtime::weights::f16",
    };
    let matrix = match model.config().dtype {
        DType::F32 => "F32Matrix<'a>".to_string(),
        DType::F16 => "F16Matrix<'a>".to_string(),
        DType::I8 => format!("I8Matrix<'a, {scales}, {}>", model.config().group_size),
        DType::I4 => format!("I4Matrix<'a, {scales}, {}>", model.config().group_size),
    };
    writeln!(cfg, "/// Weight storage of the model ({}).", model.config().dtype.name()).unwrap();
    writeln!(cfg, "pub type Weights<'a> = tinygpt_runtime::weights::{matrix};").unwrap();
    writeln!(cfg, "/// The model's architecture and head size (code for others is not linked).").unwrap();
    writeln!(cfg, "pub struct ModelShape;").unwrap();
    writeln!(cfg, "impl tinygpt_runtime::Shape for ModelShape {{").unwrap();
    writeln!(cfg, "    const ARCH: Option<tinygpt_runtime::Arch> = Some(tinygpt_runtime::Arch::{:?});", model.config().arch).unwrap();
    writeln!(cfg, "    const HEAD_DIM: usize = {};", model.config().head_dim()).unwrap();
    writeln!(
        cfg,
        "    const TOKENIZER: Option<tinygpt_runtime::TokenizerKind> = Some(tinygpt_runtime::TokenizerKind::{:?});",
        model.tokenizer().kind()
    )
    .unwrap();
    writeln!(cfg, "}}").unwrap();
    writeln!(cfg, "/// Crystal frequency.").unwrap();
    writeln!(cfg, "pub const HSE_HZ: u32 = {hse_hz};").unwrap();
    fs::write(out.join("config.rs"), cfg).unwrap();

    // The model itself, for `include_bytes!`.
    fs::copy(&model_path, out.join("model.tgpt")).unwrap();
}
