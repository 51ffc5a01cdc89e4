//! `burnrate` / `burnrate watch`: the live dashboard against PostgreSQL.

use color_eyre::Result;
use tokio::sync::mpsc;

use super::context::Context;
use crate::app::keymap::Keymap;
use crate::app::run::run_tui;
use crate::app::state::App;
use crate::source::TopSource;
use crate::source::pg::PgSource;
use crate::source::run::{SourceControl, run};

pub async fn watch(ctx: &Context) -> Result<()> {
    let target = ctx.connect_target()?;
    let mut opts = ctx.source_options()?;
    // The dashboard's store takes the hour shapes the source reads after the
    // backfill (see `source::shapes`).
    let store = ctx.new_store();
    opts.shapes_to = Some(store.shape_inbox());
    // The header's month-to-date before the history is in.
    opts.month_first = true;
    // Fail before taking over the terminal: an unreachable server or a wrong table
    // is a message on stderr, not a dashboard that never fills.
    drop(PgSource::connect(target.clone(), opts.clone()).await?);

    let keymap = Keymap::with_overrides(&ctx.cfg.keys).map_err(|e| color_eyre::eyre::eyre!(e))?;
    let alerts = start_alerts(ctx, &target).await?;
    let (tx, rx) = mpsc::channel(crate::source::run::CHANNEL_MESSAGES);
    let (control, handle) = SourceControl::new();
    let endpoint = target.endpoint.clone();
    let top = TopSource::Pg(Box::new((target.clone(), opts.clone())));
    let task = tokio::spawn(run(target, opts, tx, control));
    let app = App::new(
        store,
        ctx.cfg.budget.monthly_usd,
        ctx.detect_params(),
        &endpoint,
    )
    .with_keymap(keymap)
    .with_alerts(alerts);
    let refresh = handle.clone();
    let result = run_tui(app, rx, move || refresh.refresh_now(), top).await;
    handle.shutdown();
    match task.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "source ended with an error"),
        Err(e) => tracing::warn!(error = %e, "source task failed"),
        Ok(Ok(())) => {}
    }
    result.map(|_| ())
}

/// The alert engine for the dashboard: state shared in PostgreSQL (else a local
/// file), Slack if a webhook is configured, desktop notifications if a daemon
/// answers. A bad webhook setting stops the start with a clear message.
async fn start_alerts(
    ctx: &Context,
    target: &crate::source::ConnectTarget,
) -> Result<crate::app::alerts::AlertLink> {
    use crate::alert::Scopes;
    use crate::alert::desktop::{DEFAULT_PROBE_TIMEOUT, DesktopNotifier, OFF_IN_CONFIG};
    use crate::alert::engine::{AlertEngine, AlertSettings};
    use crate::alert::state::{AlertStore, local_state_file};

    let tenant = ctx.tenant();
    // What a dashboard evaluates: the detector's rules under this config, and both
    // monitor-health rules.
    let settings = AlertSettings::from_config(&ctx.cfg.alerts)?.with_scopes(Scopes::new(
        &ctx.detect_params(),
        tenant.as_deref(),
        &["database_unreachable", "no_events"],
    ));
    // On a read replica the shared state lives on the primary (`database.primary_url`).
    let store = AlertStore::open(
        Some(ctx.write_target()?),
        &ctx.cfg.database.table,
        local_state_file(&target.endpoint, &ctx.cfg.database.table, tenant.as_deref()),
    )
    .await;
    tracing::info!(state = %store.describe(), slack = settings.webhook.is_some(), "alerts ready");
    let (outcomes_tx, outcomes_rx) = mpsc::channel(64);
    let engine = AlertEngine::new(store, settings, Some(outcomes_tx))?;
    let desktop = if ctx.cfg.alerts.desktop {
        DesktopNotifier::probe(DEFAULT_PROBE_TIMEOUT).await
    } else {
        DesktopNotifier::disabled(OFF_IN_CONFIG)
    };
    Ok(crate::app::alerts::AlertLink::start(
        engine,
        outcomes_rx,
        Some(desktop),
    ))
}
