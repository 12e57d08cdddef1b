//! Board bring-up: clock tree, USART1 console, the tick counter and the exit path.
//!
//! One image serves both a real STM32F405/F407 and QEMU's `netduinoplus2`. QEMU does
//! not emulate RCC, GPIO or FLASH (their registers read 0), so waiting for a PLL or HSE
//! ready flag there would hang forever. `RCC_CR` tells the two apart: on silicon the
//! internal 16 MHz oscillator is running and ready after every reset, so `HSIRDY` reads 1
//! (and the register is never all zeros: `HSITRIM` resets to 16), while under QEMU the
//! whole register reads 0. The whole register is tested rather than `HSIRDY` alone so that
//! a board started by a bootloader that switched HSI off is still recognised. Silicon gets
//! the full 168 MHz set-up; QEMU gets none (its core already runs at a fixed 168 MHz).

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{SCB, SYST};
use cortex_m_rt::exception;
use stm32f4::stm32f405 as pac;

/// Core clock on silicon after [`init`], and QEMU's fixed core clock.
pub const SYSCLK_HZ: u32 = 168_000_000;
/// APB2 (USART1) clock on silicon: SYSCLK / 2.
const PCLK2_HZ: u32 = SYSCLK_HZ / 2;
/// The internal RC oscillator, the clock after reset.
const HSI_HZ: u32 = 16_000_000;
/// Console baud rate (8N1).
pub const BAUD: u32 = 115_200;
/// Crystal frequency, from `TINYGPT_HSE_HZ` at build time (checked by build.rs).
pub const HSE_HZ: u32 = crate::config::HSE_HZ;

/// Where the image is running, decided once at boot from `RCC_CR` (see [`probe_platform`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// Real silicon: clocks configured, SysTick counts core cycles.
    Silicon,
    /// QEMU: no clock set-up; under `-icount shift=0` the virtual clock advances one
    /// nanosecond per guest instruction, which [`Platform::cost_unit`] converts back.
    Qemu,
}

/// The clock the PLL was fed from on silicon.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ClockSource {
    /// External crystal (`TINYGPT_HSE_HZ`).
    Hse,
    /// Internal 16 MHz RC oscillator, used when the crystal does not start.
    Hsi,
    /// No set-up (QEMU).
    None,
}

impl Platform {
    /// Name of what [`Board::cost`] counts.
    pub fn cost_unit(self) -> &'static str {
        match self {
            Platform::Silicon => "cycles",
            Platform::Qemu => "instructions",
        }
    }
}

/// Everything the application needs from the board.
pub struct Board {
    /// Silicon or QEMU.
    pub platform: Platform,
    /// PLL input on silicon.
    pub clock: ClockSource,
    /// The console.
    pub serial: Serial,
}

/// Brings the board up: clocks (silicon only), USART1 on PA9/PA10, SysTick counter.
pub fn init() -> Board {
    // SAFETY: called once from `main`, before anything else touches the peripherals;
    // `take()` would also work but costs a critical-section flag we never need.
    let dp = unsafe { pac::Peripherals::steal() };
    // SAFETY: as above, the core peripherals are only used from this module.
    let mut cp = unsafe { cortex_m::Peripherals::steal() };

    let platform = probe_platform();

    let clock = match platform {
        Platform::Silicon => clocks_168mhz(&dp),
        Platform::Qemu => ClockSource::None,
    };

    // USART1 on PA9 (TX) / PA10 (RX), alternate function 7.
    dp.RCC.ahb1enr().modify(|_, w| w.gpioaen().enabled());
    dp.RCC.apb2enr().modify(|_, w| w.usart1en().enabled());
    dp.GPIOA.afrh().modify(|_, w| w.afrh9().af7().afrh10().af7());
    dp.GPIOA.ospeedr().modify(|_, w| w.ospeedr9().high_speed());
    dp.GPIOA.pupdr().modify(|_, w| w.pupdr10().pull_up());
    dp.GPIOA.moder().modify(|_, w| w.moder9().alternate().moder10().alternate());

    let usart_clock = match clock {
        ClockSource::None => HSI_HZ,
        _ => PCLK2_HZ,
    };
    let brr = (usart_clock + BAUD / 2) / BAUD; // oversampling by 16: BRR = f / baud
    let usart = &dp.USART1;
    usart.cr1().write(|w| w.ue().disabled());
    usart.cr2().write(|w| w.stop().stop1());
    usart.cr3().reset();
    // SAFETY: BRR takes any 16-bit value; 16 MHz or 84 MHz over 115200 fits.
    usart.brr().write(|w| unsafe { w.bits(brr as u16) });
    usart.cr1().write(|w| w.ue().enabled().te().enabled().re().enabled());

    start_ticks(&mut cp.SYST);

    Board { platform, clock, serial: Serial { _private: () } }
}

