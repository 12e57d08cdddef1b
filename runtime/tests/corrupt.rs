//! Untrusted bytes: every truncation and many byte flips give `Err`, never a panic; the writer's
//! output round-trips.

mod common;

use common::*;
use proptest::prelude::*;
use tinygpt_runtime::format::ScaleDType;
use tinygpt_runtime::writer::{encode_model, encode_model_scaled, AlignedBytes, MetaData, TokenizerData};
use tinygpt_runtime::{Arch, DType, Error, Model, FORMAT_VERSION};

/// Weight types the runtime runs in this build: int4 only with its feature.
const N_DTYPES: usize = if cfg!(feature = "int4") { 4 } else { 3 };

/// `cases` without the int4 ones when the runtime is built without int4.
fn with_int4(cases: Vec<(Arch, DType)>) -> Vec<(Arch, DType)> {
    cases.into_iter().filter(|&(_, d)| d != DType::I4 || cfg!(feature = "int4")).collect()
}

fn small_model(arch: Arch, dtype: DType) -> Vec<u8> {
    let mut cfg = config(arch, dtype);
    (cfg.n_layer, cfg.n_embd, cfg.n_hidden, cfg.block_size) = (1, 16, 24, 8);
    cfg.n_head = 2;
    cfg.n_kv_head = if arch == Arch::Llama { 1 } else { 2 };
    cfg.vocab_size = 20;
    let w = random_weights(&cfg, 3);
    build(&cfg, &char_tokenizer(20), &w).to_vec()
}

#[test]
fn every_truncation_is_an_error() {
    for (arch, dtype) in with_int4(vec![(Arch::Gpt2, DType::F32), (Arch::Llama, DType::I8), (Arch::Llama, DType::F16), (Arch::Gpt2, DType::I4)]) {
        let full = small_model(arch, dtype);
        assert!(Model::from_bytes(&AlignedBytes::new(&full)).is_ok());
        for len in 0..full.len() {
            let b = AlignedBytes::new(&full[..len]);
            assert!(Model::from_bytes(&b).is_err(), "truncated at {len} of {} parsed", full.len());
        }
    }
}

#[test]
fn every_single_byte_flip_is_an_error() {
    for (_, dtype) in with_int4(vec![(Arch::Llama, DType::I8), (Arch::Llama, DType::I4)]) {
        let full = small_model(Arch::Llama, dtype);
        for i in 0..full.len() {
            let mut b = full.clone();
            b[i] ^= 0x5A;
            assert!(Model::from_bytes(&AlignedBytes::new(&b)).is_err(), "{dtype:?}: flip at {i} parsed");
        }
    }
}

/// The quantization header after the header: its scale type decides the tensor sizes, so a
/// wrong one, an unknown one, bytes after it, and a data section one tensor-alignment too long
/// or short are all refused (with the checksum made right each time); a file without it (as
/// written before int4) has f32 scales.
#[cfg(feature = "int4")]
#[test]
fn quantization_header_and_sizes_are_checked() {
    let seal = |mut b: Vec<u8>| {
        reseal(&mut b);
        Model::from_bytes(&AlignedBytes::new(&b)).map(|m| m.scale_dtype())
    };
    let hlen = |b: &[u8]| u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
    let full = small_model(Arch::Llama, DType::I4);
    assert_eq!(seal(full.clone()), Ok(ScaleDType::F16));
    let last = 24 + hlen(&full) - 1; // the scale type: postcard's variant index, 1 = F16
    assert_eq!(full[last], 1);
    let mut f32_claimed = full.clone();
    f32_claimed[last] = 0;
    assert!(matches!(seal(f32_claimed), Err(Error::TensorData { .. })), "f16 scales read as f32");
    let mut unknown = full.clone();
    unknown[last] = 2;
    assert_eq!(seal(unknown), Err(Error::Header("quantization header does not decode")));
    // One byte more in the header: the data offset leaves room for it (the header is padded).
    let d = u32::from_le_bytes(full[16..20].try_into().unwrap()) as usize;
    if 24 + hlen(&full) < d {
        let mut extra = full.clone();
        extra[12..16].copy_from_slice(&(hlen(&full) as u32 + 1).to_le_bytes());
        assert_eq!(seal(extra), Err(Error::Header("trailing bytes after the header")));
    }
    let n = full.len() - 4;
    let longer = [&full[..n], &[0u8; 32], &full[n..]].concat();
    assert!(matches!(seal(longer), Err(Error::TensorData { .. })));
    let shorter = [&full[..n - 32], &full[n..]].concat();
    assert!(matches!(seal(shorter), Err(Error::TensorData { .. })));
    // f32-scale files carry no quantization header, like files from before int4.
    let mut cfg = config(Arch::Llama, DType::I8);
    (cfg.n_layer, cfg.n_embd, cfg.n_hidden, cfg.block_size, cfg.n_head, cfg.n_kv_head, cfg.vocab_size) = (1, 16, 24, 8, 2, 1, 20);
    let w = random_weights(&cfg, 3);
    let old = encode_model_scaled(&cfg, ScaleDType::F32, &char_tokenizer(20), &[], &MetaData::default(), &|n| w.get(n).cloned()).unwrap();
    let new = encode_model_scaled(&cfg, ScaleDType::F16, &char_tokenizer(20), &[], &MetaData::default(), &|n| w.get(n).cloned()).unwrap();
    assert_eq!(hlen(&new), hlen(&old) + 1);
    assert_eq!(seal(old.clone()), Ok(ScaleDType::F32));
    // The f16 file is smaller by two bytes per group scale (padded per tensor).
    assert!(new.len() < old.len());
}

