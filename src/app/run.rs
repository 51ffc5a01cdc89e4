//! The terminal event loop: one task merges keys, source messages, ticks and
//! signals; state changes in `App`; a frame is drawn only when something changed.

use std::io::IsTerminal;
use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use crossterm::event::{DisableMouseCapture, EnableMouseCapture, Event, EventStream};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::state::{App, Command, TableGeometry};
use crate::model::{RequestRow, SourceMsg};
use crate::source::TopSource;

type TopAnswer = (u64, Result<Vec<RequestRow>, String>);

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
    top: TopSource,
) -> color_eyre::Result<Exit> {
    if !std::io::stdout().is_terminal() {
        color_eyre::eyre::bail!(
            "the dashboard needs a terminal on stdout; for scripts use `burnrate snapshot --json`"
        );
    }
    let mut terminal = ratatui::init();
    // Wheel and clicks where the terminal sends them; switched off on every exit,
    // panics included.
    let _ = crossterm::execute!(std::io::stdout(), EnableMouseCapture);
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = crossterm::execute!(std::io::stdout(), DisableMouseCapture);
        hook(info);
    }));
    let result = event_loop(&mut terminal, &mut app, &mut rx, &refresh_now, top).await;
    let _ = crossterm::execute!(std::io::stdout(), DisableMouseCapture);
    ratatui::restore();
    result
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    rx: &mut mpsc::Receiver<SourceMsg>,
    refresh_now: &impl Fn(),
    top: TopSource,
) -> color_eyre::Result<Exit> {
    let color = color_enabled();
    let (top_tx, mut top_rx) = mpsc::channel::<TopAnswer>(4);
    let mut top_task: Option<JoinHandle<()>> = None;
    let mut spin = tokio::time::interval(StdDuration::from_millis(120));
    spin.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let size = terminal.size()?;
    app.set_geometry(table_geometry(app, size.width, size.height));
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
                Some(Ok(ev @ (Event::Key(_) | Event::Mouse(_)))) => {
                    let was_open = app.top_open();
                    let cmd = match ev {
                        Event::Key(key) => app.on_key(key),
                        Event::Mouse(m) => app.on_mouse(m),
                        _ => None,
                    };
                    match cmd {
                        Some(Command::Quit) => return Ok(Exit::Quit),
                        Some(Command::RefreshNow) => refresh_now(),
                        Some(Command::FetchTop { seq, query }) => {
                            // Newest wins: a fetch still running is cancelled (its
                            // query too, see source::top).
                            if let Some(t) = top_task.take() {
                                t.abort();
                            }
                            let (top, tx) = (top.clone(), top_tx.clone());
                            top_task = Some(tokio::spawn(async move {
                                let r = top.fetch(&query).await;
                                let _ = tx.send((seq, r)).await;
                            }));
                        }
                        None => {}
                    }
                    if was_open != app.top_open() {
                        let size = terminal.size()?;
                        app.set_geometry(table_geometry(app, size.width, size.height));
                    }
                }
                Some(Ok(Event::Resize(w, h))) => {
                    app.set_geometry(table_geometry(app, w, h));
                    app.dirty = true;
                }
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
            Some((seq, result)) = top_rx.recv() => app.on_top(seq, result),
            _ = spin.tick(), if app.top_loading() => app.spin(),
            _ = tokio::time::sleep(super::state::CHART_SETTLE), if app.chart_pending() => {}
            _ = tick.tick() => app.on_tick(Utc::now()),
            _ = signals.recv() => return Ok(Exit::Signal),
        }
    }
}

/// Where the drill-down table is for a terminal of this size.
fn table_geometry(app: &App, width: u16, height: u16) -> TableGeometry {
    let (first_row_y, rows) = crate::ui::drill_table_area(width, height, app.top_open());
    TableGeometry { first_row_y, rows }
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
