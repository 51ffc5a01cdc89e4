//! The dashboard's state and its one `update` path: source messages, keys and
//! ticks change state here; rendering only reads it.

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};

use super::drill::{self, Change, Level, Nav, Window};
use super::keymap::{Action, Keymap};
use super::overview::build_overview;
use super::progress::Coverage;
use super::view::{
    AlertPart, AlertPartKind, BackfillProgress, DrillView, Overview, Screen, ScrollLimits,
    StatusView, TopState,
};
use crate::detect::{DetectParams, DetectorState, rule_family};
use crate::model::{Connection, Dim, RequestRow, SourceMsg, SourceStatus, TopQuery};
use crate::money::Money;
use crate::store::Store;

/// What the event loop must do besides redrawing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Quit,
    /// Ask the source to poll now.
    RefreshNow,
    /// Fetch the most expensive requests; `seq` identifies the answer that counts
    /// (newest wins: an earlier fetch still running is cancelled or ignored).
    FetchTop {
        seq: u64,
        query: TopQuery,
    },
}

/// How long the selection must rest before the selected row's chart follows it
/// (so holding an arrow key through 100,000 rows never waits for charts).
pub const CHART_SETTLE: std::time::Duration = std::time::Duration::from_millis(120);

/// Requests listed in the "top requests" pane.
pub const TOP_LIMIT: usize = 20;

/// A rebuild of a view model from the store, to run off the event loop (see
/// `App::take_build`). It shares the store until it finishes; meanwhile source
/// messages wait in the App's queue.
pub struct BuildJob {
    seq: u64,
    store: Arc<Store>,
    now: DateTime<Utc>,
    what: BuildWhat,
}

enum BuildWhat {
    Level {
        nav: Nav,
        level: Level,
        coverage: Coverage,
    },
    Overview {
        budget: Option<Money>,
        params: Box<DetectParams>,
        detector: DetectorState,
        coverage: Coverage,
    },
}

/// A finished `BuildJob`, for `App::on_built`.
pub struct Built {
    seq: u64,
    now: DateTime<Utc>,
    /// The store generation it was built from.
    generation: u64,
    cost: std::time::Duration,
    what: BuiltWhat,
}

enum BuiltWhat {
    Level(Box<DrillView>),
    Overview(Box<Overview>, DetectorState),
}

impl BuildJob {
    /// Runs the build, on any thread. The store is released before the result is
    /// returned, so the App can apply the queued messages as soon as it gets it.
    pub fn run(self) -> Built {
        let started = std::time::Instant::now();
        let BuildJob {
            seq,
            store,
            now,
            what,
        } = self;
        let generation = store.generation();
        let what = match what {
            BuildWhat::Level {
                nav,
                level,
                coverage,
            } => BuiltWhat::Level(Box::new(drill::build_level_loading(
                &store, &nav, &level, now, coverage,
            ))),
            BuildWhat::Overview {
                budget,
                params,
                mut detector,
                coverage,
            } => {
                let o = build_overview(&store, now, budget, &params, &mut detector, coverage);
                BuiltWhat::Overview(Box::new(o), detector)
            }
        };
        drop(store);
        Built {
            seq,
            now,
            generation,
            cost: started.elapsed(),
            what,
        }
    }

    /// Whether it builds a drill-down level (else the overview).
    pub fn is_level(&self) -> bool {
        matches!(self.what, BuildWhat::Level { .. })
    }
}

/// Where the drill-down table sits on screen, from the UI's layout: its first row
/// and how many rows it shows (for paging, scrolling and mouse clicks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableGeometry {
    pub first_row_y: u16,
    pub rows: usize,
}

/// Events per second over a sliding window of tail batches.
#[derive(Debug, Default, Clone)]
struct RateMeter {
    samples: VecDeque<(DateTime<Utc>, u64)>,
}

impl RateMeter {
    const WINDOW_SECS: i64 = 10;

    fn record(&mut self, at: DateTime<Utc>, rows: u64) {
        self.samples.push_back((at, rows));
        self.trim(at);
    }
    fn trim(&mut self, now: DateTime<Utc>) {
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now - *t > Duration::seconds(Self::WINDOW_SECS))
        {
            self.samples.pop_front();
        }
    }
    fn per_sec(&self) -> f64 {
        let rows: u64 = self.samples.iter().map(|(_, n)| n).sum();
        rows as f64 / Self::WINDOW_SECS as f64
    }
}

pub struct App {
    /// Shared with the build running off the loop, if any; written only when not
    /// shared (`Arc::get_mut`), so a build never sees it change.
    pub store: Arc<Store>,
    pub overview: Overview,
    pub status: StatusView,
    pub backfill: Option<BackfillProgress>,
    pub selected: usize,
    pub budget: Option<Money>,
    pub params: DetectParams,
    /// The detector's pending state, carried from one rebuild to the next.
    pub detector: DetectorState,
    /// The screen must be drawn again.
    pub dirty: bool,
    /// The store changed since the overview was built.
    data_changed: bool,
    last_built: Option<DateTime<Utc>>,
    rate: RateMeter,
    /// The history is in; late "backfilling" statuses no longer hide the overview.
    history_loaded: bool,
    pub show_help: bool,
    help: Vec<(String, String)>,
    /// Lines the help is scrolled by.
    help_scroll: usize,
    /// The anomaly log (`n`) while open: lines it is scrolled by.
    anomaly_log: Option<usize>,
    /// How far the help and the log scroll at the terminal's size (from the UI).
    limits: ScrollLimits,
    keymap: Keymap,
    /// The drill-down's navigation; no level open means the overview.
    pub nav: Nav,
    /// The open level's view model (rows built on change, never per frame).
    pub drill: Option<DrillView>,
    /// What navigation invalidated since the last rebuild.
    pending: Change,
    /// The store generation the drill view was built from.
    drill_generation: u64,
    /// When the drill view was last built, and how long that took.
    drill_built: Option<DateTime<Utc>>,
    drill_cost: std::time::Duration,
    /// The selection moved and the chart has not followed yet.
    selection_moved: Option<std::time::Instant>,
    /// Terminal size, for page length and mouse hit-testing.
    geometry: TableGeometry,
    pub top: TopState,
    /// The sequence number of the newest top-requests fetch.
    top_seq: u64,
    /// Which anomaly `a` opens next.
    anomaly_cursor: usize,
    /// The alert engine's task (watch only), and the anomaly `a` opened last.
    pub alerts: Option<super::alerts::AlertLink>,
    alert_selected: Option<crate::detect::Anomaly>,
    /// The last silence from the keyboard: (fingerprint, hours, when).
    last_silence: Option<(String, i64, DateTime<Utc>)>,
    /// `Z` was pressed: the alert's matchers, its name, and the time typed so far.
    silence_prompt: Option<(crate::alert::Labels, String, String)>,
    /// The alerts and silences pane (`L`), while open.
    alerts_pane: Option<super::alerts::AlertsPane>,
    /// Builds run off the event loop (`take_build`, `on_built`); else inline.
    background: bool,
    /// A build handed out by `rebuild_if_due` and not yet taken by the loop.
    job: Option<BuildJob>,
    /// The build running (its sequence number, and whether it is a level's): one
    /// at a time, the next one starts from the navigation of when it lands.
    in_flight: Option<(u64, bool)>,
    build_seq: u64,
    /// Navigation asked for the level to be rebuilt from the store.
    build_wanted: bool,
    /// Source messages (and when they arrived) waiting for the store to be free,
    /// applied in order.
    queued: VecDeque<(SourceMsg, DateTime<Utc>)>,
}

impl App {
    pub fn new(store: Store, budget: Option<Money>, params: DetectParams, endpoint: &str) -> Self {
        App {
            store: Arc::new(store),
            overview: Overview::default(),
            status: StatusView {
                endpoint: endpoint.to_string(),
                ..Default::default()
            },
            backfill: Some(BackfillProgress::default()),
            selected: 0,
            budget,
            params,
            detector: DetectorState::default(),
            dirty: true,
            data_changed: true,
            last_built: None,
            rate: RateMeter::default(),
            history_loaded: false,
            show_help: false,
            help: Keymap::default().help_lines(),
            help_scroll: 0,
            anomaly_log: None,
            limits: ScrollLimits::default(),
            keymap: Keymap::default(),
            nav: Nav::default(),
            drill: None,
            pending: Change::None,
            drill_generation: 0,
            drill_built: None,
            drill_cost: std::time::Duration::ZERO,
            selection_moved: None,
            geometry: TableGeometry {
                first_row_y: 0,
                rows: 10,
            },
            top: TopState::Closed,
            top_seq: 0,
            anomaly_cursor: 0,
            alerts: None,
            alert_selected: None,
            last_silence: None,
            silence_prompt: None,
            alerts_pane: None,
            background: false,
            job: None,
            in_flight: None,
            build_seq: 0,
            build_wanted: false,
            queued: VecDeque::new(),
        }
    }

    /// Runs alerts: evaluations after store updates go to the alert task.
    pub fn with_alerts(mut self, link: super::alerts::AlertLink) -> Self {
        self.alerts = Some(link);
        self
    }

    /// Hands an alert evaluation to the alert task (never waiting), at most every
    /// 10 s after a rebuild, and every 30 s regardless (the database may be down).
    fn queue_alert_eval(&mut self, now: DateTime<Utc>, min_gap: Duration) {
        let Some(link) = &self.alerts else { return };
        // Never from a partial history: a baseline over days not read yet pages
        // falsely (and an overview built from one has no anomalies to resolve by).
        let partial = self.backfill.is_some() || self.overview.pending.is_some();
        if partial || link.last_eval.is_some_and(|t| now - t < min_gap) {
            return;
        }
        if self.in_flight.is_some_and(|(_, level)| !level) {
            return; // the detector is with the overview's build; evaluated when it lands
        }
        let eval = super::alerts::evaluation(self, &link.health, now);
        if let Some(link) = &mut self.alerts
            && link.request(super::alerts::AlertRequest::Evaluate(eval))
        {
            link.last_eval = Some(now);
        }
    }

    /// The alert the keys act on: the anomaly `a` opened last, else the top one.
    fn selected_alert(&self) -> Option<crate::alert::Observation> {
        let a = self
            .alert_selected
            .as_ref()
            .filter(|s| {
                self.overview.anomalies.iter().any(|a| {
                    // A spike stays selected when its strongest window moves.
                    rule_family(&a.rule) == rule_family(&s.rule)
                        && a.dim == s.dim
                        && a.name == s.name
                })
            })
            .or_else(|| self.overview.anomalies.first())?;
        Some(crate::alert::Observation::from_anomaly(a))
    }

