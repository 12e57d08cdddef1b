//! A small Gaussian process on the unit cube, and expected improvement.
//!
//! Matérn 5/2 kernel with one length scale per dimension (ARD) and a noise term; the targets
//! are standardised, and the length scales and noise are the grid values of highest log marginal
//! likelihood (an isotropic grid search, then coordinate sweeps per dimension). Cholesky solves.
//! Enough for the tens to hundreds of trials a study holds; see trainer/README.md for why this is
//! not a crate.

/// Length scales tried (the cube's side is 1).
const LENGTH_SCALES: [f64; 9] = [0.04, 0.08, 0.15, 0.25, 0.4, 0.6, 1.0, 1.6, 3.0];
/// Noise variances tried (the targets have unit variance).
const NOISES: [f64; 5] = [1e-4, 1e-3, 1e-2, 0.05, 0.2];

/// A fitted Gaussian process.
#[derive(Debug, Clone)]
pub struct Gp {
    x: Vec<Vec<f64>>,
    /// `K^-1 y` (standardised targets).
    alpha: Vec<f64>,
    /// Lower Cholesky factor of `K + noise I`, row-major `n x n`.
    chol: Vec<f64>,
    /// Length scale per dimension.
    pub length_scales: Vec<f64>,
    /// Noise variance (of the standardised targets).
    pub noise: f64,
    /// Log marginal likelihood of the chosen hyper-parameters.
    pub log_likelihood: f64,
    y_mean: f64,
    y_std: f64,
}

fn matern52(a: &[f64], b: &[f64], ls: &[f64]) -> f64 {
    let r2: f64 = a.iter().zip(b).zip(ls).map(|((x, y), l)| ((x - y) / l).powi(2)).sum();
    let r = (5.0 * r2).sqrt();
    (1.0 + r + r * r / 3.0) * (-r).exp()
}

/// Lower Cholesky factor of the symmetric `n x n` matrix `a` (row-major); `None` when it is not
/// positive definite.
fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    Some(l)
}

/// Solves `L z = b` (forward substitution).
fn solve_lower(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut z = vec![0.0; n];
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= l[i * n + k] * z[k];
        }
        z[i] = s / l[i * n + i];
    }
    z
}

/// Solves `L^T x = z` (back substitution).
fn solve_upper(l: &[f64], n: usize, z: &[f64]) -> Vec<f64> {
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let mut s = z[i];
        for k in i + 1..n {
            s -= l[k * n + i] * x[k];
        }
        x[i] = s / l[i * n + i];
    }
    x
}

/// `(chol, alpha, log marginal likelihood)` for standardised targets `y`.
fn fit_with(x: &[Vec<f64>], y: &[f64], ls: &[f64], noise: f64) -> Option<(Vec<f64>, Vec<f64>, f64)> {
    let n = x.len();
    let mut k = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let v = matern52(&x[i], &x[j], ls);
            k[i * n + j] = v;
            k[j * n + i] = v;
        }
        k[i * n + i] += noise + 1e-9;
    }
    let chol = cholesky(&k, n)?;
    let alpha = solve_upper(&chol, n, &solve_lower(&chol, n, y));
    let fit: f64 = y.iter().zip(&alpha).map(|(a, b)| a * b).sum();
    let log_det: f64 = (0..n).map(|i| chol[i * n + i].ln()).sum();
    let ll = -0.5 * fit - log_det - 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln();
    Some((chol, alpha, ll))
}

impl Gp {
    /// Fits observations `y` at points `x` (each in the unit cube, all of one dimension). `None`
    /// without observations.
    pub fn fit(x: &[Vec<f64>], y: &[f64]) -> Option<Gp> {
        let n = x.len();
        if n == 0 || n != y.len() {
            return None;
        }
        let d = x[0].len();
        let mean = y.iter().sum::<f64>() / n as f64;
        let var = y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        let std = if var > 1e-24 { var.sqrt() } else { 1.0 };
        let ys: Vec<f64> = y.iter().map(|v| (v - mean) / std).collect();

        let score = |ls: &[f64], noise: f64| fit_with(x, &ys, ls, noise).map_or(f64::NEG_INFINITY, |f| f.2);
        // Isotropic grid.
        let (mut best_ls, mut best_noise, mut best) = (vec![0.4; d], 1e-2, f64::NEG_INFINITY);
        for &l in &LENGTH_SCALES {
            for &nz in &NOISES {
                let s = score(&vec![l; d], nz);
                if s > best {
                    (best_ls, best_noise, best) = (vec![l; d], nz, s);
                }
            }
        }
        // Coordinate sweeps: one dimension's length scale at a time, then the noise again.
        if d > 1 {
            for _ in 0..2 {
                for j in 0..d {
                    for &l in &LENGTH_SCALES {
                        let mut ls = best_ls.clone();
                        ls[j] = l;
                        let s = score(&ls, best_noise);
                        if s > best {
                            (best_ls, best) = (ls, s);
                        }
                    }
                }
                for &nz in &NOISES {
                    let s = score(&best_ls, nz);
                    if s > best {
                        (best_noise, best) = (nz, s);
                    }
                }
            }
        }
        let (chol, alpha, ll) = fit_with(x, &ys, &best_ls, best_noise).or_else(|| fit_with(x, &ys, &best_ls, 1.0))?;
        Some(Gp { x: x.to_vec(), alpha, chol, length_scales: best_ls, noise: best_noise, log_likelihood: ll, y_mean: mean, y_std: std })
    }

