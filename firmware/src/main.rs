//! tinygpt on an STM32F405/F407: the model in flash, generated text on USART1.
//!
//! Boot, bring the board up (see `board`), print a banner, run the runtime's `generate`
//! loop (the same one the `tinygpt` CLI uses, so the text matches the host byte for byte),
//! print the cost per token and the memory budgets, then exit (QEMU) or idle (silicon).
//! A chat model answers questions typed over the serial line instead (see `chat`).
#![no_std]
#![no_main]

mod board;
mod chat;
mod line;
mod stack;

#[allow(dead_code)]
mod config {
    include!(concat!(env!("OUT_DIR"), "/config.rs"));
}

use core::fmt::Write as _;
use core::panic::PanicInfo;

use cortex_m_rt::{entry, exception, ExceptionFrame};
use tinygpt_runtime::{generate, KvDType, Model, Sampler, SamplerConfig, Session};

use board::{Board, Platform};

/// Aligns what it wraps to 16 bytes, as `Model::from_bytes` requires.
#[repr(C, align(16))]
struct Aligned<T: ?Sized>(T);

/// The model file, in flash, used in place.
static MODEL_FILE: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/model.tgpt")));

/// Activations, KV cache (int8) and token history; sized by build.rs from the model header.
static mut SESSION_BUF: Aligned<[u8; config::SESSION_BYTES]> = Aligned([0; config::SESSION_BYTES]);

#[entry]
fn main() -> ! {
    let mut board = board::init();
    let status = match run(&mut board) {
        Ok(()) => 0,
        Err(()) => 1,
    };
    board.serial.flush();
    board::exit(board.platform, status)
}

fn run(board: &mut Board) -> Result<(), ()> {
    let platform = board.platform;
    let out = &mut board.serial;
    let _ = write!(out, "\ntinygpt-firmware {} on STM32F405, ", env!("CARGO_PKG_VERSION"));
    let _ = match (platform, board.clock) {
        (Platform::Qemu, _) => writeln!(out, "QEMU (no clock set-up, core at 168 MHz)"),
        (Platform::Silicon, board::ClockSource::Hse) => {
            writeln!(out, "168 MHz from a {} MHz crystal", board::HSE_HZ / 1_000_000)
        }
        (Platform::Silicon, _) => writeln!(out, "168 MHz from HSI (the crystal did not start)"),
    };

    let model = match Model::from_bytes_as::<config::ModelShape>(&MODEL_FILE.0) {
        Ok(m) => m,
        Err(e) => {
            let _ = writeln!(out, "error: model: {e}");
            return Err(());
        }
    };
    // The model and sampler lines, formatted by build.rs from the same header (no float
    // formatting in the image).
    out.write_bytes(config::BANNER.as_bytes());

    if config::TEST_PANIC {
        panic!("TINYGPT_TEST_PANIC is set");
    }

    // SAFETY: the only reference ever taken to SESSION_BUF (`run` is called once).
    let buf: &'static mut [u8] = unsafe { &mut (*core::ptr::addr_of_mut!(SESSION_BUF)).0 };
    let needed = model.session_bytes(config::CTX, KvDType::I8);
    if needed > buf.len() {
        let _ = writeln!(out, "error: the session needs {needed} bytes of RAM, the buffer has {}", buf.len());
        return Err(());
    }
    let mut session = match Session::new_typed::<config::Weights<'_>, i8, config::ModelShape>(&model, buf, config::CTX) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(out, "error: session: {e}");
            return Err(());
        }
    };

    if config::CHAT {
        return chat::run(out, platform, &mut session);
    }
    if !config::SERIAL_PROMPT {
        return generate_and_report(out, platform, &mut session, config::PROMPT);
    }

    // Prompts typed over the serial line, one per line, until Ctrl-D.
    let mut line = [0u8; MAX_LINE];
    loop {
        let _ = write!(out, "\nprompt (Enter: {}, Ctrl-D: quit)> ", config::PROMPT_QUOTED);
        let Some(len) = read_line(out, &mut line) else {
            let _ = writeln!(out);
            return Ok(());
        };
        let prompt = match core::str::from_utf8(&line[..len]) {
            Ok("") => config::PROMPT,
            Ok(p) => p,
            Err(_) => {
                let _ = writeln!(out, "error: the line is not UTF-8");
                continue;
            }
        };
        session.reset();
        // A prompt the vocabulary lacks is reported and another one asked for.
        let _ = generate_and_report(out, platform, &mut session, prompt);
    }
}

/// Longest line (bytes) and prompt (tokens) taken over the serial line.
const MAX_LINE: usize = 256;

/// Reads one line with echo and backspace; `None` on Ctrl-D (end of input).
fn read_line(out: &mut board::Serial, line: &mut [u8]) -> Option<usize> {
    let mut len = 0;
    loop {
        match out.read_byte() {
            0x04 => return None,
            b'\r' | b'\n' => {
                let _ = writeln!(out);
                return Some(len);
            }
            0x08 | 0x7f => {
                // Drop a whole UTF-8 character: its continuation bytes, then its first byte.
                while len > 0 && line[len - 1] & 0xC0 == 0x80 {
                    len -= 1;
                }
                if len > 0 {
                    len -= 1;
                    out.write_bytes(b"\x08 \x08");
                }
            }
            b if b < 0x20 => {}
            b if len < line.len() => {
                line[len] = b;
                len += 1;
                out.write_byte(b);
            }
            _ => {}
        }
    }
}

