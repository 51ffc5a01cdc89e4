//! The dashboard while the history loads. The backfill reads newest first, so after
//! its first step the store holds every row from some instant on (`Coverage`): a
//! figure whose window starts there or later is final and is shown; one that
//! reaches further back waits, and its pane says for what (`Pending`). Anomaly
//! detection (and so alerting) waits for the whole history: its baselines reach
//! back four weeks and choose their form by how much history there is.

use chrono::{DateTime, Duration, Utc};

use super::view::BackfillProgress;
use crate::store::Store;

/// How much of the history the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// All of it: the backfill is done.
    Complete,
    /// Every row from this instant on (the older ones are still being read).
    From(DateTime<Utc>),
    /// Nothing yet.
    Nothing,
}

impl Coverage {
    /// What a backfill's progress says (None: no backfill runs, or it is done).
    pub fn of(progress: Option<&BackfillProgress>) -> Coverage {
        match progress {
            None => Coverage::Complete,
            Some(p) => p.loaded_from.map_or(Coverage::Nothing, Coverage::From),
        }
    }

    /// Whether every row from `t` on is in the store.
    pub fn covers(self, t: DateTime<Utc>) -> bool {
        match self {
            Coverage::Complete => true,
            Coverage::From(from) => from <= t,
            Coverage::Nothing => false,
        }
    }

    /// Where the loaded history starts while it is partial.
    pub fn loaded_from(self) -> Option<DateTime<Utc>> {
        match self {
            Coverage::From(t) => Some(t),
            _ => None,
        }
    }
}

/// What the overview's figures still wait for while the history loads; the
/// overview has none once it is complete. A figure marked here is drawn as "…",
/// never as the partial number the store holds for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pending {
    /// Every row from here on is in.
    pub loaded_from: DateTime<Utc>,
    /// Where the history ends up starting (the store's retention).
    pub history_start: DateTime<Utc>,
    /// Where this month starts (in the billing zone).
    pub month_start: DateTime<Utc>,
    /// This hour's column.
    pub hour: bool,
    /// Today's spend and requests.
    pub today: bool,
    /// The 7-day columns ($/req and $/1k tokens are over 7 days too), the drivers.
    pub week: bool,
    /// Today against the previous 7 days at the same time of day.
    pub change: bool,
    /// Trailing hours of the 24-hour sparkline that are in (24: all).
    pub spark_hours: usize,
    /// Month-to-date, the burn and the "spent" gauge.
    pub month: bool,
    /// The forecast, its interval, the day the budget runs out, its gauge: they
    /// read every day of the history.
    pub forecast: bool,
    /// Trailing days of the 30-day trend that are in (30: all).
    pub trend_days: usize,
    /// Anomaly detection waits for the whole history.
    pub detection: bool,
}

impl Pending {
    /// What waits at `now` with `coverage`; None when the history is complete.
    pub fn at(store: &Store, now: DateTime<Utc>, coverage: Coverage) -> Option<Pending> {
        let loaded_from = match coverage {
            Coverage::Complete => return None,
            Coverage::From(t) => t,
            Coverage::Nothing => now,
        };
        let cal = store.calendar();
        let covers = |t| coverage.covers(t);
        let cur = cal.hour_index(now);
        let today = cal.local_date(now);
        let spark_hours = (0..24)
            .take_while(|back| covers(cal.hour_start(cur - back)))
            .count();
        let trend_days = (0..30)
            .take_while(|back| covers(cal.date_start(today - Duration::days(*back))))
            .count();
        Some(Pending {
            loaded_from,
            history_start: Store::history_start(store.config(), now),
            month_start: cal.month_start(now),
            hour: !covers(cal.hour_start(cur)),
            today: !covers(cal.day_start(now)),
            week: !covers(now - Duration::days(7)),
            change: !covers(cal.date_start(today - Duration::days(7))),
            spark_hours,
            month: !covers(cal.month_start(now)),
            forecast: true,
            trend_days,
            detection: true,
        })
    }

    /// Days of history in, and days it will hold, at `now`: "6 of 35 days".
    pub fn days(&self, now: DateTime<Utc>) -> (f64, f64) {
        days_between(self.loaded_from, self.history_start, now)
    }
}

