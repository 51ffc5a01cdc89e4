//! `burnrate` / `burnrate watch`: the live dashboard against PostgreSQL.

use color_eyre::Result;
use tokio::sync::mpsc;

use super::context::Context;
use crate::app::keymap::Keymap;
use crate::app::run::run_tui;
use crate::app::state::App;
use crate::source::TopSource;
use crate::source::pg::{PgSource, SourceOptions};
use crate::source::run::{SourceControl, run};

pub async fn watch(ctx: &Context) -> Result<()> {
    let target = ctx.connect_target()?;
    let store_cfg = ctx.store_config();
    let opts = SourceOptions::new(&ctx.cfg.database, store_cfg);
    // Fail before taking over the terminal: an unreachable server or a wrong table
    // is a message on stderr, not a dashboard that never fills.
    drop(PgSource::connect(target.clone(), opts.clone()).await?);

    let keymap = Keymap::with_overrides(&ctx.cfg.keys).map_err(|e| color_eyre::eyre::eyre!(e))?;
    let (tx, rx) = mpsc::channel(256);
    let (control, handle) = SourceControl::new();
    let endpoint = target.endpoint.clone();
    let top = TopSource::Pg(Box::new((target.clone(), opts.clone())));
    let task = tokio::spawn(run(target, opts, tx, control));
    let app = App::new(
        ctx.new_store(),
        ctx.cfg.budget.monthly_usd,
        ctx.detect_params(),
        &endpoint,
    )
    .with_keymap(keymap);
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
