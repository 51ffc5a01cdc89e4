//! `burnrate check [--json] [--dry-run]`: one alert evaluation, for cron or a
//! systemd timer. The same source, store, detection and alert lifecycle as the
//! dashboard, through the same shared state and dedupe: a message another monitor
//! already sent is not sent again. Prints the firing alerts.
//!
//! Exit codes: 0 nothing firing, 1 something firing, 2 an error.

use crate::store::Store;
use std::io::Write;
use std::time::Duration;

use chrono::Utc;
use color_eyre::Result;
use color_eyre::eyre::eyre;
use serde_json::json;

use super::context::Context;
use super::snapshot::{backfill, poll};
use crate::alert::engine::{AlertEngine, AlertSettings, eval_now, observations};
use crate::alert::health;
use crate::alert::state::{AlertStore, local_state_file};
use crate::alert::{Alert, Book, Evaluation, Message, Phase, Policy, Scopes};
use crate::cli::CheckArgs;
use crate::detect::detect_with_state;
use crate::source::pg::{PgSource, SourceOptions};

/// How long `check` waits for Slack before it gives up on a message.
const DELIVERY_WAIT: Duration = Duration::from_secs(120);

/// Runs one check; `Ok(true)` when alerts are firing.
pub async fn check(ctx: &Context, args: &CheckArgs) -> Result<bool> {
    let target = ctx.connect_target()?;
    let tenant = ctx.tenant();
    // What a check evaluates: the detector's rules under this config, and no new
    // events (an unreachable database is an error of the check, exit 2).
    let settings = AlertSettings::from_config(&ctx.cfg.alerts)?.with_scopes(Scopes::new(
        &ctx.detect_params(),
        tenant.as_deref(),
        &["no_events"],
    ));
    let store_config = ctx.one_shot_store_config();
    let mut opts = SourceOptions::new(&ctx.cfg.database, store_config);
    opts.primary = ctx.primary_target()?;
    let mut source = PgSource::connect(target.clone(), opts).await?;
    let mut store = Store::new(store_config, Utc::now());
    backfill(&mut store, &mut source).await?;
    poll(&mut store, &mut source).await?;

    let now = eval_now(Utc::now());
    let params = ctx.detect_params();
    let (found, dstate) = detect_with_state(&store, now, &params);
    let mut seen = observations(&found, &dstate, &params);
    if let Some(o) = health::no_events(&store, &target.endpoint, now, &settings.health) {
        seen.push((o, crate::alert::Hold::Confirmed));
    }

    // On a read replica the shared state lives on the primary (`database.primary_url`).
    let state = AlertStore::open(
        Some(ctx.write_target()?),
        &ctx.cfg.database.table,
        local_state_file(&target.endpoint, &ctx.cfg.database.table, tenant.as_deref()),
    )
    .await;
    let min = settings.policy.min_severity;
    let policy = settings.policy.clone();
    let slack_on = settings.webhook.is_some();
    let mut engine = AlertEngine::new(state, settings, None)?;
    let round = engine
        .round(
            Evaluation {
                now,
                observations: seen,
            },
            args.dry_run,
        )
        .await?;

    // Said after the round: a role found read-only only when writing falls back then.
    let shared = engine.store.is_shared();
    let state_text = engine.store.describe();
    if !shared {
        eprintln!("burnrate: alert state: {state_text}");
    }
    let mut delivered = Vec::new();
    for (m, rx) in round.deliveries {
        let result = match tokio::time::timeout(DELIVERY_WAIT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(crate::alert::slack::SlackError::Closed),
            Err(_) => Err(crate::alert::slack::SlackError::GaveUp {
                attempts: 0,
                last: format!("no result within {} s", DELIVERY_WAIT.as_secs()),
            }),
        };
        engine.record(&m, &result).await;
        delivered.push((m, result));
    }

    let book = &round.book;
    let database = engine.store.database().to_string();
    let firing: Vec<&Alert> = book.firing();
    // Without a webhook nothing is claimed: a copy with one announces them.
    let waiting = if slack_on || args.dry_run {
        0
    } else {
        unannounced(book, &policy, now)
    };
    let paging = firing.iter().any(|a| a.severity() >= min);
    let mut out = std::io::stdout().lock();
    if args.json {
        let v = json!({
            "generated_at": now,
            "database": database,
            "dry_run": args.dry_run,
            "state": state_text,
            "shared_state": shared,
            "firing": firing.iter().map(|a| alert_json(a, book, now)).collect::<Vec<_>>(),
            "pending": book.alerts.values().filter(|a| a.phase == Phase::Pending)
                .map(|a| alert_json(a, book, now)).collect::<Vec<_>>(),
            "silences": book.active_silences(now),
            "messages": round.messages.iter().map(|m| message_json(m, &delivered, args.dry_run)).collect::<Vec<_>>(),
            "unannounced": waiting,
        });
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
    } else {
        if firing.is_empty() {
            writeln!(out, "no alerts firing")?;
        }
        for a in &firing {
            let o = &a.observation;
            let mut notes = Vec::new();
            if a.acked.is_some() {
                notes.push("acknowledged");
            }
            if book.is_silenced(a, now) {
                notes.push("silenced");
            }
            if a.severity() < min {
                notes.push("not paged");
            }
            let notes = if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join(", "))
            };
            writeln!(
                out,
                "FIRING {} {} {}{}: {}",
                a.severity().name(),
                o.rule,
                crate::ui::text::sanitize(&o.subject()),
                notes,
                crate::ui::text::sanitize(&o.summary)
            )?;
        }
        if waiting > 0 {
            writeln!(
                out,
                "not announced here: {waiting} alert(s) (no Slack webhook: set \
                 BURNRATE_SLACK_WEBHOOK_URL); a monitor or check with one sends them"
            )?;
        }
        for m in &round.messages {
            let what = if args.dry_run {
                "would send".to_string()
            } else {
                match delivered.iter().find(|(d, _)| d.keys() == m.keys()) {
                    Some((_, Ok(_))) => "sent to Slack".to_string(),
                    Some((_, Err(e))) if e.is_config() => format!("NOT sent to Slack: {e}"),
                    Some((_, Err(e))) => {
                        format!("NOT sent to Slack (the next check sends it again): {e}")
                    }
                    None => "NOT sent to Slack: the queue refused it".to_string(),
                }
            };
            writeln!(
                out,
                "{what}: {} message, {} alert(s)",
                m.kind.name(),
                m.alerts.len()
            )?;
        }
    }
    out.flush()?;
    // A configuration error of Slack is an error of the check: cron should say so.
    if let Some((_, Err(e))) = delivered
        .iter()
        .find(|(_, r)| r.as_ref().is_err_and(|e| e.is_config()))
    {
        return Err(eyre!("{e}"));
    }
    Ok(paging)
}

