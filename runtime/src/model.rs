//! The model borrowed from a file, and a session that runs the one forward pass.

use half::f16;

use crate::error::Error;
use crate::format::{
    self, tensor_bytes, tensor_shape, Arch, Config, DType, Header, KvDType, LayerTensor, Layout, Metadata,
    ScaleDType, TensorId,
};
use crate::ops::{self, add_assign, gelu, layernorm, math, quantize, rmsnorm, rope, silu, softmax};
use crate::sampler::{ProbIndex, Sampler};
use crate::tokenizer::{Decoder, Tokenizer};
use crate::format::TokenizerKind;
use crate::weights::{AnyMatrix, Input, Matrix};

/// Alignment the model bytes must have in memory.
pub const MODEL_ALIGN: usize = 16;
/// Alignment of every region a [`Session`] carves out of its buffer.
const REGION_ALIGN: usize = 16;

/// A validated model whose weights are used in place from the file bytes.
#[derive(Debug, Clone, Copy)]
pub struct Model<'a> {
    header: Header<'a>,
    scales: ScaleDType,
    data: &'a [u8],
    layout: Layout,
}

impl<'a> Model<'a> {
    /// Parses and validates `bytes` (magic, version, checksum, header, tokenizer, every size).
    ///
    /// `bytes` must start at a 16-byte aligned address (an mmap, or `include_bytes!` in an aligned
    /// wrapper). Nothing is copied.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        Self::from_bytes_as::<AnyShape>(bytes)
    }

    /// [`Model::from_bytes`] for a program compiled for models of shape `A` (the firmware): a
    /// model with another tokenizer kind than `A::TOKENIZER` is refused, and only that kind's
    /// validation is linked. Every check of [`Model::from_bytes`] still runs on the bytes.
    pub fn from_bytes_as<A: Shape>(bytes: &'a [u8]) -> Result<Self, Error> {
        if bytes.as_ptr() as usize % MODEL_ALIGN != 0 {
            return Err(Error::Misaligned);
        }
        let p = format::parse_as::<A>(bytes)?;
        if p.header.config.dtype == DType::I4 && !cfg!(feature = "int4") {
            return Err(Error::Unsupported("int4 weights need the runtime's `int4` feature"));
        }
        Ok(Model { header: p.header, scales: p.scales, data: p.data, layout: p.layout })
    }

    /// Architecture numbers.
    pub fn config(&self) -> &Config {
        &self.header.config
    }
    /// Descriptive metadata.
    pub fn metadata(&self) -> &Metadata<'a> {
        &self.header.meta
    }
    /// The whole header.
    pub fn header(&self) -> &Header<'a> {
        &self.header
    }
    /// Storage type of the group scales of quantized matrices (f32 for files without a
    /// quantization header, and meaningless for float weights).
    pub fn scale_dtype(&self) -> ScaleDType {
        self.scales
    }
    /// The tokenizer stored in the file.
    pub fn tokenizer(&self) -> Tokenizer<'a> {
        Tokenizer::new(self.header.tokenizer, self.header.config.vocab_size)
    }
    /// Offsets of the tensors in the data section.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Number of parameters (tied embeddings counted once).
    pub fn param_count(&self) -> u64 {
        let mut n = 0u64;
        format::for_each_tensor(&self.header.config, |id| n += tensor_shape(&self.header.config, id).numel() as u64);
        n
    }

    /// Bytes of weight storage by kind: `(matrices in the file's dtype, f32 vectors)`.
    pub fn weight_bytes(&self) -> (u64, u64) {
        let cfg = &self.header.config;
        let (mut m, mut v) = (0u64, 0u64);
        format::for_each_tensor(cfg, |id| {
            let s = tensor_shape(cfg, id);
            let b = tensor_bytes(s, cfg.dtype, cfg.group_size as usize, self.scales).unwrap_or(0) as u64;
            if s.vector {
                v += b
            } else {
                m += b
            }
        });
        (m, v)
    }

    /// Bytes a [`Session`] needs for a context of `ctx_len` tokens and KV cache type `kv`
    /// (including slack to align an arbitrary buffer).
    pub fn session_bytes(&self, ctx_len: usize, kv: KvDType) -> usize {
        SessionLayout::new(&self.header.config, ctx_len, kv).map(|l| l.total + REGION_ALIGN - 1).unwrap_or(usize::MAX)
    }

    fn bytes_of(&self, id: TensorId) -> &'a [u8] {
        let cfg = &self.header.config;
        let off = self.layout.offset(id);
        // Sizes were checked against the data section when the file was parsed.
        let len = tensor_bytes(tensor_shape(cfg, id), cfg.dtype, cfg.group_size as usize, self.scales).unwrap_or(0);
        &self.data[off..off + len]
    }
    fn matrix<M: Matrix<'a>>(&self, id: TensorId) -> M {
        let s = tensor_shape(&self.header.config, id);
        let c = &self.header.config;
        M::from_file(self.bytes_of(id), s.rows, s.cols, c.group_size as usize, self.scales, c.dtype)
    }
    fn vector(&self, id: TensorId) -> &'a [f32] {
        bytemuck::cast_slice(self.bytes_of(id))
    }
}

/// `int8`, `int8 with f16 scales`, ...: a weight storage for [`Error::WrongWeightType`].
fn storage_name(dtype: DType, scales: Option<ScaleDType>) -> &'static str {
    match (dtype, scales) {
        (DType::I8, Some(ScaleDType::F32)) => "int8 (f32 scales)",
        (DType::I8, Some(ScaleDType::F16)) => "int8 (f16 scales)",
        (DType::I4, Some(ScaleDType::F32)) => "int4 (f32 scales)",
        (DType::I4, Some(ScaleDType::F16)) => "int4 (f16 scales)",
        (d, _) => d.name(),
    }
}

/// Sizes (in elements) of every region of a session buffer.
#[derive(Debug, Clone, Copy)]
struct SessionLayout {
    ctx: usize,
    /// Positions per cache row: `ctx`, or for an int8 cache `ctx` rounded up to a multiple of 8
    /// (the value rows are read eight positions at a time).
    ctx_pad: usize,
    kv_elems: usize,
    kv_elem_bytes: usize,
    kv_scales: usize,
    /// int8 cache only: attention weights as int16 `[ctx_pad]` and their group scales.
    att16: usize,
    att16_scales: usize,
    total: usize,
}

