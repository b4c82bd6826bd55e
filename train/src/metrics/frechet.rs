//! The Fréchet distance between Gaussians fitted to two feature sets (the FVD formula), in f64:
//! `|mu_a - mu_b|^2 + tr(A) + tr(B) - 2 tr sqrt(A^(1/2) B A^(1/2))`.
//!
//! The matrix square roots come from symmetric eigendecompositions of symmetric positive
//! semi-definite matrices (round-off negatives clamped to 0), which is exact where `sqrtm(A B)`
//! of scipy is only approximate and never returns complex parts.

use nalgebra::{DMatrix, DVector};

use crate::error::TrainError;

/// Mean and (unbiased, `n - 1`) covariance of a feature set.
#[derive(Debug, Clone, PartialEq)]
pub struct Gaussian {
    pub mean: DVector<f64>,
    pub covariance: DMatrix<f64>,
    /// Number of feature vectors it was fitted to.
    pub count: usize,
}

impl Gaussian {
    /// Fits `rows` (each a feature vector of the same length; at least two).
    pub fn fit<T: Copy + Into<f64>>(rows: &[Vec<T>]) -> Result<Self, TrainError> {
        let n = rows.len();
        if n < 2 {
            return Err(TrainError::setting("clips", format!("{n} feature vectors: a covariance needs at least 2")));
        }
        let dim = rows[0].len();
        if let Some(i) = rows.iter().position(|r| r.len() != dim) {
            return Err(TrainError::setting(
                "features",
                format!("row {i} has {} values, row 0 has {dim}", rows[i].len()),
            ));
        }
        let data = DMatrix::from_fn(n, dim, |i, j| rows[i][j].into());
        let mean = DVector::from_fn(dim, |j, _| data.column(j).sum() / n as f64);
        let centred = DMatrix::from_fn(n, dim, |i, j| data[(i, j)] - mean[j]);
        let covariance = (centred.transpose() * &centred) / (n - 1) as f64;
        Ok(Self { mean, covariance, count: n })
    }
}

/// Square root of a symmetric positive semi-definite matrix.
pub fn sqrt_psd(m: &DMatrix<f64>) -> DMatrix<f64> {
    let symmetric = (m + m.transpose()) * 0.5;
    let eigen = symmetric.symmetric_eigen();
    let roots = eigen.eigenvalues.map(|v| v.max(0.0).sqrt());
    &eigen.eigenvectors * DMatrix::from_diagonal(&roots) * eigen.eigenvectors.transpose()
}

/// The Fréchet distance between two Gaussians of the same dimension.
pub fn frechet_distance(a: &Gaussian, b: &Gaussian) -> f64 {
    let diff = &a.mean - &b.mean;
    let root_a = sqrt_psd(&a.covariance);
    let inner = &root_a * &b.covariance * &root_a;
    let cross: f64 =
        ((&inner + inner.transpose()) * 0.5).symmetric_eigen().eigenvalues.iter().map(|v| v.max(0.0).sqrt()).sum();
    let distance = diff.dot(&diff) + a.covariance.trace() + b.covariance.trace() - 2.0 * cross;
    distance.max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaussian(mean: &[f64], cov: &[f64]) -> Gaussian {
        let d = mean.len();
        Gaussian { mean: DVector::from_row_slice(mean), covariance: DMatrix::from_row_slice(d, d, cov), count: 0 }
    }

    #[test]
    fn equal_sets_are_at_distance_zero() {
        let rows: Vec<Vec<f32>> =
            (0..50).map(|i| (0..6).map(|j| ((i * 7 + j * 3) % 11) as f32 * 0.3 - j as f32).collect()).collect();
        let g = Gaussian::fit(&rows).unwrap();
        assert!(frechet_distance(&g, &g) < 1e-9, "{}", frechet_distance(&g, &g));
    }

    #[test]
    fn one_dimension_is_mean_and_deviation_gap() {
        // (m_a - m_b)^2 + (s_a - s_b)^2
        let d = frechet_distance(&gaussian(&[1.0], &[4.0]), &gaussian(&[-2.0], &[9.0]));
        assert!((d - (9.0 + 1.0)).abs() < 1e-12, "{d}");
    }

    #[test]
    fn non_commuting_covariances_match_the_closed_form() {
        // For 2x2 PSD M: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)); here M = A B.
        let a = gaussian(&[0.0, 1.0], &[2.0, 0.5, 0.5, 1.0]);
        let b = gaussian(&[1.0, -1.0], &[1.0, -0.3, -0.3, 3.0]);
        let ab_trace = 2.0 * 1.0 + 0.5 * -0.3 + 0.5 * -0.3 + 1.0 * 3.0;
        let det = (2.0 * 1.0 - 0.25) * (3.0 - 0.09);
        let expected = 1.0 + 4.0 + 3.0 + 4.0 - 2.0 * (ab_trace + 2.0 * f64::sqrt(det)).sqrt();
        let d = frechet_distance(&a, &b);
        assert!((d - expected).abs() < 1e-10, "{d} vs {expected}");
    }

    #[test]
    fn fit_uses_the_unbiased_covariance() {
        let g = Gaussian::fit(&[vec![1.0, 0.0], vec![3.0, 2.0]]).unwrap();
        assert_eq!(g.mean.as_slice(), &[2.0, 1.0]);
        assert_eq!(g.covariance.as_slice(), &[2.0, 2.0, 2.0, 2.0]);
        assert!(Gaussian::fit(&[vec![1.0]]).is_err());
        assert!(Gaussian::fit(&[vec![1.0], vec![1.0, 2.0]]).is_err());
    }
}
