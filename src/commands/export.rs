//! `burnrate export`: monthly spend per group for billing, as CSV or JSON.

use std::io::Write;
use std::path::Path;

use chrono::{Datelike, NaiveDate};
use color_eyre::Result;
use color_eyre::eyre::{WrapErr, bail};
use serde::Serialize;

use super::context::Context;
use crate::cli::{ExportArgs, ExportFormat};
use crate::model::{Agg, Dim};
use crate::money::Money;
use crate::source::export::{ExportGroup, ExportQuery, export_groups};

pub async fn export(ctx: &Context, args: &ExportArgs) -> Result<()> {
    let mut seen = Vec::new();
    for d in &args.by {
        if seen.contains(d) {
            bail!("--by names {d} twice");
        }
        seen.push(*d);
    }
    let cal = ctx.cfg.calendar();
    // The period: a calendar month, or --from/--to (both days included).
    let (first, next, period) = match (args.month, args.from, args.to) {
        (Some(first), _, _) => {
            let next = if first.month() == 12 {
                NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
            } else {
                NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
            }
            .unwrap_or(first);
            (
                first,
                next,
                format!("{:04}-{:02}", first.year(), first.month()),
            )
        }
        (None, Some(from), Some(to)) => {
            if to < from {
                bail!("--to {to} is before --from {from}: the range would be empty");
            }
            let next = to.succ_opt().unwrap_or(to);
            (from, next, format!("{from}..{to}"))
        }
        _ => bail!("give --month YYYY-MM, or --from YYYY-MM-DD and --to YYYY-MM-DD"),
    };
    let query = ExportQuery {
        by: args.by.clone(),
        from: cal.date_start(first),
        to: cal.date_start(next),
        tenant: ctx.tenant(),
    };
    let target = ctx.connect_target()?;
    let opts = ctx.source_options()?;
    let groups = export_groups(&target, &opts, &query).await?;
    let month = period;
    let mut out = Vec::new();
    match args.format {
        ExportFormat::Csv => write_csv(&mut out, &month, &args.by, &groups)?,
        ExportFormat::Json => write_json(&mut out, &month, cal.tz().name(), &query, &groups)?,
    }
    match &args.out {
        Some(path) => write_atomically(path, &out),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&out)
                .and_then(|_| stdout.flush())
                .wrap_err("writing to stdout")
        }
    }
}

/// The grand-total row's `month` cell: the period, then this. No group can read as
/// it: burnrate writes the `month` cell, and the total row's name cells are empty,
/// which a group's never are (NULL and empty names are `(none)`).
pub const TOTAL_SUFFIX: &str = " total";

/// A cell a spreadsheet would run as a formula gets a leading apostrophe (OWASP's
/// advice against CSV injection). Only names are touched, never amounts.
pub fn defuse_formula(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_string(),
    }
}

fn write_csv(out: &mut Vec<u8>, month: &str, by: &[Dim], groups: &[ExportGroup]) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    let mut header = vec!["month".to_string()];
    header.extend(by.iter().map(|d| d.name().to_string()));
    header.extend(["cost_usd", "requests", "input_tokens", "output_tokens"].map(String::from));
    w.write_record(&header)?;
    let mut total = Agg::default();
    for g in groups {
        total.add(&g.agg);
        let mut row = vec![month.to_string()];
        row.extend(g.names.iter().map(|n| defuse_formula(n)));
        row.extend([
            g.agg.cost.to_string_6(),
            g.agg.requests.to_string(),
            g.agg.input_tokens.to_string(),
            g.agg.output_tokens.to_string(),
        ]);
        w.write_record(&row)?;
    }
    // The grand total, last: "<period> total" as its month, every name empty.
    let mut row = vec![format!("{month}{TOTAL_SUFFIX}")];
    row.extend(by.iter().map(|_| String::new()));
    row.extend([
        total.cost.to_string_6(),
        total.requests.to_string(),
        total.input_tokens.to_string(),
        total.output_tokens.to_string(),
    ]);
    w.write_record(&row)?;
    w.flush()?;
    Ok(())
}

#[derive(Serialize)]
struct JsonExport<'a> {
    month: &'a str,
    time_zone: &'a str,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
    by: Vec<&'static str>,
    tenant: Option<&'a str>,
    groups: Vec<serde_json::Map<String, serde_json::Value>>,
    totals: Totals,
}

