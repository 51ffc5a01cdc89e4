//! The dashboard's state and its one `update` path: source messages, keys and
//! ticks change state here; rendering only reads it.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};
use crossterm::event::{KeyEvent, KeyEventKind};

use super::keymap::{Action, action_for, help_lines};
use super::overview::build_overview;
use super::view::{BackfillProgress, Overview, Screen, StatusView};
use crate::detect::DetectParams;
use crate::model::{Connection, SourceMsg, SourceStatus};
use crate::money::Money;
use crate::store::Store;

/// What the event loop must do besides redrawing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Quit,
    /// Ask the source to poll now.
    RefreshNow,
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
    pub store: Store,
    pub overview: Overview,
    pub status: StatusView,
    pub backfill: Option<BackfillProgress>,
    pub selected: usize,
    pub budget: Option<Money>,
    pub params: DetectParams,
    /// The screen must be drawn again.
    pub dirty: bool,
    /// The store changed since the overview was built.
    data_changed: bool,
    last_built: Option<DateTime<Utc>>,
    rate: RateMeter,
    /// The history is in; late "backfilling" statuses no longer hide the overview.
    history_loaded: bool,
    pub show_help: bool,
    help: Vec<(&'static str, &'static str)>,
}

impl App {
    pub fn new(store: Store, budget: Option<Money>, params: DetectParams, endpoint: &str) -> Self {
        App {
            store,
            overview: Overview::default(),
            status: StatusView {
                endpoint: endpoint.to_string(),
                ..Default::default()
            },
            backfill: Some(BackfillProgress::default()),
            selected: 0,
            budget,
            params,
            dirty: true,
            data_changed: true,
            last_built: None,
            rate: RateMeter::default(),
            history_loaded: false,
            show_help: false,
            help: help_lines(),
        }
    }

    pub fn screen(&self, color: bool) -> Screen<'_> {
        Screen {
            overview: &self.overview,
            status: &self.status,
            backfill: self.backfill,
            selected: self.selected,
            color,
            help: self.show_help.then_some(self.help.as_slice()),
        }
    }

    pub fn on_source(&mut self, msg: SourceMsg, now: DateTime<Utc>) {
        match msg {
            SourceMsg::Status(s) => self.on_status(s),
            SourceMsg::Backfill { batch, done } => {
                self.store.apply(&batch, now);
                self.status.rows_read = self.store.intake().rows;
                self.status.rejected = self.store.intake().rejected_total();
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
                self.store.apply(&batch, now);
                self.status.rows_read = self.store.intake().rows;
                self.status.rejected = self.store.intake().rejected_total();
                self.status.last_refresh = Some(polled_at);
                self.status.events_per_sec = self.rate.per_sec();
                if !batch.facts.is_empty() || !batch.rejected.is_empty() {
                    self.data_changed = true;
                }
                self.dirty = true;
            }
        }
    }

    fn on_status(&mut self, s: SourceStatus) {
        if let Connection::Backfilling {
            done_steps,
            total_steps,
        } = s.connection
            && !self.history_loaded
        {
            self.backfill = Some(BackfillProgress {
                done_steps,
                total_steps,
            });
        }
        self.status.endpoint = s.endpoint;
        self.status.connection = s.connection;
        self.status.mode = s.mode;
        self.status.watermark_lag_secs = s.watermark_lag_secs;
        self.dirty = true;
    }

    /// Rebuilds the view model if data changed, at most every `min_gap`, so a busy
    /// stream costs one rebuild per interval, not one per batch. Paused screens keep
    /// their numbers; the store still takes every row.
    pub fn rebuild_if_due(&mut self, now: DateTime<Utc>, min_gap: Duration) -> bool {
        if !self.data_changed || self.status.paused || self.backfill.is_some() {
            return false;
        }
        if self.last_built.is_some_and(|t| now - t < min_gap) {
            return false;
        }
        self.overview = build_overview(&self.store, now, self.budget, &self.params);
        self.selected = self
            .selected
            .min(self.overview.features.len().saturating_sub(1));
        self.last_built = Some(now);
        self.data_changed = false;
        self.dirty = true;
        true
    }

    /// Once a second: time moves on even without rows (ages, windows, pruning).
    pub fn on_tick(&mut self, now: DateTime<Utc>) {
        self.rate.trim(now);
        self.status.events_per_sec = self.rate.per_sec();
        self.store.prune(now);
        // Time-relative figures (this hour, today, spikes) change as the clock moves.
        if self
            .last_built
            .is_none_or(|t| now - t >= Duration::seconds(5))
        {
            self.data_changed = true;
        }
        if !self.status.paused {
            self.overview.now = now;
        }
        self.dirty = true;
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Option<Command> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let action = action_for(&key);
        if self.show_help {
            // Any key closes the help; quitting still works from it.
            self.show_help = false;
            self.dirty = true;
            return (action == Some(Action::Quit)).then_some(Command::Quit);
        }
        let rows = self.overview.features.len();
        let cmd = match action? {
            Action::Quit => Some(Command::Quit),
            Action::Down => {
                self.selected = (self.selected + 1).min(rows.saturating_sub(1));
                None
            }
            Action::Up => {
                self.selected = self.selected.saturating_sub(1);
                None
            }
            Action::First => {
                self.selected = 0;
                None
            }
            Action::Last => {
                self.selected = rows.saturating_sub(1);
                None
            }
            Action::TogglePause => {
                self.status.paused = !self.status.paused;
                None
            }
            Action::RefreshNow => {
                self.data_changed = true;
                Some(Command::RefreshNow)
            }
            Action::ToggleHelp => {
                self.show_help = true;
                None
            }
            Action::CloseOverlay => None,
        };
        self.dirty = true;
        cmd
    }
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

    fn app(now: DateTime<Utc>) -> App {
        let params = DetectParams {
            today_ratio: 1.5,
            spike_ratio: 3.0,
            min_excess: Money::from_dollars(1),
            contributors: 3,
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
        a.on_source(
            SourceMsg::Status(SourceStatus {
                endpoint: "demo".into(),
                connection: Connection::Backfilling {
                    done_steps: 1,
                    total_steps: 4,
                },
                mode: TailMode::Demo,
                watermark_lag_secs: None,
            }),
            now,
        );
        assert_eq!(
            a.backfill,
            Some(BackfillProgress {
                done_steps: 1,
                total_steps: 4
            })
        );
        assert!(
            !a.rebuild_if_due(now, Duration::milliseconds(200)),
            "no overview while loading"
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
}
