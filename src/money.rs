//! Exact money: an integer count of picodollars (1e-12 USD).
//!
//! Per-token LLM prices have up to 8-9 decimals (e.g. $0.15 per million tokens is
//! 1.5e-7 per token), so micro-dollars would round every row. Twelve decimals hold
//! every real price list exactly, and i128 leaves room for any total. Money is never
//! an f64; `as_f64` exists only for ratios and statistics.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Neg, Sub, SubAssign};
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};

/// Picodollars per dollar.
pub const SCALE: i128 = 1_000_000_000_000;
const DECIMALS: u32 = 12;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i128);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseMoneyError {
    #[error("empty amount")]
    Empty,
    #[error("not a finite decimal number: {0:?}")]
    NotFinite(String),
    #[error("not a decimal number: {0:?}")]
    Invalid(String),
    #[error("amount out of range: {0:?}")]
    Overflow(String),
}

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_picos(picos: i128) -> Self {
        Money(picos)
    }
    pub const fn picos(self) -> i128 {
        self.0
    }
    pub const fn from_micros(micros: i64) -> Self {
        Money(micros as i128 * 1_000_000)
    }
    pub fn from_dollars(dollars: i64) -> Self {
        Money(dollars as i128 * SCALE)
    }
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
    pub fn abs(self) -> Self {
        Money(self.0.abs())
    }
    /// For ratios, charts and statistics only; never sum the result.
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / SCALE as f64
    }
    /// Nearest money value to a float, for derived figures (forecasts) only.
    pub fn from_f64_lossy(dollars: f64) -> Self {
        if !dollars.is_finite() {
            return Money::ZERO;
        }
        Money((dollars * SCALE as f64).round() as i128)
    }
    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }
    /// Multiply by an integer count (tokens x price per token).
    pub fn times(self, n: u64) -> Money {
        Money(self.0.saturating_mul(n as i128))
    }
    /// Rounded to whole micro-dollars, half away from zero (as PostgreSQL's
    /// `round(numeric, 6)` does).
    pub fn round_micros(self) -> i128 {
        let unit = SCALE / 1_000_000;
        let q = self.0 / unit;
        let r = self.0 % unit;
        if r.abs() * 2 >= unit {
            q + self.0.signum()
        } else {
            q
        }
    }
    /// Exactly 6 decimals, rounded half away from zero: "1234.500000".
    pub fn to_string_6(self) -> String {
        let m = self.round_micros();
        let sign = if m < 0 { "-" } else { "" };
        let m = m.abs();
        format!("{sign}{}.{:06}", m / 1_000_000, m % 1_000_000)
    }
    /// Compact human form for the screen: "$1,234.56", "$0.0042".
    pub fn display_usd(self) -> String {
        let v = self.as_f64();
        let a = v.abs();
        let sign = if v < 0.0 { "-" } else { "" };
        if a >= 1_000_000.0 {
            format!("{sign}${:.2}M", a / 1_000_000.0)
        } else if a >= 1000.0 {
            let whole = a.round() as u64;
            format!("{sign}${}", group_thousands(whole))
        } else if a >= 1.0 || a == 0.0 {
            format!("{sign}${a:.2}")
        } else if a >= 0.01 {
            format!("{sign}${a:.3}")
        } else {
            format!("{sign}${a:.4}")
        }
    }
    /// Divide by a count, rounding toward zero at picodollar resolution.
    pub fn div_count(self, n: u64) -> Option<Money> {
        if n == 0 {
            None
        } else {
            Some(Money(self.0 / n as i128))
        }
    }
}

fn group_thousands(mut n: u64) -> String {
    let mut parts = Vec::new();
    loop {
        if n < 1000 {
            parts.push(format!("{n}"));
            break;
        }
        parts.push(format!("{:03}", n % 1000));
        n /= 1000;
    }
    parts.reverse();
    parts.join(",")
}

impl FromStr for Money {
    type Err = ParseMoneyError;

