//! Slack incoming webhooks: Block Kit messages with a plain `text` fallback, sent one
//! at a time from a bounded queue by a background task.
//!
//! - 429: wait `Retry-After` seconds (capped), then try again.
//! - 5xx and network errors: retry with exponential backoff; every try has a timeout.
//! - Any other 4xx (`invalid_payload`, `no_service`, `channel_not_found`...): a
//!   configuration error, not retried, kept in [`SlackStatus`] for the status bar.
//! - The queue is bounded: when Slack is slow or dead, new messages are refused
//!   (and counted) instead of growing memory; enqueueing never waits.
//!
//! The webhook URL is a secret: [`WebhookUrl`] never shows it (Debug and Display
//! redact it) and no error message contains it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::lifecycle::{Alert, Message, MessageKind};
use crate::detect::Severity;

/// The environment variable that holds the webhook URL.
pub const WEBHOOK_ENV: &str = "BURNRATE_SLACK_WEBHOOK_URL";
/// Characters in one section block's text.
pub const SECTION_LIMIT: usize = 3000;
/// Blocks in one message.
pub const BLOCK_LIMIT: usize = 50;

/// A Slack webhook URL. Its Debug and Display never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    pub fn parse(text: &str, origin: &str) -> Result<WebhookUrl, SlackError> {
        let t = text.trim();
        let scheme_ok = t.starts_with("https://") || t.starts_with("http://");
        let host = t
            .split_once("://")
            .map(|(_, rest)| rest.split('/').next().unwrap_or(""))
            .unwrap_or("");
        if !scheme_ok || host.is_empty() || t.chars().any(char::is_whitespace) {
            return Err(SlackError::BadUrl {
                origin: origin.to_string(),
            });
        }
        Ok(WebhookUrl(t.to_string()))
    }

    /// The URL itself, for the HTTP client only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `BURNRATE_SLACK_WEBHOOK_URL` when set, else the file named in the config (its
    /// first non-empty line), else none.
    pub fn from_env_or_file(file: Option<&Path>) -> Result<Option<WebhookUrl>, SlackError> {
        if let Ok(v) = std::env::var(WEBHOOK_ENV)
            && !v.trim().is_empty()
        {
            return WebhookUrl::parse(&v, WEBHOOK_ENV).map(Some);
        }
        let Some(path) = file else { return Ok(None) };
        let text = std::fs::read_to_string(path).map_err(|e| SlackError::File {
            path: path.to_path_buf(),
            cause: e.to_string(),
        })?;
        let line = text.lines().map(str::trim).find(|l| !l.is_empty());
        match line {
            Some(l) => WebhookUrl::parse(l, &format!("the file {}", path.display())).map(Some),
            None => Err(SlackError::File {
                path: path.to_path_buf(),
                cause: "the file is empty; put the webhook URL on its first line".into(),
            }),
        }
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookUrl(<redacted>)")
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted Slack webhook URL>")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackError {
    #[error(
        "the Slack webhook URL in {origin} is not a URL (expected https://hooks.slack.com/services/...)"
    )]
    BadUrl { origin: String },
    #[error("cannot read the Slack webhook file {path} (alerts.slack_webhook_file): {cause}")]
    File { path: PathBuf, cause: String },
    /// A 4xx other than 429: the webhook or the payload is wrong; retrying cannot help.
    #[error("Slack refused the message: HTTP {status} {body}. {fix}")]
    Config {
        status: u16,
        body: String,
        fix: &'static str,
    },
    #[error("Slack did not take the message after {attempts} tries: {last}")]
    GaveUp { attempts: u32, last: String },
    #[error("the Slack queue is full ({capacity} messages waiting): message dropped")]
    QueueFull { capacity: usize },
    #[error("the Slack sender has stopped")]
    Closed,
}

impl SlackError {
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            SlackError::Config { .. } | SlackError::BadUrl { .. } | SlackError::File { .. }
        )
    }
}

fn fix_for(status: u16, body: &str) -> &'static str {
    match (status, body.trim()) {
        (_, "no_service") | (404, _) | (410, _) => {
            "The webhook was revoked or its channel is gone: create a new incoming webhook and set BURNRATE_SLACK_WEBHOOK_URL."
        }
        (_, "channel_not_found") | (_, "channel_is_archived") => {
            "The webhook's channel is gone or archived: create a new incoming webhook."
        }
        (403, _) => "The workspace forbids this webhook: ask a Slack admin.",
        (400, _) => "The message was refused as invalid: please report this as a burnrate bug.",
        _ => "Check the webhook URL (BURNRATE_SLACK_WEBHOOK_URL or alerts.slack_webhook_file).",
    }
}

