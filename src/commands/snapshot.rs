//! `burnrate snapshot --json [--follow]`: the dashboard's pipeline, headless.
//!
//! Same source, store and detection code as the TUI: one backfill, one tail poll,
//! one JSON object. With `--follow`, a poll every refresh interval and one JSON
//! object per line after each (JSON Lines), woken early by `database.notify_channel`
//! and rolling the rollup as `watch` does (see `source::run`).

use std::io::Write;

use chrono::Utc;
use color_eyre::Result;
use color_eyre::eyre::bail;
use tokio::sync::mpsc;

use super::context::Context;
use crate::cli::SnapshotArgs;
use crate::model::{SourceMsg, TailMode};
use crate::report::{self, SnapshotSpec};
use crate::source::error::SourceError;
use crate::source::pg::PgSource;
use crate::source::run::{MIN_POLL_GAP, backoff_delay};
use crate::store::Store;

pub async fn snapshot(ctx: &Context, args: &SnapshotArgs) -> Result<()> {
    if !args.json {
        bail!("snapshot prints JSON only for now: add --json (e.g. `burnrate snapshot --json`)");
    }
    let spec = SnapshotSpec {
        window: args
            .window
            .as_ref()
            .map_or(ctx.cfg.view.window, |w| w.duration),
        window_label: args.window.as_ref().map(|w| w.text.clone()),
        top: args.top.unwrap_or(ctx.cfg.view.top),
        budget: ctx.cfg.budget.monthly_usd,
        detect: ctx.detect_params(),
    };
    if spec.window.as_secs() > ctx.store_config().retention_hours as u64 * 3600 {
        bail!(
            "--window is longer than the history kept; set view.window in the config to at least that"
        );
    }
    let target = ctx.connect_target()?;
    let mut opts = ctx.source_options()?;
    opts.store = ctx.one_shot_store_config();
    let store_config = opts.store;
    let refresh = opts.refresh_interval;
    let mut source = PgSource::new(target, opts)?;
    // As in `watch`: a NOTIFY on database.notify_channel polls at once.
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    if args.follow {
        source.wake_on_notify(wake.clone());
    }
    let mut store = Store::new(store_config, Utc::now());

    backfill(&mut store, &mut source).await?;
    poll(&mut store, &mut source).await?;
    if args.follow {
        source.maintain_rollup().await;
    }
    let mut cache = RequestCache::default();
    print(&store, &spec, &mut source, !args.follow, &mut cache).await?;
    if !args.follow {
        return Ok(());
    }

    let mut failures = 0u32;
    let mut started = std::time::Instant::now();
    loop {
        // Fixed rate: the interval counts from the start of the last poll.
        let wait = if failures == 0 {
            refresh.saturating_sub(started.elapsed())
        } else {
            backoff_delay(failures - 1)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            // Woken polls start at least MIN_POLL_GAP apart, as in `watch`.
            _ = wake.notified(), if failures == 0 => {
                tokio::select! {
                    _ = tokio::time::sleep((started + MIN_POLL_GAP).saturating_duration_since(std::time::Instant::now())) => {}
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                }
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        started = std::time::Instant::now();
        store.prune(Utc::now());
        // A failed poll leaves the cursor where it was: the next one reads the same
        // rows again, so nothing is missed or counted twice.
        match poll(&mut store, &mut source).await {
            Ok(()) => {
                failures = 0;
                // Rollup mode: the elected instance rolls what committed, as `watch`.
                source.maintain_rollup().await;
                print(&store, &spec, &mut source, false, &mut cache).await?;
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "snapshot --follow: poll failed; retrying");
                eprintln!("burnrate: {e} (retrying)");
                source.disconnect();
            }
        }
    }
}

/// The history, then where within its hours the big names spend (see
/// `source::shapes`; a failure there is logged and leaves the baselines even).
pub(crate) async fn backfill(store: &mut Store, source: &mut PgSource) -> Result<(), SourceError> {
    let (tx, rx) = mpsc::channel(crate::source::run::CHANNEL_MESSAGES);
    let now = Utc::now();
    pump(store, rx, async {
        source.backfill(&tx, now).await?;
        drop(tx);
        Ok(())
    })
    .await?;
    let mut kept = 0;
    match source
        .read_hour_shapes(now, |page| kept += store.add_hour_shapes(&page))
        .await
    {
        Ok(read) => tracing::debug!(read, kept, "hour shapes"),
        Err(e) => tracing::warn!(
            error = %e,
            "reading the hours' five-minute shapes failed; baselines spread those hours evenly"
        ),
    }
    Ok(())
}

pub(crate) async fn poll(store: &mut Store, source: &mut PgSource) -> Result<(), SourceError> {
    let (tx, rx) = mpsc::channel(crate::source::run::CHANNEL_MESSAGES);
    pump(store, rx, async move { source.poll(&tx).await.map(|_| ()) }).await
}

/// Runs one source step while applying what it sends to the store.
async fn pump(
    store: &mut Store,
    mut rx: mpsc::Receiver<SourceMsg>,
    producer: impl std::future::Future<Output = Result<(), SourceError>>,
) -> Result<(), SourceError> {
    let consumer = async {
        while let Some(msg) = rx.recv().await {
            match msg {
                SourceMsg::Backfill { batch, .. } | SourceMsg::Tail { batch, .. } => {
                    store.apply(&batch, Utc::now())
                }
                SourceMsg::Status(_) | SourceMsg::MonthSoFar { .. } => {}
            }
        }
    };
    let (result, ()) = tokio::join!(producer, consumer);
    result
}

/// Subjects (a dimension and a name) whose requests are looked up per snapshot, most
/// severe anomaly first: a few indexed queries, not one per anomaly of a bad day.
const SUBJECTS_WITH_REQUESTS: usize = 5;
/// Requests named per anomaly.
const REQUESTS_PER_ANOMALY: usize = 3;

/// The most expensive requests behind the anomalies. Anomalies on the same subject
/// (a spike, a runaway and a share rule on one user) share one lookup, made for the
/// most severe of them; at most `SUBJECTS_WITH_REQUESTS` subjects are looked up. A
/// failure here loses only the examples, never the snapshot: it is logged and the
/// lists stay empty. With `--follow`, the cache keeps a subject's requests for
/// `REQUESTS_REFRESH`: at thousands of rows a second each lookup filters an hour of
/// rows, and five of them every refresh made `--follow` fall behind.
pub(crate) async fn add_requests(
    snap: &mut report::Snapshot,
    source: &mut PgSource,
    cache: &mut RequestCache,
) {
    let now = snap.generated_at;
    cache.forget_older_than(std::time::Instant::now() - REQUESTS_REFRESH);
    let mut looked_up = 0;
    for a in snap.anomalies.iter_mut() {
        let key = (a.anomaly.dim, a.anomaly.name.clone());
        if let Some(rows) = cache.get(&key) {
            a.top_requests = rows.clone();
            continue;
        }
        if looked_up == SUBJECTS_WITH_REQUESTS {
            continue;
        }
        looked_up += 1;
        let q = a.requests_query(now, REQUESTS_PER_ANOMALY);
        match source.top_requests(&q).await {
            Ok(rows) => {
                a.top_requests = rows.iter().map(Into::into).collect();
                cache.put(key, a.top_requests.clone());
            }
            Err(e) => {
                tracing::warn!(error = %e, rule = %a.anomaly.rule, "requests behind an anomaly");
                break;
            }
        }
    }
}

/// How long `--follow` reuses an anomaly's requests.
const REQUESTS_REFRESH: std::time::Duration = std::time::Duration::from_secs(60);

/// The subject of an anomaly: its dimension and name.
type AnomalyKey = (crate::model::Dim, String);

/// The requests looked up per anomaly, with when.
#[derive(Default)]
pub(crate) struct RequestCache {
    entries:
        std::collections::HashMap<AnomalyKey, (Vec<report::RequestSample>, std::time::Instant)>,
}

impl RequestCache {
    fn get(&self, key: &AnomalyKey) -> Option<&Vec<report::RequestSample>> {
        self.entries.get(key).map(|(rows, _)| rows)
    }
    fn put(&mut self, key: AnomalyKey, rows: Vec<report::RequestSample>) {
        self.entries.insert(key, (rows, std::time::Instant::now()));
    }
    fn forget_older_than(&mut self, t: std::time::Instant) {
        self.entries.retain(|_, (_, at)| *at >= t);
    }
}

async fn print(
    store: &Store,
    spec: &SnapshotSpec,
    source: &mut PgSource,
    pretty: bool,
    cache: &mut RequestCache,
) -> Result<()> {
    let mode = source.mode().unwrap_or(TailMode::TxWatermark);
    let mut snap = report::build(store, Utc::now(), spec, mode, source.endpoint());
    // Users of a window that starts inside a day the store keeps coarse.
    if let Some((from, to)) = report::users_edge(store, snap.window_start) {
        let q = crate::model::GroupQuery {
            group: crate::model::Dim::User,
            path: Vec::new(),
            from,
            to,
        };
        let edge = source.group_totals(&q).await?;
        snap.by_user = report::users_with_edge(store, to, edge, Some(spec.top));
    }
    add_requests(&mut snap, source, cache).await;
    snap.source.watermark_lag_secs = source.last_status().and_then(|s| s.watermark_lag_secs);
    snap.source.replay_lag_secs = source.replay_lag().map(|l| l.secs);
    snap.source.computed_cost_rows = source.computed_cost_rows();
    snap.source.absent_names = source
        .absent_names()
        .iter()
        .map(|d| d.name().to_string())
        .collect();
    let mut out = std::io::stdout().lock();
    if pretty {
        serde_json::to_writer_pretty(&mut out, &snap)?;
    } else {
        serde_json::to_writer(&mut out, &snap)?;
    }
    // A closed pipe (`| head -1`) ends --follow quietly.
    if writeln!(out).and_then(|_| out.flush()).is_err() {
        std::process::exit(0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Dim;

    #[test]
    fn cached_requests_are_reused_until_they_are_a_refresh_old() {
        let mut cache = RequestCache::default();
        let key = (Dim::Feature, "support_qa".to_string());
        assert!(cache.get(&key).is_none());
        cache.put(key.clone(), Vec::new());
        assert!(cache.get(&key).is_some());
        let other = (Dim::User, "support_qa".to_string());
        assert!(cache.get(&other).is_none(), "keyed by dimension and name");
        cache.forget_older_than(std::time::Instant::now() - REQUESTS_REFRESH);
        assert!(cache.get(&key).is_some(), "fresh entries stay");
        cache.forget_older_than(std::time::Instant::now() + std::time::Duration::from_secs(1));
        assert!(cache.get(&key).is_none(), "old entries go");
    }
}
