//! `burnrate simulate`: writes realistic synthetic cost events into PostgreSQL.
//!
//! First `--backfill-days` of history ending now, at `--backfill-rate` events/s on
//! average (daily and weekly rhythm, day-to-day noise), written with COPY in chunks
//! of 100,000 rows; then live traffic at a flat `--rate` events/s with one INSERT
//! transaction every 500 ms, for `--duration` or until Ctrl-C. The live phase starts
//! where the history ends, so the time the backfill took is filled in (at the live
//! rate) by its first batch. `--spike FEATURE:FACTOR` applies from now on, so only
//! to live traffic. The table must exist (`burnrate db init`).
//!
//! The same `--seed` draws the same events for the same start time; request ids
//! also depend on the start time, so repeated runs into one table never repeat ids.

use std::io::IsTerminal;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use color_eyre::eyre::{Result, WrapErr, bail};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_postgres::Client;

use crate::cli::SimulateArgs;
use crate::sim::{Generator, GeneratorConfig, RateShape, SimEvent, SpikeSpec};
use crate::source::schema::TableName;
use crate::source::writer::{self, WriteStats};

/// Users in the simulated population.
pub const SIMULATE_USERS: u32 = 5_000;

/// History density without live traffic to match, in events per second on average.
pub const DEFAULT_BACKFILL_RATE: f64 = 5.0;
/// Rows per COPY statement (one chunk is written entirely or not at all).
const COPY_CHUNK_ROWS: usize = 100_000;
/// Live traffic is inserted this often.
const LIVE_INTERVAL: StdDuration = StdDuration::from_millis(500);

/// What a run wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub backfill: WriteStats,
    pub live: WriteStats,
    /// Stopped by Ctrl-C (the chunk or batch being written was rolled back).
    pub interrupted: bool,
}

impl Summary {
    pub fn total(&self) -> WriteStats {
        let mut t = self.backfill;
        t.add(self.live);
        t
    }
}

/// How `execute` runs, besides the flags.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// End of the history and start of the spike.
    pub now: DateTime<Utc>,
    /// Draw progress bars on stderr.
    pub progress: bool,
    /// Becomes true to stop (Ctrl-C).
    pub stop: watch::Receiver<bool>,
}

/// The `simulate` command: writes, then prints a summary on stdout. Progress goes
/// to stderr unless `--quiet` or stderr is not a terminal.
pub async fn run(args: &SimulateArgs, client: &mut Client, table: &str) -> Result<()> {
    let (stop_tx, stop) = watch::channel(false);
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = stop_tx.send(true);
        }
    });
    let progress = !args.quiet && std::io::stderr().is_terminal();
    let result = execute(
        args,
        client,
        table,
        SimulateOptions {
            now: Utc::now(),
            progress,
            stop,
        },
    )
    .await;
    ctrl_c.abort();
    let s = result?;
    let total = s.total();
    if s.interrupted {
        println!("interrupted by Ctrl-C; everything committed before it is kept");
    }
    println!(
        "wrote {} rows to {table} ({} history over {} days, {} live); total cost {} (exactly ${})",
        group(total.rows),
        group(s.backfill.rows),
        args.backfill_days,
        group(s.live.rows),
        total.cost.display_usd(),
        total.cost,
    );
    Ok(())
}

fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Resolves when `stop` becomes true; never if the sender goes away first.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn progress_bar(show: bool, len: Option<u64>) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let (bar, template) = match len {
        Some(len) => (
            ProgressBar::new(len),
            "{spinner:.green} {prefix} [{bar:32.cyan/blue}] {percent:>3}% {msg} (eta {eta})",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{spinner:.green} {prefix} {msg} [{elapsed}]",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(StdDuration::from_millis(120));
    bar
}

fn stats_message(s: &WriteStats) -> String {
    format!("{} rows, {}", group(s.rows), s.cost.display_usd())
}

/// Writes the history and then live traffic as the flags say; returns what was
/// written. Does not create the table.
pub async fn execute(
    args: &SimulateArgs,
    client: &mut Client,
    table: &str,
    mut opts: SimulateOptions,
) -> Result<Summary> {
    let table = TableName::parse(table)?;
    for (what, v) in [
        ("--rate", args.rate),
        ("--backfill-rate", args.backfill_rate.unwrap_or(0.0)),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            bail!("{what} must be a number of events per second >= 0, got {v}");
        }
    }
    let now = opts.now;
    let spike = args.spike.as_ref().map(|s| SpikeSpec {
        feature: s.feature.clone(),
        factor: s.factor,
        from: now,
    });
    let mut generator = Generator::new(GeneratorConfig {
        seed: args.seed,
        users: SIMULATE_USERS,
        base_rate: DEFAULT_BACKFILL_RATE,
        shape: RateShape::Seasonal,
        noise: 1.0,
        spike,
        run_id: now.timestamp_micros() as u64,
    })
    .wrap_err("invalid simulate options")?;
    // History and live traffic share one average rate and one rhythm, so separate
    // runs (history now, a spike later) fit together.
    let history_rate = match args.backfill_rate {
        Some(rate) => rate,
        None if args.rate > 0.0 => args.rate,
        None => DEFAULT_BACKFILL_RATE,
    };
    generator.set_base_rate(history_rate)?;
    if let Some(t) = generator.spike_target() {
        tracing::info!(
            feature = t.feature,
            user = t.user,
            model = t.model,
            factor = t.factor,
            "simulated runaway"
        );
    }

    let mut summary = Summary::default();
    if args.backfill_days > 0 && history_rate > 0.0 {
        let start = now - Duration::days(i64::from(args.backfill_days));
        let bar = progress_bar(
            opts.progress,
            Some((now - start).num_seconds().max(1) as u64),
        );
        bar.set_prefix("history");
        let mut events = generator.events_between(start, now).peekable();
        while events.peek().is_some() {
            let chunk = events.by_ref().take(COPY_CHUNK_ROWS);
            tokio::select! {
                biased;
                _ = stopped(&mut opts.stop) => {
                    summary.interrupted = true;
                    break;
                }
                r = writer::copy_events(client, &table, chunk) => summary.backfill.add(r?),
            }
            let reached = events.peek().map_or(now, |e| e.at);
            bar.set_position((reached - start).num_seconds().max(0) as u64);
            bar.set_message(stats_message(&summary.backfill));
        }
        bar.finish_and_clear();
        tracing::info!(rows = summary.backfill.rows, cost = %summary.backfill.cost, "history written");
    }

    if summary.interrupted || args.rate <= 0.0 {
        return Ok(summary);
    }
    generator.set_base_rate(args.rate)?;
    if args.flat {
        generator.set_shape(RateShape::Flat);
    }
    let end = args
        .duration
        .and_then(|d| Duration::from_std(d).ok())
        .map(|d| Utc::now() + d);
    let bar = progress_bar(opts.progress, None);
    bar.set_prefix("live");
    let mut last = now;
    let mut tick = tokio::time::interval(LIVE_INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stopped(&mut opts.stop) => {
                summary.interrupted = true;
                break;
            }
            _ = tick.tick() => {}
        }
        let mut t = Utc::now();
        let finished = end.is_some_and(|e| t >= e);
        if let Some(e) = end.filter(|_| finished) {
            t = e;
        }
        let batch: Vec<SimEvent> = generator.events_between(last, t).collect();
        last = t;
        tokio::select! {
            biased;
            _ = stopped(&mut opts.stop) => {
                summary.interrupted = true;
                break;
            }
            r = writer::insert_events(client, &table, &batch) => {
                summary.live.add(r.wrap_err("writing live traffic")?);
            }
        }
        bar.set_message(stats_message(&summary.live));
        if finished {
            break;
        }
    }
    bar.finish_and_clear();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }
}