#[derive(Serialize)]
struct Totals {
    cost_usd: Money,
    requests: u64,
    input_tokens: u64,
    output_tokens: u64,
}

fn write_json(
    out: &mut Vec<u8>,
    month: &str,
    tz: &str,
    q: &ExportQuery,
    groups: &[ExportGroup],
) -> Result<()> {
    let mut total = Agg::default();
    let rows = groups
        .iter()
        .map(|g| {
            total.add(&g.agg);
            let mut m = serde_json::Map::new();
            for (d, n) in q.by.iter().zip(&g.names) {
                m.insert(d.name().to_string(), n.clone().into());
            }
            m.insert("cost_usd".into(), g.agg.cost.to_string_6().into());
            m.insert("requests".into(), g.agg.requests.into());
            m.insert("input_tokens".into(), g.agg.input_tokens.into());
            m.insert("output_tokens".into(), g.agg.output_tokens.into());
            m
        })
        .collect();
    let doc = JsonExport {
        month,
        time_zone: tz,
        from: q.from,
        to: q.to,
        by: q.by.iter().map(|d| d.name()).collect(),
        tenant: q.tenant.as_deref(),
        groups: rows,
        totals: Totals {
            cost_usd: total.cost,
            requests: total.requests,
            input_tokens: total.input_tokens,
            output_tokens: total.output_tokens,
        },
    };
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    out.push(b'\n');
    Ok(())
}

/// Writes next to the target and renames, so a reader never sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).wrap_err_with(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).wrap_err_with(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("moving the export into place at {}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused_but_plain_names_are_not() {
        assert_eq!(defuse_formula("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(defuse_formula("+1"), "'+1");
        assert_eq!(defuse_formula("-2"), "'-2");
        assert_eq!(defuse_formula("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(defuse_formula("\tx"), "'\tx");
        assert_eq!(defuse_formula("acme"), "acme");
        assert_eq!(defuse_formula("a=b"), "a=b");
    }

    #[test]
    fn csv_has_a_header_and_quotes_hostile_names() {
        let groups = vec![ExportGroup {
            names: vec!["acme, \"inc\"\n".into(), "=cmd".into()],
            agg: Agg {
                cost: "-1.5".parse().unwrap(),
                requests: 3,
                input_tokens: 10,
                output_tokens: 2,
                computed: 0,
            },
        }];
        let mut out = Vec::new();
        write_csv(&mut out, "2026-11", &[Dim::Tenant, Dim::Feature], &groups).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut r = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(
            r.headers().unwrap().iter().collect::<Vec<_>>(),
            [
                "month",
                "tenant",
                "feature",
                "cost_usd",
                "requests",
                "input_tokens",
                "output_tokens"
            ]
        );
        let row = r.records().next().unwrap().unwrap();
        assert_eq!(
            &row[1], "acme, \"inc\"\n",
            "round-trips through a CSV reader"
        );
        assert_eq!(&row[2], "'=cmd");
        assert_eq!(&row[3], "-1.500000", "amounts are never defused");
    }

    #[test]
    fn a_feature_named_total_cannot_pass_for_the_total_row() {
        let groups: Vec<ExportGroup> = ["(total)", "(none)", "total"]
            .iter()
            .map(|n| ExportGroup {
                names: vec![n.to_string()],
                agg: Agg::one("1".parse().unwrap(), 0, 0),
            })
            .collect();
        let mut out = Vec::new();
        write_csv(&mut out, "2026-11", &[Dim::Feature], &groups).unwrap();
        let text = String::from_utf8(out).unwrap();
        let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(text.as_bytes())
            .records()
            .map(Result::unwrap)
            .collect();
        let totals: Vec<&csv::StringRecord> = rows
            .iter()
            .filter(|r| r[0].ends_with(TOTAL_SUFFIX) || r[1].is_empty())
            .collect();
        assert_eq!(totals.len(), 1, "{text}");
        assert_eq!(
            (&totals[0][0], &totals[0][1], &totals[0][2]),
            ("2026-11 total", "", "3.000000")
        );
        assert!(
            rows[..3]
                .iter()
                .all(|r| &r[0] == "2026-11" && !r[1].is_empty())
        );
    }
}
