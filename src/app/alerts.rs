//! The dashboard's link to the alert engine. The engine (state store, Slack queue,
//! desktop notifications) runs on its own task: the event loop only hands it
//! requests with `try_send` (never waiting) and reads back a small summary, so a
//! slow database or a dead Slack never stalls the screen.

use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use tokio::sync::mpsc;

use super::view::{AlertPart, AlertPartKind};
use crate::alert::desktop::{DesktopNotifier, DesktopTracker};
use crate::alert::engine::{AlertEngine, eval_now};
use crate::alert::slack::Outcome;
use crate::alert::{Alert, Book, Evaluation, Labels, Phase, Silence};

/// When a silence asked for from the dashboard ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SilenceEnd {
    For { hours: i64 },
    At(DateTime<Utc>),
}

/// What the event loop asks of the alert task.
#[derive(Debug, Clone)]
pub enum AlertRequest {
    Evaluate(Evaluation),
    Acknowledge {
        fingerprint: String,
    },
    /// Silence for a length (`z`: `For(hours)`, counted from when the task gets
    /// it) or until a time typed at the prompt (`Z`).
    Silence {
        matchers: Labels,
        until: SilenceEnd,
    },
    /// Lifts the silence matching these labels, else the newest.
    Lift {
        matchers: Option<Labels>,
    },
    /// Lifts one silence (selected in the alerts pane).
    LiftId {
        id: String,
    },
    List,
}

/// What the alert task reports back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertsSummary {
    pub firing: usize,
    pub pending: usize,
    pub acknowledged: usize,
    pub silences: Vec<Silence>,
    /// Firing and pending alerts, most severe first (for the alerts pane).
    pub alerts: Vec<PaneAlert>,
    /// The firing alerts as anomalies, marked as from the shared state: the
    /// anomaly pane lists those its own detector has not confirmed (yet).
    pub firing_shared: Vec<crate::detect::Anomaly>,
    /// "shared in PostgreSQL ..." or "local file ... (why)".
    pub state: String,
    pub shared: bool,
    pub slack: String,
    /// A Slack configuration error, a state error: shown until it clears.
    pub problem: Option<String>,
    /// The answer to the last key (ack, silence, list, lift), with the time it came:
    /// shown for 8 s from then, however long the shared state took to answer.
    pub note: Option<(String, DateTime<Utc>)>,
    pub desktop: Option<String>,
}

impl AlertsSummary {
    /// True while [`AlertsSummary::parts`] shows the answer to the last key.
    pub fn note_shown(&self, now: DateTime<Utc>) -> bool {
        self.note
            .as_ref()
            .is_some_and(|(_, at)| now - *at < Duration::seconds(8))
    }

    /// The status bar's alert segments: the answer to the last key while it shows,
    /// else what fires, Slack's state, whether the state is shared, desktop
    /// notifications in one word (the reason is in the log), and a problem.
    pub fn parts(&self, now: DateTime<Utc>) -> Vec<AlertPart> {
        use AlertPartKind as K;
        if let Some((note, _)) = self.note.as_ref().filter(|_| self.note_shown(now)) {
            return vec![AlertPart::new(K::Answer, note.clone())];
        }
        let mut count = format!("alerts: {} firing", self.firing);
        let short = count.clone();
        if self.pending > 0 {
            count.push_str(&format!(", {} pending", self.pending));
        }
        if self.acknowledged > 0 {
            count.push_str(&format!(", {} acked", self.acknowledged));
        }
        if !self.silences.is_empty() {
            count.push_str(&format!(", {} silenced", self.silences.len()));
        }
        let mut parts = vec![AlertPart::new(K::Count, count).or_short(short)];
        // "Slack off (set ...)" or "Slack: 4 sent, 2 waiting": short, what comes first.
        let slack_short = match self.slack.split_once([' ', ',']) {
            Some(("Slack", rest)) if rest.starts_with("off") => "Slack off".to_string(),
            _ => self.slack.split(',').next().unwrap_or_default().to_string(),
        };
        parts.push(AlertPart::new(K::Slack, self.slack.clone()).or_short(slack_short));
        if !self.shared {
            parts.push(if self.state.contains("is unreachable") {
                AlertPart::new(
                    K::State,
                    "database unreachable: alert state in the local file (dedupe on this machine)",
                )
                .or_short("alert state in the local file")
            } else if self.state.contains("hot standby") {
                AlertPart::new(
                    K::State,
                    "standby: alert state not shared (set database.primary_url)",
                )
                .or_short("state not shared (standby)")
            } else {
                AlertPart::new(K::State, "state not shared (local file)")
            });
        }
        if let Some(d) = &self.desktop {
            // The alert side says why in a word or two ("desktop: off (no D-Bus)");
            // anything longer is a reason for the log, not the status bar.
            let text = if d.starts_with("desktop: off") && d.len() <= 32 {
                d.clone()
            } else {
                "desktop: off".to_string()
            };
            parts.push(AlertPart::new(K::Desktop, text).or_short("desktop: off"));
        }
        if let Some(p) = &self.problem {
            parts.push(AlertPart::new(K::Problem, p.clone()));
        }
        parts
    }
}