    /// Posterior mean and standard deviation at `p` (in the targets' units; the noise excluded).
    pub fn predict(&self, p: &[f64]) -> (f64, f64) {
        let n = self.x.len();
        let k: Vec<f64> = self.x.iter().map(|xi| matern52(xi, p, &self.length_scales)).collect();
        let mean: f64 = k.iter().zip(&self.alpha).map(|(a, b)| a * b).sum();
        let v = solve_lower(&self.chol, n, &k);
        let var = (1.0 - v.iter().map(|z| z * z).sum::<f64>()).max(1e-12);
        (self.y_mean + self.y_std * mean, self.y_std * var.sqrt())
    }
}

/// The standard normal density.
fn pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// The standard normal distribution function, through the complementary error function's
/// Chebyshev fit (Numerical Recipes' `erfcc`, fractional error below 1.2e-7).
fn cdf(z: f64) -> f64 {
    let x = -z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let poly = -x * x - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07 + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    let erfc = if x >= 0.0 { erfc } else { 2.0 - erfc };
    0.5 * erfc
}

/// Expected improvement below `best` (minimisation) of a normal `(mean, sd)`, with a margin `xi`.
pub fn expected_improvement(mean: f64, sd: f64, best: f64, xi: f64) -> f64 {
    let gain = best - mean - xi;
    if sd <= 0.0 {
        return gain.max(0.0);
    }
    let z = gain / sd;
    gain * cdf(z) + sd * pdf(z)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_cdf_is_accurate() {
        for (z, want) in [(0.0, 0.5), (1.0, 0.841_344_746), (-1.96, 0.024_997_895), (3.0, 0.998_650_102)] {
            assert!((cdf(z) - want).abs() < 1e-6, "cdf({z}) = {}", cdf(z));
        }
    }

    #[test]
    fn interpolates_a_smooth_function_and_is_unsure_far_away() {
        let f = |x: f64| (6.0 * x).sin() + x;
        let x: Vec<Vec<f64>> = (0..8).map(|i| vec![i as f64 / 7.0 * 0.6]).collect();
        let y: Vec<f64> = x.iter().map(|p| f(p[0])).collect();
        let gp = Gp::fit(&x, &y).unwrap();
        let (m, sd_near) = gp.predict(&[0.25]);
        assert!((m - f(0.25)).abs() < 0.05, "mean {m} vs {}", f(0.25));
        let (_, sd_far) = gp.predict(&[1.0]);
        assert!(sd_far > 5.0 * sd_near, "sd {sd_far} far vs {sd_near} near");
    }

    #[test]
    fn ard_finds_the_dimension_that_matters() {
        // y depends on the first coordinate only.
        let mut rng = super::super::space::Rng::new(3);
        let x: Vec<Vec<f64>> = (0..30).map(|_| vec![rng.uniform(), rng.uniform()]).collect();
        let y: Vec<f64> = x.iter().map(|p| (4.0 * p[0]).cos()).collect();
        let gp = Gp::fit(&x, &y).unwrap();
        assert!(gp.length_scales[1] > 2.0 * gp.length_scales[0], "{:?}", gp.length_scales);
    }

    #[test]
    fn expected_improvement_prefers_low_means_and_uncertainty() {
        assert!(expected_improvement(0.0, 0.1, 1.0, 0.0) > expected_improvement(0.9, 0.1, 1.0, 0.0));
        assert!(expected_improvement(1.0, 0.5, 1.0, 0.0) > expected_improvement(1.0, 0.1, 1.0, 0.0));
        assert!(expected_improvement(2.0, 0.0, 1.0, 0.0) == 0.0);
    }
}
