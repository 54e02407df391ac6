//! Exact zero-order-hold discretisation of a linear time-invariant system, with the integrals the
//! energy ledger needs.
//!
//! Owns: the matrix exponential and, for `ẋ = A·x + B·w` with the input `w` held over a step `h`,
//! three maps of the augmented vector `z = [x; w]`:
//!
//! - `x(h) = step · z` (the ZOH transition `[e^{Ah}, ∫e^{As}ds·B]`),
//! - `∫₀ʰ x dt = integral · z` (first integral, for `∫i`, `∫ω` and hence angles and work),
//! - `∫₀ʰ (cₖ·x)² dt = zᵀ·Qₖ·z` (quadratic integrals, for copper and viscous losses), the
//!   Gramians by Van Loan's method (C. F. Van Loan, "Computing integrals involving the matrix
//!   exponential", IEEE TAC 1978).
//!
//! All three are exact for the held input, so a stiff electrical pole (τ_e shorter than the
//! step) costs nothing in stability or accuracy. They are computed once per parameter set (and
//! again when a fault changes the motor constants), never per step. Does not own: which system
//! is discretised (that is `drivetrain`).
//!
//! Determinism: plain f64 arithmetic only (scaling and squaring with a fixed-degree Taylor
//! series), no platform maths library, so the matrices are bit-identical everywhere.

use nalgebra::{DMatrix, SMatrix, SVector};

/// Taylor degree after scaling to norm ≤ 1/4: the remainder is below 0.25¹⁹/19! ≈ 2e-29.
const TAYLOR_DEGREE: usize = 18;
/// Limit on squarings (norm up to 2^60): far beyond any step of any plant we model.
const SQUARINGS_MAX: u32 = 60;

/// e^M by scaling and squaring with a truncated Taylor series.
pub(crate) fn expm(m: &DMatrix<f64>) -> DMatrix<f64> {
    assert!(m.is_square(), "expm needs a square matrix");
    assert!(
        m.iter().all(|v| v.is_finite()),
        "expm of a non-finite matrix"
    );
    let n = m.nrows();
    let norm = (0..n)
        .map(|r| m.row(r).iter().map(|v| v.abs()).sum::<f64>())
        .fold(0.0, f64::max);
    let mut squarings = 0_u32;
    let mut scaled_norm = norm;
    while scaled_norm > 0.25 {
        scaled_norm *= 0.5;
        squarings += 1;
        assert!(
            squarings <= SQUARINGS_MAX,
            "expm: matrix norm {norm} too large"
        );
    }
    let scale = 0.5_f64.powi(i32::try_from(squarings).expect("squarings fit i32"));
    let a = m * scale;
    let mut result = DMatrix::<f64>::identity(n, n);
    let mut term = DMatrix::<f64>::identity(n, n);
    for k in 1..=TAYLOR_DEGREE {
        term = &term * &a / (k as f64);
        result += &term;
    }
    for _ in 0..squarings {
        result = &result * &result;
    }
    result
}

/// The exact ZOH maps of one linear system: `N` states, `Z = N + inputs` augmented entries, `Q`
/// quadratic outputs.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Zoh<const N: usize, const Z: usize, const Q: usize> {
    /// `x(h) = step · z`.
    pub(crate) step: SMatrix<f64, N, Z>,
    /// `∫₀ʰ x dt = integral · z`.
    pub(crate) integral: SMatrix<f64, N, Z>,
    /// `∫₀ʰ (cₖ·x)² dt = zᵀ · quadratic[k] · z`.
    pub(crate) quadratic: [SMatrix<f64, Z, Z>; Q],
}