/// Positions per group of int16 attention weights (one f32 scale each).
const ATT_GROUP: usize = 64;

fn region(n_elems: usize, elem: usize) -> Option<usize> {
    format::align_up(n_elems.checked_mul(elem)?, REGION_ALIGN)
}

impl SessionLayout {
    fn new(cfg: &Config, ctx: usize, kv: KvDType) -> Option<Self> {
        let e = cfg.n_embd as usize;
        let h = cfg.n_hidden as usize;
        let v = cfg.vocab_size as usize;
        let gs = cfg.group_size as usize;
        let wide = e.max(h);
        let ctx_pad = match kv {
            KvDType::I8 => ctx.checked_add(7)? / 8 * 8,
            _ => ctx,
        };
        let kv_elems = (cfg.n_layer as usize).checked_mul(ctx_pad)?.checked_mul(cfg.kv_dim())?;
        let kv_elem_bytes = match kv {
            KvDType::F32 => 4,
            KvDType::F16 => 2,
            KvDType::I8 => 1,
        };
        let kv_scales = match kv {
            KvDType::I8 => (cfg.n_layer as usize).checked_mul(ctx_pad)?.checked_mul(cfg.n_kv_head as usize)?,
            _ => 0,
        };
        let (att16, att16_scales) = match kv {
            KvDType::I8 => (ctx_pad, ctx_pad.div_ceil(ATT_GROUP)),
            _ => (0, 0),
        };
        let f32s = [e, e, e, h, h, e, cfg.kv_dim(), cfg.kv_dim(), ctx, v, cfg.head_dim(), cfg.head_dim()];
        let mut total = 0usize;
        for n in f32s {
            total = total.checked_add(region(n, 4)?)?;
        }
        total = total.checked_add(region(wide, 1)?)?; // xq
        total = total.checked_add(region(wide.div_ceil(gs), 4)?)?; // xs
        total = total.checked_add(region(ops::pair_words(wide), 4)?)?; // xp
        total = total.checked_add(region(v, 8)?)?; // sampler scratch
        total = total.checked_add(region(ctx, 4)?)?; // token history
        total = total.checked_add(region(cfg.head_dim() / 2, 8)?)?; // RoPE turns
        total = total.checked_add(region(kv_elems, kv_elem_bytes)?.checked_mul(2)?)?;
        total = total.checked_add(region(kv_scales, 4)?.checked_mul(2)?)?;
        total = total.checked_add(region(att16, 2)?)?;
        total = total.checked_add(region(ops::pair_words(att16), 4)?)?;
        total = total.checked_add(region(att16_scales, 4)?)?;
        Some(SessionLayout { ctx, ctx_pad, kv_elems, kv_elem_bytes, kv_scales, att16, att16_scales, total })
    }
}

/// Hands out aligned, typed regions of a byte buffer.
struct Carver<'s> {
    rest: &'s mut [u8],
}

impl<'s> Carver<'s> {
    fn take<T: bytemuck::Pod>(&mut self, n: usize) -> &'s mut [T] {
        let bytes = region(n, core::mem::size_of::<T>()).unwrap_or(0);
        let rest = core::mem::take(&mut self.rest);
        let (head, tail) = rest.split_at_mut(bytes);
        self.rest = tail;
        let head: &'s mut [T] = bytemuck::cast_slice_mut(head);
        let len = head.len();
        &mut head[..n.min(len)]
    }
}

/// Where one forward pass writes and reads: the token's position (RoPE, learned embeddings), its
/// cache row, and the number of rows it attends to (itself included; the rows are `0..n`).
#[derive(Debug, Clone, Copy)]
struct At {
    pos: u64,
    slot: usize,
    n: usize,
}

/// `2^64 / 2π`, rounded: radians to 64-bit fractions of a turn.
const TURN_Q64_PER_RADIAN: u128 = 2_935_890_503_282_001_226;

/// The rotation of RoPE frequency `f` (radians per position) as a 64-bit fraction of a turn per
/// position, `f / 2π · 2^64` rounded down, computed in integers from `f`'s exact binary value:
/// `p.wrapping_mul(turns)` is then the angle at position `p` modulo one turn, with no rounding
/// that grows with `p`.
fn turns_per_position(f: f32) -> u64 {
    let bits = f.to_bits();
    let exp = (bits >> 23) & 0xff;
    if f.is_sign_negative() || exp == 0 || exp >= 127 + 40 {
        return 0; // zero, subnormal or absurd frequencies (θ ≥ 1 keeps f ≤ 1): no rotation
    }
    // f = mant · 2^(exp - 150) with `mant` < 2^24.
    let mant = ((bits & 0x7f_ffff) | 0x80_0000) as u128;
    let q = mant * TURN_Q64_PER_RADIAN; // < 2^86
    if exp >= 150 {
        (q << (exp - 150)) as u64 // keeps the fraction of a turn
    } else {
        (q >> (150 - exp)) as u64
    }
}

/// Statistics of one [`generate`] call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenStats {
    /// Prompt tokens fed.
    pub prompt_tokens: usize,
    /// Tokens generated (a stop token that ended generation included).
    pub generated: usize,
    /// Whether a stop token (the end-of-text token, or `<|im_end|>` for a chat reply) ended
    /// generation; `false` when it ran out of tokens.
    pub stopped: bool,
}

