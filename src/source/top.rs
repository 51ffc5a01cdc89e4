//! "Which requests cost the most?": the individual rows behind a drill-down
//! selection, fetched on demand. PostgreSQL answers with one parameterised query
//! (names as bound parameters, identifiers quoted); the demo answers from the
//! recent live events it keeps in memory.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::connect::ConnectTarget;
use super::pg::{PgSource, SourceOptions, client_deadline, timed};
use super::sql::Params;
use crate::model::{Dim, NONE_NAME, RequestRow, TopQuery};
use crate::money::Money;

/// How many recent live events the demo keeps for "top requests".
pub const DEMO_RECENT: usize = 50_000;

/// The demo's recent live events, newest last (bounded).
#[derive(Debug, Clone, Default)]
pub struct RecentRequests {
    inner: Arc<Mutex<VecDeque<RequestRow>>>,
}

impl RecentRequests {
    pub fn push(&self, rows: impl IntoIterator<Item = RequestRow>) {
        let Ok(mut q) = self.inner.lock() else {
            return;
        };
        for r in rows {
            if q.len() == DEMO_RECENT {
                q.pop_front();
            }
            q.push_back(r);
        }
    }

    /// The most expensive of the kept events matching `q` (ties: newest first).
    pub fn top(&self, q: &TopQuery) -> Vec<RequestRow> {
        let Ok(rows) = self.inner.lock() else {
            return Vec::new();
        };
        let mut hits: Vec<RequestRow> = rows
            .iter()
            .filter(|r| r.at >= q.from && matches(r, &q.path))
            .cloned()
            .collect();
        hits.sort_by(|a, b| b.cost.cmp(&a.cost).then(b.at.cmp(&a.at)));
        hits.truncate(q.limit);
        hits
    }
}

fn name_of(r: &RequestRow, d: Dim) -> Option<&str> {
    match d {
        Dim::Feature => Some(&r.feature),
        Dim::User => Some(&r.user),
        Dim::Model => Some(&r.model),
        Dim::Tenant => r.tenant.as_deref(),
        Dim::Region => r.region.as_deref(),
    }
}

fn matches(r: &RequestRow, path: &[(Dim, String)]) -> bool {
    path.iter().all(|(d, want)| {
        let have = name_of(r, *d).unwrap_or("");
        let have = if have.is_empty() { NONE_NAME } else { have };
        have == want
    })
}

/// Where "top requests" come from.
#[derive(Clone, Default)]
pub enum TopSource {
    /// Nothing to ask (the pane says so).
    #[default]
    None,
    Pg(Box<(ConnectTarget, SourceOptions)>),
    Demo(RecentRequests),
}

impl TopSource {
    /// Runs the query; an error is a message for the pane.
    pub async fn fetch(&self, q: &TopQuery) -> Result<Vec<RequestRow>, String> {
        match self {
            TopSource::None => Err("no source to ask".into()),
            TopSource::Demo(recent) => Ok(recent.top(q)),
            TopSource::Pg(pg) => top_pg(&pg.0, &pg.1, q).await.map_err(|e| e.to_string()),
        }
    }
}

/// Cancels a running query on the server when dropped before `disarm`.
struct CancelOnDrop(Option<(tokio_postgres::CancelToken, ConnectTarget)>);

impl CancelOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some((token, target)) = self.0.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move { target.cancel(token).await });
        }
    }
}

/// The PostgreSQL query on a connection of its own, so the tail never waits for it.
pub async fn top_pg(
    target: &ConnectTarget,
    opts: &SourceOptions,
    q: &TopQuery,
) -> Result<Vec<RequestRow>, super::SourceError> {
    let mut source = PgSource::connect(target.clone(), opts.clone()).await?;
    source.top_requests(q).await
}

impl PgSource {
    /// The most expensive requests matching `q`, on this source's connection (a
    /// dropped future cancels the query on the server).
    pub async fn top_requests(
        &mut self,
        q: &TopQuery,
    ) -> Result<Vec<RequestRow>, super::SourceError> {
        self.ensure_connected().await?;
        let Some(live) = self.conn.as_ref() else {
            return Ok(Vec::new());
        };
        query_top(live, &self.target, &self.opts, &self.table_text, q).await
    }
}

