//! Desktop notifications over D-Bus (`org.freedesktop.Notifications`), per person.
//!
//! [`DesktopNotifier::probe`] asks the notification daemon for its server information
//! once at start. Without a session bus (over SSH, in a container) or without a
//! daemon on it (`org.freedesktop.DBus.Error.ServiceUnknown`) the notifier is
//! [`Availability::Unavailable`] with a reason the status bar shows as
//! "desktop notifications unavailable: <reason>"; it then sends nothing and
//! everything else goes on.
//!
//! [`DesktopNotifier::notify`] groups everything handed to it in one call into ONE
//! notification ("3 alerts firing" and a line per alert), with critical urgency when
//! anything fires and normal urgency when all resolved. It is async, bounded by a
//! timeout, and never blocks the caller's loop; `notify_in_background` spawns it.
//!
//! Names in alerts come from the database: every line is sanitised (escape
//! sequences, control and bidi characters removed), truncated, and, when the daemon
//! renders body markup, `&`, `<` and `>` are escaped.
//!
//! The D-Bus side is notify-rust with its zbus backend (pure Rust, no libdbus).

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use notify_rust::{Notification, Urgency};

use super::{Book, Phase};
use crate::detect::Severity;

use crate::ui::text;

/// The application name every notification carries.
pub const APP_NAME: &str = "burnrate";
/// How long the start-up probe waits for the bus and the daemon.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one notification may take to be delivered.
pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);
/// Alerts listed by name in a grouped notification; the rest are counted.
pub const MAX_LISTED: usize = 8;
/// Lines of a single alert's body shown at most.
pub const MAX_BODY_LINES: usize = 8;
/// Display width of a summary and of each body line at most.
pub const MAX_SUMMARY_WIDTH: usize = 120;
pub const MAX_LINE_WIDTH: usize = 200;

/// The D-Bus error name of a call to a bus name nobody owns.
const SERVICE_UNKNOWN: &str = "org.freedesktop.DBus.Error.ServiceUnknown";

/// Whether an alert is starting to fire or has resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoticeUrgency {
    /// Sent with critical urgency (the daemon keeps it until dismissed).
    Firing,
    /// Sent with normal urgency.
    Resolved,
}

/// One alert to show on the desktop: a one-line summary and a body of one or more
/// lines (observed vs expected, top contributors...). Both may contain names from
/// the database; they are sanitised before sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesktopNotice {
    pub summary: String,
    pub body: String,
    pub urgency: NoticeUrgency,
}

impl DesktopNotice {
    pub fn firing(summary: impl Into<String>, body: impl Into<String>) -> Self {
        DesktopNotice {
            summary: summary.into(),
            body: body.into(),
            urgency: NoticeUrgency::Firing,
        }
    }

    pub fn resolved(summary: impl Into<String>, body: impl Into<String>) -> Self {
        DesktopNotice {
            summary: summary.into(),
            body: body.into(),
            urgency: NoticeUrgency::Resolved,
        }
    }
}

/// What is actually sent for one call of `notify`: one notification for the burst.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouped {
    pub summary: String,
    pub body: String,
    pub urgency: NoticeUrgency,
}

/// Result of the start-up probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// A daemon answered: its name and version (e.g. "dunst 1.11.0").
    Available { server: String },
    /// Nothing will be sent; the reason is shown in the status bar.
    Unavailable { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DesktopError {
    #[error("desktop notifications unavailable: {0}")]
    Unavailable(String),
    #[error(
        "desktop notification not delivered: the notification daemon did not answer within {0:?}"
    )]
    Timeout(Duration),
    #[error("desktop notification not delivered: {0}")]
    Failed(String),
}

/// Sends desktop notifications, or knows why it cannot. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DesktopNotifier {
    availability: Availability,
    /// The daemon renders markup in bodies (capability `body-markup`): escape names.
    markup: bool,
    notify_timeout: Duration,
}

/// What the probe thread found out.
struct ProbeReport {
    server: String,
    markup: bool,
}