/// A running model: activations, KV cache and token history, all in a caller-provided buffer.
///
/// What happens when the context is full depends on the architecture; both never fail and are
/// the same on every target:
///
/// - **llama** (RoPE): the KV cache is a ring of `ctx_len` rows. The token at position `p` is
///   stored in row `p % ctx_len`, over the oldest one, and attends to the `ctx_len` newest tokens
///   (itself included). As RoPE makes a score depend only on the distance between the query's
///   and the key's positions, which stay below `ctx_len`, every token costs the same once the
///   context is full (a sliding attention window, as in Mistral's rolling buffer cache). Positions
///   below `block_size` get their rotation angles `p · θ_i` in f32, as in training; later ones from
///   a 64-bit fixed-point fraction of a turn, `(p · θ_i / 2π) mod 1`, so that the angle keeps its
///   precision however long generation runs.
/// - **gpt2** (learned positions, none past `block_size`): the newest `ctx_len / 2` tokens are
///   kept and re-run from position 0, and generation continues.
pub struct Session<'s, 'a> {
    model: &'s Model<'a>,
    kv: KvDType,
    /// The forward pass this session runs: the one monomorphisation of its weight and KV types
    /// ([`Session::new_typed`]), or the dispatch over all of them ([`Session::new`]).
    forward: fn(&mut Session<'s, 'a>, u32, At),
    ctx: usize,
    /// Tokens in the context (`..= ctx`).
    len: usize,
    /// Position of the next token since the last reset (llama: grows past `ctx`).
    pos: u64,
    /// Cache row of the next token (llama: `pos % ctx`; gpt2: `pos`).
    slot: usize,
    /// Residual stream `[n_embd]`.
    x: &'s mut [f32],
    /// Normed input of a sub-block `[n_embd]`.
    xb: &'s mut [f32],
    /// Attention output before `wo` `[n_embd]`.
    xb2: &'s mut [f32],
    /// MLP hidden `[n_hidden]`.
    hb: &'s mut [f32],
    /// SwiGLU second branch `[n_hidden]`.
    hb2: &'s mut [f32],
    /// Query `[n_embd]`.
    q: &'s mut [f32],
    /// Key of the current position `[kv_dim]`.
    k: &'s mut [f32],
    /// Value of the current position `[kv_dim]`.
    v: &'s mut [f32],
    /// Attention scores of one head `[ctx]`.
    att: &'s mut [f32],
    /// Next-token logits `[vocab_size]`.
    logits: &'s mut [f32],
    /// RoPE frequency per pair `[head_dim / 2]`, the same as a 64-bit fraction of a turn per
    /// position (`θ_i / 2π · 2^64`), then cos and sin for the current position.
    rope_freq: &'s mut [f32],
    rope_turns: &'s mut [u64],
    rope_cs: &'s mut [f32],
    /// int8 quantization of the current matvec input `[max(n_embd, n_hidden)]` and its scales.
    xq: &'s mut [i8],
    xs: &'s mut [f32],
    /// `xq` widened to 16-bit pairs for the DSP int8 kernel `[pair_words(max(n_embd, n_hidden))]`.
    xp: &'s mut [u32],
    /// Sampler scratch `[vocab_size]`.
    probs: &'s mut [ProbIndex],
    /// The context's tokens by cache row `[ctx]` (gpt2 re-runs them when the context is full).
    tokens: &'s mut [u32],
    /// Positions per cache row (see `SessionLayout::ctx_pad`).
    ctx_pad: usize,
    /// Float KV: keys `[n_layer, n_kv_head, head_dim, ctx]` (transposed), values
    /// `[n_layer, ctx, kv_dim]`. int8 KV: keys `[n_layer, n_kv_head, ctx_pad, head_dim]`, values
    /// `[n_layer, n_kv_head, head_dim, ctx_pad]` (transposed), so that both attention products
    /// are int8 matvecs over contiguous rows.
    key_cache: &'s mut [u8],
    value_cache: &'s mut [u8],
    /// int8 KV only: one scale per position and KV head, `[n_layer, n_kv_head, ctx_pad]`.
    key_scales: &'s mut [f32],
    value_scales: &'s mut [f32],
    /// int8 KV only: attention weights quantized to int16 `[ctx_pad]`, widened pairs, and one
    /// scale per `ATT_GROUP` positions.
    att16: &'s mut [i16],
    att16_pairs: &'s mut [u32],
    att16_scales: &'s mut [f32],
}

impl<'s, 'a> Session<'s, 'a> {
    /// Builds a session for `ctx_len` tokens (`1..=block_size`) in `buf`
    /// (at least [`Model::session_bytes`] bytes; any alignment).
    pub fn new(model: &'s Model<'a>, buf: &'s mut [u8], ctx_len: usize, kv: KvDType) -> Result<Self, Error> {
        Self::build(model, buf, ctx_len, kv, Self::forward)
    }