/// One alert as the alerts pane lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct PaneAlert {
    pub fingerprint: String,
    /// Its rule and labels: the matchers of a silence of exactly this alert.
    pub matchers: Labels,
    pub severity: crate::detect::Severity,
    pub rule: String,
    /// "feature support_qa", "database 127.0.0.1:5432/llm".
    pub subject: String,
    /// "firing", "pending".
    pub phase: &'static str,
    pub since: Option<DateTime<Utc>>,
    pub acked_by: Option<String>,
    /// The id of the silence that holds its messages back.
    pub silenced_by: Option<String>,
}

/// The alerts and silences pane (`L`): what is firing and every active silence,
/// with its expiry, who set it and what it matches; `U` lifts the selected silence.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlertsPane {
    pub alerts: Vec<PaneAlert>,
    pub silences: Vec<Silence>,
    /// Index into `silences`.
    pub selected: usize,
    pub now: DateTime<Utc>,
    /// The billing time zone, for expiry times.
    pub tz: chrono_tz::Tz,
}

/// When a silence typed at the prompt ends: "HH:MM" (today in the billing time
/// zone, tomorrow when that is past) or a duration ("90m", "2h", "1h 30m").
pub fn parse_until(
    text: &str,
    now: DateTime<Utc>,
    tz: chrono_tz::Tz,
) -> Result<DateTime<Utc>, String> {
    use chrono::TimeZone;
    let t = text.trim();
    if t.is_empty() {
        return Err("type a time (HH:MM) or a duration (90m, 2h)".into());
    }
    if let Ok(time) = chrono::NaiveTime::parse_from_str(t, "%H:%M") {
        let today = now.with_timezone(&tz).date_naive();
        for day in [today, today + Duration::days(1)] {
            let at = tz
                .from_local_datetime(&day.and_time(time))
                .earliest()
                .map(|d| d.with_timezone(&Utc));
            if let Some(at) = at
                && at > now
            {
                return Ok(at);
            }
        }
        return Err(format!("{t} does not exist in {tz} today or tomorrow"));
    }
    match crate::config::parse_duration(t) {
        Ok(d) if d.is_zero() => Err("a silence must last longer than 0".into()),
        Ok(d) if d > std::time::Duration::from_secs(90 * 86_400) => {
            Err(format!("{t} is too long: at most 90 days"))
        }
        Ok(d) => Ok(now + Duration::from_std(d).map_err(|e| e.to_string())?),
        Err(_) => Err(format!(
            "{t:?} is neither a time (HH:MM, {tz}) nor a duration (90m, 2h)"
        )),
    }
}

/// The event loop's end of the link.
pub struct AlertLink {
    tx: mpsc::Sender<AlertRequest>,
    pub health: crate::alert::health::HealthParams,
    shared: Arc<Mutex<AlertsSummary>>,
    pub summary: AlertsSummary,
    pub last_eval: Option<DateTime<Utc>>,
}

