//! How fast one thread can read a buffer of a given size that is already in the caches: the
//! ceiling for a matrix-vector product, which reads every weight once per token.
//! `tools/bench-llama2c.sh` prints it next to the f32 speeds, as an upper bound in tokens/s:
//! (bytes read per second) / (bytes of weights per token).
//!
//! cargo run --release -p tinygpt --example read-bandwidth -- --bytes 4194304 --reps 200
//!
//! It sums the buffer as f32 with 32 independent accumulators (four AVX2 vectors when the CPU has
//! them), over and over; each pass reads every byte once. Prints the best and the median pass, in
//! bytes per second, on one line: `best <B/s> median <B/s>`.

use anyhow::{bail, Result};
use clap::Parser;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// Buffer size in bytes (rounded up to 128).
    #[arg(long)]
    bytes: usize,
    /// Timed passes over the buffer (after one untimed pass that brings it into the caches).
    #[arg(long, default_value_t = 200)]
    reps: usize,
}

const ACC: usize = 32;

#[inline(always)]
fn sum_portable(buf: &[f32]) -> f32 {
    let mut acc = [0.0f32; ACC];
    for c in buf.chunks_exact(ACC) {
        for j in 0..ACC {
            acc[j] += c[j];
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_avx2(buf: &[f32]) -> f32 {
    sum_portable(buf)
}

fn sum(buf: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2.
        return unsafe { sum_avx2(buf) };
    }
    sum_portable(buf)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.bytes == 0 || args.reps == 0 {
        bail!("--bytes and --reps must be positive");
    }
    let n = args.bytes.div_ceil(4 * ACC) * ACC;
    let buf: Vec<f32> = (0..n).map(|i| (i % 1000) as f32 * 1e-3).collect();
    let mut check = sum(&buf);
    let mut secs = Vec::with_capacity(args.reps);
    for _ in 0..args.reps {
        let t = Instant::now();
        check += std::hint::black_box(sum(std::hint::black_box(&buf)));
        secs.push(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(check);
    secs.sort_by(f64::total_cmp);
    let bytes = (n * 4) as f64;
    println!("best {:.0} median {:.0}", bytes / secs[0], bytes / secs[secs.len() / 2]);
    Ok(())
}