    fn alert_key(&mut self, action: Action, now: DateTime<Utc>) {
        use super::alerts::AlertRequest as R;
        if self.alerts.is_none() {
            return;
        }
        // (fingerprint, matchers, subject) of the alert the keys act on: the
        // anomaly `a` opened last or the top anomaly, else the most severe firing
        // alert (a monitor-health alert has no anomaly row).
        let selected = match self.selected_alert() {
            Some(o) => {
                let mut m = o.labels.clone();
                m.insert("rule".into(), o.rule.clone());
                Some((o.fingerprint(), m, o.subject()))
            }
            None => self.alerts.as_ref().and_then(|l| {
                l.summary
                    .alerts
                    .iter()
                    .find(|a| a.phase == "firing")
                    .map(|a| (a.fingerprint.clone(), a.matchers.clone(), a.subject.clone()))
            }),
        };
        let matchers = selected.as_ref().map(|(_, m, _)| m.clone());
        let req = match (action, &selected) {
            (Action::ListSilences, _) => {
                if self.alerts_pane.take().is_none() {
                    self.alerts_pane = Some(super::alerts::AlertsPane::default());
                    self.sync_alerts_pane(now);
                }
                Some(R::List)
            }
            (Action::LiftSilence, _) if self.alerts_pane.is_some() => {
                let pane = self.alerts_pane.as_ref().expect("checked");
                match pane.silences.get(pane.selected) {
                    Some(s) => Some(R::LiftId { id: s.id.clone() }),
                    None => {
                        if let Some(link) = &mut self.alerts {
                            link.summary.note = Some(("no silence selected".into(), now));
                        }
                        self.sync_alert_status(now);
                        return;
                    }
                }
            }
            (Action::LiftSilence, _) => Some(R::Lift { matchers }),
            (Action::SilenceUntil, Some((_, _, subject))) => {
                self.silence_prompt = matchers.map(|m| (m, subject.clone(), String::new()));
                self.clear_prompt_error();
                self.sync_alert_status(now);
                return;
            }
            (_, None) => None,
            (Action::Acknowledge, Some((fp, _, _))) => Some(R::Acknowledge {
                fingerprint: fp.clone(),
            }),
            (Action::Silence, Some((fp, _, _))) => {
                // Pressed again on the same alert within 10 s: the next length.
                let fp = fp.clone();
                let hours = match &self.last_silence {
                    Some((f, h, at)) if *f == fp && now - *at < Duration::seconds(10) => match h {
                        1 => 4,
                        _ => 24,
                    },
                    _ => 1,
                };
                self.last_silence = Some((fp, hours, now));
                matchers.map(|matchers| R::Silence {
                    matchers,
                    until: super::alerts::SilenceEnd::For { hours },
                })
            }
            _ => None,
        };
        let note = match (req, &self.alerts) {
            (None, _) => Some(format!(
                "no alert selected: press {} to open one",
                self.keymap.first_key(Action::Anomaly)
            )),
            (Some(r), Some(link)) => {
                (!link.request(r)).then(|| "alerts are busy: try again".to_string())
            }
            (Some(_), None) => None,
        };
        if let (Some(note), Some(link)) = (note, &mut self.alerts) {
            link.summary.note = Some((note, now));
            self.status.alerts = link.summary.parts(now);
        }
    }

    /// A key while the `Z` prompt is open: edit the time, Enter sets the silence,
    /// Esc cancels.
    fn silence_prompt_key(&mut self, key: KeyEvent, now: DateTime<Utc>) {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if key.code != KeyCode::Enter {
            self.clear_prompt_error();
        }
        let Some((matchers, subject, text)) = &mut self.silence_prompt else {
            return;
        };
        match key.code {
            KeyCode::Esc => self.silence_prompt = None,
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char(c) if !ctrl && text.chars().count() < 16 => text.push(c),
            KeyCode::Enter => {
                let tz = self.store.calendar().tz();
                let note = match super::alerts::parse_until(text, now, tz) {
                    Ok(until) => {
                        let req = super::alerts::AlertRequest::Silence {
                            matchers: matchers.clone(),
                            until: super::alerts::SilenceEnd::At(until),
                        };
                        self.silence_prompt = None;
                        match &self.alerts {
                            Some(link) if link.request(req) => None,
                            _ => Some("alerts are busy: try again".to_string()),
                        }
                    }
                    // Stays open to correct the text.
                    Err(e) => Some(format!("silence {subject}: {e}")),
                };
                if let (Some(note), Some(link)) = (note, &mut self.alerts) {
                    link.summary.note = Some((note, now));
                }
            }
            _ => {}
        }
        self.sync_alert_status(now);
    }

    /// Drops the prompt's last error (the text is being edited again).
    fn clear_prompt_error(&mut self) {
        if let Some(link) = &mut self.alerts
            && link
                .summary
                .note
                .as_ref()
                .is_some_and(|(n, _)| n.starts_with("silence "))
        {
            link.summary.note = None;
        }
    }

    /// The alert segment of the status bar: the `Z` prompt while it is open, else
    /// the alert task's summary.
    fn sync_alert_status(&mut self, now: DateTime<Utc>) {
        if let Some((_, subject, text)) = &self.silence_prompt {
            let error = self
                .alerts
                .as_ref()
                .filter(|l| l.summary.note_shown(now))
                .and_then(|l| l.summary.note.as_ref())
                .filter(|(n, _)| n.starts_with("silence "))
                .map(|(n, _)| format!(" ({n})"))
                .unwrap_or_default();
            // What is typed comes first: a narrow status bar cuts the help after it.
            let mut prompt = AlertPart::new(
                AlertPartKind::Answer,
                format!(
                    "silence {subject} until: {text}▏{error} (HH:MM {} or 90m; Enter sets, Esc cancels)",
                    self.store.calendar().tz()
                ),
            );
            prompt.problem = !error.is_empty();
            self.status.alerts = vec![prompt];
        } else if let Some(link) = &self.alerts {
            self.status.alerts = link.summary.parts(now);
        }
        if let Some(link) = &self.alerts {
            self.status.shared_alerts =
                crate::alert::unconfirmed(&link.summary.firing_shared, &self.overview.anomalies);
        }
        self.status.alerts_firing = self.alerts.as_ref().map(|l| l.summary.firing);
        self.sync_alerts_pane(now);
        self.dirty = true;
    }

    /// Copies the alert task's summary into the open alerts pane.
    fn sync_alerts_pane(&mut self, now: DateTime<Utc>) {
        let (Some(pane), Some(link)) = (&mut self.alerts_pane, &self.alerts) else {
            return;
        };
        pane.alerts = link.summary.alerts.clone();
        pane.silences = link.summary.silences.clone();
        pane.selected = pane.selected.min(pane.silences.len().saturating_sub(1));
        pane.now = now;
        pane.tz = self.store.calendar().tz();
    }

    /// Uses a configured keymap (the help follows it).
    pub fn with_keymap(mut self, keymap: Keymap) -> Self {
        self.help = keymap.help_lines();
        self.status.keys = keymap.hints();
        self.keymap = keymap;
        self
    }

    /// How far the help and the anomaly log scroll at the terminal's size (the
    /// loop asks the UI before each key: the anomalies change with the data).
    pub fn set_scroll_limits(&mut self, limits: ScrollLimits) {
        self.limits = limits;
        self.help_scroll = self.help_scroll.min(limits.help);
        if let Some(s) = &mut self.anomaly_log {
            *s = (*s).min(limits.anomaly_log);
        }
    }

    /// Whether the anomaly log is open.
    pub fn anomaly_log_open(&self) -> bool {
        self.anomaly_log.is_some()
    }

    /// The terminal was resized: where the drill-down table now sits.
    pub fn set_geometry(&mut self, g: TableGeometry) {
        if g != self.geometry {
            self.geometry = g;
            if let Some(l) = self.nav.levels.last_mut() {
                l.scroll_into_view(g.rows);
            }
            self.sync_selection();
            self.dirty = true;
        }
    }

    pub fn top_loading(&self) -> bool {
        matches!(self.top, TopState::Loading { .. })
    }

    /// Whether the top-requests pane is open (it changes the layout).
    pub fn top_open(&self) -> bool {
        self.top != TopState::Closed
    }