async fn query_top(
    live: &super::pg::Live,
    target: &ConnectTarget,
    opts: &SourceOptions,
    table_text: &str,
    q: &TopQuery,
) -> Result<Vec<RequestRow>, super::SourceError> {
    let mut p = Params::default();
    let sql = live.sql.top_requests(q, &mut p);
    let ctx = super::error::ErrorContext {
        endpoint: &target.endpoint,
        table: table_text,
        statement_timeout: opts.statement_timeout,
    };
    // Newest wins: when the user moves on, this future is dropped, and the guard
    // cancels the query on the server too.
    let guard = CancelOnDrop(Some((live.client.cancel_token(), target.clone())));
    let rows = timed(
        &ctx,
        client_deadline(opts.statement_timeout),
        "reading the most expensive requests",
        live.client.query(&sql, &p.refs()),
    )
    .await?;
    guard.disarm();
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let cost: String = r.get(1);
        let Ok(cost) = cost.parse::<Money>() else {
            continue;
        };
        let tokens = |i: usize| r.get::<_, Option<i64>>(i).unwrap_or(0).max(0) as u64;
        out.push(RequestRow {
            at: r.get(0),
            cost,
            feature: r.get(2),
            user: r.get(3),
            model: r.get(4),
            tenant: Some(r.get(5)),
            region: Some(r.get(6)),
            input_tokens: tokens(7),
            output_tokens: tokens(8),
            request_id: r.get(9),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Duration, Utc};

    fn row(at: DateTime<Utc>, user: &str, model: &str, micros: i64) -> RequestRow {
        RequestRow {
            at,
            request_id: format!("req_{user}_{micros}"),
            feature: "support_qa".into(),
            user: user.into(),
            model: model.into(),
            tenant: Some(String::new()),
            region: Some("eu".into()),
            input_tokens: 10,
            output_tokens: 5,
            cost: Money::from_micros(micros),
        }
    }

    #[tokio::test]
    async fn the_demo_answers_from_recent_events_most_expensive_first() {
        let now = Utc::now();
        let recent = RecentRequests::default();
        recent.push([
            row(now - Duration::hours(2), "u1", "gpt-4o", 900),
            row(now, "u1", "gpt-4o", 300),
            row(now, "u1", "claude", 500),
            row(now, "u2", "gpt-4o", 700),
            row(now, "u1", "gpt-4o", 100),
        ]);
        let source = TopSource::Demo(recent.clone());
        let q = |path: Vec<(Dim, &str)>, limit| TopQuery {
            path: path.into_iter().map(|(d, n)| (d, n.to_string())).collect(),
            from: now - Duration::hours(1),
            limit,
        };
        let costs =
            |rows: Vec<RequestRow>| rows.iter().map(|r| r.cost.to_string()).collect::<Vec<_>>();
        let all = source.fetch(&q(vec![], 10)).await.unwrap();
        assert_eq!(
            costs(all),
            ["0.0007", "0.0005", "0.0003", "0.0001"],
            "old rows are out"
        );
        let u1 = source
            .fetch(&q(vec![(Dim::User, "u1"), (Dim::Model, "gpt-4o")], 10))
            .await
            .unwrap();
        assert_eq!(costs(u1), ["0.0003", "0.0001"]);
        let top1 = source
            .fetch(&q(vec![(Dim::Feature, "support_qa")], 1))
            .await
            .unwrap();
        assert_eq!(top1.len(), 1);
        let none = source
            .fetch(&q(vec![(Dim::Tenant, NONE_NAME)], 10))
            .await
            .unwrap();
        assert_eq!(none.len(), 4, "an empty name matches (none)");
        assert!(TopSource::None.fetch(&q(vec![], 1)).await.is_err());
        // Bounded: the oldest events make room.
        recent.push((0..DEMO_RECENT).map(|i| row(now, "bulk", "m", i as i64)));
        assert_eq!(
            source
                .fetch(&q(vec![(Dim::User, "u2")], 10))
                .await
                .unwrap()
                .len(),
            0
        );
    }
}