/// Retries and timeouts.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackOptions {
    pub per_try_timeout: Duration,
    pub max_attempts: u32,
    /// The first backoff; it doubles each retry up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Retry-After is honoured up to this long.
    pub max_retry_after: Duration,
    /// Messages waiting at most.
    pub queue_capacity: usize,
}

impl Default for SlackOptions {
    fn default() -> Self {
        SlackOptions {
            per_try_timeout: Duration::from_secs(10),
            max_attempts: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            queue_capacity: 32,
        }
    }
}

/// Sends one payload, with retries.
#[derive(Clone)]
pub struct SlackSender {
    url: WebhookUrl,
    client: reqwest::Client,
    opts: SlackOptions,
}

impl fmt::Debug for SlackSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackSender")
            .field("url", &self.url)
            .field("opts", &self.opts)
            .finish()
    }
}

/// How a delivery went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub attempts: u32,
}

impl SlackSender {
    pub fn new(url: WebhookUrl, opts: SlackOptions) -> Result<SlackSender, SlackError> {
        let client = reqwest::Client::builder()
            .timeout(opts.per_try_timeout)
            .connect_timeout(opts.per_try_timeout)
            .user_agent(concat!("burnrate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SlackError::GaveUp {
                attempts: 0,
                last: format!("cannot set up the HTTP client: {}", e.without_url()),
            })?;
        Ok(SlackSender { url, client, opts })
    }

    /// Posts the payload until Slack takes it, refuses it, or the tries run out.
    pub async fn send(&self, payload: &Value) -> Result<Delivered, SlackError> {
        let body = payload.to_string();
        let mut last = String::new();
        let mut backoff = self.opts.backoff;
        for attempt in 1..=self.opts.max_attempts.max(1) {
            let wait = match self
                .client
                .post(self.url.expose())
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
            {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    let text = resp.text().await.unwrap_or_default();
                    let text: String = text.trim().chars().take(200).collect();
                    match status {
                        200..=299 => return Ok(Delivered { attempts: attempt }),
                        429 => {
                            last = format!("HTTP 429 rate limited {text}");
                            let secs = retry_after.unwrap_or(1);
                            Duration::from_secs(secs).min(self.opts.max_retry_after)
                        }
                        400..=499 => {
                            return Err(SlackError::Config {
                                status,
                                fix: fix_for(status, &text),
                                body: text,
                            });
                        }
                        _ => {
                            last = format!("HTTP {status} {text}");
                            next_backoff(&mut backoff, self.opts.max_backoff)
                        }
                    }
                }
                Err(e) => {
                    last = if e.is_timeout() {
                        format!(
                            "no answer within {}",
                            humantime::format_duration(self.opts.per_try_timeout)
                        )
                    } else if e.is_connect() {
                        "cannot connect to Slack".to_string()
                    } else {
                        format!("network error: {}", e.without_url())
                    };
                    next_backoff(&mut backoff, self.opts.max_backoff)
                }
            };
            tracing::warn!(attempt, error = %last, wait_ms = wait.as_millis() as u64, "slack: retrying");
            if attempt < self.opts.max_attempts {
                tokio::time::sleep(wait).await;
            }
        }
        Err(SlackError::GaveUp {
            attempts: self.opts.max_attempts.max(1),
            last,
        })
    }
}

fn next_backoff(backoff: &mut Duration, max: Duration) -> Duration {
    let now = *backoff;
    *backoff = (*backoff * 2).min(max);
    now
}

/// What the status bar shows about Slack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlackStatus {
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
    pub waiting: usize,
    /// The last configuration error (4xx), until a message goes through.
    pub config_error: Option<String>,
    /// The last transient failure.
    pub last_error: Option<String>,
}

/// A message for the queue, with its dedupe keys (so the result can be logged).
pub struct Job {
    pub payload: Value,
    pub keys: Vec<super::lifecycle::LogKey>,
    /// Told the result when the job is done (for one-shot commands).
    pub done: Option<oneshot::Sender<Result<Delivered, SlackError>>>,
}

/// The result of a job, for the notification log.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub keys: Vec<super::lifecycle::LogKey>,
    pub result: Result<Delivered, SlackError>,
}