    pub fn screen(&self, color: bool) -> Screen<'_> {
        Screen {
            overview: &self.overview,
            status: &self.status,
            backfill: self.backfill,
            selected: self.selected,
            color,
            help: self.show_help.then_some(self.help.as_slice()),
            help_scroll: self.help_scroll,
            anomaly_log: self.anomaly_log,
            drill: self.drill.as_ref().filter(|_| !self.nav.levels.is_empty()),
            top: &self.top,
            window: self.nav.window,
            alerts: self.alerts_pane.as_ref(),
        }
    }

    /// A source message: applied at once, or queued behind earlier ones while a
    /// build shares the store (applied in order when it lands, with their arrival
    /// time, so the store ends up exactly as if applied at once).
    pub fn on_source(&mut self, msg: SourceMsg, now: DateTime<Utc>) {
        self.queued.push_back((msg, now));
        self.apply_queued();
    }

    /// Applies queued source messages in order until one needs the store while a
    /// build shares it.
    fn apply_queued(&mut self) {
        while let Some((msg, _)) = self.queued.front() {
            let needs_store = !matches!(msg, SourceMsg::Status(_) | SourceMsg::MonthSoFar { .. });
            if needs_store && Arc::get_mut(&mut self.store).is_none() {
                return;
            }
            let (msg, at) = self.queued.pop_front().expect("front exists");
            self.apply_source(msg, at);
        }
    }

    /// Source messages waiting for the store (a build shares it).
    pub fn queued_messages(&self) -> usize {
        self.queued.len()
    }

    /// The store, to write: only while no build shares it (`apply_queued` checks).
    fn store_mut(&mut self) -> &mut Store {
        Arc::get_mut(&mut self.store).expect("no build shares the store")
    }

    fn apply_source(&mut self, msg: SourceMsg, now: DateTime<Utc>) {
        match msg {
            SourceMsg::Status(s) => self.on_status(s, now),
            SourceMsg::MonthSoFar { month_start, agg } => {
                // Only for the month on screen, and only while it loads.
                if !self.history_loaded && month_start == self.store.calendar().month_start(now) {
                    let progress = self.backfill.get_or_insert_with(BackfillProgress::default);
                    progress.month_so_far = Some(agg.cost);
                    self.dirty = true;
                }
            }
            SourceMsg::Backfill { batch, done } => {
                self.store_mut().apply(&batch, now);
                self.status.rows_read = self.store.intake().rows;
                self.status.rejected = self.store.intake().rejected_total();
                self.status.rejected_by_reason = self.store.intake().rejected_by_reason();
                self.data_changed = true;
                if done {
                    self.history_loaded = true;
                    self.backfill = None;
                    self.status.last_refresh = Some(now);
                    self.dirty = true;
                }
            }
            SourceMsg::Tail { batch, polled_at } => {
                self.rate.record(polled_at, batch.rows);
                self.store_mut().apply(&batch, now);
                self.status.rows_read = self.store.intake().rows;
                self.status.rejected = self.store.intake().rejected_total();
                self.status.rejected_by_reason = self.store.intake().rejected_by_reason();
                self.status.last_refresh = Some(polled_at);
                self.status.events_per_sec = self.rate.per_sec();
                if !batch.facts.is_empty() || !batch.rejected.is_empty() {
                    self.data_changed = true;
                }
                self.dirty = true;
            }
        }
    }

    fn on_status(&mut self, s: SourceStatus, now: DateTime<Utc>) {
        if let Connection::Backfilling {
            done_steps,
            total_steps,
            loaded_from,
        } = s.connection
            && !self.history_loaded
        {
            let from = Store::history_start(self.store.config(), now);
            // What is in stays in (a retry starts its steps again).
            let before = self.backfill.and_then(|b| b.loaded_from);
            let loaded_from = before.into_iter().chain(loaded_from).min();
            self.backfill = Some(BackfillProgress {
                done_steps,
                total_steps,
                history_days: ((now - from).num_hours() as f64 / 24.0).round() as u32,
                loaded_from,
                month_so_far: self.backfill.and_then(|b| b.month_so_far),
            });
            if loaded_from != before {
                // More figures are final: the views say so. The data shown is as
                // of the first step (the tail starts after the last).
                self.status.last_refresh.get_or_insert(now);
                self.data_changed = true;
                self.note(Change::Rebuild);
            }
            self.header_before_history(now);
        }
        self.status.endpoint = s.endpoint;
        self.status.connection = s.connection;
        self.status.mode = s.mode;
        self.status.watermark_lag_secs = s.watermark_lag_secs;
        self.status.absent = s.absent;
        self.status.source_note = s.note;
        self.status.replay_lag = s.replay_lag;
        self.dirty = true;
    }

    /// Until the first overview is built: the month, the day and the budget, which
    /// need no history (not an empty header that reads "day 0.0 of 0").
    fn header_before_history(&mut self, now: DateTime<Utc>) {
        if self.coverage() == Coverage::Nothing && !self.history_loaded {
            self.overview.header =
                super::view::Header::before_history(self.store.calendar(), now, self.budget);
            self.overview.now = now;
        }
    }

    /// Builds run off the event loop from now on: `rebuild_if_due` hands them out
    /// through `take_build`, and the loop returns their results to `on_built`.
    pub fn build_in_background(&mut self) {
        self.background = true;
    }

    /// The build `rebuild_if_due` asked for, for the loop to run on another thread.
    pub fn take_build(&mut self) -> Option<BuildJob> {
        self.job.take()
    }

    /// A build is running (or waiting to be taken).
    pub fn building(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Starts a build: handed to the loop in the background, else run here.
    fn start_build(&mut self, what: BuildWhat, now: DateTime<Utc>) {
        self.build_seq += 1;
        let job = BuildJob {
            seq: self.build_seq,
            store: Arc::clone(&self.store),
            now,
            what,
        };
        self.in_flight = Some((job.seq, job.is_level()));
        if self.background {
            self.job = Some(job);
            self.sync_building();
        } else {
            let built = job.run();
            self.on_built(built, now);
        }
    }

    /// A build finished: its view model replaces the one shown (a level's only if
    /// that level is still the one open: the newest navigation wins), then the
    /// source messages that waited for the store are applied.
    pub fn on_built(&mut self, built: Built, now: DateTime<Utc>) {
        if self.in_flight.map(|(seq, _)| seq) != Some(built.seq) {
            return;
        }
        self.in_flight = None;
        match built.what {
            BuiltWhat::Overview(overview, detector) => {
                self.overview = *overview;
                self.detector = detector;
                self.selected = self
                    .selected
                    .min(self.overview.features.len().saturating_sub(1));
                self.queue_alert_eval(built.now, Duration::seconds(10));
            }
            BuiltWhat::Level(view) => {
                let describes_level = self.nav.levels.last().is_some_and(|l| {
                    view.path == l.path && view.dim == l.dim && view.window == self.nav.window
                });
                if describes_level {
                    self.drill = Some(*view);
                    self.drill_cost = built.cost;
                    self.drill_generation = built.generation;
                    self.drill_built = Some(built.now);
                    self.arrange_drill(Change::Arrange, now);
                }
            }
        }
        self.apply_queued();
        self.sync_building();
        self.dirty = true;
    }

    /// Rebuilds the view model if data changed, at most every `min_gap`, so a busy
    /// stream costs one rebuild per interval, not one per batch. Paused screens keep
    /// their numbers; the store still takes every row. One build at a time, the
    /// drill-down's first.
    pub fn rebuild_if_due(&mut self, now: DateTime<Utc>, min_gap: Duration) -> bool {
        self.apply_queued();
        let drilled = self.rebuild_drill(now, min_gap);
        let coverage = self.coverage();
        if !self.data_changed || self.status.paused || coverage == Coverage::Nothing {
            return drilled;
        }
        // While the history loads, builds leave the backfill most of the machine.
        let min_gap = super::progress::build_gap(coverage, min_gap);
        if self.last_built.is_some_and(|t| now - t < min_gap) {
            return false;
        }
        if self.in_flight.is_some() {
            return drilled; // starts once the running build lands
        }
        self.last_built = Some(now);
        self.data_changed = false;
        let what = BuildWhat::Overview {
            budget: self.budget,
            params: Box::new(self.params.clone()),
            detector: std::mem::take(&mut self.detector),
            coverage,
        };
        self.start_build(what, now);
        true
    }

    /// Whether the drill view shown is the open level's (its rows may be older).
    fn view_is_current(&self) -> bool {
        match (&self.drill, self.nav.levels.last()) {
            (Some(v), Some(l)) => v.path == l.path && v.dim == l.dim,
            _ => false,
        }
    }

    /// Rows of the drill view the keys move through; None while the view shown is
    /// another level's (a build runs): moves wait for the level's own rows.
    fn drill_rows(&self) -> Option<usize> {
        self.view_is_current()
            .then(|| self.drill.as_ref().map(|v| v.order.len()))
            .flatten()
    }

    /// The drill-down header's "building…" marker follows the build.
    fn sync_building(&mut self) {
        let building = self.in_flight.is_some_and(|(_, level)| level) || self.build_wanted;
        if let Some(view) = self.drill.as_mut()
            && view.building != building
        {
            view.building = building;
            self.dirty = true;
        }
    }

    /// Brings the drill-down view up to date: a build at once after navigation, and
    /// after new data at most every `min_gap` (not while paused); meanwhile the view
    /// shown keeps following the keys (filter, sort, selection) without the store.
    fn rebuild_drill(&mut self, now: DateTime<Utc>, min_gap: Duration) -> bool {
        let Some(level) = self.nav.levels.last().cloned() else {
            self.drill = None;
            self.pending = Change::None;
            self.build_wanted = false;
            return false;
        };
        if self.pending == Change::Rebuild {
            self.build_wanted = true;
            self.pending = Change::Arrange;
        }
        // New data rebuilds the level at most every `min_gap`, or every ten times
        // what the last build took, so a huge level never saturates the loop.
        let gap = min_gap.max(Duration::from_std(self.drill_cost * 10).unwrap_or(min_gap));
        let stale_data = self.drill_generation != self.store.generation()
            && !self.status.paused
            && self.drill_built.is_none_or(|t| now - t >= gap);
        // The view must describe the open level, however the navigation changed.
        // ... and the window moves on with the clock (whole hours).
        let window_start = self
            .store
            .calendar()
            .hour_start(self.nav.window.first_hour(&self.store, now));
        let shows_level = self.drill.as_ref().is_some_and(|v| {
            v.path == level.path
                && v.dim == level.dim
                && v.window == self.nav.window
                && (v.window_start == window_start || self.status.paused)
        });
        if (!shows_level || stale_data || self.build_wanted) && self.in_flight.is_none() {
            self.build_wanted = false;
            self.pending = Change::None;
            self.selection_moved = None;
            if self.drill.is_none() {
                // From the overview: the level's header (and marker) until it lands.
                self.drill = Some(DrillView {
                    path: level.path.clone(),
                    dim: level.dim,
                    window: self.nav.window,
                    window_start,
                    ..DrillView::default()
                });
            }
            let what = BuildWhat::Level {
                nav: self.nav.clone(),
                level,
                coverage: self.coverage(),
            };
            self.start_build(what, now);
            self.dirty = true;
            return true;
        }
        if !shows_level && !self.view_is_current() {
            self.sync_building();
            return false; // another level's view, until this one's build lands
        }
        let mut change = self.pending;
        if self.drill.as_ref().is_some_and(|v| {
            v.metric != self.nav.metric
                || v.sort != level.sort
                || v.reverse != level.reverse
                || v.filter != level.filter
        }) && change != Change::Arrange
        {
            change = Change::Arrange;
        }
        self.sync_building();
        if change == Change::None {
            return self.chart_if_due(now);
        }
        self.arrange_drill(change, now);
        true
    }

    /// Re-arranges (or only re-selects in) the drill view for the open level.
    fn arrange_drill(&mut self, change: Change, now: DateTime<Utc>) {
        let page = self.geometry.rows;
        let (Some(view), Some(level)) = (self.drill.as_mut(), self.nav.levels.last().cloned())
        else {
            return;
        };
        if change != Change::Selection {
            drill::arrange(view, &self.nav, &level);
            if let Some(l) = self.nav.levels.last_mut() {
                l.reselect(view, page);
            }
        }
        self.sync_selection();
        if change == Change::Selection {
            // While the selection moves, the chart waits for it to rest.
            self.selection_moved = Some(std::time::Instant::now());
            self.chart_if_due(now);
        } else {
            self.selection_moved = None;
            self.update_chart(now);
        }
        self.pending = Change::None;
        self.dirty = true;
    }

    /// The selected row's chart is out of date (the loop wakes up for it).
    pub fn chart_pending(&self) -> bool {
        self.selection_moved.is_some()
    }

    fn chart_if_due(&mut self, now: DateTime<Utc>) -> bool {
        match self.selection_moved {
            Some(t) if t.elapsed() >= CHART_SETTLE => {
                self.selection_moved = None;
                self.update_chart(now);
                self.dirty = true;
                true
            }
            _ => false,
        }
    }

    fn update_chart(&mut self, now: DateTime<Utc>) {
        if let (Some(view), Some(l)) = (self.drill.as_mut(), self.nav.levels.last()) {
            let name = view.row_at(l.selected).map(|r| r.name.clone());
            if view.chart.as_ref().map(|c| (&c.name, c.metric))
                != name.as_ref().map(|n| (n, view.metric))
                || view.chart.is_none()
            {
                view.chart = name.map(|name| drill::chart(&self.store, view, &name, now));
            }
        }
    }

    /// Copies the level's selection into the view (cheap; every key).
    fn sync_selection(&mut self) {
        if !self.view_is_current() {
            return; // another level's view: its rows say nothing about this level
        }
        if let (Some(view), Some(l)) = (self.drill.as_mut(), self.nav.levels.last_mut()) {
            view.selected = l.selected;
            view.offset = l.offset;
            view.editing = self.nav.editing;
            view.filter = l.filter.clone();
            l.selected_name = view.row_at(l.selected).map(|r| r.name.clone());
        }
    }

    fn note(&mut self, change: Change) {
        self.pending = match (self.pending, change) {
            (Change::Rebuild, _) | (_, Change::Rebuild) => Change::Rebuild,
            (Change::Arrange, _) | (_, Change::Arrange) => Change::Arrange,
            (Change::Selection, _) | (_, Change::Selection) => Change::Selection,
            _ => Change::None,
        };
        self.sync_selection();
        self.dirty = true;
    }

    /// A top-requests answer: shown only if it answers the newest request.
    pub fn on_top(&mut self, seq: u64, result: Result<Vec<RequestRow>, String>) {
        if seq != self.top_seq {
            return;
        }
        let (path, since) = match &self.top {
            TopState::Loading { path, since, .. } => (path.clone(), *since),
            _ => return, // closed meanwhile
        };
        self.top = match result {
            Ok(rows) => TopState::Ready { path, since, rows },
            Err(error) => TopState::Failed { path, since, error },
        };
        self.dirty = true;
    }

    /// Advances the spinner while a fetch runs.
    pub fn spin(&mut self) {
        if let TopState::Loading { frame, .. } = &mut self.top {
            *frame = frame.wrapping_add(1);
            self.dirty = true;
        }
    }

    /// The name of the selected row, in the drill-down or the overview.
    fn selected_name(&self) -> Option<String> {
        match self.nav.levels.last() {
            Some(l) => self
                .drill
                .as_ref()
                .filter(|_| self.view_is_current())
                .and_then(|v| v.row_at(l.selected))
                .map(|r| r.name.clone()),
            None => self
                .overview
                .features
                .get(self.selected)
                .map(|f| f.name.clone()),
        }
    }

    fn fetch_top(&mut self, now: DateTime<Utc>) -> Option<Command> {
        let name = self.selected_name()?;
        let path = self.nav.selection_path(Some(&name));
        let from = self.nav.window.first_hour(&self.store, now);
        self.top_seq += 1;
        self.top = TopState::Loading {
            path: path.clone(),
            since: None,
            frame: 0,
        };
        Some(Command::FetchTop {
            seq: self.top_seq,
            query: TopQuery {
                path,
                from: self.store.calendar().hour_start(from),
                limit: TOP_LIMIT,
            },
        })
    }

    /// Opens the drill-down at the next anomaly (each press moves on to the next
    /// one): its feature's users, or for an anomaly about a user or model, what that
    /// name spent on, largest first, in the shortest window holding its onset.
    /// Without anomalies, the first feature flagged in the table. For an anomaly,
    /// also the query for the most expensive requests behind it since its onset
    /// (the last hour when it has none).
    fn open_anomaly(&mut self, now: DateTime<Utc>) -> (Change, Option<TopQuery>) {
        let anomalies = &self.overview.anomalies;
        let target = if anomalies.is_empty() {
            self.overview
                .features
                .iter()
                .find(|f| f.anomalous)
                .map(|f| (Dim::Feature, f.name.clone(), None))
        } else {
            // The next one that is not already open (several rules can name the
            // same feature).
            let open = self
                .nav
                .levels
                .first()
                .and_then(|l| l.path.first())
                .cloned();
            let n = anomalies.len();
            let pick = (0..n)
                .map(|k| &anomalies[(self.anomaly_cursor + k) % n])
                .position(|a| open.as_ref() != Some(&(a.dim, a.name.clone())))
                .unwrap_or(0);
            let a = &anomalies[(self.anomaly_cursor + pick) % n];
            self.alert_selected = Some(a.clone());
            self.anomaly_cursor = (self.anomaly_cursor + pick + 1) % n;
            let from = anomaly_onset(a)
                .filter(|t| *t < now)
                .unwrap_or(now - chrono::Duration::hours(1));
            Some((a.dim, a.name.clone(), Some(from)))
        };
        let Some((dim, name, since)) = target else {
            return (Change::None, None);
        };
        if dim == Dim::Feature
            && let Some(i) = self.overview.features.iter().position(|f| f.name == name)
        {
            self.selected = i;
        }
        // The table in the shortest window that holds the onset, so the names
        // behind the anomaly are the largest (not a day's regulars above them).
        if let Some(onset) = since {
            let hour = self.store.hour_index(onset);
            if let Some(w) = [Window::Hour, Window::Day, Window::Week, Window::Days30]
                .into_iter()
                .find(|w| w.first_hour(&self.store, now) <= hour)
            {
                self.nav.window = w;
            }
        }
        let query = since.map(|from| TopQuery {
            path: vec![(dim, name.clone())],
            from,
            limit: TOP_LIMIT,
        });
        (self.nav.open_at(dim, &name), query)
    }

    /// Once a second: time moves on even without rows (ages, windows, pruning).
    pub fn on_tick(&mut self, now: DateTime<Utc>) {
        self.rate.trim(now);
        self.status.events_per_sec = self.rate.per_sec();
        if let Some(store) = Arc::get_mut(&mut self.store) {
            store.prune(now); // else a build shares the store: the next tick prunes
        }
        // Time-relative figures (this hour, today, spikes) change as the clock moves,
        // but only at minute boundaries: detection evaluates whole minutes, and hours
        // and days start on one. Without new rows the screen is rebuilt once a minute,
        // not every few seconds (a rebuild over 50,000 users takes seconds of CPU).
        let minute = |t: DateTime<Utc>| t.timestamp().div_euclid(60);
        if self.last_built.is_none_or(|t| minute(t) != minute(now)) {
            self.data_changed = true;
        }
        if !self.status.paused {
            self.overview.now = now;
        }
        self.header_before_history(now);
        self.queue_alert_eval(now, Duration::seconds(30));
        if let Some(link) = &mut self.alerts {
            link.refresh();
        }
        self.sync_alert_status(now);
        self.dirty = true;
    }

    /// Mouse wheel scrolls the drill-down (or moves the overview's selection); a
    /// click selects the row under it.
    pub fn on_mouse(&mut self, ev: MouseEvent) -> Option<Command> {
        let rows = self.drill_rows();
        let page = self.geometry.rows;
        let change = if self.nav.levels.is_empty() {
            let n = self.overview.features.len();
            match ev.kind {
                MouseEventKind::ScrollDown => {
                    self.selected = (self.selected + 1).min(n.saturating_sub(1))
                }
                MouseEventKind::ScrollUp => self.selected = self.selected.saturating_sub(1),
                _ => return None,
            }
            Change::None
        } else {
            // Another level's view is shown until this one's is built.
            let rows = rows?;
            match ev.kind {
                MouseEventKind::ScrollDown => self.nav.scroll_by(3, rows, page),
                MouseEventKind::ScrollUp => self.nav.scroll_by(-3, rows, page),
                MouseEventKind::Down(_) => {
                    let g = self.geometry;
                    if ev.row < g.first_row_y || ev.row >= g.first_row_y + g.rows as u16 {
                        return None;
                    }
                    let offset = self.nav.levels.last().map(|l| l.offset).unwrap_or(0);
                    let index = offset + (ev.row - g.first_row_y) as usize;
                    if index >= rows {
                        return None;
                    }
                    self.nav.select(index, rows, page)
                }
                _ => return None,
            }
        };
        self.note(change);
        // An open requests pane follows the selection.
        (change == Change::Selection && self.top_open())
            .then(|| self.fetch_top(Utc::now()))
            .flatten()
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Option<Command> {
        self.on_key_at(key, Utc::now())
    }

    pub fn on_key_at(&mut self, key: KeyEvent, now: DateTime<Utc>) -> Option<Command> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let action = self.keymap.action_for(&key);
        if self.show_help {
            // The moves scroll it; any other key closes it (quitting still works).
            let (max, page) = (self.limits.help, self.limits.help_page);
            if let Some(to) = scrolled(action, self.help_scroll, page) {
                self.help_scroll = to.min(max);
                self.dirty = true;
                return None;
            }
            self.show_help = false;
            self.dirty = true;
            return (action == Some(Action::Quit)).then_some(Command::Quit);
        }
        if self.silence_prompt.is_some() {
            if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
                return Some(Command::Quit);
            }
            self.silence_prompt_key(key, now);
            return None;
        }
        if let Some(at) = self.anomaly_log {
            // The log takes the moves; Esc (or its key) closes it; any other key
            // closes it and does what it does (it would act under the log).
            let (max, page) = (self.limits.anomaly_log, self.limits.anomaly_log_page);
            if let Some(to) = scrolled(action, at, page) {
                self.anomaly_log = Some(to.min(max));
                self.dirty = true;
                return None;
            }
            self.anomaly_log = None;
            self.dirty = true;
            if matches!(action, Some(Action::Back | Action::AnomalyLog)) {
                return None;
            }
        }
        if let Some(pane) = &mut self.alerts_pane {
            // The pane takes the moves; Esc closes it; other keys work as usual.
            let n = pane.silences.len();
            let moved = match action {
                Some(Action::Down) => Some((pane.selected + 1).min(n.saturating_sub(1))),
                Some(Action::Up) => Some(pane.selected.saturating_sub(1)),
                Some(Action::Back) => {
                    self.alerts_pane = None;
                    self.dirty = true;
                    return None;
                }
                _ => None,
            };
            if let Some(i) = moved {
                pane.selected = i;
                self.dirty = true;
                return None;
            }
        }
        if self.nav.editing {
            let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
            let change = match key.code {
                KeyCode::Char('c') if ctrl => return Some(Command::Quit),
                KeyCode::Esc => self.nav.filter_cancel(),
                KeyCode::Enter => self.nav.filter_done(),
                KeyCode::Backspace => self.nav.filter_pop(),
                KeyCode::Char(c) if !ctrl => self.nav.filter_push(c),
                _ => Change::None,
            };
            self.note(change);
            return None;
        }
        let in_drill = !self.nav.levels.is_empty();
        // None while another level's view is shown (its build runs): moves wait.
        let rows = if in_drill {
            self.drill_rows()
        } else {
            Some(self.overview.features.len())
        };
        let page = self.geometry.rows.max(1);
        let mut cmd = None;
        let step = |delta: isize, app: &mut App| -> Change {
            let Some(rows) = rows else {
                return Change::None;
            };
            if in_drill {
                app.nav.move_by(delta, rows, page)
            } else {
                app.selected = app
                    .selected
                    .saturating_add_signed(delta)
                    .min(rows.saturating_sub(1));
                Change::None
            }
        };
        let change = match action? {
            Action::Quit => return Some(Command::Quit),
            Action::Down => step(1, self),
            Action::Up => step(-1, self),
            Action::PageDown => step(page as isize, self),
            Action::PageUp => step(-(page as isize), self),
            Action::First => step(isize::MIN / 2, self),
            Action::Last => step(isize::MAX / 2, self),
            Action::Drill => match self.selected_name() {
                Some(name) => {
                    let c = self.nav.drill(&name);
                    if c == Change::None {
                        // The last level: the requests themselves.
                        cmd = self.fetch_top(now);
                    } else {
                        self.top = TopState::Closed;
                    }
                    c
                }
                None => Change::None,
            },
            Action::Back => {
                if self.top_open() {
                    self.top = TopState::Closed;
                    self.top_seq += 1; // whatever is in flight no longer counts
                    Change::None
                } else {
                    self.nav.back()
                }
            }
            Action::Pivot => {
                self.top = TopState::Closed;
                self.nav.pivot()
            }
            Action::Window1h => self.nav.set_window(Window::Hour),
            Action::Window24h => self.nav.set_window(Window::Day),
            Action::Window7d => self.nav.set_window(Window::Week),
            Action::Window30d => self.nav.set_window(Window::Days30),
            Action::WindowMonth => self.nav.set_window(Window::MonthToDate),
            Action::NextMetric => self.nav.next_metric(),
            Action::NextSort => self.nav.next_sort(),
            Action::ReverseSort => self.nav.toggle_reverse(),
            Action::Filter => self.nav.start_filter(),
            Action::TopRequests => {
                cmd = self.fetch_top(now);
                Change::None
            }
            Action::Anomaly => {
                self.top = TopState::Closed;
                let (change, query) = self.open_anomaly(now);
                // The requests behind it, with their ids, in the lower pane.
                if let Some(query) = query {
                    self.top_seq += 1;
                    self.top = TopState::Loading {
                        path: query.path.clone(),
                        since: Some(query.from),
                        frame: 0,
                    };
                    cmd = Some(Command::FetchTop {
                        seq: self.top_seq,
                        query,
                    });
                }
                change
            }
            Action::TogglePause => {
                self.status.paused = !self.status.paused;
                Change::None
            }
            Action::RefreshNow => {
                self.data_changed = true;
                self.pending = Change::Rebuild;
                cmd = Some(Command::RefreshNow);
                Change::None
            }
            Action::ToggleHelp => {
                self.show_help = true;
                self.help_scroll = 0;
                Change::None
            }
            Action::AnomalyLog => {
                self.anomaly_log = Some(0);
                self.alerts_pane = None;
                Change::None
            }
            a @ (Action::Acknowledge
            | Action::Silence
            | Action::SilenceUntil
            | Action::ListSilences
            | Action::LiftSilence) => {
                self.alert_key(a, now);
                Change::None
            }
        };
        // A new selection makes an open top-requests list refer to another row.
        if change == Change::Selection && self.top_open() {
            cmd = cmd.or_else(|| self.fetch_top(now));
        }
        self.note(change);
        cmd
    }
}

