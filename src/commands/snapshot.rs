//! `burnrate snapshot --json [--follow]`: the dashboard's pipeline, headless.
//!
//! Same source, store and detection code as the TUI: one backfill, one tail poll,
//! one JSON object. With `--follow`, a poll every refresh interval and one JSON
//! object per line after each (JSON Lines).

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
use crate::source::run::backoff_delay;
use crate::store::Store;

pub async fn snapshot(ctx: &Context, args: &SnapshotArgs) -> Result<()> {
    if !args.json {
        bail!("snapshot prints JSON only for now: add --json (e.g. `burnrate snapshot --json`)");
    }
    let spec = SnapshotSpec {
        window: args.window.unwrap_or(ctx.cfg.view.window),
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
    let opts = ctx.source_options()?;
    let refresh = opts.refresh_interval;
    let mut source = PgSource::connect(target, opts).await?;
    let mut store = ctx.new_store();

    backfill(&mut store, &mut source).await?;
    poll(&mut store, &mut source).await?;
    print(&store, &spec, &mut source, !args.follow).await?;
    if !args.follow {
        return Ok(());
    }

    let mut failures = 0u32;
    loop {
        let wait = if failures == 0 {
            refresh
        } else {
            backoff_delay(failures - 1)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        store.prune(Utc::now());
        // A failed poll leaves the cursor where it was: the next one reads the same
        // rows again, so nothing is missed or counted twice.
        match poll(&mut store, &mut source).await {
            Ok(()) => {
                failures = 0;
                print(&store, &spec, &mut source, false).await?;
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

pub(crate) async fn backfill(store: &mut Store, source: &mut PgSource) -> Result<(), SourceError> {
    let (tx, rx) = mpsc::channel(64);
    pump(
        store,
        rx,
        async move { source.backfill(&tx, Utc::now()).await },
    )
    .await
}

pub(crate) async fn poll(store: &mut Store, source: &mut PgSource) -> Result<(), SourceError> {
    let (tx, rx) = mpsc::channel(64);
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
                SourceMsg::Status(_) => {}
            }
        }
    };
    let (result, ()) = tokio::join!(producer, consumer);
    result
}

/// Anomalies whose requests are looked up, most severe first: a few indexed queries
/// per snapshot, not one per anomaly of a bad day.
const ANOMALIES_WITH_REQUESTS: usize = 5;
/// Requests named per anomaly.
const REQUESTS_PER_ANOMALY: usize = 3;

/// The most expensive requests behind the first few anomalies. A failure here loses
/// only the examples, never the snapshot: it is logged and the list stays empty.
pub(crate) async fn add_requests(snap: &mut report::Snapshot, source: &mut PgSource) {
    let now = snap.generated_at;
    for a in snap.anomalies.iter_mut().take(ANOMALIES_WITH_REQUESTS) {
        let q = a.requests_query(now, REQUESTS_PER_ANOMALY);
        match source.top_requests(&q).await {
            Ok(rows) => a.top_requests = rows.iter().map(Into::into).collect(),
            Err(e) => {
                tracing::warn!(error = %e, rule = %a.anomaly.rule, "requests behind an anomaly");
                break;
            }
        }
    }
}

async fn print(
    store: &Store,
    spec: &SnapshotSpec,
    source: &mut PgSource,
    pretty: bool,
) -> Result<()> {
    let mode = source.mode().unwrap_or(TailMode::TxWatermark);
    let mut snap = report::build(store, Utc::now(), spec, mode, source.endpoint());
    add_requests(&mut snap, source).await;
    snap.source.watermark_lag_secs = source.last_status().and_then(|s| s.watermark_lag_secs);
    snap.source.computed_cost_rows = source.computed_cost_rows();
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
