//! The terminal event loop: one task merges keys, source messages, ticks and
//! signals; state changes in `App`; a frame is drawn only when something changed.

use std::io::IsTerminal;
use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use crossterm::event::{
    DisableMouseCapture, EnableMouseCapture, Event, EventStream, KeyCode, KeyEventKind,
    KeyModifiers,
};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::state::{App, Built, Command, TableGeometry};
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
        // Holding stdout keeps the event loop from drawing over the restored terminal
        // when another thread panicked; the hooks below end the process with it held.
        let mut out = std::io::stdout().lock();
        let _ = crossterm::execute!(out, DisableMouseCapture, crossterm::cursor::Show);
        hook(info);
    }));
    let result = event_loop(&mut terminal, &mut app, &mut rx, &refresh_now, top).await;
    let _ = crossterm::execute!(std::io::stdout(), DisableMouseCapture);
    ratatui::restore();
    let _ = crossterm::execute!(std::io::stdout(), crossterm::cursor::Show);
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
    let mut debug_panic = DebugPanic::from_env();
    // Level and overview builds read the store on their own thread; the loop keeps
    // answering keys, resizes and signals, and queues source messages meanwhile.
    let (built_tx, mut built_rx) = mpsc::unbounded_channel::<Built>();
    app.build_in_background();
    // The clock before the first frame: the header's month and day while loading.
    app.on_tick(Utc::now());

    loop {
        app.rebuild_if_due(Utc::now(), min_gap);
        if let Some(job) = app.take_build() {
            let tx = built_tx.clone();
            // A plain thread, not `spawn_blocking`: quitting must not wait for a
            // build (the runtime waits for its blocking tasks when it shuts down).
            std::thread::Builder::new()
                .name("burnrate-build".into())
                .spawn(move || {
                    let _ = tx.send(job.run());
                })?;
        }
        if app.dirty {
            draw_frame(terminal, |frame| crate::ui::draw(frame, &app.screen(color)))?;
            app.dirty = false;
            debug_panic.after_draw();
        }
        tokio::select! {
            ev = input.next() => match ev {
                Some(Ok(Event::Key(key)))
                    if key.kind != KeyEventKind::Release
                        && key.code == KeyCode::Char('z')
                        && key.modifiers.contains(KeyModifiers::CONTROL) =>
                {
                    suspend(terminal)?;
                    app.dirty = true;
                }
                Some(Ok(ev @ (Event::Key(_) | Event::Mouse(_)))) => {
                    // How far the help and the anomaly log scroll, for this key.
                    let size = terminal.size()?;
                    let limits = crate::ui::scroll_limits(&app.screen(color), size.width, size.height);
                    app.set_scroll_limits(limits);
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
            // While messages wait for the store (a build shares it), the channel
            // holds the rest: the source feels the back-pressure as before.
            msg = rx.recv(), if source_open && app.queued_messages() == 0 => match msg {
                Some(msg) => {
                    app.on_source(msg, Utc::now());
                    // Drain what is already queued so a burst costs one frame; a
                    // flood (a backfill faster than the screen) still gets a frame
                    // and a build every 100 ms, so its first rows show.
                    let until = std::time::Instant::now() + StdDuration::from_millis(100);
                    while app.queued_messages() == 0
                        && std::time::Instant::now() < until
                        && let Ok(msg) = rx.try_recv()
                    {
                        app.on_source(msg, Utc::now());
                    }
                }
                None => {
                    tracing::warn!("source task ended");
                    source_open = false;
                }
            },
            Some((seq, result)) = top_rx.recv() => app.on_top(seq, result),
            Some(built) = built_rx.recv() => app.on_built(built, Utc::now()),
            _ = spin.tick(), if app.top_loading() => app.spin(),
            _ = tokio::time::sleep(super::state::CHART_SETTLE), if app.chart_pending() => {}
            _ = tick.tick() => app.on_tick(Utc::now()),
            sig = signals.recv() => match sig {
                SignalAction::Quit => return Ok(Exit::Signal),
                SignalAction::Suspend => {
                    suspend(terminal)?;
                    app.dirty = true;
                }
            },
        }
    }
}

/// Draws one frame as a synchronized update (DEC mode 2026): a terminal that
/// knows it shows the frame whole, never half old and half new (over a slow SSH
/// link too); others ignore the two sequences. Tests read the end marker as the
/// end of a frame.
fn draw_frame(
    terminal: &mut ratatui::DefaultTerminal,
    render: impl FnOnce(&mut ratatui::Frame),
) -> std::io::Result<()> {
    crossterm::queue!(
        terminal.backend_mut(),
        crossterm::terminal::BeginSynchronizedUpdate
    )?;
    terminal.draw(render)?;
    crossterm::execute!(
        terminal.backend_mut(),
        crossterm::terminal::EndSynchronizedUpdate
    )
}

/// Where the drill-down table is for a terminal of this size.
fn table_geometry(app: &App, width: u16, height: u16) -> TableGeometry {
    let (first_row_y, rows) = crate::ui::drill_table_area(width, height, app.top_open());
    TableGeometry { first_row_y, rows }
}

/// Ctrl-Z (a key in raw mode) and SIGTSTP: give the terminal back as it was, stop
/// (SIGSTOP, which cannot be caught), and on SIGCONT (`fg`) take it again and redraw.
fn suspend(terminal: &mut ratatui::DefaultTerminal) -> color_eyre::Result<()> {
    tracing::info!("suspending (Ctrl-Z / SIGTSTP)");
    let _ = crossterm::execute!(std::io::stdout(), DisableMouseCapture);
    ratatui::restore();
    let _ = crossterm::execute!(std::io::stdout(), crossterm::cursor::Show);
    #[cfg(unix)]
    // SAFETY: raise only sends a signal to this process; SIGSTOP stops it here until
    // SIGCONT, then raise returns.
    unsafe {
        libc::raise(libc::SIGSTOP);
    }
    tracing::info!("resumed (SIGCONT)");
    crossterm::terminal::enable_raw_mode()?;
    crossterm::execute!(
        std::io::stdout(),
        crossterm::terminal::EnterAlternateScreen,
        crossterm::terminal::Clear(crossterm::terminal::ClearType::All),
        EnableMouseCapture
    )?;
    // The screen is blank now but ratatui still holds the last frame and would draw
    // only the difference: a blank frame first makes the next one repaint every
    // cell. (`Terminal::clear` would ask the terminal for the cursor position, which
    // not every terminal answers.)
    terminal.draw(|frame| frame.render_widget(ratatui::widgets::Clear, frame.area()))?;
    Ok(())
}

/// A hidden trigger for the test of the panic path (tests/pty_faults.rs), never for
/// use otherwise: `BURNRATE_DEBUG_PANIC=1` panics in the event loop right after the
/// first frame is drawn; `BURNRATE_DEBUG_PANIC=task` panics in a background task
/// instead (a panic anywhere must end the program the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DebugPanic {
    Off,
    EventLoop,
    Task,
}

