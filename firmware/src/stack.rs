//! Stack high-water mark.
//!
//! cortex-m-rt's `paint-stack` feature fills everything between the end of static RAM
//! (`_stack_end`) and the initial stack pointer (`_stack_start`) with
//! [`cortex_m_rt::STACK_PAINT_VALUE`] before `main` runs. The deepest word that no
//! longer holds the paint is the high-water mark.

use cortex_m_rt::STACK_PAINT_VALUE;

extern "C" {
    static _stack_start: u32;
    static _stack_end: u32;
    static __sdata: u32;
    static __edata: u32;
    static __sidata: u32;
}

/// RAM origin and size (memory.x).
pub const RAM_START: usize = 0x2000_0000;
/// RAM size (memory.x).
pub const RAM_SIZE: usize = 128 * 1024;
/// Flash origin (memory.x).
pub const FLASH_START: usize = 0x0800_0000;
/// Flash size (memory.x).
pub const FLASH_SIZE: usize = 1024 * 1024;

fn addr(sym: &u32) -> usize {
    sym as *const u32 as usize
}

/// Bytes of the stack used so far: from the top of RAM down to the deepest unpainted word.
pub fn high_water() -> usize {
    // SAFETY: linker symbols; only their addresses are taken.
    let (bottom, top) = unsafe { (addr(&_stack_end), addr(&_stack_start)) };
    let mut p = bottom;
    while p < top {
        // SAFETY: [bottom, top) is RAM reserved for the stack, word aligned (link.x
        // asserts both ends are 4-aligned); a volatile read of a dead word is harmless.
        let word = unsafe { core::ptr::read_volatile(p as *const u32) };
        if word != STACK_PAINT_VALUE {
            break;
        }
        p += 4;
    }
    top - p
}

/// Bytes of RAM taken by `.data`, `.bss` and `.uninit` (everything below the stack).
pub fn static_ram() -> usize {
    // SAFETY: linker symbol, address only.
    unsafe { addr(&_stack_end) - RAM_START }
}

/// Bytes of flash the image occupies: vectors, code, read-only data (the model) and
/// the initialisers of `.data`.
pub fn flash_used() -> usize {
    // SAFETY: linker symbols, addresses only.
    unsafe { addr(&__sidata) + (addr(&__edata) - addr(&__sdata)) - FLASH_START }
}

/// Bytes between the end of static RAM and the top of RAM, available to the stack.
pub fn stack_room() -> usize {
    // SAFETY: linker symbols, addresses only.
    unsafe { addr(&_stack_start) - addr(&_stack_end) }
}
