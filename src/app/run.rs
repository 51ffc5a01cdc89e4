//! The terminal event loop: one task merges keys, source messages, ticks and
//! signals; state changes in `App`; a frame is drawn only when something changed.

use std::io::IsTerminal;
use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use crossterm::event::{Event, EventStream};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::state::{App, Command};
use crate::model::SourceMsg;

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Quit,
    Signal,
}

/// Colour unless `NO_COLOR` is set to anything non-empty (https://no-color.org).
pub fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Runs the dashboard until `q`, Ctrl-C, SIGTERM or SIGHUP. The terminal is restored
/// on every exit path, including errors (and panics, by ratatui's hook).
pub async fn run_tui(
    mut app: App,
    mut rx: mpsc::Receiver<SourceMsg>,
    refresh_now: impl Fn(),
) -> color_eyre::Result<Exit> {
    if !std::io::stdout().is_terminal() {
        color_eyre::eyre::bail!(
            "the dashboard needs a terminal on stdout; for scripts use `burnrate snapshot --json`"
        );
    }
    let mut terminal = ratatui::init();
    let result = event_loop(&mut terminal, &mut app, &mut rx, &refresh_now).await;
    ratatui::restore();
    result
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    rx: &mut mpsc::Receiver<SourceMsg>,
    refresh_now: &impl Fn(),
) -> color_eyre::Result<Exit> {
    let color = color_enabled();
    let mut input = EventStream::new();
    let mut tick = tokio::time::interval(StdDuration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut signals = Signals::new()?;
    let mut source_open = true;
    let min_gap = Duration::milliseconds(200);

    loop {
        app.rebuild_if_due(Utc::now(), min_gap);
        if app.dirty {
            terminal.draw(|frame| crate::ui::draw(frame, &app.screen(color)))?;
            app.dirty = false;
        }
        tokio::select! {
            ev = input.next() => match ev {
                Some(Ok(Event::Key(key))) => match app.on_key(key) {
                    Some(Command::Quit) => return Ok(Exit::Quit),
                    Some(Command::RefreshNow) => refresh_now(),
                    None => {}
                },
                Some(Ok(Event::Resize(_, _))) => app.dirty = true,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(Exit::Quit),
            },
            msg = rx.recv(), if source_open => match msg {
                Some(msg) => {
                    app.on_source(msg, Utc::now());
                    // Drain what is already queued so a burst costs one frame.
                    while let Ok(msg) = rx.try_recv() {
                        app.on_source(msg, Utc::now());
                    }
                }
                None => {
                    tracing::warn!("source task ended");
                    source_open = false;
                }
            },
            _ = tick.tick() => app.on_tick(Utc::now()),
            _ = signals.recv() => return Ok(Exit::Signal),
        }
    }
}

/// SIGTERM and SIGHUP end the dashboard cleanly (Ctrl-C arrives as a key in raw mode).
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                hup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.hup.recv() => {},
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await
    }
}