/// 168 MHz from the PLL: HSE (or HSI if the crystal never starts) / M = 2 MHz,
/// × 168 = 336 MHz VCO, / 2 = SYSCLK, / 7 = 48 MHz for USB. AHB 168, APB1 42, APB2 84 MHz.
fn clocks_168mhz(dp: &pac::Peripherals) -> ClockSource {
    let rcc = &dp.RCC;

    // Run from HSI while the PLL is (re)configured: after a reset this is already so, but a
    // bootloader may have left the PLL driving SYSCLK, and a running PLL cannot be changed.
    rcc.cr().modify(|_, w| w.hsion().on());
    while !rcc.cr().read().hsirdy().is_ready() {}
    rcc.cfgr().modify(|_, w| w.sw().hsi());
    while !rcc.cfgr().read().sws().is_hsi() {}

    // Voltage scale 1 is required above 144 MHz (it is the reset value; set it anyway).
    rcc.apb1enr().modify(|_, w| w.pwren().enabled());
    let _ = rcc.apb1enr().read(); // the enable takes effect two bus cycles later
    dp.PWR.cr().modify(|_, w| w.vos().scale1());

    // Crystal start-up: about 2 ms typically; give it ~100 ms of HSI loop time.
    rcc.cr().modify(|_, w| w.hseon().on());
    let mut hse_ready = false;
    for _ in 0..400_000u32 {
        if rcc.cr().read().hserdy().is_ready() {
            hse_ready = true;
            break;
        }
    }
    let (src, src_hz) = if hse_ready {
        (ClockSource::Hse, HSE_HZ)
    } else {
        rcc.cr().modify(|_, w| w.hseon().off());
        (ClockSource::Hsi, HSI_HZ)
    };
    // build.rs guarantees HSE_HZ is a whole number of MHz in 4..=26, so one of these works.
    let (m, n) = if src_hz % 2_000_000 == 0 {
        (src_hz / 2_000_000, 168)
    } else {
        (src_hz / 1_000_000, 336)
    };

    // Flash: 5 wait states at 168 MHz / 3.3 V, with prefetch and both caches.
    dp.FLASH
        .acr()
        .modify(|_, w| w.latency().ws5().prften().enabled().icen().enabled().dcen().enabled());
    while !dp.FLASH.acr().read().latency().is_ws5() {}

    rcc.cfgr()
        .modify(|_, w| w.hpre().div1().ppre1().div4().ppre2().div2());

    rcc.cr().modify(|_, w| w.pllon().off());
    rcc.pllcfgr().write(|w| {
        let w = if src == ClockSource::Hse { w.pllsrc().hse() } else { w.pllsrc().hsi() };
        // SAFETY: M in 2..=63 and N in 50..=432 (checked above / by build.rs); Q = 7.
        unsafe { w.pllm().bits(m as u8).plln().bits(n as u16).pllq().bits(7) }
            .pllp()
            .div2()
    });
    rcc.cr().modify(|_, w| w.pllon().on());
    while !rcc.cr().read().pllrdy().is_ready() {}

    rcc.cfgr().modify(|_, w| w.sw().pll());
    while !rcc.cfgr().read().sws().is_pll() {}
    src
}

/// USART1, blocking writes. Implements `fmt::Write`; `\n` goes out as `\r\n`.
pub struct Serial {
    _private: (),
}

impl Serial {
    /// A console handle for the panic handler, whatever state `main` left it in.
    ///
    /// # Safety
    /// Only for the panic path: writes from two handles would interleave.
    pub unsafe fn conjure() -> Serial {
        Serial { _private: () }
    }

    /// Sends one byte, waiting for the transmit register to empty.
    pub fn write_byte(&mut self, byte: u8) {
        // SAFETY: USART1 is only driven through `Serial`, one byte at a time.
        let usart = unsafe { &*pac::USART1::ptr() };
        while usart.sr().read().txe().bit_is_clear() {}
        usart.dr().write(|w| w.dr().set(byte as u16));
    }

