//! What the store's coarse hours do not hold, asked of the database: per-name
//! totals of any dimension over a span, among the rows of a drill-down path (users
//! of a window that starts inside a coarse day, a level below a path over old
//! hours). Read through the one row filter, so the numbers add up with the store's.

use super::error::ErrorContext;
use super::pg::{PgSource, client_deadline, timed};
use super::sql::Params;
use crate::model::{Agg, GroupQuery, NONE_NAME};
use crate::money::Money;

impl PgSource {
    /// Per-name totals for `q`, names as the store shows them (`(none)` for NULL or
    /// empty), in no particular order.
    pub async fn group_totals(
        &mut self,
        q: &GroupQuery,
    ) -> Result<Vec<(String, Agg)>, super::SourceError> {
        self.ensure_connected().await?;
        let ctx = ErrorContext {
            endpoint: &self.target.endpoint,
            table: &self.table_text,
            statement_timeout: self.opts.statement_timeout,
        };
        let Some(live) = self.conn.as_ref() else {
            return Err(ctx.unexpected("no connection after connecting"));
        };
        let mut p = Params::default();
        let text = live.sql.group_totals(q, &mut p);
        let rows = timed(
            &ctx,
            client_deadline(self.opts.statement_timeout),
            "reading totals the store keeps coarse",
            live.client.query(&text, &p.refs()),
        )
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let name: String = r.get(0);
            let cost: Option<String> = r.get(1);
            let Some(Ok(cost)) = cost.as_deref().map(str::parse::<Money>) else {
                return Err(ctx.unexpected(format!("a cost sum out of range for {name:?}")));
            };
            let n = |i: usize| r.get::<_, i64>(i).max(0) as u64;
            let name = if name.is_empty() {
                NONE_NAME.to_string()
            } else {
                name
            };
            out.push((
                name,
                Agg {
                    cost,
                    requests: n(2),
                    input_tokens: n(3),
                    output_tokens: n(4),
                    computed: n(5),
                },
            ));
        }
        Ok(out)
    }
}