/// Firing alerts that would page but have not been announced in their episode:
/// left for a copy with a webhook.
fn unannounced(book: &Book, policy: &Policy, now: chrono::DateTime<Utc>) -> usize {
    book.firing()
        .into_iter()
        .filter(|a| {
            a.notifications == 0
                && a.severity() >= policy.min_severity
                && !book.is_silenced(a, now)
                && now - a.last_seen <= policy.keep_firing_for
        })
        .count()
}

fn alert_json(a: &Alert, book: &Book, now: chrono::DateTime<Utc>) -> serde_json::Value {
    let o = &a.observation;
    json!({
        "fingerprint": a.fingerprint,
        "rule": o.rule,
        "labels": o.labels,
        "state": a.phase.name(),
        "severity": o.severity,
        "summary": o.summary,
        "window": o.window,
        "observed_usd": o.observed,
        "expected_usd": o.expected,
        "contributors": o.contributors,
        "hint": o.hint,
        "firing_since": a.episode,
        "acknowledged": a.acked.is_some(),
        "silenced": book.is_silenced(a, now),
    })
}

fn message_json(
    m: &Message,
    delivered: &[(
        Message,
        Result<crate::alert::slack::Delivered, crate::alert::slack::SlackError>,
    )],
    dry_run: bool,
) -> serde_json::Value {
    let status = if dry_run {
        "dry_run".to_string()
    } else {
        match delivered.iter().find(|(d, _)| d.keys() == m.keys()) {
            Some((_, Ok(_))) => "sent".to_string(),
            Some((_, Err(e))) => format!("failed: {e}"),
            None => "dropped".to_string(),
        }
    };
    json!({
        "kind": m.kind,
        "fingerprints": m.alerts.iter().map(|a| a.fingerprint.clone()).collect::<Vec<_>>(),
        "status": status,
    })
}
