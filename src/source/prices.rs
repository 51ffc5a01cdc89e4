//! The price list (`[prices]`): USD per million input and output tokens per model,
//! each from a date on. When a row has no cost (NULL, or no cost column) or a zero
//! cost, its cost is computed from its tokens, exactly: the SQL multiplies the token
//! counts by per-token prices written as exact decimal literals, in `numeric`.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::money::Money;

/// One price of a model, holding from `from` (00:00 UTC) until the next one.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    pub from: NaiveDate,
    /// USD per million input (prompt) tokens.
    pub input_per_mtok: Money,
    /// USD per million output (completion) tokens.
    pub output_per_mtok: Money,
}

/// Prices by model name, as the model column holds it.
pub type PriceList = BTreeMap<String, Vec<PriceEntry>>;

/// Checks a price list; the error names the key.
pub fn validate(prices: &PriceList) -> Result<(), String> {
    for (model, entries) in prices {
        let key = format!("prices.{model:?}");
        if model.is_empty() || model.chars().any(char::is_control) {
            return Err(format!(
                "key `{key}`: a model name must be non-empty without control characters"
            ));
        }
        if entries.is_empty() {
            return Err(format!(
                "key `{key}`: give at least one {{ from, input_per_mtok, output_per_mtok }}"
            ));
        }
        for e in entries {
            if e.input_per_mtok < Money::ZERO || e.output_per_mtok < Money::ZERO {
                return Err(format!("key `{key}`: prices must not be negative"));
            }
        }
        let mut dates: Vec<NaiveDate> = entries.iter().map(|e| e.from).collect();
        dates.sort();
        if dates.windows(2).any(|w| w[0] == w[1]) {
            return Err(format!("key `{key}`: two prices from the same date"));
        }
    }
    Ok(())
}

/// USD per token as an exact SQL decimal: the price per million shifted by six
/// places (picodollars per million tokens = 1e-18 dollars per token).
fn per_token_literal(per_mtok: Money) -> String {
    let p = per_mtok.picos().max(0);
    let scale: i128 = 1_000_000_000_000_000_000;
    format!("{}.{:018}", p / scale, p % scale)
}

/// A string literal that means the same whatever `standard_conforming_strings` is.
fn literal(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The cost computed from tokens for the row's model and time, or NULL when the
/// model has no price then. `model` is a text expression, `ts` the timestamp
/// column, `input`/`output` integer expressions (NULL counts as 0).
pub(crate) fn price_sql(
    prices: &PriceList,
    model: &str,
    ts: &str,
    input: &str,
    output: &str,
) -> Option<String> {
    if prices.is_empty() {
        return None;
    }
    let mut out = format!("(CASE {model}");
    for (name, entries) in prices {
        let mut entries = entries.clone();
        entries.sort_by_key(|e| std::cmp::Reverse(e.from));
        out.push_str(&format!(" WHEN {} THEN CASE", literal(name)));
        for e in entries {
            out.push_str(&format!(
                " WHEN {ts} >= '{} 00:00:00+00'::timestamptz THEN \
                 coalesce({input}, 0)::numeric * {} + coalesce({output}, 0)::numeric * {}",
                e.from.format("%Y-%m-%d"),
                per_token_literal(e.input_per_mtok),
                per_token_literal(e.output_per_mtok)
            ));
        }
        out.push_str(" END");
    }
    out.push_str(" END)");
    Some(out)
}

/// The same computation in Rust, for tests and checks: the price in force at `at`.
pub fn cost_of(
    prices: &PriceList,
    model: &str,
    at: chrono::DateTime<chrono::Utc>,
    input: u64,
    output: u64,
) -> Option<Money> {
    let day = at.date_naive();
    let e = prices
        .get(model)?
        .iter()
        .filter(|e| e.from <= day)
        .max_by_key(|e| e.from)?;
    // picodollars per million tokens x tokens / 1e6, exact when the price has at
    // most six decimals per million (rounded to the picodollar otherwise).
    let picos = (e.input_per_mtok.picos() * input as i128
        + e.output_per_mtok.picos() * output as i128
        + 500_000)
        / 1_000_000;
    Some(Money::from_picos(picos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> PriceList {
        let mut p = PriceList::new();
        p.insert(
            "gpt-4o".into(),
            vec![
                PriceEntry {
                    from: NaiveDate::from_ymd_opt(2024, 5, 13).unwrap(),
                    input_per_mtok: "5".parse().unwrap(),
                    output_per_mtok: "15".parse().unwrap(),
                },
                PriceEntry {
                    from: NaiveDate::from_ymd_opt(2024, 8, 6).unwrap(),
                    input_per_mtok: "2.50".parse().unwrap(),
                    output_per_mtok: "10".parse().unwrap(),
                },
            ],
        );
        p
    }

    #[test]
    fn the_price_in_force_is_used_exactly() {
        let p = list();
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        assert_eq!(
            cost_of(&p, "gpt-4o", at("2024-06-01T00:00:00Z"), 1000, 100),
            Some("0.0065".parse().unwrap())
        );
        assert_eq!(
            cost_of(&p, "gpt-4o", at("2024-08-06T00:00:00Z"), 1234, 567),
            Some("0.008755".parse().unwrap())
        );
        assert_eq!(
            cost_of(&p, "gpt-4o", at("2024-01-01T00:00:00Z"), 1, 1),
            None
        );
        assert_eq!(cost_of(&p, "other", at("2025-01-01T00:00:00Z"), 1, 1), None);
        assert_eq!(
            per_token_literal("2.50".parse().unwrap()),
            "0.000002500000000000"
        );
    }

    #[test]
    fn the_sql_quotes_names_and_orders_dates_newest_first() {
        let mut p = list();
        p.insert("it's\\".into(), p["gpt-4o"].clone());
        let sql = price_sql(&p, "m", "t", "i", "o").unwrap();
        assert!(sql.contains("WHEN E'it''s\\\\' THEN"), "{sql}");
        let newer = sql.find("2024-08-06").unwrap();
        let older = sql.find("2024-05-13").unwrap();
        assert!(newer < older, "{sql}");
        assert!(price_sql(&PriceList::new(), "m", "t", "i", "o").is_none());
    }

    #[test]
    fn bad_lists_are_refused() {
        let mut p = list();
        p.get_mut("gpt-4o").unwrap()[1].from = NaiveDate::from_ymd_opt(2024, 5, 13).unwrap();
        assert!(validate(&p).unwrap_err().contains("same date"));
        let mut p = list();
        p.get_mut("gpt-4o").unwrap()[0].input_per_mtok = "-1".parse().unwrap();
        assert!(validate(&p).unwrap_err().contains("negative"));
        assert!(validate(&list()).is_ok());
    }
}
