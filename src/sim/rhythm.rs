//! The shape of traffic over time, in UTC: a daily rhythm (quiet at night, busy in
//! business hours), quieter weekends, and deterministic day-to-day and hour-to-hour
//! noise so that baselines built from the history are not degenerate.

use std::sync::LazyLock;

use chrono::{DateTime, Datelike, Timelike, Utc, Weekday};

/// Weekend traffic relative to a weekday.
pub const WEEKEND_FACTOR: f64 = 0.4;

/// Sigma (in log space) of the day-level, per-feature day-level and hour-level noise.
pub const DAY_NOISE_SIGMA: f64 = 0.05;
pub const FEATURE_DAY_NOISE_SIGMA: f64 = 0.06;
pub const HOUR_NOISE_SIGMA: f64 = 0.05;

/// Unnormalised daily curve by fractional UTC hour: ~0.3 at night, ~1.3 at 14:00 UTC
/// (the overlap of European afternoons and American mornings).
fn daily_curve(hour: f64) -> f64 {
    let z = (hour - 14.0) / 3.5;
    0.3 + (-0.5 * z * z).exp()
}

fn weekly_curve(t: DateTime<Utc>) -> f64 {
    match t.weekday() {
        Weekday::Sat | Weekday::Sun => WEEKEND_FACTOR,
        _ => 1.0,
    }
}

/// The mean of daily x weekly over a week, so that [`rhythm`] averages 1.
static NORM: LazyLock<f64> = LazyLock::new(|| {
    let daily: f64 = (0..1440)
        .map(|m| daily_curve((m as f64 + 0.5) / 60.0))
        .sum::<f64>()
        / 1440.0;
    daily * (5.0 + 2.0 * WEEKEND_FACTOR) / 7.0
});

/// Relative traffic at `t`: daily rhythm times weekly rhythm, normalised so that its
/// average over a week is exactly 1 (a base rate is then the average rate).
pub fn rhythm(t: DateTime<Utc>) -> f64 {
    let hour = t.hour() as f64 + t.minute() as f64 / 60.0 + t.second() as f64 / 3600.0;
    daily_curve(hour) * weekly_curve(t) / *NORM
}

/// SplitMix64's finaliser: a bijection on u64 with good mixing.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform number in (0, 1) from a hash.
fn unit(h: u64) -> f64 {
    ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// A standard normal number that depends only on (seed, kind, key).
fn hashed_normal(seed: u64, kind: u64, key: i64) -> f64 {
    let h1 = mix64(seed ^ mix64((kind << 56) ^ key as u64));
    let h2 = mix64(h1);
    // Box-Muller.
    (-2.0 * unit(h1).ln()).sqrt() * (std::f64::consts::TAU * unit(h2)).cos()
}

/// A log-normal multiplier with median 1 for one key; `scale` multiplies the sigma.
pub(crate) fn noise(seed: u64, kind: u64, key: i64, sigma: f64, scale: f64) -> f64 {
    if scale <= 0.0 {
        return 1.0;
    }
    (sigma * scale * hashed_normal(seed, kind, key)).exp()
}

pub(crate) const NOISE_DAY: u64 = 1;
pub(crate) const NOISE_FEATURE_DAY: u64 = 2;
pub(crate) const NOISE_HOUR: u64 = 3;

/// Days and hours since the Unix epoch, in UTC.
pub(crate) fn day_index(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(86_400)
}
pub(crate) fn hour_index(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(3_600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn rhythm_averages_one_over_a_week() {
        let start = DateTime::parse_from_rfc3339("2026-03-02T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let n = 7 * 1440;
        let mean: f64 = (0..n)
            .map(|m| rhythm(start + Duration::seconds(m * 60 + 30)))
            .sum::<f64>()
            / n as f64;
        assert!((mean - 1.0).abs() < 1e-3, "mean {mean}");
    }

    #[test]
    fn noise_is_deterministic_with_median_one() {
        assert_eq!(
            noise(7, NOISE_DAY, 100, 0.1, 1.0),
            noise(7, NOISE_DAY, 100, 0.1, 1.0)
        );
        assert_eq!(noise(7, NOISE_DAY, 100, 0.1, 0.0), 1.0);
        let mut v: Vec<f64> = (0..2001)
            .map(|k| noise(7, NOISE_HOUR, k, 0.1, 1.0))
            .collect();
        v.sort_by(f64::total_cmp);
        assert!((v[1000] - 1.0).abs() < 0.02, "median {}", v[1000]);
        let log_sd = (v.iter().map(|x| x.ln().powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        assert!((log_sd - 0.1).abs() < 0.01, "sd {log_sd}");
    }
}