/// Where a move key takes a scrolled view (the help, the anomaly log) from `at`;
/// None for keys that are not moves. The caller clamps to the end.
fn scrolled(action: Option<Action>, at: usize, page: usize) -> Option<usize> {
    let page = page.max(1);
    Some(match action? {
        Action::Down => at.saturating_add(1),
        Action::Up => at.saturating_sub(1),
        Action::PageDown => at.saturating_add(page),
        Action::PageUp => at.saturating_sub(page),
        Action::First => 0,
        Action::Last => usize::MAX,
        _ => return None,
    })
}

/// When an anomaly began: `a` lists the requests from here. Every reader goes
/// through this function, so which field of the anomaly says it is one line.
pub fn anomaly_onset(a: &crate::detect::Anomaly) -> Option<DateTime<Utc>> {
    a.since
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Agg, Fact, FactBatch, TailMode};
    use crate::store::StoreConfig;
    use crossterm::event::{KeyCode, KeyModifiers};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// The demo source's progress: step `done` of 4.
    fn backfilling(done: u64) -> SourceMsg {
        SourceMsg::Status(SourceStatus {
            endpoint: "demo".into(),
            connection: Connection::Backfilling {
                done_steps: done,
                total_steps: 4,
                loaded_from: None,
            },
            mode: TailMode::Demo,
            watermark_lag_secs: None,
            absent: Vec::new(),
            note: None,
            replay_lag: None,
        })
    }

    fn app(now: DateTime<Utc>) -> App {
        let params = DetectParams {
            today_ratio: 1.5,
            spike_ratio: 3.0,
            min_excess: Money::from_dollars(1),
            contributors: 3,
            ..DetectParams::default()
        };
        App::new(
            Store::new(StoreConfig::default(), now),
            None,
            params,
            "demo",
        )
    }

    fn tail(now: DateTime<Utc>, feature: &str) -> SourceMsg {
        let fact = Fact {
            at: now,
            names: [
                feature.into(),
                "u".into(),
                "m".into(),
                "t".into(),
                "r".into(),
            ],
            agg: Agg::one(Money::from_dollars(1), 10, 10),
        };
        SourceMsg::Tail {
            batch: FactBatch {
                coarse: Vec::new(),
                hour_users: Vec::new(),
                hour_pairs: Vec::new(),
                facts: vec![fact],
                rows: 1,
                rejected: Default::default(),
            },
            polled_at: now,
        }
    }

    #[test]
    fn backfill_then_tail_then_coalesced_rebuilds() {
        let now = utc("2026-11-28T12:00:00Z");
        let mut a = app(now);
        a.on_source(backfilling(1), now);
        assert_eq!(
            a.backfill,
            Some(BackfillProgress {
                done_steps: 1,
                total_steps: 4,
                history_days: 35,
                loaded_from: None,
                month_so_far: None,
            })
        );
        // The header knows the month, the day and the budget before the history.
        let h = &a.overview.header;
        assert!(h.loading);
        assert_eq!((h.month.as_str(), h.days_in_month), ("2026-11", 30));
        assert!((h.days_elapsed - 27.5).abs() < 1e-9, "{}", h.days_elapsed);
        assert!(
            !a.rebuild_if_due(now, Duration::milliseconds(200)),
            "no overview while loading"
        );
        // The month's sum read first: kept for the header until the history is
        // in (another month's is not this header's).
        let month = |start: &str, dollars| SourceMsg::MonthSoFar {
            month_start: utc(start),
            agg: Agg::one(Money::from_dollars(dollars), 1, 1),
        };
        a.on_source(month("2026-10-01T00:00:00Z", 5), now);
        assert_eq!(a.backfill.and_then(|b| b.month_so_far), None);
        a.on_source(month("2026-11-01T00:00:00Z", 1713), now);
        assert_eq!(
            a.backfill.and_then(|b| b.month_so_far),
            Some(Money::from_dollars(1713))
        );
        a.on_source(backfilling(2), now);
        assert_eq!(
            a.backfill.and_then(|b| b.month_so_far),
            Some(Money::from_dollars(1713)),
            "kept across progress"
        );
        a.on_source(
            SourceMsg::Backfill {
                batch: FactBatch::default(),
                done: true,
            },
            now,
        );
        assert_eq!(a.backfill, None);
        a.on_source(tail(now, "chat"), now);
        assert!(a.rebuild_if_due(now, Duration::milliseconds(200)));
        assert_eq!(a.overview.features[0].name, "chat");
        a.on_source(tail(now, "search"), now);
        assert!(!a.rebuild_if_due(
            now + Duration::milliseconds(50),
            Duration::milliseconds(200)
        ));
        assert!(a.rebuild_if_due(
            now + Duration::milliseconds(250),
            Duration::milliseconds(200)
        ));
        assert_eq!(a.overview.features.len(), 2);
        assert_eq!(a.status.rows_read, 2);
    }

    #[test]
    fn pause_freezes_numbers_but_keeps_rows() {
        let now = utc("2026-11-28T12:00:00Z");
        let mut a = app(now);
        a.on_source(
            SourceMsg::Backfill {
                batch: FactBatch::default(),
                done: true,
            },
            now,
        );
        a.on_source(tail(now, "chat"), now);
        a.rebuild_if_due(now, Duration::zero());
        a.on_key(KeyEvent::from(KeyCode::Char('p')));
        a.on_source(tail(now, "chat"), now);
        assert!(!a.rebuild_if_due(now + Duration::seconds(1), Duration::zero()));
        assert_eq!(a.overview.features[0].today, Money::from_dollars(1));
        a.on_key(KeyEvent::from(KeyCode::Char('p')));
        assert!(a.rebuild_if_due(now + Duration::seconds(2), Duration::zero()));
        assert_eq!(
            a.overview.features[0].today,
            Money::from_dollars(2),
            "caught up on resume"
        );
    }

    #[test]
    fn keys() {
        let now = utc("2026-11-28T12:00:00Z");
        let mut a = app(now);
        assert_eq!(
            a.on_key(KeyEvent::from(KeyCode::Char('q'))),
            Some(Command::Quit)
        );
        assert_eq!(
            a.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Command::Quit)
        );
        assert_eq!(
            a.on_key(KeyEvent::from(KeyCode::Char('r'))),
            Some(Command::RefreshNow)
        );
        a.on_key(KeyEvent::from(KeyCode::Down));
        assert_eq!(a.selected, 0, "no rows to move to");
        a.on_key(KeyEvent::from(KeyCode::Char('?')));
        assert!(
            a.screen(true)
                .help
                .is_some_and(|h| h.iter().any(|(k, _)| k.contains('q')))
        );
        assert_eq!(a.on_key(KeyEvent::from(KeyCode::Char('x'))), None);
        assert!(a.screen(true).help.is_none(), "any key closes the help");
    }

    fn event(now: DateTime<Utc>, feature: &str, user: &str, model: &str, dollars: i64) -> Fact {
        Fact {
            at: now,
            names: [
                feature.into(),
                user.into(),
                model.into(),
                "t".into(),
                "r".into(),
            ],
            agg: Agg::one(Money::from_dollars(dollars), 100, 10),
        }
    }

    /// A loaded app: two features, three users, two models.
    fn loaded(now: DateTime<Utc>) -> App {
        let mut a = app(now);
        let facts = vec![
            event(now, "chat", "alice", "gpt-4o", 5),
            event(now, "chat", "bob", "gpt-4o", 3),
            event(now, "chat", "bob", "claude", 4),
            event(now, "search", "carol", "gpt-4o", 1),
        ];
        a.on_source(
            SourceMsg::Backfill {
                batch: FactBatch::of_rows(facts),
                done: true,
            },
            now,
        );
        a.rebuild_if_due(now, Duration::zero());
        a
    }

    fn press(a: &mut App, code: KeyCode, now: DateTime<Utc>) -> Option<Command> {
        let cmd = a.on_key_at(KeyEvent::from(code), now);
        a.rebuild_if_due(now, Duration::milliseconds(200));
        cmd
    }

    fn shown(a: &App) -> Vec<(String, String)> {
        let v = a.drill.as_ref().expect("a drill-down level is open");
        (0..v.order.len())
            .filter_map(|i| v.row_at(i))
            .map(|r| (r.name.clone(), r.agg.cost.to_string()))
            .collect()
    }

    #[test]
    fn enter_drills_feature_user_model_and_esc_comes_back() {
        let now = utc("2026-11-28T12:00:00Z");
        let mut a = loaded(now);
        assert_eq!(a.overview.features[0].name, "chat");
        press(&mut a, KeyCode::Enter, now);
        assert_eq!(
            shown(&a),
            [("bob".into(), "7".into()), ("alice".into(), "5".into())]
        );
        let v = a.drill.as_ref().unwrap();
        assert_eq!(v.path, [(Dim::Feature, "chat".to_string())]);
        assert_eq!(v.parent.cost, Money::from_dollars(12));
        assert!(v.chart.as_ref().is_some_and(|c| c.name == "bob"));
        assert!(a.screen(false).drill.is_some());
        press(&mut a, KeyCode::Enter, now); // bob
        assert_eq!(
            shown(&a),
            [("claude".into(), "4".into()), ("gpt-4o".into(), "3".into())]
        );
        press(&mut a, KeyCode::Esc, now);
        assert_eq!(a.drill.as_ref().unwrap().dim, Dim::User);
        assert_eq!(
            a.nav.current().unwrap().selected_name.as_deref(),
            Some("bob")
        );
        press(&mut a, KeyCode::Backspace, now);
        assert!(a.screen(false).drill.is_none(), "back at the overview");
        assert_eq!(a.selected, 0, "the overview kept its selection");
    }

    #[test]
    fn filter_sort_metric_and_window_rearrange_without_losing_the_selection() {
        let now = utc("2026-11-28T12:00:00Z");
        let mut a = loaded(now);
        a.on_key_at(KeyEvent::from(KeyCode::Char('d')), now); // all users
        a.rebuild_if_due(now, Duration::zero());
        assert_eq!(shown(&a).len(), 3);
        press(&mut a, KeyCode::Down, now);
        assert_eq!(
            a.nav.current().unwrap().selected_name.as_deref(),
            Some("alice")
        );
        press(&mut a, KeyCode::Char('s'), now); // by change (none yet) then name
        press(&mut a, KeyCode::Char('s'), now);
        press(&mut a, KeyCode::Char('s'), now);
        assert_eq!(
            a.nav.current().unwrap().sort,
            super::super::drill::SortKey::Name
        );
        let names: Vec<String> = shown(&a).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["alice", "bob", "carol"]);
        assert_eq!(
            a.nav.current().unwrap().selected,
            0,
            "alice is still selected"
        );
        press(&mut a, KeyCode::Char('S'), now);
        let names: Vec<String> = shown(&a).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["carol", "bob", "alice"]);
        press(&mut a, KeyCode::Char('/'), now);
        for c in "CA".chars() {
            press(&mut a, KeyCode::Char(c), now);
        }
        assert_eq!(
            shown(&a),
            [("carol".into(), "1".into())],
            "case-insensitive"
        );
        assert!(a.drill.as_ref().unwrap().editing);
        press(&mut a, KeyCode::Char('q'), now);
        assert_eq!(
            a.nav.current().unwrap().filter,
            "CAq",
            "q is text while typing"
        );
        press(&mut a, KeyCode::Backspace, now);
        press(&mut a, KeyCode::Enter, now);
        assert!(!a.nav.editing);
        assert_eq!(shown(&a).len(), 1, "the filter stays after Enter");
        press(&mut a, KeyCode::Char('m'), now);
        assert_eq!(
            a.drill.as_ref().unwrap().metric,
            super::super::drill::Metric::Requests
        );
        press(&mut a, KeyCode::Char('1'), now);
        assert_eq!(a.drill.as_ref().unwrap().window, Window::Hour);
        press(&mut a, KeyCode::Char('/'), now);
        press(&mut a, KeyCode::Esc, now);
        assert_eq!(shown(&a).len(), 3, "Esc while typing clears the filter");
    }

    #[test]
    fn top_requests_newest_wins_and_esc_closes() {
        let now = utc("2026-11-28T12:00:00Z");
        let mut a = loaded(now);
        let Some(Command::FetchTop { seq: first, query }) = press(&mut a, KeyCode::Char('t'), now)
        else {
            panic!("t asks for the top requests")
        };
        assert_eq!(query.path, [(Dim::Feature, "chat".to_string())]);
        assert!(a.top_loading());
        press(&mut a, KeyCode::Enter, now); // drilling closes it
        assert!(!a.top_open());
        let Some(Command::FetchTop { seq: second, query }) = press(&mut a, KeyCode::Char('t'), now)
        else {
            panic!()
        };
        assert_eq!(
            query.path,
            [
                (Dim::Feature, "chat".to_string()),
                (Dim::User, "bob".to_string())
            ]
        );
        // Moving on while it loads asks again; the older answers no longer count.
        let Some(Command::FetchTop { seq: third, .. }) = press(&mut a, KeyCode::Down, now) else {
            panic!("a new selection refetches")
        };
        assert!(first < second && second < third);
        a.on_top(second, Ok(vec![]));
        assert!(a.top_loading(), "a stale answer is ignored");
        a.on_top(third, Err("boom".into()));
        assert!(matches!(a.top, TopState::Failed { .. }));
        press(&mut a, KeyCode::Esc, now);
        assert!(!a.top_open());
        assert!(a.drill.is_some(), "Esc closed the pane, not the level");
        // At the last level Enter asks for the requests themselves.
        press(&mut a, KeyCode::Enter, now);
        for _ in 0..3 {
            press(&mut a, KeyCode::Enter, now);
        }
        assert_eq!(a.drill.as_ref().unwrap().dim, Dim::Region);
        assert!(matches!(
            press(&mut a, KeyCode::Enter, now),
            Some(Command::FetchTop { .. })
        ));
    }

    #[test]
    fn paused_drill_keeps_its_numbers_until_resumed() {
        let now = utc("2026-11-28T12:00:00Z");
        let mut a = loaded(now);
        press(&mut a, KeyCode::Enter, now);
        press(&mut a, KeyCode::Char('p'), now);
        a.on_source(
            SourceMsg::Tail {
                batch: FactBatch {
                    coarse: Vec::new(),
                    hour_users: Vec::new(),
                    hour_pairs: Vec::new(),
                    facts: vec![event(now, "chat", "alice", "gpt-4o", 10)],
                    rows: 1,
                    rejected: Default::default(),
                },
                polled_at: now,
            },
            now,
        );
        let later = now + Duration::seconds(1);
        a.rebuild_if_due(later, Duration::zero());
        assert_eq!(shown(&a)[0], ("bob".into(), "7".into()));
        press(&mut a, KeyCode::Char('p'), later);
        a.rebuild_if_due(later, Duration::zero());
        assert_eq!(shown(&a)[0], ("alice".into(), "15".into()), "caught up");
        assert_eq!(
            a.nav.current().unwrap().selected_name.as_deref(),
            Some("bob"),
            "the selection follows the row, not the position"
        );
    }

    #[test]
    fn enter_on_an_anomaly_opens_its_feature() {
        let now = utc("2026-11-28T12:00:00Z");
        let mut a = loaded(now);
        a.overview.anomalies.clear();
        a.overview.features[1].anomalous = true;
        press(&mut a, KeyCode::Char('a'), now);
        assert_eq!(
            a.drill.as_ref().unwrap().path,
            [(Dim::Feature, "search".to_string())]
        );
        assert_eq!(a.selected, 1, "the overview row follows");
    }

    #[test]
    fn mouse_wheel_and_click_select_rows() {
        use crossterm::event::MouseButton;
        let now = utc("2026-11-28T12:00:00Z");
        let mut a = loaded(now);
        a.set_geometry(TableGeometry {
            first_row_y: 5,
            rows: 10,
        });
        a.on_key_at(KeyEvent::from(KeyCode::Char('d')), now);
        a.rebuild_if_due(now, Duration::zero());
        let click = |row| MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column: 3,
            row,
            modifiers: KeyModifiers::NONE,
        };
        a.on_mouse(click(7));
        assert_eq!(a.nav.current().unwrap().selected, 2);
        a.on_mouse(click(9)); // below the last row: ignored
        assert_eq!(a.nav.current().unwrap().selected, 2);
        a.on_mouse(MouseEvent {
            kind: MouseEventKind::ScrollUp,
            ..click(0)
        });
        assert_eq!(a.nav.current().unwrap().offset, 0);
    }

    /// The screen as text, drawn by the real UI at `w` x `h`.
    fn drawn(a: &App, w: u16, h: u16) -> String {
        let mut terminal =
            ratatui::Terminal::new(ratatui::backend::TestBackend::new(w, h)).unwrap();
        terminal
            .draw(|frame| crate::ui::draw(frame, &a.screen(false)))
            .unwrap();
        let buf = terminal.backend().buffer();
        (0..h)
            .map(|y| (0..w).map(|x| buf[(x, y)].symbol()).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn anomaly(dim: Dim, name: &str, since: DateTime<Utc>) -> crate::detect::Anomaly {
        crate::detect::Anomaly {
            rule: "spike_15m".into(),
            dim,
            name: name.into(),
            window: "15m".into(),
            observed: Money::from_dollars(40),
            expected: Money::from_dollars(4),
            expected_low: None,
            expected_high: None,
            ratio: 10.0,
            z: Some(9.0),
            severity: crate::detect::Severity::Critical,
            baseline: "same hour of week, 4 weeks".into(),
            since: Some(since),
            contributors: Vec::new(),
            message: format!("{name} spiked"),
        }
    }

    /// Issue 16 item 9: sort is per level; `S` keeps the cursor on the same row;
    /// a new level (and `a`) starts largest first.
    #[test]
    fn reverse_keeps_the_row_and_each_level_keeps_its_own_sort() {
        let now = utc("2026-11-28T12:00:00Z");
        let mut a = loaded(now);
        press(&mut a, KeyCode::Enter, now); // chat's users: bob $7, alice $5
        press(&mut a, KeyCode::Down, now); // alice
        press(&mut a, KeyCode::Char('S'), now);
        assert_eq!(
            shown(&a),
            [("alice".into(), "5".into()), ("bob".into(), "7".into())]
        );
        let l = a.nav.current().unwrap();
        assert_eq!(
            (l.selected, l.selected_name.as_deref()),
            (0, Some("alice")),
            "the cursor stays on alice"
        );
        press(&mut a, KeyCode::Char('S'), now);
        let l = a.nav.current().unwrap();
        assert_eq!((l.selected, l.selected_name.as_deref()), (1, Some("alice")));
        press(&mut a, KeyCode::Char('S'), now); // reversed again: alice first
        press(&mut a, KeyCode::Up, now);
        press(&mut a, KeyCode::Down, now);
        press(&mut a, KeyCode::Char('k'), now); // alice, at the top
        press(&mut a, KeyCode::Enter, now); // alice's models: not reversed
        assert!(!a.drill.as_ref().unwrap().reverse);
        press(&mut a, KeyCode::Esc, now);
        assert!(
            a.drill.as_ref().unwrap().reverse,
            "the users' level kept its own order"
        );
        // `a` on bob's anomaly: his models, the most expensive on top.
        press(&mut a, KeyCode::Esc, now);
        a.overview.anomalies = vec![anomaly(Dim::User, "bob", now - Duration::minutes(20))];
        a.on_key_at(KeyEvent::from(KeyCode::Char('a')), now);
        a.rebuild_if_due(now, Duration::zero());
        assert_eq!(
            shown(&a),
            [("chat".into(), "7".into())],
            "bob's features, largest first"
        );
        assert!(!a.drill.as_ref().unwrap().reverse);
    }

    /// Issue 16 item 8: `a` lists the requests since the anomaly's onset, and the
    /// pane says so (not "(24h)").
    #[test]
    fn a_lists_the_requests_since_the_onset() {
        let now = utc("2026-12-07T17:30:00Z");
        let onset = utc("2026-12-07T17:09:00Z");
        let mut a = loaded(now);
        a.overview.anomalies = vec![anomaly(Dim::Feature, "chat", onset)];
        let Some(Command::FetchTop { seq, query }) = press(&mut a, KeyCode::Char('a'), now) else {
            panic!("a asks for the requests behind the anomaly")
        };
        assert_eq!(query.from, onset, "since the onset, not the last 24 hours");
        assert_eq!(query.path, [(Dim::Feature, "chat".to_string())]);
        assert_eq!(a.top.since(), Some(onset));
        a.on_top(seq, Ok(vec![]));
        let screen = drawn(&a, 120, 36);
        assert!(
            screen.contains("Most expensive requests: chat (since 12-07 17:09 UTC)"),
            "{screen}"
        );
        assert!(screen.contains("No requests since then."), "{screen}");
        assert!(!screen.contains("chat (24h)"), "{screen}");
        // The table is this hour's: the onset is in it.
        assert_eq!(a.drill.as_ref().unwrap().window, Window::Hour);
        assert!(screen.contains("window 1h"), "{screen}");
        // Moving on in the level: that row's requests in the window again.
        let Some(Command::FetchTop { query, .. }) = press(&mut a, KeyCode::Down, now) else {
            panic!("the pane follows the selection")
        };
        assert_eq!(
            query.from,
            a.store.calendar().hour_start(a.store.hour_index(now))
        );
        assert_eq!(a.top.since(), None);
    }

    /// Issue 16 item 11 on screen: window `1` at 17:10 says what it compares with.
    #[test]
    fn window_1_says_it_compares_with_the_same_minutes_of_the_previous_hour() {
        let now = utc("2026-12-07T17:10:00Z");
        let mut a = app(now);
        let facts: Vec<Fact> = (0..70)
            .map(|m| {
                event(
                    utc("2026-12-07T16:00:00Z") + Duration::minutes(m),
                    "chat",
                    "u",
                    "m",
                    1,
                )
            })
            .collect();
        a.on_source(
            SourceMsg::Backfill {
                batch: FactBatch::of_rows(facts),
                done: true,
            },
            now,
        );
        a.rebuild_if_due(now, Duration::zero());
        press(&mut a, KeyCode::Char('1'), now);
        let v = a.drill.as_ref().unwrap();
        assert_eq!(v.row_at(0).unwrap().change, Some(0.0), "not -83%");
        let screen = drawn(&a, 100, 30);
        assert!(screen.contains("vs :00-:10"), "{screen}");
        assert!(screen.contains("+0%") || screen.contains("0%"), "{screen}");
    }

    /// Issue 16 item 18: loading, with a budget: the month, the day and the budget,
    /// no zeros and no "no budget set"; the history in days, the progress as a share.
    #[test]
    fn the_loading_screen_says_what_it_knows() {
        let now = utc("2026-12-07T17:10:00Z");
        let mut a = App::new(
            Store::new(StoreConfig::default(), now),
            Some(Money::from_dollars(20_000)),
            DetectParams::default(),
            "db:5432/llm",
        );
        a.on_source(
            SourceMsg::Status(SourceStatus {
                endpoint: "db:5432/llm".into(),
                connection: Connection::Backfilling {
                    done_steps: 27,
                    total_steps: 142,
                    loaded_from: None,
                },
                mode: TailMode::TxWatermark,
                watermark_lag_secs: None,
                absent: Vec::new(),
                note: None,
                replay_lag: None,
            }),
            now,
        );
        let screen = drawn(&a, 80, 24);
        for bad in [
            "day 0.0 of 0",
            "$0.00",
            "()",
            "no budget set",
            "27/142",
            "days:",
        ] {
            assert!(!screen.contains(bad), "{bad}:\n{screen}");
        }
        for good in [
            "Dec 2026, UTC",
            "day 6.7 of 31",
            "budget $20,000/month",
            "Loading the last 35 days of history",
            "19%",
            "Backfilling 19%",
        ] {
            assert!(screen.contains(good), "{good}:\n{screen}");
        }
    }

    /// Issue 16 item 26: rebound keys show in the status bar, and the help says
    /// the drill order as it is.
    #[test]
    fn rebound_keys_show_in_the_status_bar_and_the_help() {
        let now = utc("2026-11-28T12:00:00Z");
        let keymap = Keymap::with_overrides(&std::collections::BTreeMap::from([(
            "quit".to_string(),
            vec!["x".to_string()],
        )]))
        .unwrap();
        let mut a = loaded(now).with_keymap(keymap);
        let screen = drawn(&a, 120, 36);
        let status = screen.lines().last().unwrap();
        assert!(status.contains("x quit"), "{status}");
        assert!(!status.contains("q quit"), "{status}");
        assert_eq!(
            a.on_key_at(KeyEvent::from(KeyCode::Char('x')), now),
            Some(Command::Quit)
        );
        press(&mut a, KeyCode::Char('?'), now);
        let help = drawn(&a, 140, 40);
        assert!(
            help.contains("feature > user > model > tenant > region, then its requests"),
            "{help}"
        );
    }

    /// Issue 16 items 12 and 20: `n` opens the anomaly log, the moves scroll it
    /// (up to its end), Esc closes it; the help scrolls the same way at 80x24.
    #[test]
    fn the_anomaly_log_and_the_help_scroll_and_close() {
        let now = utc("2026-11-28T12:00:00Z");
        let mut a = loaded(now);
        a.overview.anomalies = (0..9)
            .map(|i| {
                anomaly(
                    Dim::Feature,
                    &format!("feature_{i}"),
                    now - Duration::minutes(9),
                )
            })
            .collect();
        let limits = |a: &App| crate::ui::scroll_limits(&a.screen(false), 80, 24);
        let screen = drawn(&a, 80, 24);
        assert!(screen.contains("more: n opens the anomaly log"), "{screen}");
        press(&mut a, KeyCode::Char('n'), now);
        assert!(a.anomaly_log_open());
        let screen = drawn(&a, 80, 24);
        assert!(screen.contains("Anomaly log: 9 now"), "{screen}");
        assert!(screen.contains("feature_0 spiked"), "{screen}");
        a.set_scroll_limits(limits(&a));
        let max = a.limits.anomaly_log;
        assert!(max > 0, "9 anomalies are taller than 80x24");
        press(&mut a, KeyCode::Char('G'), now);
        assert_eq!(a.screen(false).anomaly_log, Some(max));
        let screen = drawn(&a, 80, 24);
        assert!(screen.contains("feature_8 spiked"), "{screen}");
        press(&mut a, KeyCode::Down, now);
        assert_eq!(a.screen(false).anomaly_log, Some(max), "stops at the end");
        press(&mut a, KeyCode::Up, now);
        assert_eq!(a.screen(false).anomaly_log, Some(max - 1));
        assert!(
            a.drill.is_none(),
            "the moves scrolled the log, not the table"
        );
        press(&mut a, KeyCode::Esc, now);
        assert!(!a.anomaly_log_open());
        assert!(a.drill.is_none(), "Esc closed the log only");

        press(&mut a, KeyCode::Char('?'), now);
        a.set_scroll_limits(limits(&a));
        assert!(a.limits.help > 0);
        press(&mut a, KeyCode::PageDown, now);
        assert!(a.show_help && a.screen(false).help_scroll > 0);
        press(&mut a, KeyCode::Char('G'), now);
        assert_eq!(a.screen(false).help_scroll, a.limits.help);
        let screen = drawn(&a, 80, 24);
        assert!(screen.contains("show / hide this help"), "{screen}");
        press(&mut a, KeyCode::Char('x'), now);
        assert!(!a.show_help, "any other key closes the help");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shift_z_asks_until_when_and_the_pane_lifts_the_selected_silence() {
        use crate::alert::engine::{AlertEngine, AlertSettings};
        use crate::alert::health::HealthParams;
        use crate::alert::slack::SlackOptions;
        use crate::alert::state::AlertStore;
        use crate::alert::{Labels, Policy};
        use crate::app::alerts::{AlertLink, PaneAlert};

        let dir = tempfile::tempdir().unwrap();
        let store = AlertStore::local(dir.path().join("alerts.json"), "test");
        let settings = AlertSettings {
            policy: Policy::default(),
            health: HealthParams::default(),
            slack: SlackOptions::default(),
            webhook: None,
            scopes: crate::alert::Scopes::any(),
        };
        let engine = AlertEngine::new(store, settings, None).unwrap();
        let (_outcomes, rx) = tokio::sync::mpsc::channel(1);
        let now = Utc::now();
        let mut a = app(now).with_alerts(AlertLink::start(engine, rx, None));
        // A firing monitor-health alert: no anomaly row, the keys act on it.
        let mut m = Labels::new();
        m.insert("rule".into(), "no_events".into());
        m.insert("database".into(), "db:5432/llm".into());
        a.alerts.as_mut().unwrap().summary.alerts = vec![PaneAlert {
            fingerprint: "0123456789abcdef".into(),
            matchers: m.clone(),
            severity: crate::detect::Severity::Critical,
            rule: "no_events".into(),
            subject: "database db:5432/llm".into(),
            phase: "firing",
            since: None,
            acked_by: None,
            silenced_by: None,
        }];
        let status = |a: &App| {
            a.status
                .alerts
                .iter()
                .map(|p| p.text.as_str())
                .collect::<Vec<_>>()
                .join(" · ")
        };
        let typed = |a: &mut App, text: &str| {
            for c in text.chars() {
                press(a, KeyCode::Char(c), now);
            }
        };

        // A time that is not one: said, and the prompt stays open to fix it.
        press(&mut a, KeyCode::Char('Z'), now);
        assert!(status(&a).starts_with("silence database db:5432/llm until: ▏ (HH:MM UTC or 90m"));
        assert_eq!(a.status.alerts[0].kind, AlertPartKind::Answer);
        typed(&mut a, "soon");
        assert!(status(&a).contains("until: soon▏ (HH:MM"), "{}", status(&a));
        press(&mut a, KeyCode::Enter, now);
        assert!(status(&a).contains("neither a time"), "{}", status(&a));
        press(&mut a, KeyCode::Esc, now);
        assert!(!status(&a).contains("(HH:MM"), "{}", status(&a));

        // "90x", Backspace, "m": silenced for 90 minutes.
        press(&mut a, KeyCode::Char('Z'), now);
        typed(&mut a, "90x");
        press(&mut a, KeyCode::Backspace, now);
        typed(&mut a, "m");
        assert!(status(&a).contains("until: 90m▏ (HH:MM"), "{}", status(&a));
        press(&mut a, KeyCode::Enter, now);
        let link = a.alerts.as_mut().unwrap();
        for _ in 0..100 {
            link.refresh();
            if !link.summary.silences.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let silences = link.summary.silences.clone();
        assert_eq!(silences.len(), 1);
        assert_eq!(silences[0].matchers, m);
        let ends = silences[0].ends_at - now;
        assert!(
            (ends - Duration::minutes(90)).num_seconds().abs() < 60,
            "{ends}"
        );

        // L: the pane lists it, selected; U lifts it; Esc closes the pane.
        press(&mut a, KeyCode::Char('L'), now);
        let pane = a.screen(false).alerts.cloned().expect("the pane is open");
        assert_eq!(pane.silences.len(), 1);
        assert_eq!(pane.selected, 0);
        press(&mut a, KeyCode::Char('U'), now);
        let link = a.alerts.as_mut().unwrap();
        for _ in 0..100 {
            link.refresh();
            if link.summary.silences.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(link.summary.silences.is_empty(), "not lifted");
        a.on_tick(now);
        assert!(a.screen(false).alerts.unwrap().silences.is_empty());
        press(&mut a, KeyCode::Esc, now);
        assert!(a.screen(false).alerts.is_none());
    }

    /// A build held up on another thread (here until the test releases it) leaves
    /// the App answering keys; source messages wait in order and are applied as
    /// soon as it lands; a build of a level no longer open is dropped and the open
    /// one is built next, with the data that arrived meanwhile.
    #[test]
    fn a_slow_build_leaves_keys_working_and_applies_queued_messages_in_order() {
        let now = utc("2026-11-28T12:00:00Z");
        let mut a = loaded(now);
        a.build_in_background();
        press(&mut a, KeyCode::Enter, now); // chat: its users
        let job = a.take_build().expect("a level build is handed out");
        assert!(job.is_level() && a.building());
        assert!(
            a.screen(false)
                .drill
                .is_some_and(|v| v.building && v.rows.is_empty()),
            "the level's header, marked, until its rows land"
        );
        a.on_built(job.run(), now);
        assert_eq!(
            shown(&a),
            [("bob".into(), "7".into()), ("alice".into(), "5".into())]
        );
        assert!(!a.building() && !a.drill.as_ref().unwrap().building);
        press(&mut a, KeyCode::Down, now); // alice
        press(&mut a, KeyCode::Enter, now); // alice: her models, held up
        let job = a.take_build().expect("alice's build");
        let (go, gate) = std::sync::mpsc::channel::<()>();
        let (done, landed) = std::sync::mpsc::channel();
        let worker = std::thread::spawn(move || {
            gate.recv().unwrap();
            done.send(job.run()).unwrap();
        });
        // Meanwhile: the users' view is drawn, marked as building.
        let v = a.screen(false).drill.unwrap();
        assert!(v.building && v.dim == Dim::User);
        let mut terminal =
            ratatui::Terminal::new(ratatui::backend::TestBackend::new(100, 30)).unwrap();
        terminal
            .draw(|frame| crate::ui::draw(frame, &a.screen(false)))
            .unwrap();
        let screen = format!("{:?}", terminal.backend().buffer());
        assert!(screen.contains("building…") && screen.contains("bob"));
        // Source messages wait for the store, in order.
        let at = |m: SourceMsg, t: DateTime<Utc>| match m {
            SourceMsg::Tail { batch, .. } => SourceMsg::Tail {
                batch,
                polled_at: t,
            },
            m => m,
        };
        let (t1, t2) = (now + Duration::seconds(1), now + Duration::seconds(2));
        a.on_source(at(tail(now, "chat"), t1), now);
        a.on_source(
            SourceMsg::Status(SourceStatus {
                endpoint: "second".into(),
                connection: Connection::Live,
                mode: TailMode::Demo,
                watermark_lag_secs: None,
                absent: Vec::new(),
                note: None,
                replay_lag: None,
            }),
            now,
        );
        a.on_source(at(tail(now, "search"), t2), now);
        assert_eq!(a.queued_messages(), 3);
        assert_eq!(a.status.rows_read, 4, "not applied while the build reads");
        assert_eq!(
            a.status.endpoint, "demo",
            "the status waits behind the rows"
        );
        // Keys are answered: moves on rows that are not this level's wait, the
        // metric changes, Ctrl-C quits, Esc goes back up.
        assert_eq!(press(&mut a, KeyCode::Down, now), None);
        assert_eq!(a.nav.current().unwrap().selected, 0);
        press(&mut a, KeyCode::Char('m'), now);
        assert_eq!(a.nav.metric, drill::Metric::Requests);
        assert_eq!(
            a.on_key_at(
                KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
                now
            ),
            Some(Command::Quit)
        );
        press(&mut a, KeyCode::Esc, now);
        assert_eq!(a.nav.levels.len(), 1);
        // The users' view is the open level's again: it follows the keys at once.
        press(&mut a, KeyCode::Up, now); // bob
        let v = a.drill.as_ref().unwrap();
        assert_eq!((v.selected, v.metric), (0, drill::Metric::Requests));
        assert!(v.building);
        assert!(a.take_build().is_none(), "one build at a time");
        // Released: alice's models are no longer asked for; the messages apply.
        go.send(()).unwrap();
        a.on_built(landed.recv().unwrap(), now);
        worker.join().unwrap();
        assert_eq!(a.queued_messages(), 0);
        assert_eq!(a.status.rows_read, 6);
        assert_eq!(a.status.endpoint, "second");
        assert_eq!(a.status.last_refresh, Some(t2), "applied in order");
        assert_eq!(a.drill.as_ref().unwrap().dim, Dim::User);
        // The open level is built next, with the new rows.
        a.rebuild_if_due(now, Duration::milliseconds(200));
        let job = a.take_build().expect("the users' build");
        assert!(job.is_level());
        a.on_built(job.run(), now);
        let v = a.drill.as_ref().unwrap();
        assert!(!v.building);
        assert_eq!(v.parent.cost, Money::from_dollars(13));
        let names: Vec<&str> = (0..v.order.len())
            .map(|i| v.row_at(i).unwrap().name.as_str())
            .collect();
        assert_eq!(names, ["bob", "alice", "u"], "by requests, then name");
        assert_eq!(v.selected, 0, "bob stays selected");
    }
}