    /// Parses PostgreSQL numeric text ("-12.345", "1e-7" is not produced by numeric
    /// output but is accepted). Digits past the 12th decimal are rounded half away
    /// from zero.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.is_empty() {
            return Err(ParseMoneyError::Empty);
        }
        let lower = t.to_ascii_lowercase();
        if lower.contains("nan") || lower.contains("inf") {
            return Err(ParseMoneyError::NotFinite(t.to_string()));
        }
        let (mantissa, exp) = match lower.find('e') {
            Some(i) => {
                let e: i32 = lower[i + 1..]
                    .parse()
                    .map_err(|_| ParseMoneyError::Invalid(t.to_string()))?;
                (&t[..i], e)
            }
            None => (t, 0),
        };
        let (neg, digits) = match mantissa.as_bytes().first() {
            Some(b'-') => (true, &mantissa[1..]),
            Some(b'+') => (false, &mantissa[1..]),
            _ => (false, mantissa),
        };
        let (int_part, frac_part) = match digits.find('.') {
            Some(i) => (&digits[..i], &digits[i + 1..]),
            None => (digits, ""),
        };
        if (int_part.is_empty() && frac_part.is_empty())
            || !int_part.bytes().all(|b| b.is_ascii_digit())
            || !frac_part.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ParseMoneyError::Invalid(t.to_string()));
        }
        // All digits as one integer with `scale` implied decimals, then shift to 12.
        let all: String = format!("{int_part}{frac_part}");
        let all = all.trim_start_matches('0');
        let scale = frac_part.len() as i64 - exp as i64; // value = all * 10^-scale
        let shift = DECIMALS as i64 - scale;
        let overflow = || ParseMoneyError::Overflow(t.to_string());
        let value: i128 = if all.is_empty() {
            0
        } else if shift >= 0 {
            if all.len() as i64 + shift > 38 {
                return Err(overflow());
            }
            let base: i128 = all.parse().map_err(|_| overflow())?;
            base.checked_mul(10i128.pow(shift as u32))
                .ok_or_else(overflow)?
        } else {
            let drop = (-shift) as usize;
            if drop >= all.len() {
                // Entirely below a picodollar: rounds to 0 or 1 pico.
                let first_dropped = if drop == all.len() {
                    all.as_bytes()[0]
                } else {
                    b'0'
                };
                i128::from(first_dropped >= b'5')
            } else {
                let keep = &all[..all.len() - drop];
                if keep.len() > 38 {
                    return Err(overflow());
                }
                let base: i128 = keep.parse().map_err(|_| overflow())?;
                let round_up = all.as_bytes()[all.len() - drop] >= b'5';
                base + i128::from(round_up)
            }
        };
        Ok(Money(if neg { -value } else { value }))
    }
}

impl fmt::Display for Money {
    /// Full precision, trailing zeros trimmed: "0.0000375", "12".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        let int = a / SCALE as u128;
        let frac = a % SCALE as u128;
        if frac == 0 {
            write!(f, "{sign}{int}")
        } else {
            let s = format!("{frac:012}");
            write!(f, "{sign}{int}.{}", s.trim_end_matches('0'))
        }
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, o: Money) -> Money {
        Money(self.0 + o.0)
    }
}
impl AddAssign for Money {
    fn add_assign(&mut self, o: Money) {
        self.0 += o.0;
    }
}
impl Sub for Money {
    type Output = Money;
    fn sub(self, o: Money) -> Money {
        Money(self.0 - o.0)
    }
}
impl SubAssign for Money {
    fn sub_assign(&mut self, o: Money) {
        self.0 -= o.0;
    }
}
impl Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money(-self.0)
    }
}
impl Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, |a, b| a + b)
    }
}
impl<'a> Sum<&'a Money> for Money {
    fn sum<I: Iterator<Item = &'a Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, |a, b| a + *b)
    }
}