/// The bounded queue in front of one webhook; a task sends one message at a time.
#[derive(Clone)]
pub struct SlackQueue {
    tx: mpsc::Sender<Job>,
    status: Arc<Mutex<SlackStatus>>,
    capacity: usize,
}

impl SlackQueue {
    /// Starts the sender task on the current runtime. `outcomes` (if any) hears of
    /// every finished job; it is never waited on (a full channel loses the note).
    pub fn start(sender: SlackSender, outcomes: Option<mpsc::Sender<Outcome>>) -> SlackQueue {
        let capacity = sender.opts.queue_capacity.max(1);
        let (tx, mut rx) = mpsc::channel::<Job>(capacity);
        let status = Arc::new(Mutex::new(SlackStatus::default()));
        let st = status.clone();
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                let result = sender.send(&job.payload).await;
                if let Ok(mut s) = st.lock() {
                    s.waiting = rx.len();
                    match &result {
                        Ok(_) => {
                            s.sent += 1;
                            s.config_error = None;
                            s.last_error = None;
                        }
                        Err(e) => {
                            s.failed += 1;
                            if e.is_config() {
                                s.config_error = Some(e.to_string());
                            } else {
                                s.last_error = Some(e.to_string());
                            }
                        }
                    }
                }
                match &result {
                    Ok(d) => tracing::info!(attempts = d.attempts, "slack: message delivered"),
                    Err(e) => tracing::warn!(error = %e, "slack: message not delivered"),
                }
                if let Some(out) = &outcomes {
                    let _ = out.try_send(Outcome {
                        keys: job.keys.clone(),
                        result: result.clone(),
                    });
                }
                if let Some(done) = job.done {
                    let _ = done.send(result);
                }
            }
        });
        SlackQueue {
            tx,
            status,
            capacity,
        }
    }

    /// Queues a job without waiting; refuses it when the queue is full.
    pub fn enqueue(&self, job: Job) -> Result<(), SlackError> {
        match self.tx.try_send(job) {
            Ok(()) => {
                if let Ok(mut s) = self.status.lock() {
                    s.waiting = self.capacity - self.tx.capacity();
                }
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(job)) => {
                if let Ok(mut s) = self.status.lock() {
                    s.dropped += 1;
                }
                tracing::warn!(keys = job.keys.len(), "slack: queue full, message dropped");
                let err = SlackError::QueueFull {
                    capacity: self.capacity,
                };
                if let Some(done) = job.done {
                    let _ = done.send(Err(err.clone()));
                }
                Err(err)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SlackError::Closed),
        }
    }

    pub fn status(&self) -> SlackStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------
// Block Kit

/// Escapes `&`, `<` and `>`, which Slack reads as markup.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if c.is_control() && c != '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Cuts escaped text to at most `max` characters without splitting an entity.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    if let Some(amp) = out.rfind('&')
        && !out[amp..].contains(';')
    {
        out.truncate(amp);
    }
    out.push('…');
    out
}