impl DebugPanic {
    fn from_env() -> DebugPanic {
        match std::env::var("BURNRATE_DEBUG_PANIC").as_deref() {
            Ok("1") => DebugPanic::EventLoop,
            Ok("task") => DebugPanic::Task,
            _ => DebugPanic::Off,
        }
    }

    fn after_draw(&mut self) {
        let what = std::mem::replace(self, DebugPanic::Off);
        match what {
            DebugPanic::Off => {}
            DebugPanic::EventLoop => {
                panic!("BURNRATE_DEBUG_PANIC=1: a deliberate panic after the first frame")
            }
            DebugPanic::Task => {
                tokio::spawn(async {
                    panic!("BURNRATE_DEBUG_PANIC=task: a deliberate panic in a background task")
                });
            }
        }
    }
}

enum SignalAction {
    Quit,
    Suspend,
}

/// SIGTERM and SIGHUP end the dashboard cleanly (Ctrl-C arrives as a key in raw
/// mode); SIGTSTP (`kill -TSTP`, or Ctrl-Z where the terminal sends it) suspends.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
    #[cfg(unix)]
    tstp: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                hup: signal(SignalKind::hangup())?,
                tstp: signal(SignalKind::from_raw(libc::SIGTSTP))?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn recv(&mut self) -> SignalAction {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => SignalAction::Quit,
            _ = self.hup.recv() => SignalAction::Quit,
            _ = self.tstp.recv() => SignalAction::Suspend,
        }
        #[cfg(not(unix))]
        std::future::pending::<SignalAction>().await
    }
}