    /// [`Session::new`] for a model whose weights are stored as `M` (for example
    /// [`I8Matrix`](crate::weights::I8Matrix)), with a KV cache of `K` (`f32`, `f16` or `i8`),
    /// of the architecture and head size `A` says ([`AnyShape`]: any).
    /// The session runs the forward pass compiled for these types and constants only, so a
    /// program that builds its sessions this way links that one monomorphisation instead of one
    /// per combination (the firmware picks them from the model's header at build time). The text
    /// is the same as [`Session::new`]'s. A model of another weight or scale type is refused
    /// ([`Error::WrongWeightType`]), of another architecture too ([`Error::WrongArch`]), and of
    /// another head or group size ([`Error::Unsupported`]).
    pub fn new_typed<M: Matrix<'a>, K: KvElem, A: Shape>(
        model: &'s Model<'a>,
        buf: &'s mut [u8],
        ctx_len: usize,
    ) -> Result<Self, Error> {
        let dtype = model.config().dtype;
        let scales = if dtype.quantized() { Some(model.scale_dtype()) } else { None };
        let fits = |want: Option<ScaleDType>| want.is_none() || want == scales;
        if dtype != M::DTYPE || !fits(M::SCALES) {
            return Err(Error::WrongWeightType {
                model: storage_name(dtype, scales),
                session: storage_name(M::DTYPE, M::SCALES),
            });
        }
        if let Some(arch) = A::ARCH {
            if arch != model.config().arch {
                return Err(Error::WrongArch { model: model.config().arch.name(), session: arch.name() });
            }
        }
        if A::HEAD_DIM != 0 && A::HEAD_DIM != model.config().head_dim() {
            return Err(Error::Unsupported("the head size is not the one this program was compiled for"));
        }
        if M::GROUP_SIZE != 0 && M::GROUP_SIZE != model.config().group_size as usize {
            return Err(Error::Unsupported("the group size is not the one this program was compiled for"));
        }
        Self::build(model, buf, ctx_len, K::DTYPE, Self::forward_one::<M, K, A>)
    }

    fn build(
        model: &'s Model<'a>,
        buf: &'s mut [u8],
        ctx_len: usize,
        kv: KvDType,
        forward: fn(&mut Session<'s, 'a>, u32, At),
    ) -> Result<Self, Error> {
        let cfg = *model.config();
        let max = cfg.block_size as usize;
        if ctx_len == 0 || ctx_len > max {
            return Err(Error::ContextLength { requested: ctx_len, max });
        }
        let needed = model.session_bytes(ctx_len, kv);
        if buf.len() < needed {
            return Err(Error::BufferTooSmall { needed, got: buf.len() });
        }
        let lay = SessionLayout::new(&cfg, ctx_len, kv).ok_or(Error::BufferTooSmall { needed, got: buf.len() })?;
        let skip = buf.as_ptr().align_offset(REGION_ALIGN);
        let mut c = Carver { rest: &mut buf[skip..] };
        let (e, h, v, kvd, hd) =
            (cfg.n_embd as usize, cfg.n_hidden as usize, cfg.vocab_size as usize, cfg.kv_dim(), cfg.head_dim());
        let wide = e.max(h);
        let s = Session {
            model,
            kv,
            forward,
            ctx: lay.ctx,
            len: 0,
            pos: 0,
            slot: 0,
            x: c.take(e),
            xb: c.take(e),
            xb2: c.take(e),
            hb: c.take(h),
            hb2: c.take(h),
            q: c.take(e),
            k: c.take(kvd),
            v: c.take(kvd),
            att: c.take(ctx_len),
            logits: c.take(v),
            rope_freq: c.take(hd / 2),
            rope_turns: c.take(hd / 2),
            rope_cs: c.take(hd),
            xq: c.take(wide),
            xs: c.take(wide.div_ceil(cfg.group_size as usize)),
            xp: c.take(ops::pair_words(wide)),
            probs: c.take(v),
            tokens: c.take(ctx_len),
            key_cache: c.take(lay.kv_elems * lay.kv_elem_bytes),
            value_cache: c.take(lay.kv_elems * lay.kv_elem_bytes),
            ctx_pad: lay.ctx_pad,
            key_scales: c.take(lay.kv_scales),
            value_scales: c.take(lay.kv_scales),
            att16: c.take(lay.att16),
            att16_pairs: c.take(ops::pair_words(lay.att16)),
            att16_scales: c.take(lay.att16_scales),
        };
        for (i, (f, t)) in s.rope_freq.iter_mut().zip(s.rope_turns.iter_mut()).enumerate() {
            *f = 1.0 / math::powf(cfg.rope_theta, (2 * i) as f32 / hd as f32);
            *t = turns_per_position(*f);
        }
        Ok(s)
    }

    /// The model.
    pub fn model(&self) -> &'s Model<'a> {
        self.model
    }
    /// Context length.
    pub fn ctx_len(&self) -> usize {
        self.ctx
    }
    /// Number of tokens in the context (at most [`Session::ctx_len`]).
    pub fn pos(&self) -> usize {
        self.len
    }
    /// Position of the next token: the tokens fed since the last reset for a llama model (it
    /// grows past the context, whose oldest tokens roll out), [`Session::pos`] for a gpt2 one.
    pub fn position(&self) -> u64 {
        self.pos
    }
    /// KV cache element type.
    pub fn kv_dtype(&self) -> KvDType {
        self.kv
    }
    /// Forgets the context.
    pub fn reset(&mut self) {
        (self.len, self.pos, self.slot) = (0, 0, 0);
    }
    /// Forgets every token after the first `len`, so that the next [`Session::step`] continues
    /// from them: several continuations of one prompt then share its prefill. Only while the
    /// cache's rows hold the context's tokens in order from the first row (not after a llama
    /// context has rolled past its length); returns `false`, changing nothing, otherwise or when
    /// fewer than `len` tokens are in the context. [`Session::logits`] are stale until the next
    /// step: rewind to `len - 1` and feed the prompt's last token again to have them.
    pub fn rewind(&mut self, len: usize) -> bool {
        let unrolled = self.pos == self.len as u64 && self.slot == self.len;
        if !unrolled || len > self.len {
            return false;
        }
        (self.len, self.pos, self.slot) = (len, len as u64, len);
        true
    }
    /// Logits computed by the last [`Session::step`].
    pub fn logits(&self) -> &[f32] {
        self.logits
    }

    /// Feeds `token` at the next position and returns the logits for the token after it.
    pub fn step(&mut self, token: u32) -> Result<&[f32], Error> {
        if token >= self.model.config().vocab_size {
            return Err(Error::InvalidToken(token));
        }
        let rolls = self.model.config().arch == Arch::Llama;
        if self.len == self.ctx && !rolls {
            let keep = self.ctx / 2;
            let from = self.ctx - keep;
            // Moved one at a time as they are re-run (`from ≥ keep`: no source is overwritten
            // before it is read), which needs no `memmove` in a microcontroller's flash.
            for i in 0..keep {
                let t = self.tokens[from + i];
                self.tokens[i] = t;
                (self.forward)(self, t, At { pos: i as u64, slot: i, n: i + 1 });
            }
            (self.len, self.pos, self.slot) = (keep, keep as u64, keep);
        }
        let at = At { pos: self.pos, slot: self.slot, n: (self.len + 1).min(self.ctx) };
        self.tokens[self.slot] = token;
        (self.forward)(self, token, at);
        self.len = at.n;
        self.pos = self.pos.wrapping_add(1);
        self.slot += 1;
        if self.slot == self.ctx && rolls {
            self.slot = 0;
        }
        Ok(self.logits)
    }

    /// Samples the next token from the current logits.
    pub fn sample(&mut self, sampler: &mut Sampler) -> u32 {
        sampler.sample(self.logits, self.probs)
    }

    /// Runs the forward pass for `token` at `at` (its position, cache row and rows to attend),
    /// filling the logits.
    fn forward(&mut self, token: u32, at: At) {
        #[cfg(target_arch = "x86_64")]
        if ops::x86::avx2() {
            // SAFETY: the CPU supports AVX2 (checked by `x86::avx2`).
            unsafe { self.forward_avx2(token, at) };
            return;
        }
        self.forward_any(token, at)
    }

    /// The forward pass of weights `M` and KV cache `K` only ([`Session::new_typed`]).
    fn forward_one<M: Matrix<'a>, K: KvElem, A: Shape>(&mut self, token: u32, at: At) {
        #[cfg(target_arch = "x86_64")]
        if ops::x86::avx2() {
            // SAFETY: the CPU supports AVX2 (checked by `x86::avx2`).
            unsafe { self.forward_one_avx2::<M, K, A>(token, at) };
            return;
        }
        self.forward_typed::<M, K, A>(token, at)
    }

    /// [`Session::forward_one`] compiled with AVX2 enabled (as [`Session::forward_avx2`]).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn forward_one_avx2<M: Matrix<'a>, K: KvElem, A: Shape>(&mut self, token: u32, at: At) {
        self.forward_typed::<M, K, A>(token, at)
    }

    /// The whole forward pass compiled with AVX2 enabled: attention, softmax, norms and
    /// quantization vectorize on 256-bit registers. Rust never contracts a multiply and an add
    /// into an FMA, nor reorders float operations, so the logits are bit-identical to the
    /// portable build (`tests/kernels.rs` checks this).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn forward_avx2(&mut self, token: u32, at: At) {
        self.forward_any(token, at)
    }

    /// Chooses the forward pass of the file's weight type; the session's KV type is chosen per
    /// layer ([`AnyKv`]), so that the attention code exists once per KV type rather than once per
    /// weight type and KV type (a program's size; the cost is one call per layer).
    #[inline(always)]
    fn forward_any(&mut self, token: u32, at: At) {
        self.forward_typed::<AnyMatrix<'a>, AnyKv, AnyShape>(token, at)
    }

    /// Attention of layer `l` over the session's KV cache, whatever its type: out of line, with
    /// its own AVX2 build (it is called from both builds of the forward pass).
    #[inline(never)]
    fn attention_dyn(&mut self, l: usize, at: At, scale: f32, hd: usize) {
        #[cfg(target_arch = "x86_64")]
        if ops::x86::avx2() {
            // SAFETY: the CPU supports AVX2 (checked by `x86::avx2`).
            unsafe { self.attention_dyn_avx2(l, at, scale, hd) };
            return;
        }
        self.attention_kv(l, at, scale, hd)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn attention_dyn_avx2(&mut self, l: usize, at: At, scale: f32, hd: usize) {
        self.attention_kv(l, at, scale, hd)
    }

    #[inline(always)]
    fn attention_kv(&mut self, l: usize, at: At, scale: f32, hd: usize) {
        match self.kv {
            KvDType::F32 => self.attention_float::<f32>(l, at, scale, hd),
            KvDType::F16 => self.attention_float::<f16>(l, at, scale, hd),
            KvDType::I8 => self.attention_i8(l, at, scale, hd),
        }
    }

    /// The forward pass, generic over the weight storage `M` and the KV element `K`.
    #[inline(always)]
    fn forward_typed<M: Matrix<'a>, K: KvChoice, A: Shape>(&mut self, token: u32, at: At) {
        let model = self.model;
        let mut cfg = *model.config();
        // Constants when the session was built for one architecture, head size and group size:
        // the code for the others goes.
        cfg.arch = A::ARCH.unwrap_or(cfg.arch);
        let hd = if A::HEAD_DIM != 0 { A::HEAD_DIM } else { cfg.head_dim() };
        let gs = if M::GROUP_SIZE != 0 { M::GROUP_SIZE } else { cfg.group_size as usize };
        let eps = cfg.norm_eps;
        let norm = |out: &mut [f32], x: &[f32], w: &[f32]| match cfg.arch {
            Arch::Gpt2 => layernorm(out, x, w, eps),
            Arch::Llama => rmsnorm(out, x, w, eps),
        };

        // Token (and position) embedding.
        model.matrix::<M>(TensorId::TokEmbeddings).row(token as usize, self.x);
        if cfg.arch == Arch::Gpt2 {
            model.matrix::<M>(TensorId::PosEmbeddings).row(at.slot, self.xb);
            add_assign(self.x, self.xb);
        }
        if cfg.arch == Arch::Llama {
            let (cos, sin) = self.rope_cs.split_at_mut(hd / 2);
            let past = at.pos >= cfg.block_size as u64;
            for (i, (c, s)) in cos.iter_mut().zip(sin.iter_mut()).enumerate() {
                // Below block_size the angle is training's f32 product, reduced exactly.
                let turn = if past {
                    at.pos.wrapping_mul(self.rope_turns[i])
                } else {
                    turns_per_position(at.pos as f32 * self.rope_freq[i])
                };
                (*c, *s) = math::cos_sin_turn(turn);
            }
        }
        let scale = 1.0 / math::sqrtf(hd as f32);

        for l in 0..cfg.n_layer {
            let w = |t| TensorId::Layer(l, t);
            // Attention.
            norm(self.xb, self.x, model.vector(w(LayerTensor::AttnNorm)));
            let inp = prepare::<M>(self.xb, self.xq, self.xs, self.xp, gs, cfg.dtype);
            model.matrix::<M>(w(LayerTensor::Wq)).matvec(self.q, &inp);
            model.matrix::<M>(w(LayerTensor::Wk)).matvec(self.k, &inp);
            model.matrix::<M>(w(LayerTensor::Wv)).matvec(self.v, &inp);
            if cfg.arch == Arch::Llama {
                let (cos, sin) = self.rope_cs.split_at(hd / 2);
                for head in self.q.chunks_exact_mut(hd).chain(self.k.chunks_exact_mut(hd)) {
                    rope(head, cos, sin);
                }
            }
            K::attend(self, l as usize, at, scale, hd);
            let inp = prepare::<M>(self.xb2, self.xq, self.xs, self.xp, gs, cfg.dtype);
            model.matrix::<M>(w(LayerTensor::Wo)).matvec(self.xb, &inp);
            add_assign(self.x, self.xb);

            // MLP.
            norm(self.xb, self.x, model.vector(w(LayerTensor::FfnNorm)));
            let inp = prepare::<M>(self.xb, self.xq, self.xs, self.xp, gs, cfg.dtype);
            model.matrix::<M>(w(LayerTensor::W1)).matvec(self.hb, &inp);
            match cfg.arch {
                Arch::Gpt2 => self.hb.iter_mut().for_each(|h| *h = gelu(*h)),
                Arch::Llama => {
                    model.matrix::<M>(w(LayerTensor::W3)).matvec(self.hb2, &inp);
                    for (a, &b) in self.hb.iter_mut().zip(self.hb2.iter()) {
                        *a = silu(*a) * b;
                    }
                }
            }
            let inp = prepare::<M>(self.hb, self.xq, self.xs, self.xp, gs, cfg.dtype);
            model.matrix::<M>(w(LayerTensor::W2)).matvec(self.xb, &inp);
            add_assign(self.x, self.xb);
        }

        norm(self.xb, self.x, model.vector(TensorId::Norm));
        let inp = prepare::<M>(self.xb, self.xq, self.xs, self.xp, gs, cfg.dtype);
        let classifier = if cfg.tie_embeddings { TensorId::TokEmbeddings } else { TensorId::Output };
        model.matrix::<M>(classifier).matvec(self.logits, &inp);
    }
}

