//! The alert lifecycle, pure: a [`Book`] of alerts and silences, advanced by one
//! [`Evaluation`] at a time, says which messages are due.
//!
//! - Inactive -> Pending: the detector holds the condition but not yet for
//!   `[detect] pending_evaluations` minutes (its count, shown here, never redone).
//! - Pending/Inactive/Resolved -> Firing: the detector confirms it. A new firing
//!   episode starts (its start time is the episode's id); the first message is due.
//! - Firing -> Firing: still seen. A repeat is due every `repeat_interval` unless
//!   the alert is acknowledged or silenced.
//! - Firing -> Resolved: not seen for `keep_firing_for` (against flapping) by an
//!   evaluator that evaluates the rule under the config that raised it (its
//!   [`Scopes`]). A resolved message is due if `send_resolved` and the firing was
//!   announced. An alert nobody evaluates any more is forgotten after a day,
//!   quietly: nobody saw it clear.
//! - Pending -> Inactive: no longer held. Resolved alerts are forgotten after a day.
//!
//! Only an evaluator that can deliver messages ([`Evaluator::deliver`]) takes what
//! is due: one that cannot leaves it due, and the next one that can sends it, with
//! the alert's latest details, unless nobody has seen the alert for
//! `keep_firing_for` (a stale alert is not announced).
//!
//! Everything that becomes due in one evaluation is grouped: at most one "firing",
//! one "repeat" and one "resolved" message per evaluation.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::scope::Scopes;
use super::{Labels, Observation};
use crate::detect::{Severity, rule_family};

/// When messages are due.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Re-send an unchanged firing alert this often (Alertmanager's 4h).
    pub repeat_interval: Duration,
    /// Send a message when an announced alert resolves.
    pub send_resolved: bool,
    /// An alert not seen stays firing this long before it resolves.
    pub keep_firing_for: Duration,
    /// Alerts below this severity are shown but send no message.
    pub min_severity: Severity,
    /// Resolved alerts stay listed this long.
    pub keep_resolved_for: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            repeat_interval: Duration::hours(4),
            send_resolved: true,
            keep_firing_for: Duration::minutes(5),
            min_severity: Severity::Warning,
            keep_resolved_for: Duration::hours(24),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Pending,
    Firing,
    Resolved,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Firing => "firing",
            Phase::Resolved => "resolved",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub by: String,
    pub at: DateTime<Utc>,
}

/// One alert, by fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub fingerprint: String,
    pub phase: Phase,
    /// Pending: the detector's streak and how many it needs.
    pub streak: u32,
    pub needed: u32,
    /// The start of the current (or last) firing episode: the episode's id.
    pub episode: Option<DateTime<Utc>>,
    pub last_seen: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Acknowledged in this episode: no repeats until it resolves.
    pub acked: Option<Ack>,
    /// The last firing or repeat message of this episode.
    pub notified_at: Option<DateTime<Utc>>,
    /// Messages sent in this episode (firing and repeats): the next one's number.
    pub notifications: u32,
    /// The latest details.
    pub observation: Observation,
    /// The scope it was last seen under (see [`Scopes`]); None when stored by a
    /// version without scopes.
    #[serde(default)]
    pub scope: Option<String>,
    /// Resolved, and its resolution is still to be announced by an evaluator that
    /// can deliver it.
    #[serde(default)]
    pub resolve_due: bool,
}

impl Alert {
    pub fn rule(&self) -> &str {
        &self.observation.rule
    }
    pub fn labels(&self) -> &Labels {
        &self.observation.labels
    }
    pub fn severity(&self) -> Severity {
        self.observation.severity
    }
}

/// Stops messages for alerts whose labels (and rule, as label "rule") match, until
/// `ends_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Labels,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub created_by: String,
}

impl Silence {
    /// Matchers for exactly this alert: its rule and all its labels.
    pub fn matchers_for(alert: &Alert) -> Labels {
        let mut m = alert.labels().clone();
        m.insert("rule".into(), alert.rule().to_string());
        m
    }

    pub fn matches(&self, alert: &Alert) -> bool {
        self.matchers.iter().all(|(k, v)| {
            if k == "rule" {
                // By family: a silenced spike stays silenced when its window moves.
                rule_family(alert.rule()) == rule_family(v)
            } else {
                alert.labels().get(k) == Some(v)
            }
        })
    }

    pub fn active_at(&self, now: DateTime<Utc>) -> bool {
        self.starts_at <= now && now < self.ends_at
    }

    /// "rule=spike_5m, feature=support_qa"
    pub fn describe(&self) -> String {
        self.matchers
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How far the detector has confirmed an observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// An anomaly: the condition held long enough.
    Confirmed,
    /// Held for `streak` of `needed` evaluations so far.
    Pending { streak: u32, needed: u32 },
}

/// Who evaluates: what it evaluates, and whether it can deliver what is due.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluator {
    pub scopes: Scopes,
    /// False for a copy without a Slack webhook: it takes no message, and leaves
    /// what is due to a copy that can send it.
    pub deliver: bool,
}

impl Evaluator {
    /// Resolves anything, delivers everything (tests, tools).
    pub fn any() -> Evaluator {
        Evaluator {
            scopes: Scopes::any(),
            deliver: true,
        }
    }
}

/// What one evaluation saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub now: DateTime<Utc>,
    pub observations: Vec<(Observation, Hold)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Firing,
    Repeat,
    Resolved,
}

impl MessageKind {
    pub fn name(self) -> &'static str {
        match self {
            MessageKind::Firing => "firing",
            MessageKind::Repeat => "repeat",
            MessageKind::Resolved => "resolved",
        }
    }
}

/// One message: every alert that became due the same way in one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub kind: MessageKind,
    pub at: DateTime<Utc>,
    pub alerts: Vec<Alert>,
}

