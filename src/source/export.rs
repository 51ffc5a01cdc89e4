//! Billing export: spend per group for a span, aggregated by the server with the
//! same row filter as the backfill, so an export equals the dashboard to the
//! micro-dollar.

use chrono::{DateTime, Utc};

use super::connect::ConnectTarget;
use super::error::{ErrorContext, SourceError};
use super::pg::{PgSource, SourceOptions, client_deadline, timed};
use super::sql::Params;
use crate::model::{Agg, Dim, NONE_NAME};

/// One billing line: the group's names (in the order asked) and its totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportGroup {
    pub names: Vec<String>,
    pub agg: Agg,
}

/// Which rows, grouped how.
#[derive(Debug, Clone)]
pub struct ExportQuery {
    pub by: Vec<Dim>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Only this tenant's rows.
    pub tenant: Option<String>,
}

/// Runs the export on a connection of its own; groups come back sorted by their
/// names (byte order), so the same month always exports in the same order.
pub async fn export_groups(
    target: &ConnectTarget,
    opts: &SourceOptions,
    q: &ExportQuery,
) -> Result<Vec<ExportGroup>, SourceError> {
    let mut source = PgSource::connect(target.clone(), opts.clone()).await?;
    let Some(live) = source.conn.take() else {
        return Ok(Vec::new());
    };
    let mut p = Params::default();
    let from = p.push(q.from);
    let to = p.push(q.to);
    let tenant = q.tenant.clone().map(|t| p.push(t));
    let by: Vec<usize> = q.by.iter().map(|d| d.index()).collect();
    let sql = live.sql.export_groups(&by, from, to, tenant);
    let ctx = ErrorContext {
        endpoint: &target.endpoint,
        table: &source.table_text,
        statement_timeout: opts.statement_timeout,
    };
    let rows = timed(
        &ctx,
        client_deadline(opts.statement_timeout),
        "exporting billing groups",
        live.client.query(&sql, &p.refs()),
    )
    .await?;
    let n = by.len();
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let names = (0..n)
            .map(|i| {
                let name: String = r.get(i);
                if name.is_empty() {
                    NONE_NAME.to_string()
                } else {
                    name
                }
            })
            .collect();
        let cost: Option<String> = r.get(n);
        let cost = match cost.as_deref().map(str::parse) {
            Some(Ok(c)) => c,
            // Only possible with no rows at all (a sum over nothing is NULL).
            None => continue,
            Some(Err(e)) => return Err(ctx.unexpected(format!("cost sum {cost:?}: {e}"))),
        };
        let count = |i: usize| r.get::<_, i64>(i).max(0) as u64;
        out.push(ExportGroup {
            names,
            agg: Agg {
                cost,
                requests: count(n + 1),
                input_tokens: count(n + 2),
                output_tokens: count(n + 3),
                computed: 0,
            },
        });
    }
    Ok(merge_same_names(out))
}

/// Sorts groups by their names and merges those the dashboard shows as one: NULL,
/// empty and a literal `(none)` are all `(none)` there (as the store interns them).
fn merge_same_names(mut groups: Vec<ExportGroup>) -> Vec<ExportGroup> {
    groups.sort_by(|a, b| a.names.cmp(&b.names));
    let mut out: Vec<ExportGroup> = Vec::with_capacity(groups.len());
    for g in groups {
        match out.last_mut() {
            Some(last) if last.names == g.names => last.agg.add(&g.agg),
            _ => out.push(g),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(names: &[&str], cost: &str) -> ExportGroup {
        ExportGroup {
            names: names.iter().map(|n| n.to_string()).collect(),
            agg: Agg::one(cost.parse().unwrap(), 1, 1),
        }
    }

    #[test]
    fn none_and_empty_names_merge_into_one_group_as_on_the_dashboard() {
        let merged = merge_same_names(vec![
            group(&["acme", NONE_NAME], "1"),
            group(&["acme", "chat"], "2"),
            group(&["acme", NONE_NAME], "0.5"),
        ]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].names, ["acme", NONE_NAME]);
        assert_eq!(merged[0].agg.cost, "1.5".parse().unwrap());
        assert_eq!(merged[0].agg.requests, 2);
        assert_eq!(merged[1].names, ["acme", "chat"]);
    }
}