impl AlertLink {
    /// Starts the alert task on the current runtime.
    pub fn start(
        engine: AlertEngine,
        outcomes: mpsc::Receiver<Outcome>,
        desktop: Option<DesktopNotifier>,
    ) -> AlertLink {
        let (tx, rx) = mpsc::channel(4);
        let shared = Arc::new(Mutex::new(AlertsSummary {
            state: engine.store.describe(),
            shared: engine.store.is_shared(),
            slack: slack_text(&engine),
            ..AlertsSummary::default()
        }));
        let summary = shared.lock().map(|s| s.clone()).unwrap_or_default();
        let health = engine.settings.health.clone();
        tokio::spawn(alert_task(engine, rx, outcomes, desktop, shared.clone()));
        AlertLink {
            tx,
            health,
            shared,
            summary,
            last_eval: None,
        }
    }

    /// Hands a request to the task without waiting; false when it is busy.
    pub fn request(&self, r: AlertRequest) -> bool {
        self.tx.try_send(r).is_ok()
    }

    /// Copies the task's summary; true when it changed.
    pub fn refresh(&mut self) -> bool {
        let now = self.shared.lock().map(|s| s.clone()).unwrap_or_default();
        if now != self.summary {
            self.summary = now;
            true
        } else {
            false
        }
    }
}

/// Everything one alert evaluation sees on the dashboard: the detector's anomalies
/// and pending conditions, and the monitor-health checks.
pub fn evaluation(
    app: &super::state::App,
    health: &crate::alert::health::HealthParams,
    now: DateTime<Utc>,
) -> Evaluation {
    use crate::alert::{Hold, health as h};
    let now = eval_now(now);
    let endpoint = &app.status.endpoint;
    let mut observations =
        crate::alert::engine::observations(&app.overview.anomalies, &app.detector, &app.params);
    if let crate::model::Connection::Disconnected { error, since } = &app.status.connection
        && let Some(o) = h::database_unreachable(Some(*since), error, endpoint, now, health)
    {
        observations.push((o, Hold::Confirmed));
    }
    if let Some(o) = h::no_events(&app.store, endpoint, now, health) {
        observations.push((o, Hold::Confirmed));
    }
    Evaluation { now, observations }
}

fn slack_text(engine: &AlertEngine) -> String {
    match engine.slack() {
        None => "Slack off (set BURNRATE_SLACK_WEBHOOK_URL)".into(),
        Some(q) => {
            let s = q.status();
            let mut t = format!("Slack: {} sent", s.sent);
            if s.waiting > 0 {
                t.push_str(&format!(", {} waiting", s.waiting));
            }
            if s.dropped > 0 {
                t.push_str(&format!(", {} dropped", s.dropped));
            }
            t
        }
    }
}

fn user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(crate::alert::state::instance_name)
}

fn summarise(book: &Book, now: DateTime<Utc>, s: &mut AlertsSummary) {
    let firing: Vec<&Alert> = book.firing();
    s.firing = firing.len();
    s.acknowledged = firing.iter().filter(|a| a.acked.is_some()).count();
    s.pending = book
        .alerts
        .values()
        .filter(|a| a.phase == Phase::Pending)
        .count();
    s.silences = book.active_silences(now).into_iter().cloned().collect();
    s.firing_shared = firing
        .iter()
        .filter_map(|a| crate::alert::shared_anomaly(a))
        .collect();
    let mut alerts: Vec<&Alert> = book
        .alerts
        .values()
        .filter(|a| a.phase != Phase::Resolved)
        .collect();
    alerts.sort_by(|a, b| {
        (b.phase == Phase::Firing, b.severity())
            .cmp(&(a.phase == Phase::Firing, a.severity()))
            .then_with(|| a.fingerprint.cmp(&b.fingerprint))
    });
    s.alerts = alerts
        .into_iter()
        .map(|a| PaneAlert {
            fingerprint: a.fingerprint.clone(),
            matchers: Silence::matchers_for(a),
            severity: a.severity(),
            rule: a.rule().to_string(),
            subject: a.observation.subject(),
            phase: a.phase.name(),
            since: a.episode.or(a.observation.since),
            acked_by: a.acked.as_ref().map(|k| k.by.clone()),
            silenced_by: s
                .silences
                .iter()
                .find(|x| x.matches(a))
                .map(|x| x.id.clone()),
        })
        .collect();
}

