//! Line editing on the serial console: echo, erase, line endings, over-long and damaged lines.
//!
//! Characters are echoed as they arrive. Backspace (0x08) and DEL (0x7f) erase the last
//! character, UTF-8 sequences whole, also on the terminal (`BS space BS`). CR, LF and CR LF each
//! end a line: the LF right after a CR is dropped, whichever line it arrives in. Other control
//! bytes are ignored. Ctrl-D (0x04, end of transmission) ends the input.

use core::fmt::Write as _;

use crate::board::Serial;

/// What [`LineReader::read`] got.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Line {
    /// A complete line of this many bytes, in the buffer (without its line ending).
    Text(usize),
    /// The line did not fit in the buffer; what came past its end was neither kept nor
    /// echoed, and the whole line is refused.
    TooLong,
    /// The USART lost bytes while the line came in (typed while the board was busy).
    Lost,
    /// Ctrl-D: the end of the input.
    End,
}

/// Reads lines from the console, one after another.
pub struct LineReader {
    /// The previous line ended with CR: an LF that comes next is the rest of its CR LF.
    after_cr: bool,
}

impl LineReader {
    /// A reader at the start of the input.
    pub const fn new() -> Self {
        LineReader { after_cr: false }
    }

    /// Reads one line into `buf`, echoing it; the line ending is echoed as CR LF.
    pub fn read(&mut self, out: &mut Serial, buf: &mut [u8]) -> Line {
        let mut len = 0;
        let mut too_long = false;
        let mut lost = false;
        loop {
            let (byte, overrun) = out.read_byte_checked();
            lost |= overrun;
            let after_cr = core::mem::replace(&mut self.after_cr, false);
            match byte {
                b'\n' if after_cr => {}
                0x04 => {
                    let _ = writeln!(out);
                    return Line::End;
                }
                b'\r' | b'\n' => {
                    self.after_cr = byte == b'\r';
                    let _ = writeln!(out);
                    return if lost {
                        Line::Lost
                    } else if too_long {
                        Line::TooLong
                    } else {
                        Line::Text(len)
                    };
                }
                0x08 | 0x7f => {
                    if too_long || len == 0 {
                        continue;
                    }
                    // A whole UTF-8 character: its continuation bytes, then its first byte.
                    while len > 0 && buf[len - 1] & 0xC0 == 0x80 {
                        len -= 1;
                    }
                    len = len.saturating_sub(1);
                    out.write_bytes(b"\x08 \x08");
                }
                b if b < 0x20 => {}
                _ if too_long => {}
                b if len < buf.len() => {
                    buf[len] = b;
                    len += 1;
                    out.write_byte(b);
                }
                _ => too_long = true,
            }
        }
    }
}
