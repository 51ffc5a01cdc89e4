//! `burnrate demo`: the dashboard on the built-in synthetic stream, no database.

use chrono::Utc;
use color_eyre::Result;
use tokio::sync::{mpsc, watch};

use super::context::Context;
use crate::app::keymap::Keymap;
use crate::app::run::run_tui;
use crate::app::state::App;
use crate::cli::DemoArgs;
use crate::money::Money;
use crate::source::demo::{DemoSettings, DemoStream, run_demo_recorded};
use crate::source::{RecentRequests, TopSource};

pub async fn demo(ctx: &Context, args: &DemoArgs) -> Result<()> {
    let settings = DemoSettings::from(args);
    // A budget the synthetic traffic lands near, so the gauges have something to
    // say; a configured budget wins.
    let expected =
        DemoStream::new(&settings, ctx.store_config(), Utc::now())?.expected_monthly_spend();
    let budget = ctx
        .cfg
        .budget
        .monthly_usd
        .unwrap_or_else(|| round_budget(expected));

    let (tx, rx) = mpsc::channel(256);
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let shutdown = async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    };
    let recent = RecentRequests::default();
    let task = tokio::spawn(run_demo_recorded(
        settings,
        ctx.store_config(),
        tx,
        shutdown,
        Some(recent.clone()),
    ));
    let keymap = Keymap::with_overrides(&ctx.cfg.keys).map_err(|e| color_eyre::eyre::eyre!(e))?;
    let app =
        App::new(ctx.new_store(), Some(budget), ctx.detect_params(), "demo").with_keymap(keymap);
    // The demo stream is always live: "refresh now" has nothing to fetch.
    let result = run_tui(app, rx, || {}, TopSource::Demo(recent)).await;
    let _ = stop_tx.send(true);
    match task.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "demo stream ended with an error"),
        Err(e) => tracing::warn!(error = %e, "demo task failed"),
        Ok(Ok(())) => {}
    }
    result.map(|_| ())
}

/// 110% of the expected spend, rounded up to a thousand dollars.
fn round_budget(expected: Money) -> Money {
    let thousands = (expected.as_f64() * 1.1 / 1000.0).ceil().max(1.0) as i64;
    Money::from_dollars(thousands * 1000)
}