impl DesktopNotifier {
    /// Probes the session bus once, without blocking the async runtime: the D-Bus
    /// calls run on their own thread, and a bus that does not answer within
    /// `timeout` counts as unavailable (that thread is then left to finish alone).
    pub async fn probe(timeout: Duration) -> DesktopNotifier {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("burnrate-desktop-probe".into())
            .spawn(move || {
                let _ = tx.send(probe_now());
            });
        let result = match spawned {
            Err(e) => Err(format!("could not start the probe thread: {e}")),
            Ok(_) => match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err("the probe thread ended without an answer".to_string()),
                Err(_) => Err(no_answer(timeout)),
            },
        };
        Self::from_probe(result)
    }

    /// The same probe for callers outside an async runtime (it blocks for at most
    /// `timeout`).
    pub fn probe_blocking(timeout: Duration) -> DesktopNotifier {
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("burnrate-desktop-probe".into())
            .spawn(move || {
                let _ = tx.send(probe_now());
            });
        let result = match spawned {
            Err(e) => Err(format!("could not start the probe thread: {e}")),
            Ok(_) => match rx.recv_timeout(timeout) {
                Ok(result) => result,
                Err(mpsc::RecvTimeoutError::Timeout) => Err(no_answer(timeout)),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    Err("the probe thread ended without an answer".to_string())
                }
            },
        };
        Self::from_probe(result)
    }

    /// A notifier that sends nothing, e.g. when desktop notifications are turned off.
    pub fn disabled(reason: impl Into<String>) -> DesktopNotifier {
        DesktopNotifier {
            availability: Availability::Unavailable {
                reason: reason.into(),
            },
            markup: false,
            notify_timeout: DEFAULT_NOTIFY_TIMEOUT,
        }
    }

    fn from_probe(result: Result<ProbeReport, String>) -> DesktopNotifier {
        let (availability, markup) = match result {
            Ok(report) => {
                tracing::info!(server = %report.server, markup = report.markup, "desktop notifications available");
                (
                    Availability::Available {
                        server: report.server,
                    },
                    report.markup,
                )
            }
            Err(reason) => {
                tracing::warn!(%reason, "desktop notifications unavailable");
                (Availability::Unavailable { reason }, false)
            }
        };
        DesktopNotifier {
            availability,
            markup,
            notify_timeout: DEFAULT_NOTIFY_TIMEOUT,
        }
    }

    /// How long one `notify` may take before it gives up.
    pub fn with_notify_timeout(mut self, timeout: Duration) -> DesktopNotifier {
        self.notify_timeout = timeout;
        self
    }

    pub fn availability(&self) -> &Availability {
        &self.availability
    }

    pub fn is_available(&self) -> bool {
        matches!(self.availability, Availability::Available { .. })
    }

    /// For the status bar: `Some("desktop notifications unavailable: <reason>")`
    /// when nothing will be sent, `None` when notifications work.
    pub fn status(&self) -> Option<String> {
        match &self.availability {
            Availability::Available { .. } => None,
            Availability::Unavailable { reason } => {
                Some(format!("desktop notifications unavailable: {reason}"))
            }
        }
    }

    /// The channel's state in a few words, for the status bar: None when it works,
    /// else "desktop: off" (turned off in the config), "desktop: off (no D-Bus)",
    /// "desktop: off (no daemon)", "desktop: off (no answer)" or
    /// "desktop: off (error)". The full reason is logged once, at the probe.
    pub fn short_status(&self) -> Option<String> {
        match &self.availability {
            Availability::Available { .. } => None,
            Availability::Unavailable { reason } => Some(short_reason(reason).to_string()),
        }
    }

    /// Shows `notices` as ONE notification (see [`group`]). Returns the id the
    /// daemon gave it, or `Ok(None)` when there was nothing to send or the probe
    /// found notifications unavailable. Gives up after the notify timeout.
    pub async fn notify(&self, notices: &[DesktopNotice]) -> Result<Option<u32>, DesktopError> {
        if !self.is_available() {
            return Ok(None);
        }
        let Some(grouped) = group(notices, self.markup) else {
            return Ok(None);
        };
        let notification = build_notification(&grouped);
        match tokio::time::timeout(self.notify_timeout, notification.show_async()).await {
            Err(_) => {
                tracing::warn!(timeout = ?self.notify_timeout, "desktop notification timed out");
                Err(DesktopError::Timeout(self.notify_timeout))
            }
            Ok(Err(e)) => {
                let reason = describe_dbus_error(&e.to_string());
                tracing::warn!(%reason, "desktop notification failed");
                Err(DesktopError::Failed(reason))
            }
            Ok(Ok(handle)) => {
                let id = handle.id();
                tracing::debug!(id, summary = %grouped.summary, "desktop notification sent");
                Ok(Some(id))
            }
        }
    }

    /// `notify` on a tokio task of its own: returns at once.
    pub fn notify_in_background(
        &self,
        notices: Vec<DesktopNotice>,
    ) -> tokio::task::JoinHandle<Result<Option<u32>, DesktopError>> {
        let notifier = self.clone();
        tokio::spawn(async move { notifier.notify(&notices).await })
    }
}