/// JSON: a string with exactly 6 decimals, so no consumer parses money as a float.
impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string_6())
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            I(i64),
            F(f64),
        }
        match Raw::deserialize(d)? {
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
            Raw::I(i) => Ok(Money::from_dollars(i)),
            // Config amounts like 1500.50: go through the shortest decimal text.
            Raw::F(f) => f.to_string().parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Money {
        s.parse().unwrap()
    }

    #[test]
    fn parses_numeric_text_exactly() {
        assert_eq!(m("1").picos(), SCALE);
        assert_eq!(m("0.00000015").picos(), 150_000);
        assert_eq!(m("-2.5").picos(), -2_500_000_000_000);
        assert_eq!(m("000.000000000001").picos(), 1);
        assert_eq!(m("1.5e-7").picos(), 150_000);
        assert_eq!(m("12.").picos(), 12 * SCALE);
        assert_eq!(m(".5").picos(), SCALE / 2);
    }

    #[test]
    fn rounds_beyond_twelve_decimals_half_away_from_zero() {
        assert_eq!(m("0.0000000000005").picos(), 1);
        assert_eq!(m("0.0000000000004").picos(), 0);
        assert_eq!(m("-0.0000000000015").picos(), -2);
        assert_eq!(m("0.00000000000049999").picos(), 0);
    }

    #[test]
    fn rejects_non_finite_and_garbage() {
        assert!(matches!(
            "NaN".parse::<Money>(),
            Err(ParseMoneyError::NotFinite(_))
        ));
        assert!(matches!(
            "Infinity".parse::<Money>(),
            Err(ParseMoneyError::NotFinite(_))
        ));
        assert!(matches!(
            "-Infinity".parse::<Money>(),
            Err(ParseMoneyError::NotFinite(_))
        ));
        assert!(matches!(
            "1.2.3".parse::<Money>(),
            Err(ParseMoneyError::Invalid(_))
        ));
        assert!(matches!("".parse::<Money>(), Err(ParseMoneyError::Empty)));
        assert!(matches!(
            "-".parse::<Money>(),
            Err(ParseMoneyError::Invalid(_))
        ));
        assert!(matches!(
            "1e40".parse::<Money>(),
            Err(ParseMoneyError::Overflow(_))
        ));
    }

    #[test]
    fn six_decimal_output_rounds_like_postgres() {
        assert_eq!(m("1234.5").to_string_6(), "1234.500000");
        assert_eq!(m("0.0000005").to_string_6(), "0.000001");
        assert_eq!(m("0.0000004999").to_string_6(), "0.000000");
        assert_eq!(m("-0.0000005").to_string_6(), "-0.000001");
        assert_eq!(m("-0.0000004").to_string_6(), "0.000000");
        assert_eq!(Money::ZERO.to_string_6(), "0.000000");
    }

    #[test]
    fn display_trims_and_round_trips() {
        for s in ["0.0000375", "12", "-3.25", "0.000000000001"] {
            assert_eq!(m(s).to_string(), s);
            assert_eq!(m(&m(s).to_string()), m(s));
        }
    }

    #[test]
    fn sums_exactly_where_f64_drifts() {
        let cents: Money = std::iter::repeat_n(m("0.1"), 10).sum();
        assert_eq!(cents, m("1"));
        let f: f64 = std::iter::repeat_n(0.1f64, 10).sum();
        assert_ne!(f, 1.0);
    }

    #[test]
    fn human_display() {
        assert_eq!(m("1234567.8").display_usd(), "$1.23M");
        assert_eq!(m("12345.6").display_usd(), "$12,346");
        assert_eq!(m("12.345").display_usd(), "$12.35");
        assert_eq!(m("0.0421").display_usd(), "$0.042");
        assert_eq!(m("0.00042").display_usd(), "$0.0004");
        assert_eq!(m("-5").display_usd(), "-$5.00");
    }

    #[test]
    fn json_is_a_six_decimal_string() {
        assert_eq!(serde_json::to_string(&m("1.5")).unwrap(), "\"1.500000\"");
        let back: Money = serde_json::from_str("\"1.500000\"").unwrap();
        assert_eq!(back, m("1.5"));
        let from_num: Money = serde_json::from_str("1500.5").unwrap();
        assert_eq!(from_num, m("1500.5"));
    }
}
