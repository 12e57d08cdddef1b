//! Quantization-aware training: the trainer's fake quantization is the exporter's quantization
//! value for value, a run with `qat` trains through it, and the runtime's loss on the int4
//! export equals the trainer's fake-quantized loss.

mod common;

use tch::{Kind, Tensor};
use tinygpt_runtime::writer::{self, MetaData};
use tinygpt_runtime::format::ScaleDType;
use tinygpt_runtime::DType;
use tinygpt_train::model::{fake_quantize, FakeQuant};
use tinygpt_train::{export, train};

/// The writer's stored values, dequantized: `q * scale` for each value of each group.
fn writer_values(w: &[f32], rows: usize, cols: usize, group: usize, levels: u8) -> Vec<f32> {
    let (scales, q) = writer::quantize_matrix_as(w, rows, cols, group, levels, ScaleDType::F16).expect("scales fit f16");
    let groups = cols.div_ceil(group);
    (0..rows * cols).map(|i| q[i] as f32 * scales[(i / cols) * groups + (i % cols) / group]).collect()
}

#[test]
fn fake_quantization_equals_the_writers_values_bit_for_bit() {
    let _turn = common::training_turn();
    tch::manual_seed(3);
    // Shapes with and without a short last group; values with exact halves and zeros in them.
    for (rows, cols, group) in [(8, 64, 64), (5, 100, 32), (3, 7, 4), (4, 130, 64), (2, 9, 64)] {
        let t = Tensor::randn([rows as i64, cols as i64], (Kind::Float, tch::Device::Cpu)) * 0.05;
        // Some rows of exact multiples of a power of two (half-way values after division), a zero row.
        let _ = t.get(0).copy_(&(Tensor::arange(cols as i64, (Kind::Float, tch::Device::Cpu)) * 0.125 - 2.0));
        let _ = t.get(rows as i64 - 1).fill_(0.0);
        let w: Vec<f32> = Vec::try_from(&t.view([-1])).unwrap();
        for levels in [127u8, 7] {
            let expected = writer_values(&w, rows, cols, group, levels);
            let got: Vec<f32> = Vec::try_from(&fake_quantize(&t, FakeQuant { levels: levels as i64, group: group as i64 }).view([-1])).unwrap();
            let bad: Vec<(usize, f32, f32, f32)> =
                (0..w.len()).filter(|&i| expected[i].to_bits() != got[i].to_bits()).map(|i| (i, w[i], expected[i], got[i])).collect();
            assert!(bad.is_empty(), "{rows}x{cols} group {group} levels {levels}: {} values differ from the writer's, first (index, weight, writer, trainer): {:?}", bad.len(), bad[0]);
        }
    }
}

#[test]
fn straight_through_gradients_reach_the_weights() {
    let _turn = common::training_turn();
    let w = (Tensor::randn([4, 16], (Kind::Float, tch::Device::Cpu)) * 0.1).set_requires_grad(true);
    let fq = FakeQuant { levels: 7, group: 8 };
    let ste = &w + (fake_quantize(&w, fq) - &w).detach();
    let x = Tensor::randn([3, 16], (Kind::Float, tch::Device::Cpu));
    let loss = x.matmul(&ste.tr()).sum(Kind::Float);
    loss.backward();
    // d(sum(x w^T))/dw = column sums of x for every row: the quantization passes the gradient through.
    let expected = x.sum_dim_intlist([0i64].as_slice(), false, Kind::Float).unsqueeze(0).expand([4, 16], false);
    let diff = (w.grad() - expected).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "gradient differs by {diff}");
}