/// The reason [`DesktopNotifier::disabled`] is given for `alerts.desktop = false`.
pub const OFF_IN_CONFIG: &str = "turned off in the config (alerts.desktop = false)";

fn short_reason(reason: &str) -> &'static str {
    if reason == OFF_IN_CONFIG {
        "desktop: off"
    } else if reason.starts_with("no D-Bus session bus") {
        "desktop: off (no D-Bus)"
    } else if reason.starts_with("no notification daemon") {
        "desktop: off (no daemon)"
    } else if reason.contains("did not answer") {
        "desktop: off (no answer)"
    } else {
        "desktop: off (error)"
    }
}

/// Desktop notifications are per person: whatever this monitor sees start firing
/// (a new episode) or resolve, whoever sent the Slack message. This remembers what
/// was shown on this desktop, so a resolution is shown only for an alert whose
/// firing was.
#[derive(Debug, Clone, Default)]
pub struct DesktopTracker {
    /// Firing alerts (fingerprint -> episode) at the last round; None before it.
    seen: Option<BTreeMap<String, Option<DateTime<Utc>>>>,
    /// Alerts whose firing was shown on this desktop: fingerprint -> episode.
    shown: BTreeMap<String, Option<DateTime<Utc>>>,
}

impl DesktopTracker {
    /// What to show after a round whose book is `book`. The first round only
    /// learns what is already firing (a dashboard opened during an incident does
    /// not pop up everything at once). Every notice names `database` ("host/dbname").
    pub fn notices(&mut self, book: &Book, database: &str) -> Vec<DesktopNotice> {
        let now: BTreeMap<String, Option<DateTime<Utc>>> = book
            .firing()
            .into_iter()
            .filter(|a| a.severity() >= Severity::Warning)
            .map(|a| (a.fingerprint.clone(), a.episode))
            .collect();
        let Some(before) = self.seen.replace(now.clone()) else {
            return Vec::new();
        };
        let mut notices = Vec::new();
        for (fp, episode) in &now {
            if before.get(fp) != Some(episode) {
                let a = &book.alerts[fp];
                notices.push(DesktopNotice {
                    summary: format!("{}: {} ({database})", a.rule(), a.observation.subject()),
                    body: a.observation.summary.clone(),
                    urgency: NoticeUrgency::Firing,
                });
                self.shown.insert(fp.clone(), *episode);
            }
        }
        let gone: Vec<String> = self
            .shown
            .keys()
            .filter(|fp| !now.contains_key(*fp))
            .cloned()
            .collect();
        for fp in gone {
            let episode = self.shown.remove(&fp).flatten();
            if let Some(a) = book.alerts.get(&fp)
                && a.phase == Phase::Resolved
                && a.episode == episode
            {
                notices.push(DesktopNotice {
                    summary: format!(
                        "resolved: {}: {} ({database})",
                        a.rule(),
                        a.observation.subject()
                    ),
                    body: a.observation.summary.clone(),
                    urgency: NoticeUrgency::Resolved,
                });
            }
        }
        notices
    }
}

/// The D-Bus calls of the probe (blocking; run on a thread of their own).
fn probe_now() -> Result<ProbeReport, String> {
    let info =
        notify_rust::get_server_information().map_err(|e| describe_dbus_error(&e.to_string()))?;
    // A daemon that answers the server information but not the capabilities is
    // still usable; treat its bodies as plain text then.
    let markup = notify_rust::get_capabilities()
        .map(|caps| caps.iter().any(|c| c == "body-markup"))
        .unwrap_or(false);
    let server = text::clean(
        format!("{} {}", info.name, info.version).trim(),
        MAX_SUMMARY_WIDTH,
    );
    Ok(ProbeReport { server, markup })
}

fn no_answer(timeout: Duration) -> String {
    format!(
        "the D-Bus session bus did not answer within {}",
        humantime::format_duration(timeout)
    )
}