/// Runs `generate` on `prompt` from an empty context, streaming the text, then prints the
/// token counts, the cost per token and the budgets.
fn generate_and_report(
    out: &mut board::Serial,
    platform: Platform,
    session: &mut Session<'_, '_>,
    prompt_text: &str,
) -> Result<(), ()> {
    let mut tokens = [0u32; MAX_PROMPT];
    let n_prompt = match session.model().tokenizer().encode(prompt_text, &mut tokens) {
        Ok(0) => {
            let _ = writeln!(out, "error: the prompt is empty");
            return Err(());
        }
        Ok(n) if n > config::CTX => {
            let _ = writeln!(out, "error: the prompt is {n} tokens, longer than the context {}", config::CTX);
            return Err(());
        }
        Ok(n) => n,
        Err(e) => {
            let _ = writeln!(out, "error: prompt: {e}");
            return Err(());
        }
    };
    let sampler_cfg = SamplerConfig { temperature: config::TEMPERATURE, top_k: config::TOP_K, top_p: config::TOP_P };
    let mut sampler = Sampler::new(sampler_cfg, config::SEED);

    // The text goes out as it comes. The prompt is echoed first; the clock reading taken
    // once all of it is out separates prompt processing from generation.
    let _ = writeln!(out, "---");
    let prompt_len = prompt_text.len();
    let mut emitted = 0usize;
    let mut t_prompt = None;
    let t0 = board::ticks();
    let result = generate(session, &mut sampler, &tokens[..n_prompt], config::TOKENS, |text| {
        out.write_bytes(text.as_bytes());
        emitted += text.len();
        if t_prompt.is_none() && emitted >= prompt_len {
            t_prompt = Some(board::ticks());
        }
    });
    let t1 = board::ticks();
    let _ = writeln!(out, "\n---");
    let stats = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(out, "error: generate: {e}");
            return Err(());
        }
    };

    let unit = platform.cost_unit();
    let total = board::cost(platform, t1 - t0);
    let gen = board::cost(platform, t1 - t_prompt.unwrap_or(t0));
    let steps = (stats.prompt_tokens + stats.generated) as u64;
    let _ = writeln!(out, "tokens: {} prompt + {} generated", stats.prompt_tokens, stats.generated);
    let _ = writeln!(out, "cost: {total} {unit} in all, {} {unit}/token", total / steps.max(1));
    if stats.generated > 0 {
        let per_token = gen / stats.generated as u64;
        // Per weight: the cost of one generated token over the parameter count, 2 decimals.
        let per_weight_x100 = per_token * 100 / config::PARAMS.max(1);
        let _ = writeln!(
            out,
            "generation: {per_token} {unit}/token, {}.{:02} per weight",
            per_weight_x100 / 100,
            per_weight_x100 % 100
        );
    }
    if platform == Platform::Silicon {
        let ms = (t1 - t0) / u64::from(board::SYSCLK_HZ / 1000);
        let _ = writeln!(out, "time: {ms} ms");
    }
    report_budgets(out)
}

/// Prompt tokens the firmware can take: the build-time prompt, or a typed line (every
/// tokenizer gives at most one token per byte).
const MAX_PROMPT: usize = if config::PROMPT_TOKENS > MAX_LINE { config::PROMPT_TOKENS } else { MAX_LINE };

/// Prints flash and RAM use; an error when over budget or when the stack ran out of room.
pub(crate) fn report_budgets(out: &mut board::Serial) -> Result<(), ()> {
    let flash = stack::flash_used();
    let statics = stack::static_ram();
    let high_water = stack::high_water();
    let ram = statics + high_water;
    let _ = writeln!(
        out,
        "flash: {flash} of {} bytes (model {} bytes)",
        stack::FLASH_SIZE,
        MODEL_FILE.0.len()
    );
    let _ = writeln!(
        out,
        "ram: {ram} of {} bytes (static {statics}, session buffer {}, stack high-water {high_water})",
        stack::RAM_SIZE,
        config::SESSION_BYTES
    );
    if high_water >= stack::stack_room() {
        let _ = writeln!(
            out,
            "error: the stack used all {} bytes left to it and may have overwritten statics",
            stack::stack_room()
        );
        return Err(());
    }
    if flash > stack::FLASH_SIZE || ram > stack::RAM_SIZE {
        let _ = writeln!(out, "error: over budget");
        return Err(());
    }
    Ok(())
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    // SAFETY: the panic path owns the console from here on.
    let mut serial = unsafe { board::Serial::conjure() };
    let _ = write!(serial, "\npanic: {}", info.message());
    if let Some(at) = info.location() {
        let _ = write!(serial, " (at {}:{})", at.file(), at.line());
    }
    let _ = writeln!(serial);
    serial.flush();
    board::exit(board::probe_platform(), 1)
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    // SAFETY: the fault path owns the console from here on.
    let mut serial = unsafe { board::Serial::conjure() };
    let _ = write!(serial, "\nhard fault at pc {:#010x}\n", frame.pc());
    serial.flush();
    board::exit(board::probe_platform(), 1)
}