impl Session<'_, '_> {
    /// Attention of layer `l` at position `pos` over a float (f32 or f16) KV cache: stores this
    /// position's key and value, then for every query head computes the scores, their softmax and
    /// the weighted sum of the values into `xb2`.
    ///
    /// Keys are cached transposed, `[layer][kv_head][i][t]`, so that the scores of one head are a
    /// sum over `i` of a row of `t`s (sequential in `i` for every `t`); values are cached
    /// `[layer][t][kv_dim]`.
    #[inline(always)]
    fn attention_float<K: KvElem>(&mut self, l: usize, at: At, scale: f32, hd: usize) {
        let (slot, n) = (at.slot, at.n);
        let cfg = *self.model.config();
        let (kvd, ctx) = (cfg.kv_dim(), self.ctx);
        let n_kv = cfg.n_kv_head as usize;
        let n_rep = (cfg.n_head / cfg.n_kv_head) as usize;
        let lbase = l * ctx;
        {
            let kc: &mut [K] = bytemuck::cast_slice_mut(self.key_cache);
            let vc: &mut [K] = bytemuck::cast_slice_mut(self.value_cache);
            let row = (lbase + slot) * kvd;
            for h in 0..n_kv {
                let (kh, vh) = (&self.k[h * hd..(h + 1) * hd], &self.v[h * hd..(h + 1) * hd]);
                let kbase = ((l * n_kv + h) * hd) * ctx + slot;
                for (i, &x) in kh.iter().enumerate() {
                    kc[kbase + i * ctx] = K::encode(x);
                }
                for (d, &x) in vc[row + h * hd..row + (h + 1) * hd].iter_mut().zip(vh) {
                    *d = K::encode(x);
                }
            }
        }
        let kc: &[K] = bytemuck::cast_slice(self.key_cache);
        let vc: &[K] = bytemuck::cast_slice(self.value_cache);
        for (h, (qh, out)) in self.q.chunks_exact(hd).zip(self.xb2.chunks_exact_mut(hd)).enumerate() {
            let kvh = h / n_rep;
            let att = &mut self.att[..n];
            let kbase = (l * n_kv + kvh) * hd * ctx;
            ops::scores(att, qh, &kc[kbase..kbase + hd * ctx], ctx);
            for a in att.iter_mut() {
                *a *= scale;
            }
            softmax(att);
            ops::weighted_sum(out, att, vc, lbase * kvd + kvh * hd, kvd);
        }
    }