/// (days in, days in all) of a history starting at `history_start` that is in
/// from `loaded_from` on.
pub fn days_between(
    loaded_from: DateTime<Utc>,
    history_start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (f64, f64) {
    let days = |from: DateTime<Utc>| ((now - from).num_seconds().max(0) as f64) / 86_400.0;
    let all = days(history_start);
    (days(loaded_from).min(all), all)
}

/// "12 min of 35 days", "5 h of 35 days", "6 of 35 days": how much history is
/// in, never rounded up.
pub fn days_text(loaded: f64, all: f64) -> String {
    let all = all.round() as i64;
    if loaded < 1.0 / 24.0 {
        format!("{} min of {all} days", (loaded * 1440.0).floor() as i64)
    } else if loaded < 1.0 {
        format!("{} h of {all} days", (loaded * 24.0).floor() as i64)
    } else {
        format!("{} of {all} days", loaded.floor() as i64)
    }
}

/// The least time between two overview builds: while the history loads, a second
/// (each build reads the whole store, and the backfill needs the CPU more).
pub fn build_gap(coverage: Coverage, min_gap: chrono::Duration) -> chrono::Duration {
    match coverage {
        Coverage::Complete => min_gap,
        _ => min_gap.max(chrono::Duration::seconds(1)),
    }
}

impl super::state::App {
    /// How much of the history the store holds now.
    pub fn coverage(&self) -> Coverage {
        Coverage::of(self.backfill.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::state::App;
    use crate::detect::DetectParams;
    use crate::model::{Agg, Connection, Fact, FactBatch, SourceMsg, SourceStatus, TailMode};
    use crate::money::Money;
    use crate::store::StoreConfig;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn fact(at: DateTime<Utc>, feature: &str, dollars: i64) -> Fact {
        Fact {
            at,
            names: [
                feature.into(),
                "user_1".into(),
                "gpt-4o".into(),
                "acme".into(),
                "eu".into(),
            ],
            agg: Agg::one(Money::from_dollars(dollars), 100, 20),
        }
    }

    fn backfilling(done_steps: u64, loaded_from: Option<DateTime<Utc>>) -> SourceMsg {
        SourceMsg::Status(SourceStatus {
            endpoint: "db:5432/llm".into(),
            connection: Connection::Backfilling {
                done_steps,
                total_steps: 141,
                loaded_from,
            },
            mode: TailMode::TxWatermark,
            watermark_lag_secs: None,
            absent: Vec::new(),
            note: None,
            replay_lag: None,
        })
    }

    fn batch(facts: Vec<Fact>, done: bool) -> SourceMsg {
        SourceMsg::Backfill {
            batch: FactBatch::of_rows(facts),
            done,
        }
    }

    fn drawn(a: &App, w: u16, h: u16) -> Vec<String> {
        let mut terminal =
            ratatui::Terminal::new(ratatui::backend::TestBackend::new(w, h)).unwrap();
        terminal
            .draw(|frame| crate::ui::draw(frame, &a.screen(false)))
            .unwrap();
        let buf = terminal.backend().buffer();
        (0..h)
            .map(|y| (0..w).map(|x| buf[(x, y)].symbol()).collect::<String>())
            .collect()
    }

    /// A fixed clock, 35 days of history sent newest first in six-hour chunks as
    /// the backfill sends them: after the chunks back to midnight (and one page of
    /// the next, older chunk, whose rows are in the store but not all of its
    /// rows), this hour and today show exactly what the whole history says, and
    /// every figure reaching further back is marked, never drawn from the part in.
    #[test]
    fn the_first_chunks_show_what_is_final_and_mark_the_rest() {
        let now = utc("2026-11-28T12:30:00Z");
        let cfg = StoreConfig::default();
        let start = Store::history_start(&cfg, now);
        // $1 an hour on `chat` for the whole history, $2 an hour today, and a
        // night batch of $50 yesterday at 20:00.
        let midnight = utc("2026-11-28T00:00:00Z");
        let mut hours = Vec::new();
        let mut t = start;
        while t <= now {
            hours.push(fact(t, "chat", if t >= midnight { 2 } else { 1 }));
            t += Duration::hours(1);
        }
        let night = fact(utc("2026-11-27T20:00:00Z"), "batch", 50);
        let mut all = hours.clone();
        all.push(night.clone());

        // What the whole history says.
        let mut whole = App::new(
            Store::new(cfg, now),
            Some(Money::from_dollars(1_000)),
            DetectParams::default(),
            "db:5432/llm",
        );
        whole.on_source(batch(all.clone(), true), now);
        assert!(whole.rebuild_if_due(now, Duration::milliseconds(200)));
        let final_chat = whole.overview.features.iter().find(|f| f.name == "chat");
        let final_chat = final_chat.cloned().unwrap();
        assert!(whole.overview.pending.is_none());

        let mut a = App::new(
            Store::new(cfg, now),
            Some(Money::from_dollars(1_000)),
            DetectParams::default(),
            "db:5432/llm",
        );
        a.on_source(backfilling(0, None), now);
        assert!(!a.rebuild_if_due(now, Duration::milliseconds(200)));
        let screen = drawn(&a, 80, 24).join("\n");
        assert!(screen.contains("Loading the last 35 days"), "{screen}");
        assert!(!screen.contains("Spend by feature"), "nothing is in yet");

        // Chunks [12:00, ..), [06:00, 12:00), [00:00, 06:00), then a page of
        // [18:00, 00:00) yesterday.
        let today: Vec<Fact> = hours.iter().filter(|f| f.at >= midnight).cloned().collect();
        a.on_source(batch(today, false), now);
        a.on_source(backfilling(3, Some(midnight)), now);
        a.on_source(batch(vec![night], false), now);
        assert_eq!(a.coverage(), Coverage::From(midnight));
        assert!(a.rebuild_if_due(now, Duration::milliseconds(200)));

        let p = a.overview.pending.expect("the history is partial");
        assert!(!p.hour && !p.today, "{p:?}");
        assert!(p.week && p.change && p.month && p.forecast && p.detection);
        assert_eq!((p.spark_hours, p.trend_days), (13, 1));
        assert!(a.overview.anomalies.is_empty(), "detection waits");
        // Today and this hour are final: equal to the whole history's.
        let chat = a
            .overview
            .features
            .iter()
            .find(|f| f.name == "chat")
            .unwrap();
        assert_eq!(chat.this_hour, final_chat.this_hour);
        assert_eq!(chat.today, final_chat.today);
        assert_eq!(chat.requests_today, final_chat.requests_today);
        assert_eq!(chat.today, Money::from_dollars(26));
        // The partial week ($76 with the night batch) is not the week's.
        let partial_week = a.store.total(a.store.hours_from(now - Duration::days(7)));
        assert_eq!(partial_week.cost, Money::from_dollars(76));
        assert_ne!(partial_week.cost, whole.overview.week_total);

        let screen = drawn(&a, 80, 24);
        let text = screen.join("\n");
        let chat_row = screen.iter().find(|l| l.contains(" chat ")).unwrap();
        assert!(
            chat_row.contains("$2.00") && chat_row.contains("$26.00"),
            "{text}"
        );
        assert!(
            chat_row.matches('…').count() >= 3,
            "7 days, $/req, vs 7d: {text}"
        );
        for good in [
            "month-to-date, burn and forecast … waiting for the history back to Nov 1",
            "anomaly detection: waiting for history (12 h of 35 days in)",
            "… waiting for 7 days of history",
            "Backfilling 12 h of 35 days",
            "budget $1,000/month",
        ] {
            assert!(text.contains(good), "{good}:\n{text}");
        }
        // No figure from the part that is in passes for the whole: not the
        // partial week, month or burn, not a "no anomalies".
        for bad in ["$76", "$50", "month-to-date $", "No anomalies", "No spend"] {
            assert!(!text.contains(bad), "{bad}:\n{text}");
        }

        // The rest, then done: everything is final, detection runs.
        let older: Vec<Fact> = hours.iter().filter(|f| f.at < midnight).cloned().collect();
        a.on_source(batch(older, false), now);
        a.on_source(backfilling(140, Some(start)), now);
        a.on_source(batch(Vec::new(), true), now);
        assert_eq!(a.coverage(), Coverage::Complete);
        assert!(a.rebuild_if_due(now + Duration::seconds(2), Duration::milliseconds(200)));
        assert!(a.overview.pending.is_none());
        assert_eq!(a.overview.week_total, whole.overview.week_total);
        assert_eq!(
            a.overview.header.month_to_date,
            whole.overview.header.month_to_date
        );
    }

    /// A drill-down while the history loads: 24 hours that are in show, with a
    /// baseline marked when the final one reaches further back; a 7-day window
    /// waits.
    #[test]
    fn drill_down_windows_wait_for_the_history_they_need() {
        use crate::app::drill::{Nav, Window, build_level_loading};
        let now = utc("2026-11-28T12:30:00Z");
        let cfg = StoreConfig::default();
        let start = Store::history_start(&cfg, now);
        let mut store = Store::new(cfg, now);
        let mut facts = Vec::new();
        let mut t = start;
        while t <= now {
            facts.push(fact(t, "chat", 1));
            t += Duration::hours(1);
        }
        store.apply(&FactBatch::of_rows(facts), now);
        let mut nav = Nav::default();
        nav.drill("chat");
        let level = nav.current().unwrap().clone();
        let loaded = Coverage::From(utc("2026-11-27T06:00:00Z"));

        // 24 hours: in; its previous 24 hours are not all in: the change waits.
        let day = build_level_loading(&store, &nav, &level, now, loaded);
        assert!(!day.window_pending && day.baseline_pending);
        let whole = build_level_loading(&store, &nav, &level, now, Coverage::Complete);
        assert_eq!(day.parent, whole.parent, "the window's figures are final");
        assert!(!whole.window_pending && !whole.baseline_pending);

        // 7 days: waits.
        nav.set_window(Window::Week);
        let week = build_level_loading(&store, &nav, &level, now, loaded);
        assert!(week.window_pending);
        // Loaded back past two days: 24 hours compare with the previous 24.
        nav.set_window(Window::Day);
        let more = Coverage::From(utc("2026-11-26T06:00:00Z"));
        let day = build_level_loading(&store, &nav, &level, now, more);
        assert!(!day.window_pending && !day.baseline_pending);
        assert_eq!(day.baseline, whole.baseline);
    }
}