#[test]
fn specific_errors_name_the_problem() {
    let full = small_model(Arch::Gpt2, DType::F32);
    let mut bad = full.clone();
    bad[0] = b'X';
    assert_eq!(Model::from_bytes(&AlignedBytes::new(&bad)).unwrap_err(), Error::BadMagic);
    let mut v2 = full.clone();
    v2[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    assert_eq!(
        Model::from_bytes(&AlignedBytes::new(&v2)).unwrap_err(),
        Error::UnsupportedVersion { found: FORMAT_VERSION + 1, supported: FORMAT_VERSION }
    );
    let mut flipped = full.clone();
    let n = flipped.len();
    flipped[n - 10] ^= 1;
    assert!(matches!(Model::from_bytes(&AlignedBytes::new(&flipped)).unwrap_err(), Error::Checksum { .. }));
    // Misaligned input.
    let a = AlignedBytes::new(&[&[0u8][..], &full].concat());
    assert_eq!(Model::from_bytes(&a[1..]).unwrap_err(), Error::Misaligned);
    let e = Error::UnsupportedVersion { found: 2, supported: 1 };
    assert_eq!(e.to_string(), "unsupported .tgpt format version 2 (this build reads version 1)");
}

/// Re-seals a file after editing it, so the checksum passes and deeper checks are exercised.
/// Reads `bytes`; when the reader accepts them, also uses the model: a session over a short
/// context runs past it with every token id, and the tokenizer encodes and decodes. Whatever the
/// reader accepts must be safe to run (only the absence of a panic is checked).
fn exercise(bytes: &[u8]) {
    let Ok(model) = Model::from_bytes(bytes) else { return };
    let c = *model.config();
    let _ = (model.param_count(), model.weight_bytes(), model.metadata());
    let ctx = (c.block_size as usize).clamp(1, 6);
    for kv in [tinygpt_runtime::KvDType::F32, tinygpt_runtime::KvDType::I8] {
        let need = model.session_bytes(ctx, kv);
        if need > 64 << 20 {
            continue;
        }
        let mut buf = vec![0u8; need];
        if let Ok(mut s) = tinygpt_runtime::Session::new(&model, &mut buf, ctx, kv) {
            for t in 0..(c.vocab_size.min(12) + 2) {
                let _ = s.step(t);
            }
        }
    }
    let tok = model.tokenizer();
    let mut ids = [0u32; 64];
    if let Ok(n) = tok.encode("Hi, ünï ☃!", &mut ids) {
        let mut out = [0u8; 256];
        let _ = tok.decode_into(&ids[..n], &mut out);
    }
    for id in 0..c.vocab_size.min(300) {
        let _ = tok.token_bytes(id);
    }
}

fn reseal(b: &mut [u8]) {
    let n = b.len() - 4;
    let crc = crc32(&b[..n]);
    b[n..].copy_from_slice(&crc.to_le_bytes());
}

fn crc32(data: &[u8]) -> u32 {
    // Plain bitwise CRC-32 (ISO-HDLC), independent of the runtime's table-driven one.
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
    }
    !c
}

#[test]
fn checksum_is_standard_crc32() {
    let full = small_model(Arch::Gpt2, DType::F16);
    let n = full.len() - 4;
    assert_eq!(crc32(&full[..n]).to_le_bytes(), full[n..]);
}

