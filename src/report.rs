//! The headless twin of the dashboard: `snapshot --json` built from the same store
//! and detection code as the screen.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::detect::{self, Anomaly, DetectParams, MonthForecast};
use crate::model::{Agg, Dim, RequestRow, TailMode, TopQuery};
use crate::money::Money;
use crate::store::Store;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Totals {
    pub cost_usd: Money,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl From<Agg> for Totals {
    fn from(a: Agg) -> Self {
        Totals {
            cost_usd: a.cost,
            requests: a.requests,
            input_tokens: a.input_tokens,
            output_tokens: a.output_tokens,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breakdown {
    pub name: String,
    pub cost_usd: Money,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Of `requests`, those whose cost was computed from the price list, not logged.
    pub computed_cost_requests: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceInfo {
    /// Rows read from the source (backfill groups count all their rows).
    pub rows: u64,
    /// Rows not counted because they cannot be (NULL or non-finite cost, ...).
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// "tx_watermark", "id_overlap" or "demo".
    pub mode: String,
    /// "host:port/dbname"; never a password.
    pub endpoint: String,
    /// Rows older than the retained history, counted but not aggregated.
    pub too_old: u64,
    /// Rows whose cost was computed from tokens with the price list (`[prices]`),
    /// because the table logged no cost or zero, so not logged but estimated (set
    /// by the PostgreSQL source; 0 elsewhere).
    pub computed_cost_rows: u64,
    /// Names the watched table has no column for ("user", ...): their groups hold
    /// one "(none)" each (set by the PostgreSQL source; empty elsewhere).
    pub absent_names: Vec<String>,
    /// Seconds a long-running transaction has held the tail's watermark back (0:
    /// nothing holds it); null where unknown (before the first poll, demo).
    pub watermark_lag_secs: Option<i64>,
    /// Reading from a hot standby: its replay lag in seconds (see the README's "Read
    /// replicas"); null on a primary and where unknown.
    pub replay_lag_secs: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub generated_at: DateTime<Utc>,
    /// "30d", "24h", ...
    pub window: String,
    /// Windows are whole buckets: this is the start of the first hour counted.
    pub window_start: DateTime<Utc>,
    pub totals: Totals,
    pub by_feature: Vec<Breakdown>,
    pub by_model: Vec<Breakdown>,
    pub by_tenant: Vec<Breakdown>,
    pub by_region: Vec<Breakdown>,
    /// The top N users by cost.
    pub by_user: Vec<Breakdown>,
    pub month: MonthForecast,
    pub anomalies: Vec<ReportedAnomaly>,
    pub source: SourceInfo,
    /// What the in-memory aggregates hold, and their approximate heap bytes.
    pub store: crate::store::StoreMemory,
}

/// An anomaly as reported: the detector's explanation, plus the most expensive
/// requests behind it, which only the database can name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportedAnomaly {
    #[serde(flatten)]
    pub anomaly: Anomaly,
    /// Since it began (at least the last hour), most expensive first; empty until
    /// the command asks the database (`snapshot` does, for the first few subjects).
    pub top_requests: Vec<RequestSample>,
}

/// One request behind an anomaly.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestSample {
    pub request_id: String,
    pub at: DateTime<Utc>,
    pub feature: String,
    pub user: String,
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: Money,
}

impl From<&RequestRow> for RequestSample {
    fn from(r: &RequestRow) -> Self {
        RequestSample {
            request_id: r.request_id.clone(),
            at: r.at,
            feature: r.feature.clone(),
            user: r.user.clone(),
            model: r.model.clone(),
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            cost_usd: r.cost,
        }
    }
}

impl ReportedAnomaly {
    /// The query for the requests behind it: its name, since it began, at least the
    /// last hour.
    pub fn requests_query(&self, now: DateTime<Utc>, limit: usize) -> TopQuery {
        let a = &self.anomaly;
        TopQuery {
            path: vec![(a.dim, a.name.clone())],
            from: a.since.unwrap_or(now).min(now - chrono::Duration::hours(1)),
            limit,
        }
    }
}

/// What the snapshot is asked for.
#[derive(Debug, Clone)]
pub struct SnapshotSpec {
    pub window: Duration,
    /// The window as the user wrote it (`--window 24h`), reported as is; None: the
    /// configured window, in its shortest form.
    pub window_label: Option<String>,
    pub top: usize,
    pub budget: Option<Money>,
    pub detect: DetectParams,
}

/// "30d", "24h", "90m": the shortest exact form.
pub fn format_window(d: Duration) -> String {
    let s = d.as_secs();
    if s % 86_400 == 0 {
        format!("{}d", s / 86_400)
    } else if s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else {
        format!("{}m", s.div_ceil(60))
    }
}

/// The first instant of a window ending now: whole hour buckets, the current
/// (partial) hour counting as one.
pub fn window_start(store: &Store, now: DateTime<Utc>, window: Duration) -> DateTime<Utc> {
    let hours = (window.as_secs().div_ceil(3600)).max(1) as i64;
    let cal = store.calendar();
    cal.hour_start(cal.hour_index(now) - (hours - 1))
}

/// Every name of a dimension with its totals, most expensive first (ties by name).
pub fn breakdown(
    store: &Store,
    dim: Dim,
    from: DateTime<Utc>,
    top: Option<usize>,
) -> Vec<Breakdown> {
    ranked(
        store
            .by_dim(dim, store.hours_from(from))
            .into_iter()
            .map(|(id, a)| (store.name(dim, id).to_string(), a)),
        top,
    )
}

/// Names with their totals as rows, most expensive first (ties by name), the
/// first `top` of them.
fn ranked(totals: impl Iterator<Item = (String, Agg)>, top: Option<usize>) -> Vec<Breakdown> {
    let mut rows: Vec<Breakdown> = totals
        .map(|(name, a)| Breakdown {
            name,
            cost_usd: a.cost,
            requests: a.requests,
            input_tokens: a.input_tokens,
            output_tokens: a.output_tokens,
            computed_cost_requests: a.computed,
        })
        .collect();
    rows.sort_by(|a, b| {
        b.cost_usd
            .cmp(&a.cost_usd)
            .then_with(|| a.name.cmp(&b.name))
    });
    if let Some(n) = top {
        rows.truncate(n);
    }
    rows
}

/// The part `[from, to)` of a window starting at `from` whose users the store
/// keeps only per day (it starts inside a coarse day): the database answers it
/// (`users_with_edge`). None when the store's users from `from` on are exact.
pub fn users_edge(store: &Store, from: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let h = store.hour_index(from);
    if store.users_exact_from(h) {
        return None;
    }
    let cal = store.calendar();
    let next_day = cal.day_start(cal.hour_start(h) + chrono::Duration::hours(26));
    let floor = cal.hour_start(store.detail_floor());
    Some((from, next_day.min(floor)))
}

/// Users from `from` on, most expensive first: the edge `users_edge` gave (`edge`
/// ends where the store takes over) read from the database (`edge_users`), the
/// rest from the store.
pub fn users_with_edge(
    store: &Store,
    edge_end: DateTime<Utc>,
    edge_users: Vec<(String, Agg)>,
    top: Option<usize>,
) -> Vec<Breakdown> {
    let mut totals: std::collections::HashMap<String, Agg> = edge_users.into_iter().collect();
    for (id, a) in store.by_dim(Dim::User, store.hours_from(edge_end)) {
        totals
            .entry(store.name(Dim::User, id).to_string())
            .or_default()
            .add(&a);
    }
    ranked(totals.into_iter(), top)
}

pub fn build(
    store: &Store,
    now: DateTime<Utc>,
    spec: &SnapshotSpec,
    mode: TailMode,
    endpoint: &str,
) -> Snapshot {
    let from = window_start(store, now, spec.window);
    let intake = store.intake();
    Snapshot {
        generated_at: now,
        window: spec
            .window_label
            .clone()
            .unwrap_or_else(|| format_window(spec.window)),
        window_start: from,
        totals: store.total(store.hours_from(from)).into(),
        by_feature: breakdown(store, Dim::Feature, from, None),
        by_model: breakdown(store, Dim::Model, from, None),
        by_tenant: breakdown(store, Dim::Tenant, from, None),
        by_region: breakdown(store, Dim::Region, from, None),
        by_user: breakdown(store, Dim::User, from, Some(spec.top)),
        month: detect::month_forecast(store, now, spec.budget),
        anomalies: detect::detect(store, now, &spec.detect)
            .into_iter()
            .map(|anomaly| ReportedAnomaly {
                anomaly,
                top_requests: Vec::new(),
            })
            .collect(),
        source: SourceInfo {
            rows: intake.rows,
            rejected: intake.rejected_total(),
            rejected_by_reason: intake
                .rejected
                .iter()
                .map(|(r, n)| (r.name().to_string(), *n))
                .collect(),
            mode: mode.json_name().to_string(),
            endpoint: endpoint.to_string(),
            too_old: intake.too_old,
            computed_cost_rows: 0,
            absent_names: Vec::new(),
            watermark_lag_secs: None,
            replay_lag_secs: None,
        },
        store: store.memory(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Fact, FactBatch, RejectReason};
    use crate::store::StoreConfig;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn snapshot_json_has_the_contract_fields() {
        let now = utc("2026-11-28T12:30:00Z");
        let mut s = Store::new(StoreConfig::default(), now);
        let mk = |at: &str, f: &str, u: &str, c: &str| Fact {
            at: utc(at),
            names: [
                f.into(),
                u.into(),
                "gpt-4o".into(),
                "acme".into(),
                "us-east-1".into(),
            ],
            agg: Agg::one(c.parse().unwrap(), 1000, 200),
        };
        let mut rejected = BTreeMap::new();
        rejected.insert(RejectReason::NonFiniteCost, 2);
        s.apply(
            &FactBatch {
                coarse: Vec::new(),
                hour_users: Vec::new(),
                hour_pairs: Vec::new(),
                facts: vec![
                    mk("2026-11-28T12:00:00Z", "chat", "u1", "1.5"),
                    mk("2026-11-28T11:00:00Z", "search", "u2", "0.0000125"),
                    mk("2026-10-01T11:00:00Z", "old", "u3", "7"),
                ],
                rows: 5,
                rejected,
            },
            now,
        );
        let spec = SnapshotSpec {
            window: Duration::from_secs(86_400),
            window_label: None,
            top: 1,
            budget: Some(Money::from_dollars(100)),
            detect: DetectParams {
                today_ratio: 1.5,
                spike_ratio: 3.0,
                min_excess: Money::from_dollars(1),
                contributors: 3,
                ..DetectParams::default()
            },
        };
        let snap = build(&s, now, &spec, TailMode::TxWatermark, "127.0.0.1:5432/x");
        let v: serde_json::Value = serde_json::to_value(&snap).unwrap();
        assert_eq!(v["window"], "1d");
        let asked = SnapshotSpec {
            window_label: Some("24h".into()),
            ..spec.clone()
        };
        let v24 = serde_json::to_value(build(&s, now, &asked, TailMode::TxWatermark, "x")).unwrap();
        assert_eq!(v24["window"], "24h", "the window as asked");
        assert_eq!(v["totals"]["cost_usd"], "1.500013");
        assert_eq!(v["totals"]["requests"], 2);
        assert_eq!(v["totals"]["input_tokens"], 2000);
        assert_eq!(v["by_feature"][0]["name"], "chat");
        assert_eq!(v["by_feature"][1]["cost_usd"], "0.000013");
        assert_eq!(v["by_feature"][1]["computed_cost_requests"], 0);
        assert_eq!(v["by_user"].as_array().unwrap().len(), 1);
        // The old row is too old to keep: two hours, two cells.
        assert_eq!(v["store"]["hours"], 2);
        assert_eq!(v["store"]["cells"], 2);
        assert_eq!(v["store"]["combinations"], 2);
        assert!(v["store"]["bytes"].as_u64().unwrap() > 0);
        for key in ["by_model", "by_tenant", "by_region"] {
            assert_eq!(v[key][0]["requests"], 2, "{key}");
        }
        let month = &v["month"];
        assert_eq!(month["month"], "2026-11");
        assert_eq!(month["days_in_month"], 30);
        assert_eq!(month["budget_usd"], "100.000000");
        for key in [
            "spend_usd",
            "days_elapsed",
            "daily_burn_usd",
            "forecast_usd",
        ] {
            assert!(!month[key].is_null(), "{key}");
        }
        // Present even when null: the interval (none for the run rate of a store with
        // under 7 days) and the day the budget runs out.
        for key in [
            "forecast_low_usd",
            "forecast_high_usd",
            "budget_exhausted_on",
        ] {
            assert!(month.as_object().unwrap().contains_key(key), "{key}");
        }
        assert_eq!(month["method"], "run rate (under 7 days of history)");
        assert!(v["anomalies"].is_array());
        assert_eq!(v["source"]["rows"], 5);
        assert_eq!(v["source"]["rejected"], 2);
        assert_eq!(v["source"]["rejected_by_reason"]["non_finite_cost"], 2);
        assert_eq!(v["source"]["mode"], "tx_watermark");
        assert_eq!(v["source"]["too_old"], 1);
    }

    #[test]
    fn windows_format_shortest() {
        assert_eq!(format_window(Duration::from_secs(30 * 86_400)), "30d");
        assert_eq!(format_window(Duration::from_secs(3600 * 36)), "36h");
        assert_eq!(format_window(Duration::from_secs(90 * 60)), "90m");
    }
}
