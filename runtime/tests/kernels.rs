//! Fast kernels against plain reference versions, bit for bit: the row-blocked matvec against one
//! canonical dot product per row, int8 matvec against plain group sums, attention kernels against
//! naive loops; and on x86_64 the AVX2 kernels against the portable ones.

mod common;

use proptest::prelude::*;
use tinygpt_runtime::ops;

fn vecf(n: std::ops::Range<usize>) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-4.0f32..4.0, n)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Switches the calling thread to each integer kernel this CPU has in turn (VNNI, AVX2 without
/// it, portable) and names it; elsewhere there is one choice.
fn kernel_choices() -> impl Iterator<Item = &'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        reset_kernels();
        let mut v = vec![];
        if ops::x86::vnni() != ops::x86::Vnni::None {
            v.push("vnni");
        }
        if std::is_x86_feature_detected!("avx2") {
            v.push("avx2");
        }
        v.push("portable");
        v.into_iter().inspect(|k| {
            ops::x86::set_portable(*k == "portable");
            ops::x86::set_vnni(*k == "vnni");
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::iter::once("default")
    }
}

fn reset_kernels() {
    #[cfg(target_arch = "x86_64")]
    {
        ops::x86::set_portable(false);
        ops::x86::set_vnni(true);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn matvec_equals_rowwise_dot(rows in 0usize..11, x in vecf(1..70), seed in any::<u64>()) {
        let mut r = common::TestRng::new(seed);
        let w: Vec<f32> = (0..rows * x.len()).map(|_| r.uniform()).collect();
        let mut out = vec![0f32; rows];
        ops::matvec(&mut out, &w, &x);
        for (i, o) in out.iter().enumerate() {
            let want = ops::dot_f32(&x, &w[i * x.len()..(i + 1) * x.len()]);
            prop_assert_eq!(o.to_bits(), want.to_bits());
        }
    }

    #[test]
    fn matvec_i8_equals_plain_group_sums(
        rows in 0usize..27,
        cols in 1usize..300,
        gs in prop_oneof![1usize..40, Just(16usize), Just(32usize), Just(64usize), Just(96usize), Just(128usize)],
        x_min in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut r = common::TestRng::new(seed);
        let groups = cols.div_ceil(gs);
        // Weights over the whole i8 range, -128 included; activations in ±127 as `quantize` makes
        // them, or (x_min) with a -128 too, which the AVX2 kernel must hand to the portable one.
        let wq: Vec<i8> = (0..rows * cols).map(|_| (r.next_u64() % 256) as u8 as i8).collect();
        let ws: Vec<f32> = (0..rows * groups).map(|_| r.uniform().abs() * 0.1).collect();
        let mut xq: Vec<i8> = (0..cols).map(|_| ((r.next_u64() % 255) as i32 - 127) as i8).collect();
        if x_min {
            xq[(seed % cols as u64) as usize] = i8::MIN;
        }
        let xs: Vec<f32> = (0..groups).map(|_| r.uniform().abs() * 0.1).collect();
        let mut xp = vec![0u32; ops::pair_words(cols)];
        ops::widen_pairs(&mut xp, &xq);
        let ws16: Vec<half::f16> = ws.iter().map(|&v| half::f16::from_f32(v)).collect();
        for kernel in kernel_choices() {
            let mut out = vec![0f32; rows];
            let mut out16 = vec![0f32; rows];
            ops::matvec_i8(&mut out, &wq, &ws, &xq, &xs, &xp, gs);
            ops::matvec_i8(&mut out16, &wq, &ws16, &xq, &xs, &xp, gs);
            for (i, (o, o16)) in out.iter().zip(&out16).enumerate() {
                let (mut acc, mut acc16) = (0.0f32, 0.0f32);
                for g in 0..groups {
                    let (a, b) = (g * gs, ((g + 1) * gs).min(cols));
                    let isum: i32 = (a..b).map(|c| wq[i * cols + c] as i32 * xq[c] as i32).sum();
                    acc += isum as f32 * (ws[i * groups + g] * xs[g]);
                    acc16 += isum as f32 * (ws16[i * groups + g].to_f32() * xs[g]);
                }
                prop_assert_eq!(o.to_bits(), acc.to_bits(), "kernel {}", kernel);
                prop_assert_eq!(o16.to_bits(), acc16.to_bits(), "kernel {}, f16 scales", kernel);
            }
        }
        reset_kernels();
    }

    #[test]
    fn matvec_i4_equals_plain_group_sums(
        rows in 0usize..27,
        cols in 1usize..300,
        gs in prop_oneof![1usize..40, Just(32usize), Just(64usize), Just(96usize), Just(128usize)],
        f16_scales in any::<bool>(),
        seed in any::<u64>(),
    ) {
        // Packed rows of ceil(cols / 2) bytes over every nibble (0, which reads as -8, included),
        // activations over the whole i8 range (-128 included), scales of either type. Every
        // kernel this CPU has (portable; AVX2; VNNI) against a plain loop written here.
        let mut r = common::TestRng::new(seed);
        let groups = cols.div_ceil(gs);
        let rb = cols.div_ceil(2);
        let w: Vec<u8> = (0..rows * rb).map(|_| r.next_u64() as u8).collect();
        let ws32: Vec<f32> = (0..rows * groups).map(|_| r.uniform().abs() * 0.1).collect();
        let ws16: Vec<half::f16> = ws32.iter().map(|&v| half::f16::from_f32(v)).collect();
        let xq: Vec<i8> = (0..cols).map(|_| r.next_u64() as u8 as i8).collect();
        let xs: Vec<f32> = (0..groups).map(|_| r.uniform().abs() * 0.1).collect();
        let mut xp = vec![0u32; ops::pair_words(cols)];
        ops::widen_pairs_i4(&mut xp, &xq);
        let mut want = vec![0f32; rows];
        for (i, o) in want.iter_mut().enumerate() {
            for g in 0..groups {
                let (a, b) = (g * gs, ((g + 1) * gs).min(cols));
                let nib = |c: usize| {
                    let byte = w[i * rb + c / 2];
                    (if c % 2 == 0 { byte & 15 } else { byte >> 4 }) as i32 - 8
                };
                let isum: i32 = (a..b).map(|c| nib(c) * xq[c] as i32).sum();
                let sw = if f16_scales { ws16[i * groups + g].to_f32() } else { ws32[i * groups + g] };
                *o += isum as f32 * (sw * xs[g]);
            }
        }
        for kernel in kernel_choices() {
            let mut out = vec![0f32; rows];
            if f16_scales {
                ops::matvec_i4(&mut out, &w, &ws16, &xq, &xs, &xp, gs);
            } else {
                ops::matvec_i4(&mut out, &w, &ws32, &xq, &xs, &xp, gs);
            }
            prop_assert_eq!(bits(&out), bits(&want), "kernel {}", kernel);
        }
        reset_kernels();
    }

    #[test]
    fn matvec_i8_i16_equals_plain_group_sums(
        rows in 0usize..20,
        cols in 1usize..200,
        pad in 0usize..9,
        gs in prop_oneof![1usize..40, Just(16usize), Just(32usize), Just(64usize), Just(128usize)],
        seed in any::<u64>(),
    ) {
        // Rows `stride` apart (the transposed value cache), int16 weights over the whole range.
        let mut r = common::TestRng::new(seed);
        let stride = cols + pad;
        let groups = cols.div_ceil(gs);
        let w: Vec<i8> = (0..rows * stride).map(|_| (r.next_u64() % 256) as u8 as i8).collect();
        let x: Vec<i16> = (0..cols).map(|_| ((r.next_u64() % 65535) as i32 - 32767) as i16).collect();
        let xs: Vec<f32> = (0..groups).map(|_| r.uniform().abs() * 1e-4).collect();
        let mut xp = vec![0u32; ops::pair_words(cols)];
        ops::widen_pairs_i16(&mut xp, &x);
        let mut out = vec![0f32; rows];
        ops::matvec_i8_i16(&mut out, &w, stride, &x, &xs, &xp, gs);
        for (i, o) in out.iter().enumerate() {
            let mut acc = 0.0f32;
            for (g, &s) in xs.iter().enumerate() {
                let (a, b) = (g * gs, ((g + 1) * gs).min(cols));
                let isum: i32 = (a..b).map(|c| w[i * stride + c] as i32 * x[c] as i32).sum();
                acc += isum as f32 * s;
            }
            prop_assert_eq!(o.to_bits(), acc.to_bits());
        }
    }

    #[test]
    fn quantize_i16_round_trips_within_half_a_step(x in vecf(1..300), gs in 1usize..100) {
        let groups = x.len().div_ceil(gs);
        let (mut q, mut s) = (vec![0i16; x.len()], vec![0f32; groups]);
        ops::quantize_i16(&mut q, &mut s, &x, gs);
        for (g, (qg, xg)) in q.chunks(gs).zip(x.chunks(gs)).enumerate() {
            let amax = xg.iter().fold(0.0f32, |m, &v| m.max(v.abs()));
            // The scale uses the whole int16 range: max|x| maps to ±32767 (f64 oracle, 1 ulp).
            let want = amax as f64 / 32767.0;
            prop_assert!((s[g] as f64 - want).abs() <= want * f32::EPSILON as f64, "scale {} for max {}", s[g], amax);
            prop_assert!(amax == 0.0 || qg.iter().any(|&v| v.unsigned_abs() == 32767), "the largest value is not ±32767");
            prop_assert!(qg.iter().all(|&v| v != i16::MIN), "clamped to ±32767");
            for (&qv, &xv) in qg.iter().zip(xg) {
                prop_assert!((qv as f32 * s[g] - xv).abs() <= s[g] * 0.5 + amax * 1e-6, "{} vs {}", qv as f32 * s[g], xv);
            }
        }
    }

    #[test]
    fn attention_kernels_equal_naive_loops(hd in 1usize..40, n in 1usize..150, seed in any::<u64>()) {
        let mut r = common::TestRng::new(seed);
        let stride = n + 3;
        let q: Vec<f32> = (0..hd).map(|_| r.uniform()).collect();
        let kt: Vec<f32> = (0..hd * stride).map(|_| r.uniform()).collect();
        let mut att = vec![0f32; n];
        ops::scores(&mut att, &q, &kt, stride);
        for (t, a) in att.iter().enumerate() {
            let mut s = 0.0f32;
            for i in 0..hd {
                s += q[i] * kt[i * stride + t];
            }
            prop_assert_eq!(a.to_bits(), s.to_bits());
        }
        let v: Vec<f32> = (0..n * (hd + 2)).map(|_| r.uniform()).collect();
        let mut out = vec![0f32; hd];
        ops::weighted_sum(&mut out, &att, &v, 0, hd + 2);
        for (i, o) in out.iter().enumerate() {
            let mut s = 0.0f32;
            for t in 0..n {
                s += att[t] * v[t * (hd + 2) + i];
            }
            prop_assert_eq!(o.to_bits(), s.to_bits());
        }
    }
}

/// The AVX2 kernels, with and without VNNI, give bit-identical logits to the portable ones, for
/// every weight dtype (the common config's group 32 takes the fast int8 and int4 paths).
#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_and_portable_logits_are_identical() {
    use tinygpt_runtime::{Arch, DType, KvDType, Model, Session};
    if !std::is_x86_feature_detected!("avx2") {
        eprintln!("no AVX2 on this CPU: only the portable path exists");
        return;
    }
    for arch in [Arch::Gpt2, Arch::Llama] {
        for dtype in [DType::F32, DType::F16, DType::I8, DType::I4] {
            if dtype == DType::I4 && !cfg!(feature = "int4") {
                continue;
            }
            let cfg = common::config(arch, dtype);
            let w = common::random_weights(&cfg, 4);
            let bytes = common::build(&cfg, &common::char_tokenizer(cfg.vocab_size as usize), &w);
            let model = Model::from_bytes(&bytes).unwrap();
            for kv in [KvDType::F32, KvDType::F16, KvDType::I8] {
                // 50 steps in a context of 40: past the context shift too.
                let run = |portable: bool, vnni: bool| {
                    ops::x86::set_portable(portable);
                    ops::x86::set_vnni(vnni);
                    let mut buf = vec![0u8; model.session_bytes(40, kv)];
                    let mut s = Session::new(&model, &mut buf, 40, kv).unwrap();
                    let v: Vec<u32> = (0..50)
                        .flat_map(|t| s.step((t * 7 % 70) as u32).unwrap().iter().map(|x| x.to_bits()).collect::<Vec<_>>())
                        .collect();
                    v
                };
                let (vnni, avx2, portable) = (run(false, true), run(false, false), run(true, false));
                ops::x86::set_portable(false);
                ops::x86::set_vnni(true);
                assert!(avx2 == portable, "{arch:?} {dtype:?} kv {kv:?}: AVX2 and portable logits differ");
                assert!(vnni == portable, "{arch:?} {dtype:?} kv {kv:?}: VNNI and portable logits differ");
            }
        }
    }
}

/// On Cortex-M4-class targets (and 32-bit ARM Linux in Thumb-2 mode, where the test suite runs
/// this under qemu-arm), the `SMLAD` kernels take the aligned cases themselves (they report
/// `true`) and agree bit for bit with the portable kernels, for every unrolled group size.
#[cfg(all(target_arch = "arm", tinygpt_dsp))]
#[test]
fn dsp_kernels_run_and_equal_portable() {
    let mut r = common::TestRng::new(3);
    for gs in [4usize, 8, 16, 32, 64, 128, 12] {
        let (rows, cols) = (9usize, 256usize);
        let groups = cols.div_ceil(gs);
        // A u32 backing store keeps the weights 4-byte aligned, as the kernels need.
        let words: Vec<u32> = (0..rows * cols / 4).map(|_| r.next_u64() as u32).collect();
        let wq: &[i8] = unsafe { std::slice::from_raw_parts(words.as_ptr() as *const i8, rows * cols) };
        let ws: Vec<f32> = (0..rows * groups).map(|_| r.uniform().abs() * 0.1).collect();
        let xq: Vec<i8> = (0..cols).map(|_| ((r.next_u64() % 255) as i32 - 127) as i8).collect();
        let xs: Vec<f32> = (0..groups).map(|_| r.uniform().abs() * 0.1).collect();
        let mut xp = vec![0u32; ops::pair_words(cols)];
        ops::widen_pairs(&mut xp, &xq);
        let mut fast = vec![0f32; rows];
        assert!(ops::arm_dsp::matvec_i8(&mut fast, wq, &ws, &xq, &xs, &xp, gs), "group size {gs}: the DSP kernel declined");
        let mut plain = vec![0f32; rows];
        for (i, o) in plain.iter_mut().enumerate() {
            for g in 0..groups {
                let (a, b) = (g * gs, ((g + 1) * gs).min(cols));
                let isum: i32 = (a..b).map(|c| wq[i * cols + c] as i32 * xq[c] as i32).sum();
                *o += isum as f32 * (ws[i * groups + g] * xs[g]);
            }
        }
        assert_eq!(fast.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), plain.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), "group size {gs}");

        let x16: Vec<i16> = (0..cols).map(|_| ((r.next_u64() % 65535) as i32 - 32767) as i16).collect();
        let mut xp16 = vec![0u32; ops::pair_words(cols)];
        ops::widen_pairs_i16(&mut xp16, &x16);
        let mut fast16 = vec![0f32; rows];
        assert!(ops::arm_dsp::matvec_i8_i16(&mut fast16, wq, cols, &x16, &xs, &xp16, gs), "group size {gs}: the i16 DSP kernel declined");
        for (i, o) in fast16.iter().enumerate() {
            let mut acc = 0.0f32;
            for (g, &s) in xs.iter().enumerate() {
                let (a, b) = (g * gs, ((g + 1) * gs).min(cols));
                let isum: i32 = (a..b).map(|c| wq[i * cols + c] as i32 * x16[c] as i32).sum();
                acc += isum as f32 * s;
            }
            assert_eq!(o.to_bits(), acc.to_bits(), "i16, group size {gs}, row {i}");
        }
    }
}

