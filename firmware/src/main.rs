//! tinygpt on an STM32F405/F407: the model in flash, generated text on USART1.
#![no_std]
#![no_main]

mod board;
mod stack;

#[allow(dead_code)]
mod config {
    include!(concat!(env!("OUT_DIR"), "/config.rs"));
}

use core::fmt::Write as _;
use core::panic::PanicInfo;

use cortex_m_rt::{entry, exception, ExceptionFrame};

#[repr(C, align(16))]
struct SessionBuf([u8; config::SESSION_BYTES]);
static mut SESSION_BUF: SessionBuf = SessionBuf([0; config::SESSION_BYTES]);

#[entry]
fn main() -> ! {
    let mut board = board::init();
    let _ = writeln!(board.serial, "tinygpt-firmware skeleton");
    // SAFETY: the only reference ever taken to SESSION_BUF.
    let buf: &'static mut [u8] = unsafe { &mut (*core::ptr::addr_of_mut!(SESSION_BUF)).0 };
    let t0 = board::ticks();
    let mut acc = 0u32;
    for i in 0..1_000_000usize {
        acc = acc.wrapping_add(unsafe { core::ptr::read_volatile(&buf[i % 1000]) } as u32 ^ i as u32);
    }
    let t1 = board::ticks();
    for n in [0u32, 1_000, 1_000_000, 10_000_000] {
        let a = board::ticks();
        unsafe { core::arch::asm!("1: subs {0}, #1", "bhs 1b", inout(reg) n => _) };
        let b = board::ticks();
        let _ = writeln!(board.serial, "asm loop n={n}: 2n+? ticks {} cost {}", b - a, board::cost(board.platform, b - a));
    }
    let _ = writeln!(board.serial, "acc {acc} ticks {} cost {}", t1 - t0, board::cost(board.platform, t1 - t0));
    let _ = writeln!(
        board.serial,
        "flash {} static {} stack {} room {}",
        stack::flash_used(),
        stack::static_ram(),
        stack::high_water(),
        stack::stack_room()
    );
    board.serial.flush();
    board::exit(board.platform, 0)
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    // SAFETY: the panic path owns the console from here on.
    let mut serial = unsafe { board::Serial::conjure() };
    let _ = write!(serial, "\npanic: {info}\n");
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