fn severity_tag(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "CRITICAL",
        Severity::Warning => "WARNING",
        Severity::Info => "INFO",
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn headline(m: &Message) -> String {
    let n = m.alerts.len();
    match m.kind {
        MessageKind::Firing => format!("{n} alert{} firing", plural(n)),
        MessageKind::Repeat => format!("{n} alert{} still firing", plural(n)),
        MessageKind::Resolved => format!("{n} alert{} resolved", plural(n)),
    }
}

/// One alert as Slack mrkdwn, escaped and within the section limit. `at` is when
/// the message goes out: an alert that began firing earlier (seen first by a copy
/// that cannot send, or announced again) says since when.
fn alert_text(a: &Alert, kind: MessageKind, at: chrono::DateTime<chrono::Utc>) -> String {
    let o = &a.observation;
    let mut s = format!(
        "*[{}] {}: {}*\n{}",
        if kind == MessageKind::Resolved {
            "RESOLVED"
        } else {
            severity_tag(o.severity)
        },
        escape(&o.rule),
        escape(&o.subject()),
        escape(&o.summary)
    );
    if let (Some(obs), Some(exp)) = (o.observed, o.expected) {
        s.push_str(&format!(
            "\nObserved *{}* vs expected *{}*",
            obs.display_usd(),
            exp.display_usd()
        ));
        if let Some(r) = o.ratio {
            // As the screen says it: "new" against nothing, ">999x" at the cap.
            s.push_str(&format!(" ({})", crate::detect::ratio_text(obs, exp, r)));
        }
        if !o.window.is_empty() {
            s.push_str(&format!(" over {}", escape(&o.window)));
        }
        if !o.baseline.is_empty() {
            s.push_str(&format!("; baseline: {}", escape(&o.baseline)));
        }
    }
    match (kind, a.episode, a.resolved_at) {
        (MessageKind::Resolved, _, Some(r)) => {
            s.push_str(&format!("\nResolved at {} UTC", r.format("%H:%M")))
        }
        (MessageKind::Firing | MessageKind::Repeat, Some(e), _) if e < at => s.push_str(&format!(
            "\nFiring since {} UTC",
            e.format(if at - e >= chrono::Duration::hours(20) {
                "%Y-%m-%d %H:%M"
            } else {
                "%H:%M"
            })
        )),
        _ => {}
    }
    if !o.contributors.is_empty() {
        let top: Vec<String> = o
            .contributors
            .iter()
            .take(5)
            .map(|c| {
                format!(
                    "{} {} {} ({:.0}%)",
                    escape(&c.dim),
                    escape(&c.name),
                    c.cost.display_usd(),
                    c.share * 100.0
                )
            })
            .collect();
        s.push_str(&format!("\nTop contributors: {}", top.join(", ")));
    }
    if kind != MessageKind::Resolved && !o.hint.is_empty() {
        s.push_str(&format!("\n_What to look at:_ {}", escape(&o.hint)));
    }
    if let Some(ack) = &a.acked {
        s.push_str(&format!("\nAcknowledged by {}", escape(&ack.by)));
    }
    cut(&s, SECTION_LIMIT)
}

/// Slack's limit on a header's text.
const HEADER_LIMIT: usize = 150;

/// The webhook payload of one message: a header naming the database
/// ("host/dbname"), a section per alert (as many as the 50-block limit allows, then
/// a count of the rest), a context line, and the plain `text` fallback.
pub fn payload(m: &Message, sender: &str, database: &str) -> Value {
    let head = headline(m);
    let database = crate::ui::text::clean(database, 100);
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": cut(&format!("burnrate {database}: {head}"), HEADER_LIMIT)}
    })];
    // Header, context and a "more" section leave 47 for alerts.
    let room = BLOCK_LIMIT - 3;
    for a in m.alerts.iter().take(room) {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": alert_text(a, m.kind, m.at)}
        }));
    }
    if m.alerts.len() > room {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("…and {} more alerts: see `burnrate check`.", m.alerts.len() - room)}
        }));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": cut(&format!(
            "{} · {} · {} UTC · sent once by {}",
            m.kind.name(),
            escape(&database),
            m.at.format("%Y-%m-%d %H:%M"),
            escape(sender)
        ), 300)}]
    }));
    let names: Vec<String> = m
        .alerts
        .iter()
        .map(|a| {
            format!(
                "[{}] {} {}",
                severity_tag(a.severity()),
                a.rule(),
                a.observation.subject()
            )
        })
        .collect();
    let text = cut(
        &escape(&format!(
            "burnrate {database}: {head}: {}",
            names.join("; ")
        )),
        SECTION_LIMIT,
    );
    json!({"text": text, "blocks": blocks})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Labels, Observation, Phase};
    use crate::money::Money;
    use chrono::{DateTime, Utc};

    fn alert(name: &str, summary: &str) -> Alert {
        let mut labels = Labels::new();
        labels.insert("feature".into(), name.into());
        let o = Observation {
            rule: "spike_5m".into(),
            labels,
            severity: Severity::Critical,
            summary: summary.into(),
            window: "5m".into(),
            observed: Some(Money::from_dollars(65)),
            expected: Some(Money::from_dollars(5)),
            ratio: Some(13.0),
            baseline: "same hour of day, 14 days".into(),
            contributors: vec![crate::alert::ContributorLine {
                dim: "user".into(),
                name: "u<1>".into(),
                cost: Money::from_dollars(50),
                share: 0.77,
            }],
            hint: "look".into(),
            since: None,
        };
        let at: DateTime<Utc> = "2026-11-28T12:00:00Z".parse().unwrap();
        Alert {
            fingerprint: o.fingerprint(),
            phase: Phase::Firing,
            streak: 0,
            needed: 0,
            episode: Some(at),
            last_seen: at,
            resolved_at: None,
            acked: None,
            notified_at: Some(at),
            notifications: 1,
            observation: o,
            scope: None,
            resolve_due: false,
        }
    }

    #[test]
    fn the_url_is_never_shown() {
        let u = WebhookUrl::parse("https://hooks.slack.com/services/T0/B0/SECRET", "env").unwrap();
        assert!(!format!("{u:?} {u}").contains("SECRET"));
        let e = WebhookUrl::parse("hooks.slack.com/services/T0/B0/SECRET", "env").unwrap_err();
        assert!(!e.to_string().contains("SECRET"), "{e}");
        let sender = SlackSender::new(u, SlackOptions::default()).unwrap();
        assert!(!format!("{sender:?}").contains("SECRET"));
    }

    #[test]
    fn names_are_escaped_and_sections_fit() {
        let a = alert("a&b<script>", &"x".repeat(5000));
        let m = Message {
            kind: MessageKind::Firing,
            at: a.last_seen,
            alerts: vec![a],
        };
        let p = payload(&m, "host:1", "db/llm");
        let text = p["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(text.contains("a&amp;b&lt;script&gt;"), "{text}");
        assert!(text.chars().count() <= SECTION_LIMIT);
        assert!(text.ends_with('…'));
        let short = Message {
            kind: MessageKind::Firing,
            at: m.at,
            alerts: vec![alert("chat", "up")],
        };
        let p2 = payload(&short, "h", "db/llm");
        let text = p2["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(text.contains("user u&lt;1&gt; $50.00 (77%)"), "{text}");
        assert!(
            p["text"]
                .as_str()
                .unwrap()
                .contains("a&amp;b&lt;script&gt;")
        );
        assert!(!p["text"].as_str().unwrap().contains('<'));
    }

    #[test]
    fn at_most_fifty_blocks() {
        let alerts: Vec<Alert> = (0..80).map(|i| alert(&format!("f{i}"), "up")).collect();
        let m = Message {
            kind: MessageKind::Firing,
            at: alerts[0].last_seen,
            alerts,
        };
        let p = payload(&m, "h", "db.example.com/llm");
        let blocks = p["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), BLOCK_LIMIT);
        assert!(
            blocks[BLOCK_LIMIT - 2]["text"]["text"]
                .as_str()
                .unwrap()
                .contains("33 more alerts")
        );
        assert_eq!(
            blocks[0]["text"]["text"].as_str().unwrap(),
            "burnrate db.example.com/llm: 80 alerts firing"
        );
    }

    #[test]
    fn every_message_names_the_database_and_a_late_one_says_since_when() {
        let a = alert("chat", "up");
        let episode = a.episode.unwrap();
        // Claimed three minutes after the episode began (first seen by a copy
        // without a webhook).
        let m = Message {
            kind: MessageKind::Firing,
            at: episode + chrono::Duration::minutes(3),
            alerts: vec![a.clone()],
        };
        let p = payload(&m, "h:1", "db.example.com/llm<x>");
        assert!(
            p["text"]
                .as_str()
                .unwrap()
                .starts_with("burnrate db.example.com/llm&lt;x&gt;: 1 alert firing"),
            "{p}"
        );
        let section = p["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(section.contains("Firing since 12:00 UTC"), "{section}");
        let context = p["blocks"][2]["elements"][0]["text"].as_str().unwrap();
        assert!(context.contains("db.example.com/llm&lt;x&gt;"), "{context}");
        // On time: no "since".
        let on_time = Message {
            at: episode,
            ..m.clone()
        };
        let p = payload(&on_time, "h:1", "db/llm");
        let section = p["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(!section.contains("Firing since"), "{section}");
        // A resolution says when.
        let mut r = a;
        r.phase = Phase::Resolved;
        r.resolved_at = Some(episode + chrono::Duration::minutes(42));
        let resolved = Message {
            kind: MessageKind::Resolved,
            at: episode + chrono::Duration::minutes(50),
            alerts: vec![r],
        };
        let p = payload(&resolved, "h:1", "db/llm");
        let section = p["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(section.contains("Resolved at 12:42 UTC"), "{section}");
        assert!(
            p["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .starts_with("burnrate db/llm: 1 alert resolved")
        );
    }

    #[test]
    fn cutting_never_splits_an_entity() {
        let s = format!("{}&amp;", "a".repeat(8));
        assert_eq!(cut(&s, 11), "aaaaaaaa…");
        assert_eq!(cut("short", 10), "short");
    }
}
