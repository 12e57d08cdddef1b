//! Shared by the converter targets: an imported model must convert, load and run.

use tinygpt::convert::{self, Imported};
use tinygpt_runtime::writer::AlignedBytes;
use tinygpt_runtime::{DType, KvDType, Model, Sampler, SamplerConfig, Session};

pub fn exercise_converted(m: &Imported) {
    for dtype in [convert::default_dtype(m), DType::I8] {
        let Ok(bytes) = convert::encode(m, dtype, m.config.group_size) else {
            // Refusals are fine (non-finite weights, a tokenizer the writer rejects); panics are not.
            continue;
        };
        let bytes = AlignedBytes::new(&bytes);
        let model = Model::from_bytes(&bytes).expect("a converted model loads");
        let tok = model.tokenizer();
        let mut ids = [0u32; 64];
        if let Ok(n) = tok.encode("a b\u{e9} ab\n", &mut ids) {
            let mut text = [0u8; 256];
            let _ = tok.decode_into(&ids[..n], &mut text);
        }
        let ctx = (model.config().block_size as usize).min(8);
        let need = model.session_bytes(ctx, KvDType::F32);
        if need > 1 << 22 {
            return;
        }
        let mut arena = vec![0u8; need];
        let mut s = Session::new(&model, &mut arena, ctx, KvDType::F32).expect("a session of a small context");
        let mut sampler = Sampler::new(SamplerConfig::default(), 1);
        let _ = tinygpt_runtime::generate(&mut s, &mut sampler, &[0], 3, |_| {});
    }
}
