//! The long-running source task of the dashboard and `snapshot --follow`: connect,
//! backfill, then poll every refresh interval or on demand; on failure report
//! Disconnected, back off, reconnect and resume from the cursor.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use tokio::sync::{Notify, mpsc, watch};

use super::connect::ConnectTarget;
use super::error::SourceError;
use super::pg::{PgSource, SourceOptions};
use crate::model::{Connection, SourceMsg};

pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Messages the source may have in flight to whoever applies them. A backfill
/// message holds up to `FACTS_PER_MESSAGE` groups (megabytes of names): with room
/// for hundreds, the whole history sat in the channel while the store caught up,
/// which was most of the 1.2 GB peak in BENCHMARKS.md. A few are enough to keep
/// the server working while the store applies.
pub const CHANNEL_MESSAGES: usize = 4;
/// Groups per backfill message at most (a day of a busy table has hundreds of
/// thousands). A page of rows and its batch are about 9 MB at 20,000 groups;
/// 10,000 took 8 MB off the benchmark's peak with the same cold start.
pub const FACTS_PER_MESSAGE: usize = 10_000;
/// Polls woken by notifications (or `r`) start at least this far apart, so a table
/// taking thousands of insert statements a second costs ten polls a second, not
/// thousands.
pub const MIN_POLL_GAP: Duration = Duration::from_millis(100);

/// What the task listens to.
pub struct SourceControl {
    /// Poll now instead of at the next interval (or retry now while disconnected).
    pub refresh: Arc<Notify>,
    /// The task stops when this becomes true or its sender is dropped.
    pub shutdown: watch::Receiver<bool>,
}

/// The other end of `SourceControl`, kept by whoever runs the task.
#[derive(Clone)]
pub struct SourceHandle {
    refresh: Arc<Notify>,
    shutdown: Arc<watch::Sender<bool>>,
}

impl SourceControl {
    pub fn new() -> (SourceControl, SourceHandle) {
        let refresh = Arc::new(Notify::new());
        let (tx, rx) = watch::channel(false);
        (
            SourceControl {
                refresh: refresh.clone(),
                shutdown: rx,
            },
            SourceHandle {
                refresh,
                shutdown: Arc::new(tx),
            },
        )
    }
}

