//! Small robust statistics over f64 ratios and log-costs. Money is never summed
//! here: callers pass costs already converted for statistics only.
//!
//! Every function is total: empty input, zeros, NaN or infinities never make it
//! return NaN or infinity (non-finite inputs are dropped).

/// Dollars added before taking logs, so that $0 is a finite point and a doubling is
/// the same distance at $1 and at $1000.
pub const LOG_EPS: f64 = 0.01;

/// log(max(x, 0) + eps): credits (negative costs) count as zero spend.
pub fn ln_cost(x: f64) -> f64 {
    let x = if x.is_finite() { x.max(0.0) } else { 0.0 };
    (x + LOG_EPS).ln()
}

fn finite(values: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// Linear-interpolated quantile of sorted finite values; `None` when empty.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let q = if q.is_finite() {
        q.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * frac)
}

pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    quantile_sorted(&finite(values), q)
}

pub fn median(values: &[f64]) -> Option<f64> {
    quantile(values, 0.5)
}

/// Location and scale of a sample: median and 1.4826 x MAD, with a floor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Robust {
    pub median: f64,
    pub scale: f64,
}

impl Robust {
    /// `None` for an empty sample. `floor` must be > 0 (it is forced to be).
    pub fn of(values: &[f64], floor: f64) -> Option<Robust> {
        let v = finite(values);
        let median = quantile_sorted(&v, 0.5)?;
        let dev: Vec<f64> = v.iter().map(|x| (x - median).abs()).collect();
        let mad = median_of_unsorted(dev);
        let floor = if floor.is_finite() && floor > 0.0 {
            floor
        } else {
            1e-6
        };
        let scale = (1.4826 * mad).max(floor);
        Some(Robust { median, scale })
    }

    /// Robust z of `x`, clamped to +-1e6 so it always serialises.
    pub fn z(&self, x: f64) -> f64 {
        if !x.is_finite() {
            return 0.0;
        }
        ((x - self.median) / self.scale).clamp(-1e6, 1e6)
    }
}

fn median_of_unsorted(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    quantile_sorted(&v, 0.5).unwrap_or(0.0)
}

/// Exponentially weighted moving average control chart, as in the notes:
/// z_t = lambda x_t + (1 - lambda) z_{t-1}, started at the reference mean; the upper
/// limit is mu + k sigma sqrt(lambda / (2 - lambda)) (the asymptotic limit).
/// Returns (final EWMA, upper limit) or `None` without a usable reference.
pub fn ewma_chart(reference: &[f64], recent: &[f64], lambda: f64, k: f64) -> Option<(f64, f64)> {
    let r = finite(reference);
    if r.len() < 3 || recent.is_empty() {
        return None;
    }
    let lambda = if lambda.is_finite() {
        lambda.clamp(0.01, 1.0)
    } else {
        0.3
    };
    let mu = r.iter().sum::<f64>() / r.len() as f64;
    let var = r.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / (r.len() - 1) as f64;
    // A floor so a perfectly flat reference does not make every wobble a drift.
    let sigma = var.sqrt().max(0.02);
    let mut z = mu;
    for x in recent.iter().filter(|x| x.is_finite()) {
        z = lambda * x + (1.0 - lambda) * z;
    }
    let limit = mu + k * sigma * (lambda / (2.0 - lambda)).sqrt();
    (z.is_finite() && limit.is_finite()).then_some((z, limit))
}

/// A tiny deterministic generator (SplitMix64) for bootstrap draws: the same store
/// gives the same interval on every screen and in every snapshot.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Weekday factors of a daily series: the median of each weekday over the overall
/// median (1.0 where unknown).
pub fn weekday_factors(days: &[(chrono::NaiveDate, f64)]) -> [f64; 7] {
    let all: Vec<f64> = days.iter().map(|(_, c)| *c).collect();
    let overall = median(&all).unwrap_or(0.0);
    let mut w = [1.0; 7];
    if overall <= 0.0 {
        return w;
    }
    for (i, f) in w.iter_mut().enumerate() {
        let v: Vec<f64> = days
            .iter()
            .filter(|(d, _)| chrono::Datelike::weekday(d).num_days_from_monday() as usize == i)
            .map(|(_, c)| *c)
            .collect();
        if let Some(m) = median(&v).filter(|m| *m > 0.0 && m.is_finite()) {
            *f = m / overall;
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mad() {
        let r = Robust::of(&[1.0, 2.0, 3.0, 4.0, 100.0], 0.1).unwrap();
        assert_eq!(r.median, 3.0);
        assert!((r.scale - 1.4826).abs() < 1e-9);
        assert!(Robust::of(&[], 0.1).is_none());
        let flat = Robust::of(&[5.0; 4], 0.1).unwrap();
        assert_eq!(flat.scale, 0.1, "the floor holds on a constant series");
    }

    #[test]
    fn everything_is_finite_on_hostile_input() {
        let hostile = [
            vec![],
            vec![0.0],
            vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY],
            vec![-1e300, 1e300, 0.0],
            vec![-5.0; 10],
            vec![f64::MAX; 3],
        ];
        for v in &hostile {
            if let Some(r) = Robust::of(v, 0.1) {
                assert!(r.median.is_finite() && r.scale.is_finite(), "{v:?}");
                for x in [0.0, f64::NAN, f64::INFINITY, 1e308, -1e308] {
                    assert!(r.z(x).is_finite(), "{v:?} {x}");
                }
            }
            for q in [0.0, 0.1, 0.5, 0.9, 1.0, f64::NAN] {
                if let Some(x) = quantile(v, q) {
                    assert!(x.is_finite());
                }
            }
            if let Some((z, l)) = ewma_chart(v, v, 0.3, 3.0) {
                assert!(z.is_finite() && l.is_finite());
            }
        }
        for x in [f64::NAN, f64::INFINITY, -1.0, 0.0, 1e300] {
            assert!(ln_cost(x).is_finite(), "{x}");
        }
    }

    #[test]
    fn ewma_catches_a_step_that_no_single_day_shows() {
        let reference = [0.0, 0.05, -0.05, 0.02, -0.02, 0.03, -0.03];
        let (z0, limit) = ewma_chart(&reference, &[0.0; 7], 0.3, 3.0).unwrap();
        assert!(z0 < limit);
        let (z1, _) = ewma_chart(&reference, &[0.12; 7], 0.3, 3.0).unwrap();
        assert!(z1 > limit, "{z1} vs {limit}");
    }

    #[test]
    fn splitmix_is_deterministic() {
        let a: Vec<u64> = (0..3)
            .map(|_| 0)
            .scan(SplitMix::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..3)
            .map(|_| 0)
            .scan(SplitMix::new(7), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
    }
}