impl<const N: usize, const Z: usize, const Q: usize> Zoh<N, Z, Q> {
    /// Discretises `ẋ = a·x + b·w` over `h_s` seconds with quadratic outputs `outputs[k]·x`.
    pub(crate) fn new(
        a: &SMatrix<f64, N, N>,
        b: &DMatrix<f64>,
        outputs: &[SVector<f64, N>; Q],
        h_s: f64,
    ) -> Self {
        assert!(Z > N, "augmented size {Z} must exceed the state size {N}");
        assert_eq!(b.nrows(), N, "B must have one row per state");
        assert_eq!(b.ncols(), Z - N, "B must have Z - N columns");
        assert!(h_s > 0.0 && h_s.is_finite(), "step must be positive: {h_s}");

        // Augmented generator: the inputs are states that do not change over the step.
        let mut aug = DMatrix::<f64>::zeros(Z, Z);
        aug.view_mut((0, 0), (N, N)).copy_from(a);
        aug.view_mut((0, N), (N, Z - N)).copy_from(b);

        // [[Ā, I], [0, 0]]·h → top-left e^{Āh}, top-right ∫₀ʰ e^{Ās} ds.
        let mut m = DMatrix::<f64>::zeros(2 * Z, 2 * Z);
        m.view_mut((0, 0), (Z, Z)).copy_from(&(&aug * h_s));
        m.view_mut((0, Z), (Z, Z))
            .copy_from(&(DMatrix::<f64>::identity(Z, Z) * h_s));
        let e = expm(&m);
        let step = SMatrix::<f64, N, Z>::from_fn(|r, c| e[(r, c)]);
        let integral = SMatrix::<f64, N, Z>::from_fn(|r, c| e[(r, Z + c)]);

        // Van Loan: exp([[-Āᵀ, C], [0, Ā]]·h) = [[·, F12], [0, F22]], ∫ e^{Āᵀs} C e^{Ās} ds
        // = F22ᵀ·F12.
        let quadratic = core::array::from_fn(|k| {
            let mut c_aug = DVecZ::zeros(Z);
            c_aug.rows_mut(0, N).copy_from(&outputs[k]);
            let weight = &c_aug * c_aug.transpose();
            let mut m = DMatrix::<f64>::zeros(2 * Z, 2 * Z);
            m.view_mut((0, 0), (Z, Z))
                .copy_from(&(-aug.transpose() * h_s));
            m.view_mut((0, Z), (Z, Z)).copy_from(&(weight * h_s));
            m.view_mut((Z, Z), (Z, Z)).copy_from(&(&aug * h_s));
            let e = expm(&m);
            let f12 = e.view((0, Z), (Z, Z)).into_owned();
            let f22 = e.view((Z, Z), (Z, Z)).into_owned();
            let q = f22.transpose() * f12;
            // Symmetric by construction; remove rounding asymmetry.
            SMatrix::<f64, Z, Z>::from_fn(|r, c| 0.5 * (q[(r, c)] + q[(c, r)]))
        });
        Zoh {
            step,
            integral,
            quadratic,
        }
    }
}

type DVecZ = nalgebra::DVector<f64>;

/// A quadratic form `zᵀ·Q·z` (symmetric `Q`) as a dot product, for the per-step hot path.
///
/// `zᵀ·Q·z = Σᵢ Qᵢᵢ·zᵢ² + Σᵢ<ⱼ 2·Qᵢⱼ·zᵢ·zⱼ`: with the products `zᵢ·zⱼ` (i ≤ j) formed once
/// ([`upper_products`]) every form of the same `z` is one dot product with `Q`'s packed upper
/// triangle ([`packed_upper`]): `P = Z·(Z+1)/2` multiplications instead of the `Z² + Z` of
/// `z.dot(Q·z)`, and the products are shared between forms (the rigid step has two: `∫i²` and
/// `∫ω²`). Doubling is exact, so the packed form is the same sum in another order.
pub(crate) fn packed_upper<const Z: usize, const P: usize>(
    q: &SMatrix<f64, Z, Z>,
) -> SVector<f64, P> {
    assert!(P == Z * (Z + 1) / 2, "packed size {P} for a {Z}×{Z} form");
    let mut packed = SVector::<f64, P>::zeros();
    let mut k = 0;
    for r in 0..Z {
        packed[k] = q[(r, r)];
        k += 1;
        for c in r + 1..Z {
            packed[k] = q[(r, c)] + q[(c, r)];
            k += 1;
        }
    }
    packed
}

/// `Σ row[k]·products[k]`: a packed form evaluated on [`upper_products`]. Summed in two
/// interleaved lanes (even and odd k), which the compiler maps onto paired SIMD arithmetic;
/// nalgebra's general `dot` starts eight accumulators at zero, too many for ten terms.
#[inline]
pub(crate) fn packed_dot<const P: usize>(row: &SVector<f64, P>, products: &SVector<f64, P>) -> f64 {
    const { assert!(P >= 2, "a packed form has at least two terms") };
    let (mut even, mut odd) = (row[0] * products[0], row[1] * products[1]);
    for k in 1..P / 2 {
        even += row[2 * k] * products[2 * k];
        odd += row[2 * k + 1] * products[2 * k + 1];
    }
    if P % 2 == 1 {
        even += row[P - 1] * products[P - 1];
    }
    even + odd
}