impl SourceHandle {
    pub fn refresh_now(&self) {
        self.refresh.notify_one();
    }
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

/// Resolves when shutdown is asked for (or nobody can ask any more).
async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Capped exponential backoff with jitter: attempt 0 waits about 0.5 s, doubling to
/// 30 s; each wait is drawn from [half, full] so many clients do not retry in step.
pub fn backoff_delay(failures: u32) -> Duration {
    let full = BACKOFF_MIN
        .saturating_mul(1u32 << failures.min(16))
        .min(BACKOFF_MAX);
    let factor: f64 = rand::rng().random_range(0.5..=1.0);
    full.mul_f64(factor).max(BACKOFF_MIN)
}

/// Runs the source until shutdown. Returns `Ok` on shutdown or when the receiver is
/// gone, and `Err` only for mistakes retrying cannot fix (an invalid table name);
/// every other failure is reported as `Disconnected` and retried.
///
/// A completed backfill is never repeated: the tail resumes from its cursor on the
/// new connection. An interrupted backfill resumes with increments only (see
/// `backfill.rs`), so the receiver just adds every message it gets.
pub async fn run(
    target: ConnectTarget,
    opts: SourceOptions,
    tx: mpsc::Sender<SourceMsg>,
    mut control: SourceControl,
) -> Result<(), SourceError> {
    let refresh_interval = opts.refresh_interval;
    let mut source = match PgSource::new(target.clone(), opts) {
        Ok(mut s) => {
            s.wake_on_notify(control.refresh.clone());
            s
        }
        Err(e) => {
            let status = crate::model::SourceStatus {
                endpoint: target.endpoint.clone(),
                connection: Connection::Disconnected {
                    error: e.to_string(),
                    since: Utc::now(),
                },
                mode: crate::model::TailMode::TxWatermark,
                watermark_lag_secs: None,
                absent: Vec::new(),
                note: None,
                replay_lag: None,
            };
            let _ = tx.send(SourceMsg::Status(status)).await;
            return Err(e);
        }
    };
    if source.report(&tx, Connection::Connecting).await.is_err() {
        return Ok(());
    }
    let mut failures: u32 = 0;
    let mut down_since = None;
    loop {
        let started = tokio::time::Instant::now();
        let step = async {
            source.backfill(&tx, Utc::now()).await?;
            let polled = source.poll(&tx).await?;
            // Once, after the first screen: where within the backfilled hours the
            // big names spend (recurring jobs in their own baselines).
            source.send_hour_shapes(Utc::now()).await;
            // Rollup mode: the elected instance adds what committed since its last roll.
            source.maintain_rollup().await;
            Ok(polled)
        };
        let result = tokio::select! {
            r = step => r,
            _ = shutdown_requested(&mut control.shutdown) => return Ok(()),
        };
        let wait = match result {
            Ok(_) => {
                failures = 0;
                down_since = None;
                // Fixed rate: the interval runs from the start of the poll, so a row
                // waits at most one interval (plus a poll), not interval + poll time.
                refresh_interval.saturating_sub(started.elapsed())
            }
            Err(SourceError::ChannelClosed) => return Ok(()),
            Err(e) => {
                source.disconnect();
                // The server answered but the statement failed (a column dropped or
                // retyped under us, say): check the table again at once, so the
                // message names the column and the fix rather than the raw error.
                let e = if matches!(e, SourceError::Query { .. }) {
                    let checked = tokio::select! {
                        r = source.ensure_connected() => r,
                        _ = shutdown_requested(&mut control.shutdown) => return Ok(()),
                    };
                    match checked {
                        Err(checked) => {
                            source.disconnect();
                            checked
                        }
                        Ok(()) => e,
                    }
                } else {
                    e
                };
                let since = *down_since.get_or_insert_with(Utc::now);
                tracing::warn!(error = %e, failures, "PostgreSQL source failed; will retry");
                let connection = Connection::Disconnected {
                    error: e.to_string(),
                    since,
                };
                if source.report(&tx, connection).await.is_err() {
                    return Ok(());
                }
                if !e.is_retryable() {
                    return Err(e);
                }
                let delay = backoff_delay(failures);
                failures = failures.saturating_add(1);
                delay
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = control.refresh.notified() => {
                tokio::select! {
                    _ = tokio::time::sleep_until(started + MIN_POLL_GAP) => {}
                    _ = shutdown_requested(&mut control.shutdown) => return Ok(()),
                }
            }
            _ = shutdown_requested(&mut control.shutdown) => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        for _ in 0..50 {
            assert_eq!(backoff_delay(0), BACKOFF_MIN);
            let d3 = backoff_delay(3);
            assert!(
                d3 >= Duration::from_secs(2) && d3 <= Duration::from_secs(4),
                "{d3:?}"
            );
            let big = backoff_delay(40);
            assert!(big >= BACKOFF_MAX / 2 && big <= BACKOFF_MAX, "{big:?}");
        }
    }

    #[tokio::test]
    async fn invalid_table_name_stops_at_once_with_a_status() {
        let target = ConnectTarget::from_url("postgres://u@127.0.0.1:1/db").unwrap();
        let opts = SourceOptions::new(
            &crate::config::DatabaseConfig {
                table: "bad name".into(),
                ..Default::default()
            },
            Default::default(),
        );
        let (tx, mut rx) = mpsc::channel(8);
        let (control, _handle) = SourceControl::new();
        let err = run(target, opts, tx, control).await.unwrap_err();
        assert!(matches!(err, SourceError::InvalidTableName { .. }));
        let Some(SourceMsg::Status(s)) = rx.recv().await else {
            panic!("no status")
        };
        assert!(matches!(s.connection, Connection::Disconnected { .. }));
    }

    #[tokio::test]
    async fn shutdown_ends_the_retry_loop() {
        // Nothing listens on port 1: the task keeps retrying until told to stop.
        let target = ConnectTarget::from_url("postgres://u@127.0.0.1:1/db").unwrap();
        let opts = SourceOptions::new(&Default::default(), Default::default());
        let (tx, mut rx) = mpsc::channel(8);
        let (control, handle) = SourceControl::new();
        let task = tokio::spawn(run(target, opts, tx, control));
        let mut saw_disconnected = false;
        while let Some(SourceMsg::Status(s)) = rx.recv().await {
            if let Connection::Disconnected { error, .. } = s.connection {
                assert!(error.contains("cannot connect"), "{error}");
                saw_disconnected = true;
                break;
            }
        }
        assert!(saw_disconnected);
        handle.shutdown();
        let r = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops promptly");
        assert!(r.unwrap().is_ok());
    }
}