/// Every header and table byte set to a few values and resealed: whatever the reader still
/// accepts runs without panicking (and some variants are accepted, so running them is tested).
#[test]
fn accepted_corruptions_run_safely() {
    let mut accepted = 0;
    for (arch, dtype) in with_int4(vec![(Arch::Gpt2, DType::F32), (Arch::Llama, DType::I8), (Arch::Llama, DType::F16), (Arch::Llama, DType::I4)]) {
        let full = small_model(arch, dtype);
        for p in 0..400.min(full.len() - 4) {
            for val in [0u8, 1, 2, 0x7f, 0x80, 0xff, full[p] ^ 1, full[p].wrapping_add(1)] {
                let mut b = full.clone();
                b[p] = val;
                reseal(&mut b);
                let b = AlignedBytes::new(&b);
                accepted += Model::from_bytes(&b).is_ok() as usize;
                exercise(&b);
            }
        }
    }
    assert!(accepted > 100, "only {accepted} corrupted variants were accepted, so few were run");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Corrupted header and table bytes that still pass the checksum never panic.
    #[test]
    fn resealed_corruption_never_panics(pos in 0usize..400, val in any::<u8>(), which in 0usize..N_DTYPES) {
        let full = small_model([Arch::Gpt2, Arch::Llama, Arch::Llama, Arch::Gpt2][which], [DType::F32, DType::I8, DType::F16, DType::I4][which]);
        let mut b = full.clone();
        let p = pos % (b.len() - 4);
        b[p] = val;
        reseal(&mut b);
        exercise(&AlignedBytes::new(&b));
    }

    /// Random bytes behind a valid preamble and checksum never panic.
    #[test]
    fn random_body_never_panics(body in proptest::collection::vec(any::<u8>(), 0..600), hlen in 0u32..700) {
        let mut b = Vec::new();
        b.extend_from_slice(b"TINYGPT\0");
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(&hlen.to_le_bytes());
        b.extend_from_slice(&(((24 + hlen as usize).div_ceil(32) * 32) as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&body);
        b.extend_from_slice(&[0; 4]);
        reseal(&mut b);
        exercise(&AlignedBytes::new(&b));
    }

    /// Any valid configuration and tokenizer round-trips through the writer and reader.
    #[test]
    fn format_round_trip(
        llama in any::<bool>(), dt in 0usize..N_DTYPES, f16_scales in any::<bool>(), n_layer in 1u32..3, n_kv in 1u32..3, rep in 1u32..3,
        hd2 in 1u32..5, n_hidden in 1u32..40, block in 1u32..20, gs in 1u32..40, tie in any::<bool>(),
        name in "[a-zA-Z0-9 ]{0,20}", steps in any::<u64>(), loss in proptest::option::of(0.0f32..10.0),
    ) {
        let arch = if llama { Arch::Llama } else { Arch::Gpt2 };
        let n_head = if llama { n_kv * rep } else { n_kv };
        let cfg = tinygpt_runtime::Config {
            arch, n_layer, n_head, n_kv_head: n_kv, n_embd: n_head * hd2 * 2, n_hidden, block_size: block,
            vocab_size: 30, norm_eps: 1e-5, rope_theta: 10000.0, tie_embeddings: tie,
            dtype: [DType::F32, DType::F16, DType::I8, DType::I4][dt], group_size: gs,
        };
        let w = random_weights(&cfg, 1);
        let meta = MetaData { name: name.clone(), corpus: "c".into(), train_steps: steps, tokens_seen: 5,
                              val_loss_f32: loss, val_loss_f16: None, val_loss_i8: loss, trainer_version: "v".into() };
        let scales = if f16_scales { ScaleDType::F16 } else { ScaleDType::F32 };
        let bytes = encode_model_scaled(&cfg, scales, &char_tokenizer(30), &[], &meta, &|n| w.get(n).cloned()).unwrap();
        let a = AlignedBytes::new(&bytes);
        let m = Model::from_bytes(&a).unwrap();
        prop_assert_eq!(*m.config(), cfg);
        prop_assert_eq!(m.scale_dtype(), if dt >= 2 { scales } else { ScaleDType::F32 });
        prop_assert_eq!(MetaData::from_file(m.metadata()), meta);
        prop_assert_eq!(m.tokenizer().vocab_size(), 30);
    }
}

#[test]
fn writer_rejects_bad_inputs() {
    let cfg = config(Arch::Gpt2, DType::F32);
    let w = random_weights(&cfg, 1);
    let meta = MetaData::default();
    let tok = char_tokenizer(cfg.vocab_size as usize);
    let missing = encode_model(&cfg, &tok, &meta, &|n| if n == "norm" { None } else { w.get(n).cloned() });
    assert_eq!(missing.unwrap_err().to_string(), "missing tensor norm");
    let nan = encode_model(&cfg, &tok, &meta, &|n| {
        let mut v = w.get(n).cloned()?;
        if n == "layers.1.wo" {
            v[3] = f32::NAN;
        }
        Some(v)
    });
    assert_eq!(nan.unwrap_err().to_string(), "tensor layers.1.wo contains NaN or infinity");
    let short = encode_model(&cfg, &tok, &meta, &|n| w.get(n).map(|v| v[1..].to_vec()));
    assert!(short.unwrap_err().to_string().contains("elements, expected"));
    let wrong_vocab = encode_model(&cfg, &char_tokenizer(10), &meta, &|n| w.get(n).cloned());
    assert!(wrong_vocab.is_err());
    let dup = TokenizerData::Char { chars: vec!['a'; cfg.vocab_size as usize] };
    assert!(encode_model(&cfg, &dup, &meta, &|n| w.get(n).cloned()).is_err());
    let mut bad = cfg;
    bad.n_head = 5;
    assert!(encode_model(&bad, &tok, &meta, &|n| w.get(n).cloned()).is_err());
}

/// Without the `int4` feature the runtime refuses int4 models by name (it has no int4 forward
/// pass), rather than running them.
#[cfg(not(feature = "int4"))]
#[test]
fn int4_needs_the_feature() {
    let full = small_model(Arch::Llama, DType::I4);
    let e = Model::from_bytes(&AlignedBytes::new(&full)).unwrap_err();
    assert_eq!(e, Error::Unsupported("int4 weights need the runtime's `int4` feature"));
    assert_eq!(e.to_string(), "unsupported model: int4 weights need the runtime's `int4` feature");
}