    /// Sends bytes as they are, with `\n` expanded to `\r\n` for terminals.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(b);
        }
    }

    /// Waits for one received byte. Reading SR then DR also clears an overrun.
    pub fn read_byte(&mut self) -> u8 {
        self.read_byte_checked().0
    }

    /// Waits for one received byte; the flag tells whether bytes were lost before it (an
    /// overrun: a byte arrived while the previous one was still unread; the USART has no
    /// FIFO). Reading SR then DR clears the overrun. QEMU's USART never overruns: it holds
    /// further input back until DR has been read.
    pub fn read_byte_checked(&mut self) -> (u8, bool) {
        // SAFETY: USART1 is only driven through `Serial`.
        let usart = unsafe { &*pac::USART1::ptr() };
        loop {
            let sr = usart.sr().read();
            if sr.rxne().bit_is_set() || sr.ore().bit_is_set() {
                return (usart.dr().read().dr().bits() as u8, sr.ore().bit_is_set());
            }
        }
    }

    /// Waits until the last byte has left the shift register.
    pub fn flush(&mut self) {
        // SAFETY: read-only status poll.
        let usart = unsafe { &*pac::USART1::ptr() };
        while usart.sr().read().tc().bit_is_clear() {}
    }
}

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}

/// SysTick wraps (every 2^24 ticks), counted by the exception handler.
static WRAPS: AtomicU32 = AtomicU32::new(0);
const SYST_RELOAD: u32 = 0x00FF_FFFF;

fn start_ticks(syst: &mut SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(SYST_RELOAD);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

#[exception]
fn SysTick() {
    WRAPS.fetch_add(1, Ordering::Relaxed);
}

/// Core clock ticks since boot, 64-bit (SysTick at the core clock plus its wrap count).
///
/// On silicon one tick is one core cycle. Under QEMU `-icount shift=0` it is 1/168 µs
/// of virtual time; [`cost`] turns that into instructions.
pub fn ticks() -> u64 {
    cortex_m::interrupt::free(|_| {
        let mut wraps = WRAPS.load(Ordering::Relaxed);
        let mut current = SYST::get_current();
        // A wrap that happened while interrupts are off is pending, not yet counted;
        // re-read so the value is after that wrap whichever side of it the first read was.
        if SCB::is_pendst_pending() {
            wraps += 1;
            current = SYST::get_current();
        }
        (u64::from(wraps) << 24) | u64::from(SYST_RELOAD - current)
    })
}

/// Converts a tick count to the platform's cost unit: core cycles on silicon,
/// guest instructions under QEMU `-icount shift=0` (1 instruction = 1 ns, and the
/// SysTick clock is 168 MHz, so instructions = ticks × 1000 / 168).
pub fn cost(platform: Platform, ticks: u64) -> u64 {
    match platform {
        Platform::Silicon => ticks,
        Platform::Qemu => (ticks * 1_000_000_000 + u64::from(SYSCLK_HZ / 2)) / u64::from(SYSCLK_HZ),
    }
}

/// Ends the program with a status. Under QEMU this is a semihosting exit (QEMU's own
/// exit code becomes `status`); on silicon a semihosting call with no debugger attached
/// faults, so the board prints and then sleeps forever.
pub fn exit(platform: Platform, status: i32) -> ! {
    if platform == Platform::Qemu || cfg!(feature = "force-semihosting") {
        let code = if status == 0 {
            cortex_m_semihosting::debug::EXIT_SUCCESS
        } else {
            cortex_m_semihosting::debug::EXIT_FAILURE
        };
        cortex_m_semihosting::debug::exit(code);
    }
    loop {
        cortex_m::asm::wfi();
    }
}

/// Silicon or QEMU: `RCC_CR` reads all zeros only under QEMU (module docs). Also used by the
/// panic and fault handlers, which have no `Board`.
pub fn probe_platform() -> Platform {
    // SAFETY: a read of RCC_CR has no side effects.
    let rcc = unsafe { &*pac::RCC::ptr() };
    let cr = rcc.cr().read();
    if cr.hsirdy().bit_is_set() || cr.bits() != 0 {
        Platform::Silicon
    } else {
        Platform::Qemu
    }
}