impl Message {
    /// The dedupe key of each alert in the message: (fingerprint, episode, kind,
    /// number of the message in the episode; 0 for resolved).
    pub fn keys(&self) -> Vec<LogKey> {
        self.alerts
            .iter()
            .filter_map(|a| {
                let seq = match self.kind {
                    MessageKind::Resolved => 0,
                    _ => a.notifications as i32,
                };
                Some(LogKey {
                    fingerprint: a.fingerprint.clone(),
                    episode: a.episode?,
                    kind: self.kind,
                    seq,
                })
            })
            .collect()
    }

    /// Keeps only the alerts whose keys are in `keep`.
    pub fn retain_keys(&mut self, keep: &[LogKey]) {
        let kind = self.kind;
        self.alerts.retain(|a| {
            keep.iter().any(|k| {
                k.fingerprint == a.fingerprint
                    && Some(k.episode) == a.episode
                    && k.kind == kind
                    && (kind == MessageKind::Resolved || k.seq == a.notifications as i32)
            })
        });
    }
}

/// The dedupe key of one alert in one message: (fingerprint, firing episode, kind,
/// number of the message in the episode; 0 for resolved). The notification log
/// holds each key at most once per channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LogKey {
    pub fingerprint: String,
    pub episode: DateTime<Utc>,
    pub kind: MessageKind,
    pub seq: i32,
}

/// The messages due after one evaluation, grouped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outbox {
    pub firing: Vec<Alert>,
    pub repeat: Vec<Alert>,
    pub resolved: Vec<Alert>,
}

impl Outbox {
    pub fn is_empty(&self) -> bool {
        self.firing.is_empty() && self.repeat.is_empty() && self.resolved.is_empty()
    }

    pub fn messages(&self, at: DateTime<Utc>) -> Vec<Message> {
        [
            (MessageKind::Firing, &self.firing),
            (MessageKind::Repeat, &self.repeat),
            (MessageKind::Resolved, &self.resolved),
        ]
        .into_iter()
        .filter(|(_, alerts)| !alerts.is_empty())
        .map(|(kind, alerts)| Message {
            kind,
            at,
            alerts: alerts.clone(),
        })
        .collect()
    }
}

/// Every alert and silence: what is stored, in PostgreSQL or a local file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Book {
    pub alerts: BTreeMap<String, Alert>,
    pub silences: Vec<Silence>,
}

impl Book {
    /// Advances every alert by one evaluation and returns the messages due, as
    /// seen by an evaluator that evaluates everything and delivers.
    pub fn step(&mut self, eval: &Evaluation, policy: &Policy) -> Outbox {
        self.step_by(eval, policy, &Evaluator::any())
    }

    /// Advances every alert by one evaluation of `who` and returns the messages due
    /// that `who` takes (none when it cannot deliver).
    pub fn step_by(&mut self, eval: &Evaluation, policy: &Policy, who: &Evaluator) -> Outbox {
        let now = eval.now;
        self.silences.retain(|s| s.ends_at > now);
        let mut seen = BTreeSet::new();
        for (obs, hold) in &eval.observations {
            let fp = obs.fingerprint();
            seen.insert(fp.clone());
            let scope = who.scopes.scope_of(&obs.rule, &obs.labels);
            match (self.alerts.get_mut(&fp), *hold) {
                (Some(a), _) if a.phase == Phase::Firing => {
                    // Still holding (even if the detector's streak restarted).
                    a.last_seen = now;
                    if *hold == Hold::Confirmed {
                        a.observation = obs.clone();
                        a.scope = scope;
                    }
                }
                (Some(a), Hold::Pending { streak, needed }) if a.phase == Phase::Pending => {
                    a.streak = streak;
                    a.needed = needed;
                    a.last_seen = now;
                    a.observation = obs.clone();
                    a.scope = scope;
                }
                (_, Hold::Pending { streak, needed }) => {
                    self.alerts.insert(
                        fp.clone(),
                        Alert {
                            fingerprint: fp,
                            phase: Phase::Pending,
                            streak,
                            needed,
                            episode: None,
                            last_seen: now,
                            resolved_at: None,
                            acked: None,
                            notified_at: None,
                            notifications: 0,
                            observation: obs.clone(),
                            scope,
                            resolve_due: false,
                        },
                    );
                }
                (_, Hold::Confirmed) => {
                    self.alerts.insert(
                        fp.clone(),
                        Alert {
                            fingerprint: fp,
                            phase: Phase::Firing,
                            streak: 0,
                            needed: 0,
                            episode: Some(now),
                            last_seen: now,
                            resolved_at: None,
                            acked: None,
                            notified_at: None,
                            notifications: 0,
                            observation: obs.clone(),
                            scope,
                            resolve_due: false,
                        },
                    );
                }
            }
        }

        let mut forget = Vec::new();
        for (fp, a) in self.alerts.iter_mut() {
            if seen.contains(fp) {
                continue;
            }
            let unseen_for = now - a.last_seen;
            // Only an evaluator of the rule under the config that raised it says the
            // condition cleared; another copy's silence about it means nothing.
            let judge = who
                .scopes
                .may_resolve(a.rule(), a.labels(), a.scope.as_deref());
            match a.phase {
                Phase::Pending if judge || unseen_for >= policy.keep_firing_for => {
                    forget.push(fp.clone())
                }
                Phase::Pending => {}
                Phase::Firing if judge && unseen_for >= policy.keep_firing_for => {
                    a.phase = Phase::Resolved;
                    a.resolved_at = Some(now);
                    let silenced = self
                        .silences
                        .iter()
                        .any(|s| s.active_at(now) && s.matches(a));
                    a.resolve_due = policy.send_resolved && a.notifications > 0 && !silenced;
                    a.acked = None;
                }
                // Nobody who evaluates it has seen it for a day: its copy is gone.
                // Forgotten without a message: nobody saw it clear.
                Phase::Firing if unseen_for >= policy.keep_resolved_for => forget.push(fp.clone()),
                Phase::Firing => {}
                Phase::Resolved => {
                    if a.resolved_at
                        .is_none_or(|t| now - t >= policy.keep_resolved_for)
                    {
                        forget.push(fp.clone());
                    }
                }
            }
        }
        for fp in forget {
            self.alerts.remove(&fp);
        }

        let mut out = Outbox::default();
        if !who.deliver {
            // What is due stays due for a copy that can send it.
            return out;
        }
        for a in self.alerts.values_mut() {
            if a.phase == Phase::Resolved && a.resolve_due {
                a.resolve_due = false;
                out.resolved.push(a.clone());
                continue;
            }
            if a.phase != Phase::Firing || a.severity() < policy.min_severity {
                continue;
            }
            if self
                .silences
                .iter()
                .any(|s| s.active_at(now) && s.matches(a))
            {
                continue;
            }
            // Not announced (nor repeated) when nobody has seen it lately: its copy
            // may be gone, and a late message would page for what may be over.
            if now - a.last_seen > policy.keep_firing_for {
                continue;
            }
            let due = match a.notified_at {
                // Never announced in this episode (new, silenced until now, or seen
                // first by a copy that cannot deliver).
                None => Some(MessageKind::Firing),
                Some(_) if a.acked.is_some() => None,
                Some(t) if now - t >= policy.repeat_interval => Some(MessageKind::Repeat),
                Some(_) => None,
            };
            if let Some(kind) = due {
                a.notified_at = Some(now);
                a.notifications += 1;
                match kind {
                    MessageKind::Firing => out.firing.push(a.clone()),
                    _ => out.repeat.push(a.clone()),
                }
            }
        }
        for list in [&mut out.firing, &mut out.repeat, &mut out.resolved] {
            list.sort_by(|a, b| {
                b.severity()
                    .cmp(&a.severity())
                    .then_with(|| a.fingerprint.cmp(&b.fingerprint))
            });
        }
        out
    }

