//! `tinygpt-runtime`: runs `.tgpt` models with fixed-size buffers and no heap.
//!
//! A model file is borrowed in place ([`Model::from_bytes`]); a [`Session`] carves its activations
//! and KV cache out of a buffer the caller provides ([`Model::session_bytes`] tells how large).
//! There is one forward pass, generic over the weight storage (f32, f16, int8) and the KV cache
//! element type. The `alloc` feature adds the [`writer`] (with `std`, its atomic file writes).
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod board;
pub mod chat;
pub mod error;
pub mod format;
pub mod model;
pub mod ops;
pub mod rng;
pub mod sampler;
mod sentencepiece;
pub mod tokenizer;
pub mod weights;
#[cfg(feature = "alloc")]
pub mod writer;

pub use error::Error;
pub use format::{Arch, Config, DType, Header, KvDType, Metadata, TokenizerKind, FORMAT_VERSION, MAGIC};
pub use chat::{ChatTokens, Message, Role, Template};
pub use model::{eval_loss, generate, generate_until, generate_while, GenStats, KvElem, Model, Session};
pub use model::{AnyShape, Shape};
pub use rng::Rng;
pub use sampler::{ProbIndex, Sampler, SamplerConfig};
pub use tokenizer::{Decoder, Tokenizer};