/// Turns a D-Bus error into a short reason that says what is missing and what to
/// do about it (it ends up in the status bar).
pub fn describe_dbus_error(err: &str) -> String {
    let err = text::clean(err, MAX_LINE_WIDTH);
    if err.contains(SERVICE_UNKNOWN) {
        return format!(
            "no notification daemon on the session bus ({SERVICE_UNKNOWN}); start one, e.g. dunst or mako"
        );
    }
    let no_bus = ["I/O error", "address error", "D-Bus handshake failed"]
        .iter()
        .any(|p| err.starts_with(p));
    if no_bus {
        let hint = if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some() {
            "check DBUS_SESSION_BUS_ADDRESS"
        } else {
            "DBUS_SESSION_BUS_ADDRESS is not set"
        };
        return format!("no D-Bus session bus ({err}); {hint}");
    }
    err
}

fn build_notification(grouped: &Grouped) -> Notification {
    let mut n = Notification::new();
    n.appname(APP_NAME)
        .summary(&grouped.summary)
        .body(&grouped.body)
        .urgency(match grouped.urgency {
            NoticeUrgency::Firing => Urgency::Critical,
            NoticeUrgency::Resolved => Urgency::Normal,
        });
    n
}

/// Folds a burst of notices into the one notification that is sent: a single notice
/// as it is; several as "N alerts firing" (", M resolved") with one line per alert,
/// firing first, at most [`MAX_LISTED`] named. Critical when anything fires.
/// `markup` escapes `&`, `<` and `>` in the body (for daemons that render markup).
pub fn group(notices: &[DesktopNotice], markup: bool) -> Option<Grouped> {
    let (summary, body, urgency) = match notices {
        [] => return None,
        [one] => {
            let lines: Vec<String> = one
                .body
                .lines()
                .map(|l| text::clean(l, MAX_LINE_WIDTH))
                .filter(|l| !l.trim().is_empty())
                .collect();
            let shown = lines.len().min(MAX_BODY_LINES);
            let mut body = lines[..shown].join("\n");
            if lines.len() > shown {
                body.push('\n');
                body.push(text::ELLIPSIS);
            }
            (
                text::clean(&one.summary, MAX_SUMMARY_WIDTH),
                body,
                one.urgency,
            )
        }
        many => {
            let firing: Vec<&DesktopNotice> = many
                .iter()
                .filter(|n| n.urgency == NoticeUrgency::Firing)
                .collect();
            let resolved: Vec<&DesktopNotice> = many
                .iter()
                .filter(|n| n.urgency == NoticeUrgency::Resolved)
                .collect();
            let summary = match (firing.len(), resolved.len()) {
                (0, r) => format!("{r} alerts resolved"),
                (1, 0) => "1 alert firing".to_string(),
                (f, 0) => format!("{f} alerts firing"),
                (1, r) => format!("1 alert firing, {r} resolved"),
                (f, r) => format!("{f} alerts firing, {r} resolved"),
            };
            let mut lines: Vec<String> = firing
                .iter()
                .map(|n| text::clean(&n.summary, MAX_LINE_WIDTH))
                .chain(
                    resolved
                        .iter()
                        .map(|n| format!("resolved: {}", text::clean(&n.summary, MAX_LINE_WIDTH))),
                )
                .collect();
            if lines.len() > MAX_LISTED {
                let more = lines.len() - MAX_LISTED;
                lines.truncate(MAX_LISTED);
                lines.push(format!("{} and {more} more", text::ELLIPSIS));
            }
            let urgency = if firing.is_empty() {
                NoticeUrgency::Resolved
            } else {
                NoticeUrgency::Firing
            };
            (summary, lines.join("\n"), urgency)
        }
    };
    let body = if markup { escape_markup(&body) } else { body };
    Some(Grouped {
        summary,
        body,
        urgency,
    })
}