/// The int4 `SMLAD` kernel takes every group size that is a multiple of 8 itself (it reports
/// `true`), for rows starting at any byte (odd `cols / 2`), short last groups and odd columns,
/// whole groups of 64 or 128 and a last half group (the assembly loops), more than 64 groups,
/// and agrees bit for bit with the portable kernel, over every nibble and activation value.
#[cfg(all(target_arch = "arm", tinygpt_dsp))]
#[test]
fn dsp_int4_kernel_runs_and_equals_portable() {
    let mut r = common::TestRng::new(5);
    for (gs, cols) in [(8usize, 256usize), (16, 256), (32, 256), (64, 256), (128, 256), (32, 172), (64, 70), (8, 45), (24, 101), (256, 100), (64, 160), (64, 416), (48, 136), (8, 1040), (16, 1048), (64, 32), (64, 64), (64, 96), (64, 4128), (128, 384), (128, 192), (128, 64), (128, 8256)] {
        let rows = 9;
        let groups = cols.div_ceil(gs);
        let rb = cols.div_ceil(2);
        let w: Vec<u8> = (0..rows * rb).map(|_| r.next_u64() as u8).collect();
        let ws: Vec<half::f16> = (0..rows * groups).map(|_| half::f16::from_f32(r.uniform().abs() * 0.1)).collect();
        let xq: Vec<i8> = (0..cols).map(|_| r.next_u64() as u8 as i8).collect();
        let xs: Vec<f32> = (0..groups).map(|_| r.uniform().abs() * 0.1).collect();
        let mut xp = vec![0u32; ops::pair_words(cols)];
        ops::widen_pairs_i4(&mut xp, &xq);
        let mut fast = vec![0f32; rows];
        assert!(ops::arm_dsp::matvec_i4(&mut fast, &w, &ws, &xq, &xs, &xp, gs), "group size {gs}, cols {cols}: the DSP kernel declined");
        let mut plain = vec![0f32; rows];
        for (i, o) in plain.iter_mut().enumerate() {
            for g in 0..groups {
                let (a, b) = (g * gs, ((g + 1) * gs).min(cols));
                let nib = |c: usize| {
                    let byte = w[i * rb + c / 2];
                    (if c % 2 == 0 { byte & 15 } else { byte >> 4 }) as i32 - 8
                };
                let isum: i32 = (a..b).map(|c| nib(c) * xq[c] as i32).sum();
                *o += isum as f32 * (ws[i * groups + g].to_f32() * xs[g]);
            }
        }
        assert_eq!(bits(&fast), bits(&plain), "group size {gs}, cols {cols}");
    }
}
