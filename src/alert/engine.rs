//! One alert round, the same for `watch` and `check`: detector output and health
//! checks -> observations -> the lifecycle step in the (shared) state store ->
//! the messages this instance claimed -> the Slack queue -> the notification log.

use chrono::{DateTime, SubsecRound, Utc};
use tokio::sync::oneshot;

use super::health::HealthParams;
use super::lifecycle::{Book, Evaluation, Evaluator, Hold, Message, Policy};
use super::scope::Scopes;
use super::slack::{
    self, Delivered, Job, SlackError, SlackOptions, SlackQueue, SlackSender, WebhookUrl,
};
use super::state::{AlertStore, StateError};
use super::{Labels, Observation};
use crate::config::AlertsConfig;
use crate::detect::{Anomaly, DetectParams, DetectorState};

/// The channel name in the notification log.
pub const SLACK: &str = "slack";

/// `[alerts]` turned into what the lifecycle, the health checks and Slack need.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    pub policy: Policy,
    pub health: HealthParams,
    pub slack: SlackOptions,
    pub webhook: Option<WebhookUrl>,
    /// What this copy evaluates (see [`Scopes`]): it resolves only those alerts.
    pub scopes: Scopes,
}

fn dur(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl AlertSettings {
    /// Reads the webhook from the environment or the configured file.
    pub fn from_config(c: &AlertsConfig) -> Result<AlertSettings, SlackError> {
        Ok(AlertSettings {
            policy: Policy {
                repeat_interval: dur(c.repeat_interval),
                send_resolved: c.send_resolved,
                keep_firing_for: dur(c.keep_firing_for),
                min_severity: c.min_severity,
                ..Policy::default()
            },
            health: HealthParams {
                database_unreachable_for: dur(c.database_unreachable_for),
                no_events_for: dur(c.no_events_for),
                no_events_min_expected: f64::from(c.no_events_min_requests),
            },
            slack: SlackOptions {
                per_try_timeout: c.slack_timeout,
                max_attempts: c.slack_max_attempts,
                ..SlackOptions::default()
            },
            webhook: WebhookUrl::from_env_or_file(c.slack_webhook_file.as_deref())?,
            // Resolves anything until the command says what it evaluates.
            scopes: Scopes::any(),
        })
    }

    /// What this copy evaluates: its thresholds and limits, its tenant, and the
    /// monitor-health rules it checks.
    pub fn with_scopes(mut self, scopes: Scopes) -> AlertSettings {
        self.scopes = scopes;
        self
    }
}

/// The detector's findings as lifecycle input: anomalies are confirmed, its
/// pending conditions are pending (with the detector's own count).
pub fn observations(
    found: &[Anomaly],
    state: &DetectorState,
    p: &DetectParams,
) -> Vec<(Observation, Hold)> {
    let mut out: Vec<(Observation, Hold)> = found
        .iter()
        .map(|a| (Observation::from_anomaly(a), Hold::Confirmed))
        .collect();
    for c in state.pending_conditions(p) {
        out.push((
            Observation::from_pending(&c),
            Hold::Pending {
                streak: c.streak,
                needed: c.needed,
            },
        ));
    }
    out
}

/// Evaluation times are kept to the millisecond, as stored.
pub fn eval_now(now: DateTime<Utc>) -> DateTime<Utc> {
    now.trunc_subsecs(3)
}

/// What one round did.
pub struct Round {
    /// The book after the round.
    pub book: Book,
    /// The messages this instance claimed (and queued, unless a dry run).
    pub messages: Vec<Message>,
    /// One per queued message: its delivery result.
    pub deliveries: Vec<(Message, oneshot::Receiver<Result<Delivered, SlackError>>)>,
}

/// The state store and the Slack queue of one process.
pub struct AlertEngine {
    pub store: AlertStore,
    pub settings: AlertSettings,
    slack: Option<SlackQueue>,
}

impl AlertEngine {
    /// `outcomes` hears of every delivery (for the TUI's status); see `SlackQueue`.
    pub fn new(
        store: AlertStore,
        settings: AlertSettings,
        outcomes: Option<tokio::sync::mpsc::Sender<slack::Outcome>>,
    ) -> Result<AlertEngine, SlackError> {
        let slack = match &settings.webhook {
            Some(url) => Some(SlackQueue::start(
                SlackSender::new(url.clone(), settings.slack.clone())?,
                outcomes,
            )),
            None => None,
        };
        Ok(AlertEngine {
            store,
            settings,
            slack,
        })
    }

    pub fn slack(&self) -> Option<&SlackQueue> {
        self.slack.as_ref()
    }

    /// Steps the lifecycle in the store and queues the messages this instance
    /// claimed. Without a Slack webhook nothing is claimed: what is due stays due for
    /// a copy that can send it. With `dry_run`, nothing is stored, claimed or sent:
    /// the messages are what would have gone out.
    pub async fn round(&mut self, eval: Evaluation, dry_run: bool) -> Result<Round, StateError> {
        let policy = self.settings.policy.clone();
        let who = Evaluator {
            scopes: self.settings.scopes.clone(),
            deliver: self.slack.is_some() || dry_run,
        };
        let now = eval.now;
        let (_, messages, book) = self
            .store
            .transact(SLACK, !dry_run, move |b| {
                let out = b.step_by(&eval, &policy, &who);
                ((), out.messages(now))
            })
            .await?;
        let mut deliveries = Vec::new();
        let mut refused = Vec::new();
        if let (false, Some(q)) = (dry_run, &self.slack) {
            for m in &messages {
                let keys = m.keys();
                let (tx, rx) = oneshot::channel();
                let job = Job {
                    payload: slack::payload(m, self.store.instance(), self.store.database()),
                    keys: keys.clone(),
                    done: Some(tx),
                };
                match q.enqueue(job) {
                    Ok(()) => deliveries.push((m.clone(), rx)),
                    Err(e) => {
                        // A full queue is transient: sent on a later round.
                        tracing::warn!(error = %e, "alerts: Slack queue refused a message; released for the next round");
                        refused.extend(keys);
                    }
                }
            }
        }
        if !refused.is_empty() {
            self.release(&refused).await
        }
        Ok(Round {
            book,
            messages,
            deliveries,
        })
    }

    /// Notes a delivery result in the notification log.
    pub async fn record(&mut self, m: &Message, result: &Result<Delivered, SlackError>) {
        let keys = m.keys();
        self.record_keys(&keys, result).await
    }

    pub async fn record_keys(
        &mut self,
        keys: &[super::LogKey],
        result: &Result<Delivered, SlackError>,
    ) {
        match result {
            Ok(d) => {
                self.store
                    .record(keys, SLACK, "sent", &format!("{} tries", d.attempts))
                    .await
            }
            // Slack refused the message (a 4xx): a configuration error, shown and
            // kept as failed, not retried.
            Err(e) if e.is_config() => {
                self.store
                    .record(keys, SLACK, "failed", &e.to_string())
                    .await
            }
            // Network, 5xx after every retry, closed queue: the claim is released
            // and the next round sends it again.
            Err(e) => {
                tracing::warn!(error = %e, "alerts: Slack delivery failed; released for the next round");
                self.store
                    .record(keys, SLACK, "failed", &e.to_string())
                    .await;
                self.release(keys).await
            }
        }
    }

    /// Releases the claims of undelivered messages (see `AlertStore::release`).
    pub async fn release(&mut self, keys: &[super::LogKey]) {
        if let Err(e) = self.store.release(keys, SLACK).await {
            tracing::warn!(error = %e, "alerts: cannot release an undelivered message");
        }
    }

    /// Acknowledges a firing alert (shared with every monitor).
    pub async fn acknowledge(&mut self, fingerprint: String, by: String) -> Result<Book, String> {
        let now = eval_now(Utc::now());
        let r = self
            .store
            .transact(SLACK, true, move |b| {
                (b.acknowledge(&fingerprint, &by, now), Vec::new())
            })
            .await
            .map_err(|e| e.to_string())?;
        r.0.map(|()| r.2)
    }

    /// Silences alerts matching `matchers` until `until`.
    pub async fn silence(
        &mut self,
        matchers: Labels,
        until: DateTime<Utc>,
        by: String,
    ) -> Result<(super::Silence, Book), String> {
        let now = eval_now(Utc::now());
        let r = self
            .store
            .transact(SLACK, true, move |b| {
                (b.silence(matchers, until, &by, now), Vec::new())
            })
            .await
            .map_err(|e| e.to_string())?;
        r.0.map(|s| (s, r.2))
    }

    /// Lifts a silence.
    pub async fn lift(&mut self, id: String) -> Result<Book, String> {
        let r = self
            .store
            .transact(SLACK, true, move |b| (b.lift(&id), Vec::new()))
            .await
            .map_err(|e| e.to_string())?;
        if r.0 {
            Ok(r.2)
        } else {
            Err("no such silence (it may have ended already)".into())
        }
    }
}