#[test]
fn the_runtime_loss_of_the_int4_export_equals_the_fake_quantized_loss() {
    let dir = common::tempdir();
    let corpus = common::write(dir.path(), "corpus.txt", common::corpus(60_000).as_bytes());
    // llama with grouped KV heads and a hidden width that is not a multiple of the group size.
    let sets = ["n_kv_head=2", "n_hidden=72", "max_iters=60", "qat=int4", "qat_start=30", "qat_group_size=32"];
    let cfg = common::small_config(&corpus, "llama", &sets);
    let out = dir.path().join("run");
    let summary = common::run(&cfg, &out, false);
    // The log's validation losses after qat_start are fake-quantized ones: the run kept learning.
    let first = summary.val_losses.first().unwrap().1;
    let last = summary.val_losses.last().unwrap().1;
    println!("val losses {:?}", summary.val_losses);
    assert!(last < first, "the quantization-aware steps did not improve the validation loss: {first} then {last}");

    let ck = train::load_checkpoint(&out.join("last.pt")).unwrap();
    let (model, tok) = train::model_from_checkpoint(&ck, tch::Device::Cpu, false).unwrap();
    let data = train::prepare_data(&ck.state.config, Some(ck.state.vocab.clone())).unwrap();
    let ctx = cfg.block_size as usize;
    let val = &data.val[..data.val.len().min(4000)];
    let f32_loss = train::eval_loss(&model, val, ctx, 16);
    model.set_fake_quant(FakeQuant::for_dtype(DType::I4, 32));
    let fq_loss = train::eval_loss(&model, val, ctx, 16);
    model.set_fake_quant(None);

    let bytes = export::encode(&model, &tok, &MetaData::default(), DType::I4, 32).unwrap();
    let rt_int4 = export::runtime_val_loss(&bytes, val).unwrap();
    println!("loss: trainer f32 {f32_loss:.5}, trainer fake-quantized int4 {fq_loss:.5}, runtime int4 export {rt_int4:.5}");
    // The runtime also rounds activations to int8 for its integer dot products, which the trainer
    // does not model: equal within that rounding, and much closer than the f32 loss is.
    let gap = (rt_int4 - fq_loss).abs();
    assert!(gap < 5e-4, "runtime int4 {rt_int4} vs trainer fake-quantized {fq_loss}");
    assert!((rt_int4 - f32_loss).abs() > 3.0 * gap, "int4 changes the loss too little for the comparison to mean anything: f32 {f32_loss}, int4 {rt_int4}");
}

#[test]
fn init_starts_a_run_from_an_exported_model_and_refuses_another_shape() {
    let dir = common::tempdir();
    let corpus = common::write(dir.path(), "corpus.txt", common::corpus(60_000).as_bytes());
    let cfg = common::small_config(&corpus, "llama", &["max_iters=40"]);
    let out = dir.path().join("base");
    let base = common::run(&cfg, &out, false);
    let ck = common::best(&out);
    let (model, tok) = train::model_from_checkpoint(&ck, tch::Device::Cpu, false).unwrap();
    let file = dir.path().join("base.tgpt");
    std::fs::write(&file, &*export::encode(&model, &tok, &MetaData::default(), DType::F32, 64).unwrap()).unwrap();

    // One step at a learning rate too small to move anything: the validation loss is the base's.
    let init = format!("init={:?}", file.display().to_string());
    let sets = [init.as_str(), "max_iters=1", "eval_interval=1", "learning_rate=1e-9", "min_lr=1e-9", "warmup_iters=0"];
    let again = common::run(&common::small_config(&corpus, "llama", &sets), &dir.path().join("again"), false);
    let (b, a) = (base.best_val.unwrap(), again.val_losses[0].1);
    println!("base val loss {b:.5}, after init {a:.5}");
    assert!((a - b).abs() < 1e-3, "a run started from the base's export has val loss {a}, the base {b}");

    // Another shape is refused in one line naming it.
    let other = common::small_config(&corpus, "llama", &[init.as_str(), "n_embd=64"]);
    let _turn = common::training_turn();
    let err = train::train(&other, &train::RunOptions { out: dir.path().join("other"), resume: false, device: tch::Device::Cpu, verbose: false })
        .err()
        .expect("another shape is refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("shape") && !msg.contains('\n'), "{msg}");
}