/// Escapes the characters the notification spec's body markup gives a meaning to.
pub fn escape_markup(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_notices_send_nothing() {
        assert_eq!(group(&[], false), None);
    }

    #[test]
    fn a_single_notice_keeps_its_summary_body_and_urgency() {
        let g = group(
            &[DesktopNotice::firing(
                "support_qa $412 in the last 60m vs typical $98",
                "observed $412 vs expected $98 (4.2x)\ntop: user_4812 71%",
            )],
            false,
        )
        .unwrap();
        assert_eq!(g.summary, "support_qa $412 in the last 60m vs typical $98");
        assert_eq!(
            g.body,
            "observed $412 vs expected $98 (4.2x)\ntop: user_4812 71%"
        );
        assert_eq!(g.urgency, NoticeUrgency::Firing);

        let g = group(&[DesktopNotice::resolved("chat back to normal", "")], false).unwrap();
        assert_eq!(g.summary, "chat back to normal");
        assert_eq!(g.body, "");
        assert_eq!(g.urgency, NoticeUrgency::Resolved);
    }

    #[test]
    fn a_burst_is_one_notification_firing_first_and_critical() {
        let g = group(
            &[
                DesktopNotice::resolved("chat back to normal", "x"),
                DesktopNotice::firing("support_qa spike", "y"),
                DesktopNotice::firing("user_0591 runaway", "z"),
            ],
            false,
        )
        .unwrap();
        assert_eq!(g.summary, "2 alerts firing, 1 resolved");
        assert_eq!(
            g.body,
            "support_qa spike\nuser_0591 runaway\nresolved: chat back to normal"
        );
        assert_eq!(g.urgency, NoticeUrgency::Firing);
    }

    #[test]
    fn a_burst_of_resolved_alerts_is_normal_urgency() {
        let g = group(
            &[
                DesktopNotice::resolved("a", ""),
                DesktopNotice::resolved("b", ""),
            ],
            false,
        )
        .unwrap();
        assert_eq!(g.summary, "2 alerts resolved");
        assert_eq!(g.body, "resolved: a\nresolved: b");
        assert_eq!(g.urgency, NoticeUrgency::Resolved);
    }

    #[test]
    fn a_long_burst_lists_some_and_counts_the_rest() {
        let notices: Vec<DesktopNotice> = (0..12)
            .map(|i| DesktopNotice::firing(format!("alert {i}"), ""))
            .collect();
        let g = group(&notices, false).unwrap();
        assert_eq!(g.summary, "12 alerts firing");
        let lines: Vec<&str> = g.body.lines().collect();
        assert_eq!(lines.len(), MAX_LISTED + 1);
        assert_eq!(lines[0], "alert 0");
        assert_eq!(lines[MAX_LISTED - 1], "alert 7");
        assert_eq!(lines[MAX_LISTED], "… and 4 more");
    }

    #[test]
    fn names_from_the_database_are_sanitised_and_cut() {
        let g = group(
            &[DesktopNotice::firing(
                "feat\u{1b}]0;pwned\u{7}ure\u{202e}x\tspike",
                format!("line\u{0}one\n\n{}", "w".repeat(500)),
            )],
            false,
        )
        .unwrap();
        assert!(
            !g.summary.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{:?}",
            g.summary
        );
        assert_eq!(g.summary, "feature\u{fffd}x spike");
        let lines: Vec<&str> = g.body.lines().collect();
        assert_eq!(lines.len(), 2, "the blank line is dropped: {:?}", g.body);
        assert_eq!(lines[0], "line\u{fffd}one");
        assert_eq!(text::width(lines[1]), MAX_LINE_WIDTH);
        assert!(lines[1].ends_with(text::ELLIPSIS));
    }

    #[test]
    fn long_bodies_are_capped() {
        let body: String = (0..20).map(|i| format!("line {i}\n")).collect();
        let g = group(&[DesktopNotice::firing("s", body)], false).unwrap();
        let lines: Vec<&str> = g.body.lines().collect();
        assert_eq!(lines.len(), MAX_BODY_LINES + 1);
        assert_eq!(lines[MAX_BODY_LINES], "…");
    }

    #[test]
    fn markup_is_escaped_only_for_daemons_that_render_it() {
        let n = [DesktopNotice::firing(
            "<b>bold</b> & co",
            "user <script>&amp;",
        )];
        let plain = group(&n, false).unwrap();
        assert_eq!(plain.body, "user <script>&amp;");
        let marked = group(&n, true).unwrap();
        assert_eq!(marked.body, "user &lt;script&gt;&amp;amp;");
        // The summary is plain text in the spec: never escaped.
        assert_eq!(marked.summary, "<b>bold</b> & co");
    }

    #[test]
    fn dbus_errors_become_reasons_that_say_what_is_missing() {
        let r = describe_dbus_error(
            "org.freedesktop.DBus.Error.ServiceUnknown: The name org.freedesktop.Notifications was not provided by any .service files",
        );
        assert!(
            r.starts_with("no notification daemon on the session bus"),
            "{r}"
        );
        assert!(r.contains(SERVICE_UNKNOWN), "{r}");

        let r = describe_dbus_error("I/O error: No such file or directory (os error 2)");
        assert!(
            r.starts_with("no D-Bus session bus (I/O error: No such file"),
            "{r}"
        );
        assert!(r.contains("DBUS_SESSION_BUS_ADDRESS"), "{r}");

        let r = describe_dbus_error("org.freedesktop.DBus.Error.AccessDenied: nope\u{1b}[2J");
        assert_eq!(r, "org.freedesktop.DBus.Error.AccessDenied: nope");
    }

    #[test]
    fn the_short_status_says_the_channel_state_in_a_few_words() {
        let off = DesktopNotifier::disabled(OFF_IN_CONFIG);
        assert_eq!(off.short_status().as_deref(), Some("desktop: off"));
        let no_bus = DesktopNotifier::disabled(describe_dbus_error(
            "I/O error: No such file or directory (os error 2)",
        ));
        assert_eq!(
            no_bus.short_status().as_deref(),
            Some("desktop: off (no D-Bus)")
        );
        assert!(no_bus.status().unwrap().len() > 40, "the long form stays");
        let no_daemon = DesktopNotifier::disabled(describe_dbus_error(
            "org.freedesktop.DBus.Error.ServiceUnknown: nobody",
        ));
        assert_eq!(
            no_daemon.short_status().as_deref(),
            Some("desktop: off (no daemon)")
        );
        let silent = DesktopNotifier::disabled(no_answer(Duration::from_secs(2)));
        assert_eq!(
            silent.short_status().as_deref(),
            Some("desktop: off (no answer)")
        );
        let on = DesktopNotifier {
            availability: Availability::Available {
                server: "dunst 1".into(),
            },
            markup: false,
            notify_timeout: DEFAULT_NOTIFY_TIMEOUT,
        };
        assert_eq!(on.short_status(), None);
    }

    #[test]
    fn desktop_notices_name_the_database_and_resolve_only_what_they_showed() {
        use crate::alert::{Evaluation, Hold, Labels, Observation, Policy};
        let t = |m: i64| {
            "2026-11-28T12:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::minutes(m)
        };
        let spike = |f: &str| {
            let mut labels = Labels::new();
            labels.insert("feature".into(), f.into());
            Observation {
                rule: "spike_5m".into(),
                labels,
                severity: Severity::Critical,
                summary: format!("{f} is up"),
                window: "5m".into(),
                observed: None,
                expected: None,
                ratio: None,
                baseline: String::new(),
                contributors: vec![],
                hint: String::new(),
                since: None,
            }
        };
        let eval = |m: i64, seen: &[&Observation]| Evaluation {
            now: t(m),
            observations: seen
                .iter()
                .map(|o| ((*o).clone(), Hold::Confirmed))
                .collect(),
        };
        let p = Policy::default();
        let mut book = Book::default();
        let mut d = DesktopTracker::default();
        let (old, new) = (spike("old"), spike("new"));
        // Already firing when the dashboard opens: learnt, not shown.
        book.step(&eval(0, &[&old]), &p);
        assert!(d.notices(&book, "db/llm").is_empty());
        // A new one is shown, naming the database.
        book.step(&eval(1, &[&old, &new]), &p);
        let n = d.notices(&book, "db/llm");
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].summary, "spike_5m: feature new (db/llm)");
        assert_eq!(n[0].urgency, NoticeUrgency::Firing);
        // Both resolve: only the one whose firing was shown says so.
        book.step(&eval(20, &[]), &p);
        let n = d.notices(&book, "db/llm");
        assert_eq!(n.len(), 1, "{n:?}");
        assert_eq!(n[0].summary, "resolved: spike_5m: feature new (db/llm)");
        assert_eq!(n[0].urgency, NoticeUrgency::Resolved);
        assert!(d.notices(&book, "db/llm").is_empty());
    }

    #[test]
    fn a_disabled_notifier_says_why_and_sends_nothing() {
        let n = DesktopNotifier::disabled("turned off in the config");
        assert!(!n.is_available());
        assert_eq!(
            n.status().as_deref(),
            Some("desktop notifications unavailable: turned off in the config")
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let sent = rt
            .block_on(n.notify(&[DesktopNotice::firing("x", "y")]))
            .unwrap();
        assert_eq!(sent, None);
    }
}