    /// Acknowledges a firing alert: no repeats until it resolves.
    pub fn acknowledge(
        &mut self,
        fingerprint: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        match self.alerts.get_mut(fingerprint) {
            Some(a) if a.phase == Phase::Firing => {
                a.acked = Some(Ack {
                    by: by.to_string(),
                    at: now,
                });
                Ok(())
            }
            Some(a) => Err(format!(
                "alert {} is {}, not firing: only firing alerts can be acknowledged",
                a.observation.subject(),
                a.phase.name()
            )),
            None => Err(format!("no alert with fingerprint {fingerprint}")),
        }
    }

    /// Adds a silence; returns its id.
    pub fn silence(
        &mut self,
        matchers: Labels,
        ends_at: DateTime<Utc>,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Silence, String> {
        if matchers.is_empty() {
            return Err("a silence needs at least one matcher".into());
        }
        if ends_at <= now {
            return Err(format!(
                "a silence must end in the future, not at {ends_at}"
            ));
        }
        // Silencing the same alerts again replaces the silence (a new length).
        self.silences.retain(|s| s.matchers != matchers);
        let id = silence_id(&matchers, now, by);
        let s = Silence {
            id,
            matchers,
            starts_at: now,
            ends_at,
            created_by: by.to_string(),
        };
        self.silences.push(s.clone());
        Ok(s)
    }

    /// Ends a silence now; false when there is none with this id.
    pub fn lift(&mut self, id: &str) -> bool {
        let before = self.silences.len();
        self.silences.retain(|s| s.id != id);
        self.silences.len() != before
    }

    pub fn active_silences(&self, now: DateTime<Utc>) -> Vec<&Silence> {
        self.silences.iter().filter(|s| s.active_at(now)).collect()
    }

    pub fn is_silenced(&self, alert: &Alert, now: DateTime<Utc>) -> bool {
        self.silences
            .iter()
            .any(|s| s.active_at(now) && s.matches(alert))
    }

    /// Firing alerts, most severe first.
    pub fn firing(&self) -> Vec<&Alert> {
        let mut v: Vec<&Alert> = self
            .alerts
            .values()
            .filter(|a| a.phase == Phase::Firing)
            .collect();
        v.sort_by(|a, b| {
            b.severity()
                .cmp(&a.severity())
                .then_with(|| a.fingerprint.cmp(&b.fingerprint))
        });
        v
    }

    /// A claimed message could not be delivered (network, 5xx after every retry, a
    /// full queue): undoes its notification so the next evaluation sends it again.
    /// Only the alert still at that message (same episode and number) is touched;
    /// a resolution is due again while its alert stays resolved. Returns how many
    /// alerts were released.
    pub fn release(&mut self, keys: &[LogKey]) -> usize {
        let mut n = 0;
        for k in keys {
            let Some(a) = self.alerts.get_mut(&k.fingerprint) else {
                continue;
            };
            if k.kind == MessageKind::Resolved {
                // Still the resolution of that episode: due again.
                if a.phase == Phase::Resolved && a.episode == Some(k.episode) && !a.resolve_due {
                    a.resolve_due = true;
                    n += 1;
                }
                continue;
            }
            if a.phase != Phase::Firing
                || a.episode != Some(k.episode)
                || a.notifications as i32 != k.seq
            {
                continue;
            }
            a.notifications = a.notifications.saturating_sub(1);
            a.notified_at = if a.notifications == 0 {
                // Never announced: the next round sends it as new.
                None
            } else {
                // Announced before: a repeat is due at once.
                Some(DateTime::<Utc>::UNIX_EPOCH)
            };
            n += 1;
        }
        n
    }

    /// Entering the local fallback while the shared state is unreachable: the
    /// last shared book (as of `as_of`) is the truth, except for what this machine's
    /// local file learnt after it (another burnrate here, during this outage).
    pub fn seed_from_shared(&mut self, shared: &Book, as_of: DateTime<Utc>) {
        self.alerts.retain(|_, a| a.last_seen > as_of);
        for (fp, a) in &shared.alerts {
            if !self.alerts.contains_key(fp) {
                self.alerts.insert(fp.clone(), a.clone());
            }
        }
        self.silences.retain(|s| s.starts_at > as_of);
        for s in &shared.silences {
            if !self.silences.iter().any(|l| l.id == s.id) {
                self.silences.push(s.clone());
            }
        }
        self.silences.sort_by_key(|s| s.starts_at);
    }

    /// Back on the shared state after an outage that began at `since`: what the
    /// local fallback announced (and the silences it set) is taken in, so the
    /// shared log does not announce it again.
    pub fn merge_outage(&mut self, local: &Book, since: DateTime<Utc>) {
        for (fp, l) in &local.alerts {
            if l.phase != Phase::Firing || l.notified_at.is_none_or(|t| t < since) {
                continue;
            }
            match self.alerts.get_mut(fp) {
                Some(s) if s.phase == Phase::Firing && s.episode == l.episode => {
                    if l.notifications > s.notifications {
                        s.notifications = l.notifications;
                    }
                    s.notified_at = s.notified_at.max(l.notified_at);
                    s.last_seen = s.last_seen.max(l.last_seen);
                    if s.acked.is_none() {
                        s.acked = l.acked.clone();
                    }
                }
                Some(s) if s.phase == Phase::Firing => {
                    // Another monitor announced its own episode: that one goes on,
                    // and no repeat is due before the interval after ours.
                    s.notified_at = s.notified_at.max(l.notified_at);
                }
                _ => {
                    self.alerts.insert(fp.clone(), l.clone());
                }
            }
        }
        for s in &local.silences {
            if s.starts_at >= since && !self.silences.iter().any(|x| x.id == s.id) {
                self.silences.push(s.clone());
            }
        }
        self.silences.sort_by_key(|s| s.starts_at);
    }
}

/// A short id, unique enough among the silences of one book.
fn silence_id(matchers: &Labels, now: DateTime<Utc>, by: &str) -> String {
    let mut l = matchers.clone();
    l.insert(
        "\u{0}at".into(),
        now.timestamp_nanos_opt().unwrap_or(0).to_string(),
    );
    l.insert("\u{0}by".into(), by.to_string());
    super::fingerprint("silence", &l)[..8].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(min: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-28T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + Duration::minutes(min)
    }

    fn obs(rule: &str, feature: &str, sev: Severity) -> Observation {
        let mut labels = Labels::new();
        labels.insert("feature".into(), feature.into());
        Observation {
            rule: rule.into(),
            labels,
            severity: sev,
            summary: format!("{feature} is up"),
            window: "5m".into(),
            observed: None,
            expected: None,
            ratio: None,
            baseline: String::new(),
            contributors: vec![],
            hint: String::new(),
            since: None,
        }
    }

    fn spike(feature: &str) -> Observation {
        obs("spike_5m", feature, Severity::Critical)
    }

    fn eval(min: i64, seen: &[(Observation, Hold)]) -> Evaluation {
        Evaluation {
            now: t(min),
            observations: seen.to_vec(),
        }
    }

    fn confirmed(o: &Observation) -> (Observation, Hold) {
        (o.clone(), Hold::Confirmed)
    }

    fn fps(alerts: &[Alert]) -> Vec<String> {
        alerts.iter().map(|a| a.observation.subject()).collect()
    }

    #[test]
    fn pending_then_firing_then_resolved_with_one_message_each() {
        let p = Policy::default();
        let mut b = Book::default();
        let o = spike("support_qa");
        let fp = o.fingerprint();
        // Inactive -> Pending: shown, no message.
        let out = b.step(
            &eval(
                0,
                &[(
                    o.clone(),
                    Hold::Pending {
                        streak: 1,
                        needed: 2,
                    },
                )],
            ),
            &p,
        );
        assert!(out.is_empty());
        assert_eq!(b.alerts[&fp].phase, Phase::Pending);
        assert_eq!((b.alerts[&fp].streak, b.alerts[&fp].needed), (1, 2));
        // Pending -> Firing: one firing message.
        let out = b.step(&eval(1, &[confirmed(&o)]), &p);
        assert_eq!(fps(&out.firing), ["feature support_qa"]);
        assert!(out.repeat.is_empty() && out.resolved.is_empty());
        let a = &b.alerts[&fp];
        assert_eq!(
            (a.phase, a.episode, a.notifications),
            (Phase::Firing, Some(t(1)), 1)
        );
        // Firing -> Firing: nothing more.
        for m in 2..30 {
            assert!(
                b.step(&eval(m, &[confirmed(&o)]), &p).is_empty(),
                "minute {m}"
            );
        }
        // Gone, but within keep_firing_for: still firing, no message.
        assert!(b.step(&eval(32, &[]), &p).is_empty());
        assert_eq!(b.alerts[&fp].phase, Phase::Firing);
        // Gone for 5 minutes: resolved, one resolved message.
        let out = b.step(&eval(34, &[]), &p);
        assert_eq!(fps(&out.resolved), ["feature support_qa"]);
        assert_eq!(b.alerts[&fp].phase, Phase::Resolved);
        assert!(b.step(&eval(35, &[]), &p).is_empty());
        // Resolved -> Firing: a new episode, announced again.
        let out = b.step(&eval(40, &[confirmed(&o)]), &p);
        assert_eq!(out.firing.len(), 1);
        assert_eq!(b.alerts[&fp].episode, Some(t(40)));
        assert_eq!(b.alerts[&fp].notifications, 1);
        // Resolved alerts are forgotten after a day.
        b.step(&eval(50, &[]), &p);
        b.step(&eval(50 + 24 * 60, &[]), &p);
        assert!(b.alerts.is_empty());
    }

    #[test]
    fn pending_that_stops_holding_goes_back_to_inactive_silently() {
        let p = Policy::default();
        let mut b = Book::default();
        let o = spike("chat");
        let pending = Hold::Pending {
            streak: 1,
            needed: 3,
        };
        b.step(&eval(0, &[(o.clone(), pending)]), &p);
        let out = b.step(
            &eval(
                1,
                &[(
                    o.clone(),
                    Hold::Pending {
                        streak: 2,
                        needed: 3,
                    },
                )],
            ),
            &p,
        );
        assert!(out.is_empty());
        assert_eq!(b.alerts[&o.fingerprint()].streak, 2);
        let out = b.step(&eval(2, &[]), &p);
        assert!(out.is_empty());
        assert!(
            b.alerts.is_empty(),
            "a pending alert that stops holding is dropped"
        );
    }

    #[test]
    fn a_firing_alert_seen_as_pending_keeps_firing() {
        // The detector's streak restarted after one quiet minute: the condition holds
        // again, so the alert neither resolves nor announces itself twice.
        let p = Policy::default();
        let mut b = Book::default();
        let o = spike("chat");
        b.step(&eval(0, &[confirmed(&o)]), &p);
        let out = b.step(
            &eval(
                2,
                &[(
                    o.clone(),
                    Hold::Pending {
                        streak: 1,
                        needed: 2,
                    },
                )],
            ),
            &p,
        );
        assert!(out.is_empty());
        assert_eq!(b.alerts[&o.fingerprint()].phase, Phase::Firing);
        assert_eq!(b.alerts[&o.fingerprint()].last_seen, t(2));
    }

    #[test]
    fn repeats_every_interval_while_firing() {
        let p = Policy {
            repeat_interval: Duration::hours(4),
            ..Policy::default()
        };
        let mut b = Book::default();
        let o = spike("chat");
        let mut firing = 0;
        let mut repeats = vec![];
        for m in 0..=(9 * 60) {
            let out = b.step(&eval(m, &[confirmed(&o)]), &p);
            firing += out.firing.len();
            if !out.repeat.is_empty() {
                repeats.push(m);
                assert_eq!(
                    out.repeat[0].notifications,
                    repeats.len() as u32 + 1,
                    "the message number counts up"
                );
            }
        }
        assert_eq!(firing, 1);
        assert_eq!(repeats, [240, 480]);
    }

    #[test]
    fn acknowledged_alerts_do_not_repeat_until_they_resolve() {
        let p = Policy::default();
        let mut b = Book::default();
        let o = spike("chat");
        let fp = o.fingerprint();
        b.step(&eval(0, &[confirmed(&o)]), &p);
        b.acknowledge(&fp, "ana", t(1)).unwrap();
        for m in 1..=(10 * 60) {
            assert!(
                b.step(&eval(m, &[confirmed(&o)]), &p).is_empty(),
                "minute {m}"
            );
        }
        // The resolution is still announced, and clears the acknowledgement.
        let out = b.step(&eval(10 * 60 + 10, &[]), &p);
        assert_eq!(out.resolved.len(), 1);
        assert_eq!(b.alerts[&fp].acked, None);
        // The next episode pages and repeats again.
        let out = b.step(&eval(11 * 60, &[confirmed(&o)]), &p);
        assert_eq!(out.firing.len(), 1);
        let out = b.step(&eval(15 * 60, &[confirmed(&o)]), &p);
        assert_eq!(out.repeat.len(), 1);
        // Only firing alerts can be acknowledged.
        let err = b.acknowledge("0000", "ana", t(0)).unwrap_err();
        assert!(err.contains("no alert"), "{err}");
        let q = spike("quiet");
        b.step(
            &eval(
                15 * 60 + 1,
                &[
                    confirmed(&o),
                    (
                        q.clone(),
                        Hold::Pending {
                            streak: 1,
                            needed: 2,
                        },
                    ),
                ],
            ),
            &p,
        );
        let err = b.acknowledge(&q.fingerprint(), "ana", t(0)).unwrap_err();
        assert!(err.contains("pending, not firing"), "{err}");
    }

    #[test]
    fn a_spike_whose_window_moves_stays_one_alert_and_stays_silenced() {
        let p = Policy::default();
        let mut b = Book::default();
        let five = spike("chat");
        let fifteen = obs("spike_15m", "chat", Severity::Critical);
        let sixty = obs("spike_60m", "chat", Severity::Critical);
        let out = b.step(&eval(1, &[confirmed(&five)]), &p);
        assert_eq!(fps(&out.firing), ["feature chat"]);
        // The incident goes on; its strongest window becomes 15, then 60 minutes.
        for (m, o) in [(2, &fifteen), (3, &five), (4, &sixty), (5, &sixty)] {
            let out = b.step(&eval(m, &[confirmed(o)]), &p);
            assert!(out.is_empty(), "minute {m}: {out:?}");
        }
        assert_eq!(b.alerts.len(), 1);
        let a = &b.alerts[&five.fingerprint()];
        assert_eq!(a.phase, Phase::Firing);
        assert_eq!(a.rule(), "spike_60m", "it shows the window seen last");

        // A silence made on the 5-minute window covers its later windows.
        let mut m = Labels::new();
        m.insert("rule".into(), "spike_5m".into());
        m.insert("feature".into(), "chat".into());
        b.silence(m, t(600), "ana", t(6)).unwrap();
        assert!(b.is_silenced(&b.alerts[&sixty.fingerprint()], t(7)));
        // Not another rule on the same feature.
        let daily = obs("today_vs_7d", "chat", Severity::Warning);
        b.step(&eval(7, &[confirmed(&daily)]), &p);
        assert!(!b.is_silenced(&b.alerts[&daily.fingerprint()], t(7)));
    }

    #[test]
    fn silences_stop_messages_until_they_end_or_are_lifted() {
        let p = Policy::default();
        let mut b = Book::default();
        let o = spike("chat");
        let other = spike("search");
        let fp = o.fingerprint();
        // Silenced before it fires: nothing is sent while the silence lasts.
        let mut m = Labels::new();
        m.insert("feature".into(), "chat".into());
        let s = b.silence(m, t(60), "ana", t(0)).unwrap();
        let out = b.step(&eval(1, &[confirmed(&o), confirmed(&other)]), &p);
        assert_eq!(
            fps(&out.firing),
            ["feature search"],
            "only the other one pages"
        );
        assert_eq!(
            b.alerts[&fp].phase,
            Phase::Firing,
            "silenced is still firing"
        );
        assert!(b.is_silenced(&b.alerts[&fp], t(1)));
        assert_eq!(b.active_silences(t(1)).len(), 1);
        for m in 2..60 {
            let out = b.step(&eval(m, &[confirmed(&o), confirmed(&other)]), &p);
            assert!(out.firing.is_empty(), "minute {m}");
        }
        // The silence ends: the alert was never announced, so it pages now.
        let out = b.step(&eval(60, &[confirmed(&o), confirmed(&other)]), &p);
        assert_eq!(fps(&out.firing), ["feature chat"]);
        assert!(b.silences.is_empty(), "expired silences are dropped");
        assert!(!b.lift(&s.id));

        // A silence on a firing alert stops its repeats; lifting it lets them resume.
        let all = Silence::matchers_for(&b.alerts[&fp]);
        assert_eq!(all["rule"], "spike_5m");
        let s = b.silence(all, t(24 * 60), "ana", t(61)).unwrap();
        for m in 62..(8 * 60) {
            let out = b.step(&eval(m, &[confirmed(&o)]), &p);
            assert!(out.repeat.iter().all(|a| a.fingerprint != fp), "minute {m}");
        }
        assert!(b.lift(&s.id));
        let out = b.step(&eval(8 * 60, &[confirmed(&o)]), &p);
        assert_eq!(fps(&out.repeat), ["feature chat"]);

        // A silenced alert that resolves sends no resolved message.
        b.silence(
            Silence::matchers_for(&b.alerts[&fp]),
            t(2000),
            "ana",
            t(8 * 60),
        )
        .unwrap();
        let out = b.step(&eval(9 * 60, &[]), &p);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(b.alerts[&fp].phase, Phase::Resolved);

        // Bad silences are refused.
        assert!(b.silence(Labels::new(), t(100), "a", t(0)).is_err());
        let mut m = Labels::new();
        m.insert("feature".into(), "x".into());
        assert!(b.silence(m, t(0), "a", t(0)).is_err());
    }

    #[test]
    fn everything_that_starts_firing_together_is_one_message() {
        let p = Policy::default();
        let mut b = Book::default();
        let a = spike("chat");
        let c = obs("runaway_user", "search", Severity::Warning);
        let i = obs("drift", "summarize", Severity::Info);
        let out = b.step(&eval(0, &[confirmed(&a), confirmed(&c), confirmed(&i)]), &p);
        let msgs = out.messages(t(0));
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].kind, MessageKind::Firing);
        // Most severe first; info-level alerts are shown but do not page.
        assert_eq!(fps(&msgs[0].alerts), ["feature chat", "feature search"]);
        assert_eq!(b.firing().len(), 3);
        let keys = msgs[0].keys();
        assert_eq!(
            keys[0],
            LogKey {
                fingerprint: a.fingerprint(),
                episode: t(0),
                kind: MessageKind::Firing,
                seq: 1
            }
        );
        // Repeat and resolved in the same evaluation: two messages.
        let out = b.step(&eval(240, &[confirmed(&a)]), &p);
        let kinds: Vec<MessageKind> = out.messages(t(240)).iter().map(|m| m.kind).collect();
        assert_eq!(kinds, [MessageKind::Repeat, MessageKind::Resolved]);
        let resolved = &out.messages(t(240))[1];
        assert_eq!(resolved.keys()[0].seq, 0);
    }

    #[test]
    fn no_resolved_message_when_disabled_or_never_announced() {
        let p = Policy {
            send_resolved: false,
            ..Policy::default()
        };
        let mut b = Book::default();
        let o = spike("chat");
        b.step(&eval(0, &[confirmed(&o)]), &p);
        assert!(b.step(&eval(10, &[]), &p).resolved.is_empty());
        assert_eq!(b.alerts[&o.fingerprint()].phase, Phase::Resolved);
        // An info alert was never announced, so its resolution is not either.
        let p = Policy::default();
        let mut b = Book::default();
        let i = obs("drift", "chat", Severity::Info);
        b.step(&eval(0, &[confirmed(&i)]), &p);
        assert!(b.step(&eval(10, &[]), &p).is_empty());
    }

    #[test]
    fn a_book_round_trips_through_json() {
        let p = Policy::default();
        let mut b = Book::default();
        let o = spike("chat");
        b.step(&eval(0, &[confirmed(&o)]), &p);
        let mut m = Labels::new();
        m.insert("feature".into(), "x".into());
        b.silence(m, t(60), "ana", t(0)).unwrap();
        let text = serde_json::to_string(&b).unwrap();
        let back: Book = serde_json::from_str(&text).unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn a_released_message_is_due_again_at_the_next_evaluation() {
        let p = Policy::default();
        let mut b = Book::default();
        let o = spike("support_qa");
        let fp = o.fingerprint();
        let out = b.step(&eval(0, &[confirmed(&o)]), &p);
        let first = out.messages(t(0));
        assert_eq!(first.len(), 1);
        // Delivery failed: released, the next evaluation announces it again with
        // the same key (so a claim by another monitor still dedupes it).
        assert_eq!(b.release(&first[0].keys()), 1);
        assert_eq!(
            (b.alerts[&fp].notifications, b.alerts[&fp].notified_at),
            (0, None)
        );
        let again = b.step(&eval(1, &[confirmed(&o)]), &p).messages(t(1));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].kind, MessageKind::Firing);
        assert_eq!(again[0].keys(), first[0].keys());
        // Releasing a stale key (the alert moved on) changes nothing.
        assert_eq!(
            b.release(&[LogKey {
                seq: 7,
                ..first[0].keys()[0].clone()
            }]),
            0
        );
        assert!(b.step(&eval(2, &[confirmed(&o)]), &p).is_empty());
        // A failed repeat is due again at once, as a repeat with the same number.
        let rep = b.step(&eval(245, &[confirmed(&o)]), &p).messages(t(245));
        assert_eq!(rep[0].kind, MessageKind::Repeat);
        assert_eq!(b.release(&rep[0].keys()), 1);
        let rep2 = b.step(&eval(246, &[confirmed(&o)]), &p).messages(t(246));
        assert_eq!(rep2[0].kind, MessageKind::Repeat);
        assert_eq!(rep2[0].keys(), rep[0].keys());
    }

    fn budget_params() -> crate::detect::DetectParams {
        let mut p = crate::detect::DetectParams::default();
        p.limits.monthly = Some(crate::money::Money::from_dollars(100));
        p
    }

    fn copy(budget: bool, deliver: bool) -> Evaluator {
        let params = if budget {
            budget_params()
        } else {
            crate::detect::DetectParams::default()
        };
        Evaluator {
            scopes: Scopes::new(&params, None, &["no_events"]),
            deliver,
        }
    }

    #[test]
    fn a_copy_that_cannot_deliver_leaves_the_firing_due_for_one_that_can() {
        let p = Policy::default();
        let mut b = Book::default();
        let o = spike("chat");
        let fp = o.fingerprint();
        let (mute, sender) = (copy(false, false), copy(false, true));
        // The copy without a webhook confirms it first: firing, nothing taken.
        let out = b.step_by(&eval(0, &[confirmed(&o)]), &p, &mute);
        assert!(out.is_empty());
        assert_eq!(b.alerts[&fp].phase, Phase::Firing);
        assert_eq!(
            (b.alerts[&fp].notifications, b.alerts[&fp].notified_at),
            (0, None)
        );
        let out = b.step_by(&eval(1, &[confirmed(&o)]), &p, &mute);
        assert!(out.is_empty(), "still nothing: {out:?}");
        // The copy with a webhook, whose detector has not confirmed it yet, takes
        // the firing message: the episode's first, with the latest details.
        let mut later = o.clone();
        later.summary = "chat is up more".into();
        b.step_by(&eval(2, &[confirmed(&later)]), &p, &mute);
        let msgs = b
            .step_by(
                &eval(
                    3,
                    &[(
                        o.clone(),
                        Hold::Pending {
                            streak: 1,
                            needed: 2,
                        },
                    )],
                ),
                &p,
                &sender,
            )
            .messages(t(3));
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].kind, MessageKind::Firing);
        assert_eq!(msgs[0].alerts[0].observation.summary, "chat is up more");
        assert_eq!(
            msgs[0].keys(),
            [LogKey {
                fingerprint: fp.clone(),
                episode: t(0),
                kind: MessageKind::Firing,
                seq: 1
            }]
        );
        // Once.
        for m in 4..60 {
            assert!(
                b.step_by(&eval(m, &[confirmed(&o)]), &p, &sender)
                    .is_empty()
            );
            assert!(b.step_by(&eval(m, &[confirmed(&o)]), &p, &mute).is_empty());
        }
    }

    #[test]
    fn an_alert_nobody_has_seen_lately_is_not_announced_late() {
        let p = Policy::default();
        let mut b = Book::default();
        let forecast = obs("forecast_over_budget", "all", Severity::Warning);
        // A copy with a budget and no webhook fires it, then quits.
        b.step_by(&eval(0, &[confirmed(&forecast)]), &p, &copy(true, false));
        // A copy with a webhook and no budget, ten minutes later: it cannot judge the
        // alert (so it stays firing) and nobody has seen it for longer than
        // keep_firing_for (so it is not announced now).
        let out = b.step_by(&eval(10, &[]), &p, &copy(false, true));
        assert!(out.is_empty(), "{out:?}");
        let a = &b.alerts[&forecast.fingerprint()];
        assert_eq!((a.phase, a.notifications), (Phase::Firing, 0));
        // Within keep_firing_for it would have been.
        let mut fresh = Book::default();
        fresh.step_by(&eval(0, &[confirmed(&forecast)]), &p, &copy(true, false));
        let out = fresh.step_by(&eval(4, &[]), &p, &copy(false, true));
        assert_eq!(fps(&out.firing), ["feature all"]);
    }

    #[test]
    fn a_copy_that_does_not_evaluate_a_rule_never_resolves_its_alerts() {
        let p = Policy::default();
        let mut b = Book::default();
        let forecast = obs("forecast_over_budget", "all", Severity::Warning);
        let spike_ = spike("chat");
        let (budget, plain) = (copy(true, true), copy(false, true));
        let out = b.step_by(
            &eval(0, &[confirmed(&forecast), confirmed(&spike_)]),
            &p,
            &budget,
        );
        assert_eq!(out.firing.len(), 2);
        // The budget copy quits; a copy without a budget goes on for hours.
        let mut resolved = Vec::new();
        for m in 1..(20 * 60) {
            let out = b.step_by(&eval(m, &[]), &p, &plain);
            resolved.extend(fps(&out.resolved));
            assert!(out.firing.is_empty() && out.repeat.is_empty(), "minute {m}");
        }
        // It judges the spike (same thresholds) but not the budget rule.
        assert_eq!(resolved, ["feature chat"]);
        assert_eq!(b.alerts[&forecast.fingerprint()].phase, Phase::Firing);
        // Under the config that raised it, it resolves, announced once.
        let mut again = b.clone();
        let out = again.step_by(&eval(20 * 60, &[]), &p, &budget);
        assert_eq!(fps(&out.resolved), ["feature all"]);
        // A copy with another budget does not judge it either.
        let mut other = budget_params();
        other.limits.monthly = Some(crate::money::Money::from_dollars(5000));
        let other = Evaluator {
            scopes: Scopes::new(&other, None, &[]),
            deliver: true,
        };
        let mut third = b.clone();
        assert!(third.step_by(&eval(20 * 60, &[]), &p, &other).is_empty());
        assert_eq!(third.alerts[&forecast.fingerprint()].phase, Phase::Firing);
        // Nobody who evaluates it for a day: forgotten, without a message.
        let out = b.step_by(&eval(25 * 60, &[]), &p, &plain);
        assert!(out.is_empty(), "{out:?}");
        assert!(!b.alerts.contains_key(&forecast.fingerprint()));
    }

    #[test]
    fn a_resolution_is_announced_by_a_copy_that_can_and_only_after_a_sent_firing() {
        let p = Policy::default();
        let (mute, sender) = (copy(false, false), copy(false, true));
        let o = spike("chat");
        let fp = o.fingerprint();
        // Announced by the sender, resolved by the mute copy: due, not lost.
        let mut b = Book::default();
        b.step_by(&eval(0, &[confirmed(&o)]), &p, &sender);
        assert!(b.step_by(&eval(10, &[]), &p, &mute).is_empty());
        assert_eq!(b.alerts[&fp].phase, Phase::Resolved);
        assert!(b.alerts[&fp].resolve_due);
        let msgs = b.step_by(&eval(11, &[]), &p, &sender).messages(t(11));
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].kind, MessageKind::Resolved);
        assert_eq!(msgs[0].alerts[0].resolved_at, Some(t(10)));
        assert!(b.step_by(&eval(12, &[]), &p, &sender).is_empty(), "once");
        // A failed delivery makes it due again.
        assert_eq!(b.release(&msgs[0].keys()), 1);
        let again = b.step_by(&eval(13, &[]), &p, &sender).messages(t(13));
        assert_eq!(again[0].keys(), msgs[0].keys());

        // Fired and resolved while only mute copies ran: never announced, so its
        // resolution is not either.
        let mut b = Book::default();
        b.step_by(&eval(0, &[confirmed(&o)]), &p, &mute);
        b.step_by(&eval(10, &[]), &p, &mute);
        assert_eq!(b.alerts[&fp].phase, Phase::Resolved);
        assert!(b.step_by(&eval(11, &[]), &p, &sender).is_empty());
    }

    #[test]
    fn pending_alerts_of_another_config_are_not_dropped_by_a_copy_that_cannot_judge_them() {
        let p = Policy::default();
        let mut b = Book::default();
        let forecast = obs("forecast_over_budget", "all", Severity::Warning);
        let pending = Hold::Pending {
            streak: 1,
            needed: 2,
        };
        b.step_by(
            &eval(0, &[(forecast.clone(), pending)]),
            &p,
            &copy(true, true),
        );
        b.step_by(&eval(1, &[]), &p, &copy(false, true));
        assert_eq!(b.alerts[&forecast.fingerprint()].phase, Phase::Pending);
        // Gone stale: dropped.
        b.step_by(&eval(10, &[]), &p, &copy(false, true));
        assert!(b.alerts.is_empty());
    }

    #[test]
    fn an_outage_on_the_local_file_is_merged_back_without_announcing_twice() {
        let p = Policy::default();
        // The shared book before the outage: one alert firing and announced.
        let mut shared = Book::default();
        let old = spike("chat");
        shared.step(&eval(0, &[confirmed(&old)]), &p);
        // A stale local file from an earlier outage: a firing alert shared forgot.
        let mut local = Book::default();
        let db = obs("database_unreachable", "x", Severity::Critical);
        local.step(&eval(-5000, &[confirmed(&db)]), &p);
        // Outage at minute 10: the local file is seeded with the shared book.
        local.seed_from_shared(&shared, t(5));
        assert!(
            !local.alerts.contains_key(&db.fingerprint()),
            "stale alert kept"
        );
        // The already-announced alert is not announced again; the health alert is.
        let out = local.step(&eval(10, &[confirmed(&old), confirmed(&db)]), &p);
        assert_eq!(fps(&out.firing), ["feature x"]);
        local
            .silence(
                Silence::matchers_for(&local.alerts[&old.fingerprint()]),
                t(100),
                "me",
                t(11),
            )
            .unwrap();
        // Back: the shared book takes in what the outage announced and silenced.
        shared.merge_outage(&local, t(10));
        assert_eq!(shared.alerts[&db.fingerprint()].notifications, 1);
        assert_eq!(shared.silences.len(), 1);
        let out = shared.step(&eval(12, &[confirmed(&old), confirmed(&db)]), &p);
        assert!(out.is_empty(), "announced twice: {out:?}");
        // The health alert ends: one resolved message from the shared state.
        let out = shared.step(&eval(20, &[confirmed(&old)]), &p);
        assert_eq!(fps(&out.resolved), ["feature x"]);
    }
}