    /// Attention of layer `l` at position `pos` over an int8 KV cache, both products in integers:
    /// each key and value head vector is stored as int8 with one scale; the scores are the int8
    /// query head (quantized with one scale) against the int8 keys, an int8 matvec with one group
    /// per position; after the softmax, each weight times its position's value scale is
    /// quantized to int16 (one scale per `ATT_GROUP` positions), and the output is the int8
    /// matvec of the transposed values by those weights. Every target runs the same integer sums
    /// and the same float steps in the same order.
    #[inline(always)]
    fn attention_i8(&mut self, l: usize, at: At, scale: f32, hd: usize) {
        let (slot, n) = (at.slot, at.n);
        let cfg = *self.model.config();
        let ctx_pad = self.ctx_pad;
        let n_kv = cfg.n_kv_head as usize;
        let n_rep = (cfg.n_head / cfg.n_kv_head) as usize;
        let kc: &mut [i8] = bytemuck::cast_slice_mut(self.key_cache);
        let vc: &mut [i8] = bytemuck::cast_slice_mut(self.value_cache);
        for h in 0..n_kv {
            let head = l * n_kv + h;
            let (kh, vh) = (&self.k[h * hd..(h + 1) * hd], &self.v[h * hd..(h + 1) * hd]);
            let krow = (head * ctx_pad + slot) * hd;
            self.key_scales[head * ctx_pad + slot] = ops::quantize_group(&mut kc[krow..krow + hd], kh);
            let (vs, vinv) = ops::quant_params(vh);
            let vbase = head * hd * ctx_pad + slot;
            for (i, &x) in vh.iter().enumerate() {
                vc[vbase + i * ctx_pad] = ops::quant_one(x, vinv);
            }
            self.value_scales[head * ctx_pad + slot] = vs;
        }
        let (kc, vc): (&[i8], &[i8]) = (kc, vc);
        // The value rows are read in blocks of eight positions; weights past row `n` are zero, so
        // whatever the cache holds there adds exactly nothing.
        let n_pad = n.div_ceil(8) * 8;
        let groups = n_pad.div_ceil(ATT_GROUP);
        for (h, (qh, out)) in self.q.chunks_exact(hd).zip(self.xb2.chunks_exact_mut(hd)).enumerate() {
            let head = l * n_kv + h / n_rep;
            let scales = head * ctx_pad..head * ctx_pad + n;
            // Scores.
            let q8 = &mut self.xq[..hd];
            self.xs[0] = ops::quantize_group(q8, qh);
            let qp: &[u32] = if ops::WIDEN_PAIRS {
                let p = &mut self.xp[..ops::pair_words(hd)];
                ops::widen_pairs(p, q8);
                p
            } else {
                &[]
            };
            let att = &mut self.att[..n];
            let keys = &kc[head * ctx_pad * hd..(head * ctx_pad + n) * hd];
            ops::matvec_i8(att, keys, &self.key_scales[scales.clone()], q8, &self.xs[..1], qp, hd);
            for a in att.iter_mut() {
                *a *= scale;
            }
            softmax(att);
            // Weighted sum of the values.
            for (a, &s) in att.iter_mut().zip(&self.value_scales[scales]) {
                *a *= s;
            }
            let a16 = &mut self.att16[..n_pad];
            ops::quantize_i16(&mut a16[..n], &mut self.att16_scales[..groups], att, ATT_GROUP);
            a16[n..].fill(0);
            let ap: &[u32] = if ops::WIDEN_PAIRS {
                let p = &mut self.att16_pairs[..ops::pair_words(n_pad)];
                ops::widen_pairs_i16(p, a16);
                p
            } else {
                &[]
            };
            let values = &vc[head * hd * ctx_pad..(head + 1) * hd * ctx_pad];
            ops::matvec_i8_i16(out, values, ctx_pad, a16, &self.att16_scales[..groups], ap, ATT_GROUP);
        }
    }
}

