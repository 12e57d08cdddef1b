//! The one error type of the runtime.

use core::fmt;

/// Everything that can go wrong when reading a model file, building a session, or tokenizing.
///
/// Reading untrusted bytes returns one of these; it never panics.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The file is shorter than the fixed preamble and trailer.
    TooShort {
        /// Length of the input in bytes.
        len: usize,
    },
    /// The first bytes are not the `.tgpt` magic.
    BadMagic,
    /// The file's format version is not the one this runtime reads.
    UnsupportedVersion {
        /// Version found in the file.
        found: u32,
        /// Version this runtime reads.
        supported: u32,
    },
    /// The CRC-32 in the trailer does not match the file's bytes.
    Checksum {
        /// Checksum stored in the file.
        stored: u32,
        /// Checksum computed over the file.
        computed: u32,
    },
    /// The header is truncated, malformed, or its lengths point outside the file.
    Header(&'static str),
    /// The architecture numbers are inconsistent or out of range.
    InvalidConfig(&'static str),
    /// The file is valid but uses something this build of the runtime leaves out.
    Unsupported(&'static str),
    /// A session compiled for one architecture ([`crate::Session::new_typed`]) was given a model
    /// of the other.
    WrongArch {
        /// The model's architecture.
        model: &'static str,
        /// The architecture the session was compiled for.
        session: &'static str,
    },
    /// A session compiled for one weight type ([`crate::Session::new_typed`]) was given a model
    /// stored in another.
    WrongWeightType {
        /// The model's weight type.
        model: &'static str,
        /// The weight type the session was compiled for.
        session: &'static str,
    },
    /// The tensor data section does not have the size the header implies.
    TensorData {
        /// Bytes implied by the header.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// The model bytes do not start at a 16-byte aligned address.
    Misaligned,
    /// The tokenizer tables are malformed.
    Tokenizer(&'static str),
    /// A character of the text is not in the model's character vocabulary.
    UnknownChar(char),
    /// The output buffer for tokens is too small.
    TooManyTokens {
        /// Capacity of the buffer.
        capacity: usize,
    },
    /// The prompt encodes to no tokens.
    EmptyPrompt,
    /// A token id is outside the vocabulary.
    InvalidToken(u32),
    /// A session buffer is too small for the requested context length.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
    /// The requested context length is zero or larger than the model's `block_size`.
    ContextLength {
        /// Requested length.
        requested: usize,
        /// The model's maximum.
        max: usize,
    },
    /// The model has no chat tokens (`<|im_start|>`, `<|im_sep|>`, `<|im_end|>`, `<|pad|>`): it is
    /// a base model.
    NotAChatModel,
    /// A rendered conversation does not fit in the context.
    PromptTooLong {
        /// Tokens the shortest rendering needs.
        tokens: usize,
        /// Tokens available.
        ctx: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::TooShort { len } => write!(f, "file too short to be a .tgpt model ({len} bytes)"),
            Error::BadMagic => f.write_str("not a .tgpt model (bad magic bytes)"),
            Error::UnsupportedVersion { found, supported } => write!(
                f,
                "unsupported .tgpt format version {found} (this build reads version {supported})"
            ),
            Error::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch: file is corrupt or truncated (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Error::Header(what) => write!(f, "malformed model header: {what}"),
            Error::InvalidConfig(what) => write!(f, "invalid model configuration: {what}"),
            Error::Unsupported(what) => write!(f, "unsupported model: {what}"),
            Error::WrongArch { model, session } => {
                write!(f, "the model is a {model} model but this program runs {session} models only")
            }
            Error::WrongWeightType { model, session } => {
                write!(f, "the model has {model} weights but this program runs {session} weights only")
            }
            Error::TensorData { expected, found } => write!(
                f,
                "tensor data has {found} bytes but the header implies {expected}"
            ),
            Error::Misaligned => f.write_str("model bytes must start at a 16-byte aligned address"),
            Error::Tokenizer(what) => write!(f, "malformed tokenizer: {what}"),
            Error::UnknownChar(c) => {
                f.write_str("character ")?;
                quote_char(f, c)?;
                write!(f, " (U+{:04X}) is not in the model's vocabulary", c as u32)
            }
            Error::TooManyTokens { capacity } => {
                write!(f, "text encodes to more than {capacity} tokens")
            }
            Error::EmptyPrompt => f.write_str("prompt is empty"),
            Error::InvalidToken(t) => write!(f, "token id {t} is outside the vocabulary"),
            Error::BufferTooSmall { needed, got } => {
                write!(f, "session buffer too small: need {needed} bytes, got {got}")
            }
            Error::ContextLength { requested, max } => write!(
                f,
                "context length {requested} is not in 1..={max} (the model's block_size)"
            ),
            Error::NotAChatModel => f.write_str(
                "this is a base model, not a chat model (it has no <|im_start|>, <|im_sep|>, <|im_end|> and <|pad|> tokens)"
            ),
            Error::PromptTooLong { tokens, ctx } => write!(
                f,
                "the conversation needs {tokens} tokens but only {ctx} fit in the context"
            ),
        }
    }
}

/// `c` in single quotes, as `{:?}` writes it for ASCII (`'a'`, `'\n'`, `'\''`, `'\u{1}'`); other
/// characters as they are. `{:?}` would also escape non-ASCII characters it deems unprintable,
/// but its Unicode tables take about 2.5 KB of a microcontroller's flash; the message gives the
/// code point anyway.
fn quote_char(f: &mut fmt::Formatter<'_>, c: char) -> fmt::Result {
    f.write_str("'")?;
    match c {
        '\0' => f.write_str("\\0")?,
        '\t' => f.write_str("\\t")?,
        '\r' => f.write_str("\\r")?,
        '\n' => f.write_str("\\n")?,
        '\'' => f.write_str("\\'")?,
        '\\' => f.write_str("\\\\")?,
        c if c.is_ascii_control() => write!(f, "\\u{{{:x}}}", c as u32)?,
        c => {
            let mut buf = [0u8; 4];
            f.write_str(c.encode_utf8(&mut buf))?
        }
    }
    f.write_str("'")
}

impl core::error::Error for Error {}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::format;
    use std::string::ToString;
    use super::*;

    #[test]
    fn unknown_char_quotes_ascii_as_debug_does() {
        for c in (0u8..128).map(char::from).chain(['é', '€', '😀', 'ß']) {
            let want = format!("character {c:?} (U+{:04X}) is not in the model's vocabulary", c as u32);
            assert_eq!(Error::UnknownChar(c).to_string(), want, "{c:?}");
        }
    }
}