async fn alert_task(
    mut engine: AlertEngine,
    mut rx: mpsc::Receiver<AlertRequest>,
    mut outcomes: mpsc::Receiver<Outcome>,
    desktop: Option<DesktopNotifier>,
    shared: Arc<Mutex<AlertsSummary>>,
) {
    let mut status_tick = tokio::time::interval(StdDuration::from_secs(2));
    // Per person: what this desktop was shown.
    let mut desktop_shown = DesktopTracker::default();
    let set = |f: &dyn Fn(&mut AlertsSummary)| {
        if let Ok(mut s) = shared.lock() {
            f(&mut s);
        }
    };
    // A request's summary is taken after the engine acted: a silence starts at the
    // engine's clock, and a summary dated before it would not list it as active.
    let after = || eval_now(Utc::now());
    // The answer to a key (ack, silence, lift, list) is shown for 8 s from when it
    // came, and logged: who silenced what is worth finding again.
    let answer = |note: String| {
        tracing::info!(%note, "alerts: answered a key");
        set(&|s| s.note = Some((note.clone(), Utc::now())));
    };
    if let Some(text) = desktop.as_ref().and_then(|d| d.short_status()) {
        set(&|s| s.desktop = Some(text.clone()));
    }
    // What is already firing shows at once, not after the history is loaded and
    // this monitor's detector confirms it.
    // Bounded: a database that does not answer must not hold the task's loop.
    if let Ok(Ok(book)) = tokio::time::timeout(StdDuration::from_secs(5), engine.store.load()).await
    {
        set(&|s| summarise(&book, after(), s));
    }
    loop {
        tokio::select! {
            req = rx.recv() => {
                let Some(req) = req else { return };
                let now = eval_now(Utc::now());
                match req {
                    AlertRequest::Evaluate(eval) => match engine.round(eval, false).await {
                        Ok(round) => {
                            let (state, is_shared) = (engine.store.describe(), engine.store.is_shared());
                            set(&|s| {
                                summarise(&round.book, now, s);
                                s.state = state.clone();
                                s.shared = is_shared;
                                if s.problem.as_deref().is_some_and(|p| p.starts_with("alert state")) {
                                    s.problem = None;
                                }
                            });
                            let notices = desktop_shown.notices(&round.book, engine.store.database());
                            if let Some(d) = desktop.as_ref().filter(|_| !notices.is_empty()) {
                                d.notify_in_background(notices);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "alerts: evaluation failed");
                            let text = format!("alert state: {e}");
                            set(&|s| s.problem = Some(text.clone()));
                        }
                    },
                    AlertRequest::Acknowledge { fingerprint } => {
                        let note = match engine.acknowledge(fingerprint, user()).await {
                            Ok(book) => {
                                set(&|s| summarise(&book, after(), s));
                                "acknowledged: no repeats until it resolves".to_string()
                            }
                            Err(e) => format!("cannot acknowledge: {e}"),
                        };
                        answer(note);
                    }
                    AlertRequest::Silence { matchers, until: end } => {
                        let until = match end {
                            SilenceEnd::For { hours } => now + Duration::hours(hours),
                            SilenceEnd::At(t) => t,
                        };
                        let note = match engine.silence(matchers, until, user()).await {
                            Ok((silence, book)) => {
                                set(&|s| summarise(&book, after(), s));
                                let length = match end {
                                    SilenceEnd::For { hours } => format!(
                                        "for {hours}h, until {} UTC",
                                        until.format("%H:%M")
                                    ),
                                    SilenceEnd::At(_) => {
                                        format!("until {} UTC", until.format("%m-%d %H:%M"))
                                    }
                                };
                                format!("silenced {} {length} (id {})", silence.describe(), silence.id)
                            }
                            Err(e) => format!("cannot silence: {e}"),
                        };
                        answer(note);
                    }
                    AlertRequest::Lift { matchers } => {
                        let book = engine.store.load().await.unwrap_or_default();
                        let active = book.active_silences(now);
                        let pick = matchers
                            .as_ref()
                            .and_then(|m| active.iter().find(|s| &s.matchers == m))
                            .or_else(|| active.iter().max_by_key(|s| s.starts_at))
                            .map(|s| (*s).clone());
                        let note = match pick {
                            None => "no silences to lift".to_string(),
                            Some(sil) => match engine.lift(sil.id.clone()).await {
                                Ok(book) => {
                                    set(&|s| summarise(&book, after(), s));
                                    format!("lifted the silence {} ({})", sil.id, sil.describe())
                                }
                                Err(e) => format!("cannot lift: {e}"),
                            },
                        };
                        answer(note);
                    }
                    AlertRequest::LiftId { id } => {
                        let note = match engine.lift(id.clone()).await {
                            Ok(book) => {
                                set(&|s| summarise(&book, after(), s));
                                format!("lifted the silence {id}")
                            }
                            Err(e) => format!("cannot lift {id}: {e}"),
                        };
                        answer(note);
                    }
                    AlertRequest::List => {
                        let note = match engine.store.load().await {
                            Ok(book) => {
                                set(&|s| summarise(&book, after(), s));
                                let active = book.active_silences(now);
                                if active.is_empty() {
                                    "no silences".to_string()
                                } else {
                                    let list: Vec<String> = active
                                        .iter()
                                        .map(|s| format!(
                                            "{} {} until {} UTC",
                                            s.id,
                                            s.describe(),
                                            s.ends_at.format("%m-%d %H:%M")
                                        ))
                                        .collect();
                                    format!("silences: {}", list.join("; "))
                                }
                            }
                            Err(e) => format!("cannot list silences: {e}"),
                        };
                        answer(note);
                    }
                }
            }
            Some(outcome) = outcomes.recv() => {
                engine.record_keys(&outcome.keys, &outcome.result).await;
            }
            _ = status_tick.tick() => {
                let text = slack_text(&engine);
                let problem = engine.slack().and_then(|q| q.status().config_error);
                set(&|s| {
                    s.slack = text.clone();
                    if let Some(p) = &problem {
                        s.problem = Some(format!("Slack: {p}"));
                    } else if s.problem.as_deref().is_some_and(|p| p.starts_with("Slack")) {
                        s.problem = None;
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn silence_until_a_time_today_or_tomorrow_in_the_billing_zone_or_a_duration() {
        let berlin = chrono_tz::Europe::Berlin;
        // 09:45 UTC is 10:45 in Berlin (CET).
        let now = at("2026-11-28T09:45:00Z");
        assert_eq!(
            parse_until("17:30", now, berlin).unwrap(),
            at("2026-11-28T16:30:00Z")
        );
        // Past today: tomorrow.
        assert_eq!(
            parse_until("08:00", now, berlin).unwrap(),
            at("2026-11-29T07:00:00Z")
        );
        assert_eq!(
            parse_until(" 17:30 ", now, chrono_tz::UTC).unwrap(),
            at("2026-11-28T17:30:00Z")
        );
        assert_eq!(
            parse_until("90m", now, berlin).unwrap(),
            at("2026-11-28T11:15:00Z")
        );
        assert_eq!(
            parse_until("1h 30m", now, berlin).unwrap(),
            at("2026-11-28T11:15:00Z")
        );
        assert_eq!(
            parse_until("2h", now, berlin).unwrap(),
            at("2026-11-28T11:45:00Z")
        );
        for bad in ["", "25:00", "soon", "0m", "400d"] {
            let e = parse_until(bad, now, berlin).unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
        assert!(
            parse_until("soon", now, berlin)
                .unwrap_err()
                .contains("HH:MM"),
        );
    }

    #[test]
    fn the_summary_carries_the_firing_alerts_for_the_anomaly_pane() {
        use crate::alert::{Hold, Observation, Policy};
        let now = at("2026-11-28T09:45:00Z");
        let mut labels = Labels::new();
        labels.insert("feature".into(), "support_qa".into());
        let o = Observation {
            rule: "spike_5m".into(),
            labels,
            severity: crate::detect::Severity::Critical,
            summary: "support_qa is up".into(),
            window: "5m".into(),
            observed: None,
            expected: None,
            ratio: None,
            baseline: String::new(),
            contributors: vec![],
            hint: String::new(),
            since: None,
        };
        let mut book = Book::default();
        book.step(
            &Evaluation {
                now,
                observations: vec![(o, Hold::Confirmed)],
            },
            &Policy::default(),
        );
        let mut s = AlertsSummary::default();
        summarise(&book, now, &mut s);
        assert_eq!(s.firing, 1);
        assert_eq!(s.firing_shared.len(), 1);
        assert_eq!(s.firing_shared[0].name, "support_qa");
        assert!(s.firing_shared[0].message.starts_with("[shared state] "));
    }

    #[test]
    fn the_status_segment_says_when_the_state_is_local_because_the_database_is_down() {
        let now = at("2026-11-28T09:45:00Z");
        let mut s = AlertsSummary {
            state: "local file /x/alerts.json while the shared state in PostgreSQL at db:5432/llm \
                    is unreachable (since 09:40:00 UTC: connection refused): alerts are \
                    deduplicated on this machine only"
                .into(),
            shared: false,
            slack: "Slack: 1 sent".into(),
            firing: 1,
            ..AlertsSummary::default()
        };
        let line = |s: &AlertsSummary| {
            let texts: Vec<String> = s.parts(now).into_iter().map(|p| p.text).collect();
            texts.join(" · ")
        };
        assert!(line(&s).contains("database unreachable: alert state in the local file"));
        s.state = "local file /x/alerts.json (read-only role)".into();
        assert!(line(&s).contains("state not shared (local file)"));
        // A standby without the primary's URL: says what to set.
        s.state = format!(
            "local file /x/alerts.json ({}): alert state is not shared with other monitors",
            crate::source::alert_state::standby_reason("replica:5432/llm")
        );
        assert!(
            line(&s).contains("standby: alert state not shared (set database.primary_url)"),
            "{}",
            line(&s)
        );
    }

    #[test]
    fn status_parts_say_desktop_off_in_one_word_and_keep_the_count_short() {
        let now = at("2026-11-28T09:45:00Z");
        let s = AlertsSummary {
            firing: 18,
            pending: 2,
            shared: true,
            slack: "Slack off (set BURNRATE_SLACK_WEBHOOK_URL)".into(),
            desktop: Some(
                "desktop notifications unavailable: no D-Bus session bus (I/O error: No such \
                 file or directory (os error 2))"
                    .into(),
            ),
            ..AlertsSummary::default()
        };
        let parts = s.parts(now);
        let kinds: Vec<AlertPartKind> = parts.iter().map(|p| p.kind).collect();
        assert_eq!(
            kinds,
            [
                AlertPartKind::Count,
                AlertPartKind::Slack,
                AlertPartKind::Desktop
            ]
        );
        assert_eq!(parts[0].text, "alerts: 18 firing, 2 pending");
        assert_eq!(parts[0].short.as_deref(), Some("alerts: 18 firing"));
        assert_eq!(parts[1].short.as_deref(), Some("Slack off"));
        assert_eq!(parts[2].text, "desktop: off");
        assert!(parts.iter().all(|p| !p.text.contains("D-Bus")));
        let sent = AlertsSummary {
            slack: "Slack: 4 sent, 1 waiting".into(),
            ..s.clone()
        };
        assert_eq!(sent.parts(now)[1].short.as_deref(), Some("Slack: 4 sent"));
        // The answer to a key replaces them while it shows.
        let answered = AlertsSummary {
            note: Some(("acknowledged".into(), now)),
            ..s
        };
        let parts = answered.parts(now);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].kind, AlertPartKind::Answer);
        assert_eq!(
            answered.parts(now + Duration::seconds(9))[0].kind,
            AlertPartKind::Count
        );
    }
}