/// Quantizes `x` when the weight type needs it and bundles it as a matvec input.
#[inline(always)]
fn prepare<'x, 'a, M: Matrix<'a>>(
    x: &'x [f32],
    xq: &'x mut [i8],
    xs: &'x mut [f32],
    xp: &'x mut [u32],
    gs: usize,
    dtype: DType,
) -> Input<'x> {
    if M::quantized_input(dtype) {
        let n = x.len();
        let g = n.div_ceil(gs);
        quantize(&mut xq[..n], &mut xs[..g], x, gs);
        let p: &[u32] = if ops::WIDEN_PAIRS {
            let w = ops::pair_words(n);
            M::widen_for(dtype, &mut xp[..w], &xq[..n]);
            &xp[..w]
        } else {
            &[]
        };
        Input { f: x, q: &xq[..n], s: &xs[..g], p }
    } else {
        Input { f: x, q: &[], s: &[], p: &[] }
    }
}

/// What a session's forward pass is compiled for besides its weight and KV types
/// ([`Session::new_typed`]): the architecture and the head size, each fixed or left to the file.
/// A program built for one model (the firmware) names them, and the code the model does not need
/// (the other architecture's GELU and layernorm, the attention kernel's loops for other head
/// sizes) is not linked.
pub trait Shape {
    /// The one architecture, or `None` for both.
    const ARCH: Option<Arch> = None;
    /// The head size (`n_embd / n_head`), or 0 for any.
    const HEAD_DIM: usize = 0;
    /// The tokenizer kind, or `None` for any: [`Model::from_bytes_as`] validates only that kind's
    /// tables and refuses the others.
    const TOKENIZER: Option<TokenizerKind> = None;
}
/// Any architecture and head size, as the file says.
#[derive(Debug, Clone, Copy)]
pub struct AnyShape;
impl Shape for AnyShape {}

/// The KV cache a forward pass is compiled for: one element type ([`KvElem`]: its attention
/// inlined), or [`AnyKv`]: the session's, chosen per layer.
trait KvChoice {
    fn attend(s: &mut Session<'_, '_>, l: usize, at: At, scale: f32, hd: usize);
}

impl<K: KvElem> KvChoice for K {
    #[inline(always)]
    fn attend(s: &mut Session<'_, '_>, l: usize, at: At, scale: f32, hd: usize) {
        if K::SCALED {
            s.attention_i8(l, at, scale, hd);
        } else {
            s.attention_float::<K>(l, at, scale, hd);
        }
    }
}

/// The session's KV type, chosen per layer ([`Session::new`]).
struct AnyKv;

