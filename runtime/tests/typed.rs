//! `Session::new_typed` (a forward pass compiled for one weight type, scale type, group size, KV
//! type, architecture and head size, as the firmware builds it) gives the same logits, bit for
//! bit, as `Session::new` on the same model, past the context too; and a model of another type or
//! shape is refused with an error, not run. `Model::from_bytes_as` refuses another tokenizer kind.

mod common;

use common::*;
use half::f16;
use tinygpt_runtime::format::ScaleDType;
#[cfg(feature = "int4")]
use tinygpt_runtime::weights::I4Matrix;
use tinygpt_runtime::weights::{AnyScales, F16Matrix, F32Matrix, I8Matrix, Matrix};
use tinygpt_runtime::{AnyShape, Arch, DType, Error, KvDType, KvElem, Model, Session, Shape, TokenizerKind};

struct Llama<const HD: usize>;
impl<const HD: usize> Shape for Llama<HD> {
    const ARCH: Option<Arch> = Some(Arch::Llama);
    const HEAD_DIM: usize = HD;
    const TOKENIZER: Option<TokenizerKind> = Some(TokenizerKind::Char);
}
struct Gpt2<const HD: usize>;
impl<const HD: usize> Shape for Gpt2<HD> {
    const ARCH: Option<Arch> = Some(Arch::Gpt2);
    const HEAD_DIM: usize = HD;
}
struct Bpe;
impl Shape for Bpe {
    const TOKENIZER: Option<TokenizerKind> = Some(TokenizerKind::ByteBpe);
}

/// Logits of `steps` tokens (past a context of 16) from `Session::new` and from `new_typed`.
fn compare<'a, M: Matrix<'a>, K: KvElem, A: Shape>(model: &Model<'a>, name: &str) {
    let ctx = 16;
    let kv = K::DTYPE;
    let vocab = model.config().vocab_size;
    let toks: Vec<u32> = (0..40u32).map(|i| (i * 5 + 3) % vocab).collect();
    let mut a = vec![0u8; model.session_bytes(ctx, kv)];
    let mut b = vec![0u8; model.session_bytes(ctx, kv)];
    let mut s = Session::new(model, &mut a, ctx, kv).unwrap();
    let mut t = Session::new_typed::<M, K, A>(model, &mut b, ctx).unwrap();
    assert_eq!(t.kv_dtype(), kv);
    for (i, &tok) in toks.iter().enumerate() {
        let want: Vec<u32> = s.step(tok).unwrap().iter().map(|v| v.to_bits()).collect();
        let got: Vec<u32> = t.step(tok).unwrap().iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, want, "{name} {kv:?}: logits differ at step {i}");
    }
}

fn model(arch: Arch, dtype: DType, scales: ScaleDType) -> tinygpt_runtime::writer::AlignedBytes {
    let cfg = config(arch, dtype);
    let w = random_weights(&cfg, 9);
    build_scaled(&cfg, scales, &char_tokenizer(cfg.vocab_size as usize), &w)
}

#[test]
fn typed_sessions_give_the_same_logits() {
    let hd = config(Arch::Llama, DType::F32).head_dim();
    let gs = config(Arch::Llama, DType::I8).group_size;
    assert_eq!(gs, 32, "the test names group size 32 below");
    assert_eq!(hd, 12, "the test names head size 12 below");
    for arch in [Arch::Llama, Arch::Gpt2] {
        let f32_bytes = model(arch, DType::F32, ScaleDType::F32);
        let f16_bytes = model(arch, DType::F16, ScaleDType::F32);
        let i8_bytes = model(arch, DType::I8, ScaleDType::F32);
        let i8h_bytes = model(arch, DType::I8, ScaleDType::F16);
        let m = |b| Model::from_bytes(b).unwrap();
        let (f32m, f16m, i8m, i8hm) = (m(&f32_bytes), m(&f16_bytes), m(&i8_bytes), m(&i8h_bytes));
        compare::<F32Matrix, f32, AnyShape>(&f32m, "f32");
        compare::<F16Matrix, f16, AnyShape>(&f16m, "f16");
        compare::<I8Matrix, i8, AnyShape>(&i8m, "int8");
        #[cfg(feature = "int4")]
        {
            let i4_bytes = model(arch, DType::I4, ScaleDType::F16);
            let i4m = Model::from_bytes(&i4_bytes).unwrap();
            compare::<I4Matrix, i8, AnyShape>(&i4m, "int4");
            compare::<I4Matrix<f16, 32>, i8, AnyShape>(&i4m, "int4 f16 scales");
            compare::<I4Matrix<f16, 0>, f16, AnyShape>(&i4m, "int4 f16 scales");
        }
        match arch {
            Arch::Llama => {
                compare::<I8Matrix<f32, 32>, i8, Llama<12>>(&i8m, "int8 f32 scales, llama");
                compare::<I8Matrix<f32, 32>, f32, Llama<12>>(&i8m, "int8 f32 scales, llama");
                compare::<I8Matrix<f16, 32>, i8, Llama<12>>(&i8hm, "int8 f16 scales, llama");
                compare::<F32Matrix, f16, Llama<12>>(&f32m, "f32, llama");
            }
            Arch::Gpt2 => {
                compare::<I8Matrix<f32, 32>, i8, Gpt2<12>>(&i8m, "int8, gpt2");
            }
        }
    }
}

#[test]
fn typed_sessions_refuse_other_models() {
    let i8_bytes = model(Arch::Llama, DType::I8, ScaleDType::F32);
    let i8m = Model::from_bytes(&i8_bytes).unwrap();
    let mut buf = vec![0u8; i8m.session_bytes(8, KvDType::I8)];
    let err = |r: Result<Session<'_, '_>, Error>| r.err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(
        err(Session::new_typed::<F32Matrix, i8, AnyShape>(&i8m, &mut buf, 8)),
        "the model has int8 (f32 scales) weights but this program runs f32 weights only"
    );
    assert_eq!(
        err(Session::new_typed::<I8Matrix<f16>, i8, AnyShape>(&i8m, &mut buf, 8)),
        "the model has int8 (f32 scales) weights but this program runs int8 (f16 scales) weights only"
    );
    assert_eq!(
        err(Session::new_typed::<I8Matrix<AnyScales, 64>, i8, AnyShape>(&i8m, &mut buf, 8)),
        "unsupported model: the group size is not the one this program was compiled for"
    );
    assert_eq!(
        err(Session::new_typed::<I8Matrix, i8, Gpt2<0>>(&i8m, &mut buf, 8)),
        "the model is a llama model but this program runs gpt2 models only"
    );
    assert_eq!(
        err(Session::new_typed::<I8Matrix, i8, Llama<16>>(&i8m, &mut buf, 8)),
        "unsupported model: the head size is not the one this program was compiled for"
    );
    assert!(Session::new_typed::<I8Matrix, i8, Llama<12>>(&i8m, &mut buf, 8).is_ok());
    // The tokenizer kind: this model's is characters.
    assert!(Model::from_bytes_as::<Llama<12>>(&i8_bytes).is_ok());
    assert_eq!(
        Model::from_bytes_as::<Bpe>(&i8_bytes).err().map(|e| e.to_string()).unwrap_or_default(),
        "unsupported model: the tokenizer is not the kind this program was compiled for"
    );
}
