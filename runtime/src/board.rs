//! Memory budgets of the boards the firmware runs on, and the check that a model fits one.
//!
//! The firmware's build script refuses a model that breaks these budgets, and
//! `tinygpt-train tune` keeps a search inside them (`fits = "stm32f405"`); both take the numbers
//! from here, and the sizes from the runtime itself (the file's length, [`crate::Model::session_bytes`]).

use core::fmt;

use crate::format::KvDType;

/// One board's flash and RAM, and what the firmware keeps of them for itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Board {
    /// Lower-case name (`stm32f405`).
    pub name: &'static str,
    /// Bytes of flash.
    pub flash: usize,
    /// Bytes of RAM.
    pub ram: usize,
    /// RAM kept for the stack and the firmware's statics besides the session buffer.
    pub ram_reserve: usize,
    /// Flash the firmware's code and read-only data take besides the model (measured on the
    /// built images; the linker has the last word). The firmware's build script checks only a
    /// smaller floor before linking, so a model that passes [`Board::check`] links with room.
    pub code_bytes: usize,
    /// KV cache type of the firmware's session.
    pub kv: KvDType,
}

/// STM32F405/F407 (Cortex-M4F): 1 MiB flash, 128 KiB RAM. The firmware, built for one weight
/// and KV type, measures 48,064 to 51,608 bytes of flash besides the model (int8 and int4 base
/// builds, the chat build; see the firmware's README); 56 KiB leaves some room for growth.
pub const STM32F405: Board = Board {
    name: "stm32f405",
    flash: 1024 * 1024,
    ram: 128 * 1024,
    ram_reserve: 16 * 1024,
    code_bytes: 56 * 1024,
    kv: KvDType::I8,
};

/// Every board by name.
pub const BOARDS: &[Board] = &[STM32F405];

impl Board {
    /// The board called `name` (case-insensitive), if known.
    pub fn by_name(name: &str) -> Option<Board> {
        BOARDS.iter().copied().find(|b| b.name.eq_ignore_ascii_case(name))
    }

    /// Flash left for the model file.
    pub fn model_flash(&self) -> usize {
        self.flash.saturating_sub(self.code_bytes)
    }

    /// RAM left for the session buffer.
    pub fn session_ram(&self) -> usize {
        self.ram.saturating_sub(self.ram_reserve)
    }

    /// Checks a model file of `file_bytes` whose session needs `session_bytes`
    /// ([`crate::Model::session_bytes`] at the context used, with [`Board::kv`]).
    pub fn check(&self, file_bytes: usize, session_bytes: usize) -> Result<(), Misfit> {
        if file_bytes > self.model_flash() {
            return Err(Misfit::Flash { need: file_bytes, have: self.model_flash() });
        }
        if session_bytes > self.session_ram() {
            return Err(Misfit::Ram { need: session_bytes, have: self.session_ram() });
        }
        Ok(())
    }
}

/// Why a model does not fit a board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misfit {
    /// The file is larger than the flash left for it.
    Flash {
        /// Bytes of the file.
        need: usize,
        /// Bytes of flash left for the model.
        have: usize,
    },
    /// The session is larger than the RAM left for it.
    Ram {
        /// Bytes of the session buffer.
        need: usize,
        /// Bytes of RAM left for it.
        have: usize,
    },
}

impl fmt::Display for Misfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Misfit::Flash { need, have } => write!(f, "the file is {need} bytes, {have} bytes of flash are left for the model"),
            Misfit::Ram { need, have } => write!(f, "the session needs {need} bytes, {have} bytes of RAM are left for it"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_checked_at_their_edges() {
        let b = STM32F405;
        assert_eq!(Board::by_name("STM32F405"), Some(b));
        assert_eq!(Board::by_name("esp32"), None);
        assert!(b.check(b.model_flash(), b.session_ram()).is_ok());
        assert!(matches!(b.check(b.model_flash() + 1, 0), Err(Misfit::Flash { .. })));
        assert!(matches!(b.check(0, b.session_ram() + 1), Err(Misfit::Ram { .. })));
    }
}