impl KvChoice for AnyKv {
    #[inline(always)]
    fn attend(s: &mut Session<'_, '_>, l: usize, at: At, scale: f32, hd: usize) {
        s.attention_dyn(l, at, scale, hd);
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
    impl Sealed for i8 {}
}

/// Element type of the KV cache: `f32`, `f16` or `i8` (the types of [`KvDType`]; see
/// [`Session::new_typed`]).
pub trait KvElem: bytemuck::Pod + ops::FloatWeight + sealed::Sealed {
    /// The [`KvDType`] of this element.
    const DTYPE: KvDType;
    /// int8: head vectors carry scales and attention runs in integers
    /// ([`Session::attention_i8`]); f32 and f16 take the float path.
    const SCALED: bool;
    /// One element of a float cache (the int8 path quantizes whole head vectors instead).
    fn encode(x: f32) -> Self;
}

impl KvElem for f32 {
    const DTYPE: KvDType = KvDType::F32;
    const SCALED: bool = false;
    #[inline(always)]
    fn encode(x: f32) -> f32 {
        x
    }
}

impl KvElem for f16 {
    const DTYPE: KvDType = KvDType::F16;
    const SCALED: bool = false;
    #[inline(always)]
    fn encode(x: f32) -> f16 {
        f16::from_f32(x)
    }
}

impl KvElem for i8 {
    const DTYPE: KvDType = KvDType::I8;
    const SCALED: bool = true;
    #[inline(always)]
    fn encode(x: f32) -> i8 {
        ops::quant_one(x, 1.0)
    }
}

/// Feeds `prompt`, then samples `n_new` tokens, calling `on_text` with the prompt's text and then
/// each piece of generated text as soon as it is complete UTF-8. Stops early at the end-of-text
/// token. The CLI and the firmware both call this, so they print the same text.
pub fn generate(
    session: &mut Session<'_, '_>,
    sampler: &mut Sampler,
    prompt: &[u32],
    n_new: usize,
    on_text: impl FnMut(&str),
) -> Result<GenStats, Error> {
    let eot = session.model().tokenizer().eot();
    generate_until(session, sampler, prompt, n_new, eot.as_slice(), true, on_text)
}

/// [`generate`] with the stop tokens given: generation ends when one of `stop` is sampled (it is
/// counted in `generated` but neither decoded nor fed). With `echo`, `on_text` also receives the
/// prompt's text first.
pub fn generate_until(
    session: &mut Session<'_, '_>,
    sampler: &mut Sampler,
    prompt: &[u32],
    n_new: usize,
    stop: &[u32],
    echo: bool,
    on_text: impl FnMut(&str),
) -> Result<GenStats, Error> {
    generate_while(session, sampler, prompt, n_new, stop, echo, on_text, || true)
}

/// [`generate_until`] that can be stopped from outside: `go_on` is asked before each prompt token
/// is fed and before each new token is sampled, and generation ends (returning the statistics so
/// far, with `stopped` false) as soon as it answers `false`. A server uses it to free a session
/// whose client went away, or whose request ran out of time. Until then the text is exactly
/// [`generate_until`]'s.
#[allow(clippy::too_many_arguments)]
pub fn generate_while(
    session: &mut Session<'_, '_>,
    sampler: &mut Sampler,
    prompt: &[u32],
    n_new: usize,
    stop: &[u32],
    echo: bool,
    mut on_text: impl FnMut(&str),
    mut go_on: impl FnMut() -> bool,
) -> Result<GenStats, Error> {
    if prompt.is_empty() {
        return Err(Error::EmptyPrompt);
    }
    let tok = session.model().tokenizer();
    let mut dec = Decoder::new();
    let mut stats = GenStats { prompt_tokens: 0, generated: 0, stopped: false };
    for &t in prompt {
        if !go_on() {
            dec.finish(&mut on_text);
            return Ok(stats);
        }
        stats.prompt_tokens += 1;
        session.step(t)?;
        if echo {
            dec.push(&tok, t, &mut on_text);
        }
    }
    for i in 0..n_new {
        if !go_on() {
            break;
        }
        let next = session.sample(sampler);
        stats.generated += 1;
        if stop.contains(&next) {
            stats.stopped = true;
            break;
        }
        dec.push(&tok, next, &mut on_text);
        if i + 1 < n_new {
            session.step(next)?;
        }
    }
    dec.finish(&mut on_text);
    Ok(stats)
}

/// Cross-entropy of `tokens` under the model: the text is cut into consecutive windows of
/// `ctx_len` inputs (the last may be shorter); each window starts from an empty context and
/// predicts the token after every input. Returns `(sum of -ln p, number of predictions)`; every
/// token but the first is predicted exactly once.
pub fn eval_loss(session: &mut Session<'_, '_>, tokens: &[u32]) -> Result<(f64, u64), Error> {
    let ctx = session.ctx_len();
    let (mut sum, mut count) = (0.0f64, 0u64);
    let mut start = 0;
    while start + 1 < tokens.len() {
        let end = (start + ctx).min(tokens.len() - 1);
        session.reset();
        for i in start..end {
            let logits = session.step(tokens[i])?;
            let target = tokens[i + 1] as usize;
            if target >= logits.len() {
                return Err(Error::InvalidToken(tokens[i + 1]));
            }
            let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
            let lse = libm::log(logits.iter().map(|&v| libm::exp(v as f64 - max)).sum::<f64>()) + max;
            sum += lse - logits[target] as f64;
            count += 1;
        }
        start = end;
    }
    Ok((sum, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixed-point turn gives the rotation by `p · f` modulo 2π, also where an f32 product
    /// has lost its precision.
    #[test]
    fn rope_turns_give_the_angle_modulo_a_turn() {
        for f in [1.0f32, 0.5, 0.1, 1.0 / 10_000.0, 0.316_227_77, 3.0e-7] {
            let t = turns_per_position(f);
            for p in [0u64, 1, 2, 127, 128, 1000, 123_457, 10_000_019, 4_000_000_007] {
                let want = p as f64 * f as f64;
                let (c, s) = math::cos_sin_turn(p.wrapping_mul(t));
                let (wc, ws) = (want.cos(), want.sin());
                assert!((c as f64 - wc).abs() < 3e-7 && (s as f64 - ws).abs() < 3e-7, "f {f} p {p}: ({c}, {s}) against ({wc}, {ws})");
            }
        }
        assert_eq!(turns_per_position(0.0), 0);
    }

    /// Training's angles (f32 products below block_size), reduced in integers, give libm's
    /// cosine and sine within two ulps and the exact ones within 1.2e-7.
    #[test]
    fn cos_sin_of_reduced_f32_angles() {
        let ulps = |a: f32, b: f32| (a.to_bits() as i64 - b.to_bits() as i64).abs();
        let mut worst = 0f64;
        let mut x = 0f32;
        let mut n = 0u32;
        while x < 4096.0 {
            let (c, s) = math::cos_sin_turn(turns_per_position(x));
            let (wc, ws) = ((x as f64).cos(), (x as f64).sin());
            worst = worst.max((c as f64 - wc).abs()).max((s as f64 - ws).abs());
            let (lc, ls) = (libm::cosf(x), libm::sinf(x));
            // Within two ulps of libm, or (near a zero, where ulps are tiny) 1e-7 absolute.
            assert!(ulps(c, lc) <= 2 || (c - lc).abs() < 1e-7, "cos {x}: {c} against libm {lc}");
            assert!(ulps(s, ls) <= 2 || (s - ls).abs() < 1e-7, "sin {x}: {s} against libm {ls}");
            n += 1;
            x = if x < 1.0 { x + 1.0 / 4096.0 } else { f32::from_bits(x.to_bits() + 97) };
        }
        assert!(n > 100_000, "{n} angles");
        assert!(worst < 1.2e-7, "worst absolute error {worst}");
        // The octant boundaries and the exact quarter turns.
        for q in 0..4u64 {
            let (c, s) = math::cos_sin_turn(q << 62);
            let want = [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)][q as usize];
            assert_eq!((c, s), want, "quarter {q}");
            let (c, s) = math::cos_sin_turn((q << 62) + (1 << 61));
            let h = core::f32::consts::FRAC_1_SQRT_2;
            assert!((c.abs() - h).abs() < 1e-7 && (s.abs() - h).abs() < 1e-7, "octant {q}: {c} {s}");
        }
    }
}