/// The products `zᵢ·zⱼ`, i ≤ j, in the order of [`packed_upper`].
#[inline]
pub(crate) fn upper_products<const Z: usize, const P: usize>(
    z: &SVector<f64, Z>,
) -> SVector<f64, P> {
    const { assert!(P == Z * (Z + 1) / 2, "packed size must be Z·(Z+1)/2") };
    let mut products = SVector::<f64, P>::zeros();
    let mut k = 0;
    for r in 0..Z {
        for c in r..Z {
            products[k] = z[r] * z[c];
            k += 1;
        }
    }
    products
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expm_of_a_scalar_is_exp() {
        // Goal: the series and squaring are right. Method: 1×1 matrices against libm::exp over
        // a range of magnitudes, including ones that need many squarings.
        for x in [-30.0, -2.6, -0.1, 0.0, 0.3, 1.0, 5.0] {
            let e = expm(&DMatrix::from_element(1, 1, x))[(0, 0)];
            let reference = libm::exp(x);
            assert!(
                (e - reference).abs() <= 1e-12 * reference.abs().max(1e-300),
                "x={x}: {e} vs {reference}"
            );
        }
    }

    #[test]
    fn expm_of_a_rotation_generator() {
        // Goal: off-diagonal (oscillatory) systems work. Method: exp([[0, -t], [t, 0]]) is a
        // rotation by t.
        let t = 2.0;
        let m = DMatrix::from_row_slice(2, 2, &[0.0, -t, t, 0.0]);
        let e = expm(&m);
        assert!((e[(0, 0)] - libm::cos(t)).abs() < 1e-13);
        assert!((e[(1, 0)] - libm::sin(t)).abs() < 1e-13);
    }

    #[test]
    fn packed_form_equals_the_matrix_form() {
        // Goal: the packed quadratic form is the same number as zᵀ·Q·z. Method: a symmetric
        // 4×4 Q with entries of mixed sign and size and vectors of mixed scale (like
        // [i, ω, u, τ]); the two agree to rounding of the terms' magnitudes.
        let q = SMatrix::<f64, 4, 4>::from_fn(|r, c| {
            let (a, b) = (r.min(c) as f64, r.max(c) as f64);
            (1.0 + a) * libm::pow(-3.0, b) * 1e-3 + if r == c { 2.0 } else { 0.0 }
        });
        let packed: SVector<f64, 10> = packed_upper(&q);
        for z in [
            SVector::<f64, 4>::new(0.3, 100.0, 12.0, 1e-4),
            SVector::<f64, 4>::new(-2.0, 0.5, -7.0, 3.0),
            SVector::<f64, 4>::new(0.0, 0.0, 0.0, 0.0),
        ] {
            let matrix_form = z.dot(&(q * z));
            let packed_form = packed_dot(&packed, &upper_products::<4, 10>(&z));
            let scale = z.abs().dot(&(q.abs() * z.abs()));
            assert!(
                (matrix_form - packed_form).abs() <= 1e-15 * scale,
                "{matrix_form} vs {packed_form}"
            );
        }
    }

    #[test]
    fn zoh_maps_match_a_fine_quadrature() {
        // Goal: step, integral and Gramian are what they claim. Method: a stiff 2-state system
        // (an RL circuit driving an inertia) integrated with 200 000 tiny RK4 steps, summing
        // ∫x and ∫x² alongside; compare with the one-step exact maps.
        let (r, l, k, j, h) = (5.0, 2e-4, 7e-3, 2.4e-7, 1e-4);
        let a = SMatrix::<f64, 2, 2>::new(-r / l, -k / l, k / j, -1e-6 / j);
        let b = DMatrix::from_row_slice(2, 2, &[1.0 / l, 0.0, 0.0, -1.0 / j]);
        let outputs = [
            SVector::<f64, 2>::new(1.0, 0.0),
            SVector::<f64, 2>::new(0.0, 1.0),
        ];
        let zoh = Zoh::<2, 4, 2>::new(&a, &b, &outputs, h);

        let z = SVector::<f64, 4>::new(0.3, 100.0, 12.0, 1e-4);
        let f = |x: SVector<f64, 2>| a * x + SVector::<f64, 2>::new(z[2] / l, -z[3] / j);
        let n = 200_000;
        let dt = h / n as f64;
        let mut x = SVector::<f64, 2>::new(z[0], z[1]);
        let (mut int, mut sq) = (SVector::<f64, 2>::zeros(), SVector::<f64, 2>::zeros());
        for _ in 0..n {
            // RK4 for the state, trapezoid for the integrals (dt is 1e-5 of the fastest τ).
            let k1 = f(x);
            let k2 = f(x + k1 * (dt / 2.0));
            let k3 = f(x + k2 * (dt / 2.0));
            let k4 = f(x + k3 * dt);
            let xn = x + (k1 + k2 * 2.0 + k3 * 2.0 + k4) * (dt / 6.0);
            int += (x + xn) * (dt / 2.0);
            sq += (x.component_mul(&x) + xn.component_mul(&xn)) * (dt / 2.0);
            x = xn;
        }
        let x_exact = zoh.step * z;
        let int_exact = zoh.integral * z;
        for s in 0..2 {
            let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-12);
            assert!(
                rel(x_exact[s], x[s]) < 1e-6,
                "x[{s}] {} vs {}",
                x_exact[s],
                x[s]
            );
            assert!(rel(int_exact[s], int[s]) < 1e-6, "∫x[{s}]");
            let q = z.dot(&(zoh.quadratic[s] * z));
            assert!(rel(q, sq[s]) < 1e-6, "∫x²[{s}] {q} vs {}", sq[s]);
        }
    }
}
