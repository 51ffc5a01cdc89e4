//! Alerts that page once.
//!
//! `detect` says what is unusual right now; this module turns that into alerts with
//! a lifecycle (Inactive -> Pending -> Firing -> Resolved) keyed by a fingerprint of
//! rule + sorted labels, decides when a message is due (first firing, repeat
//! interval, resolved), and honours acknowledgements and silences. The lifecycle is
//! pure ([`lifecycle`]); where the state lives ([`state`]: PostgreSQL, shared by
//! every monitor, or a local file) and how messages travel ([`slack`]) are separate.
//!
//! Who owns "pending": the detector. Its `DetectorState` counts consecutive
//! evaluation minutes of each fast-rule condition (`[detect] pending_evaluations`)
//! and only returns a condition as an anomaly once it has held long enough. The
//! lifecycle shows the detector's pending conditions as Pending alerts and takes
//! its anomalies as confirmed: it never counts evaluations a second time.

pub mod desktop;
pub mod engine;
pub mod health;
pub mod lifecycle;
pub mod scope;
pub mod slack;
pub mod state;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::detect::{Anomaly, PendingCondition, Severity, rule_family};
use crate::model::Dim;
use crate::money::Money;

pub use lifecycle::{
    Ack, Alert, Book, Evaluation, Evaluator, Hold, LogKey, Message, MessageKind, Outbox, Phase,
    Policy, Silence,
};
pub use scope::Scopes;

/// Label name -> value, sorted: "feature" -> "support_qa".
pub type Labels = BTreeMap<String, String>;

/// The dedupe key of an alert everywhere (screen, Slack, stored state): a stable
/// 64-bit FNV-1a hash of the rule's family and the sorted labels, as 16 hex digits.
/// A spike is one alert whichever window currently reports it (see
/// [`rule_family`]): `spike_5m` turning into `spike_15m` as the incident goes on
/// must not page again.
pub fn fingerprint(rule: &str, labels: &Labels) -> String {
    let rule = rule_family(rule);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(rule.as_bytes());
    for (k, v) in labels {
        eat(&[0]);
        eat(k.as_bytes());
        eat(&[0x1f]);
        eat(v.as_bytes());
    }
    format!("{h:016x}")
}

/// One contributor line of an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContributorLine {
    pub dim: String,
    pub name: String,
    #[serde(rename = "cost_usd")]
    pub cost: Money,
    pub share: f64,
}

/// What an evaluation saw for one alert: the details a message needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub rule: String,
    pub labels: Labels,
    pub severity: Severity,
    /// One line for people (the anomaly's message).
    pub summary: String,
    /// "5m", "today", "month", or a health window.
    pub window: String,
    #[serde(rename = "observed_usd")]
    pub observed: Option<Money>,
    #[serde(rename = "expected_usd")]
    pub expected: Option<Money>,
    pub ratio: Option<f64>,
    /// What `expected` was computed from.
    pub baseline: String,
    pub contributors: Vec<ContributorLine>,
    /// What to look at first.
    pub hint: String,
    pub since: Option<DateTime<Utc>>,
}

impl Observation {
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.rule, &self.labels)
    }

    /// "support_qa" for a feature alert, "database" for a health alert.
    pub fn subject(&self) -> String {
        if self.labels.is_empty() {
            return self.rule.clone();
        }
        self.labels
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn from_anomaly(a: &Anomaly) -> Observation {
        Observation {
            rule: a.rule.clone(),
            labels: labels_of(a.dim, &a.name),
            severity: a.severity,
            summary: a.message.clone(),
            window: a.window.clone(),
            observed: Some(a.observed),
            expected: Some(a.expected),
            ratio: Some(a.ratio),
            baseline: a.baseline.clone(),
            contributors: a
                .contributors
                .iter()
                .map(|c| ContributorLine {
                    dim: c.dim.name().to_string(),
                    name: c.name.clone(),
                    cost: c.cost,
                    share: c.share,
                })
                .collect(),
            hint: hint_for(&a.rule, a.dim, &a.name, &a.window),
            since: a.since,
        }
    }

    /// A detector condition that has not held long enough yet.
    pub fn from_pending(c: &PendingCondition) -> Observation {
        Observation {
            rule: c.rule.clone(),
            labels: labels_of(c.dim, &c.name),
            severity: Severity::Warning,
            summary: format!(
                "{} {}: {} held for {} of {} evaluations",
                c.dim, c.name, c.rule, c.streak, c.needed
            ),
            window: String::new(),
            observed: None,
            expected: None,
            ratio: None,
            baseline: String::new(),
            contributors: Vec::new(),
            hint: hint_for(&c.rule, c.dim, &c.name, ""),
            since: Some(c.since),
        }
    }
}

/// What the anomaly pane lists for a firing alert of the shared state that this
/// monitor's detector has not confirmed (yet): the alert as an anomaly, its line
/// marked as coming from the shared state. None for alerts that are not about one
/// name of one dimension (monitor health).
pub fn shared_anomaly(a: &Alert) -> Option<Anomaly> {
    let o = &a.observation;
    let [(key, name)] = o.labels.iter().collect::<Vec<_>>()[..] else {
        return None;
    };
    let dim = Dim::ALL.into_iter().find(|d| d.name() == key)?;
    let contributors = o
        .contributors
        .iter()
        .filter_map(|c| {
            Some(crate::detect::Contributor {
                dim: Dim::ALL.into_iter().find(|d| d.name() == c.dim)?,
                name: c.name.clone(),
                cost: c.cost,
                share: c.share,
            })
        })
        .collect();
    Some(Anomaly {
        rule: o.rule.clone(),
        dim,
        name: name.clone(),
        window: o.window.clone(),
        observed: o.observed.unwrap_or_default(),
        expected: o.expected.unwrap_or_default(),
        expected_low: None,
        expected_high: None,
        ratio: o.ratio.unwrap_or_default(),
        z: None,
        severity: o.severity,
        baseline: o.baseline.clone(),
        since: a.episode.or(o.since),
        contributors,
        message: format!("{SHARED_MARK}{}", o.summary),
    })
}

/// How the anomaly pane marks an alert it knows only from the shared state.
pub const SHARED_MARK: &str = "[shared state] ";

/// The shared state's firing alerts (as from [`shared_anomaly`]) that `local`
/// anomalies do not confirm: those the pane lists after its own, marked.
pub fn unconfirmed(shared: &[Anomaly], local: &[Anomaly]) -> Vec<Anomaly> {
    let confirmed: std::collections::BTreeSet<String> = local
        .iter()
        .map(|a| fingerprint(&a.rule, &labels_of(a.dim, &a.name)))
        .collect();
    shared
        .iter()
        .filter(|a| !confirmed.contains(&fingerprint(&a.rule, &labels_of(a.dim, &a.name))))
        .cloned()
        .collect()
}

fn labels_of(dim: Dim, name: &str) -> Labels {
    let mut l = Labels::new();
    l.insert(dim.name().to_string(), name.to_string());
    l
}

/// What to look at first, by rule. Keys are named by their action and default key
/// (the `[keys]` config may rebind them; `?` lists the keys in effect), and only
/// paths the dashboard has: the overview's rows are features, so a user or a model
/// is reached with the anomaly key, which opens it with its requests.
pub fn hint_for(rule: &str, dim: Dim, name: &str, window: &str) -> String {
    // The anomaly key opens the next anomaly each press: its feature's users, or what
    // a user or model spent on, with the most expensive requests since it began.
    let open = format!(
        "In burnrate, press `a` (the anomaly key) until it opens {dim} {name}: it shows          {} and the most expensive requests since it began",
        match dim {
            Dim::Feature => "its users",
            _ => "what it was spent on",
        }
    );
    let over = if window.is_empty() {
        String::new()
    } else {
        format!(" over the last {window}")
    };
    match rule {
        r if r.starts_with("spike_") => format!(
            "{open}. Look at its top users and models{over}: retry loops, a new prompt or a              model change usually show there."
        ),
        "runaway_user" | "user_share" | "runaway_requests" => format!(
            "{open} (`t`, top requests, lists more for a selected row): an agent loop or a              leaked key often looks like this; revoke or rate-limit the key if it is not              expected."
        ),
        "unpriced" => format!(
            "Requests to model {name} have no cost: add its price to the pricing table so the              spend is counted."
        ),
        "today_vs_7d" | "daily_average" | "drift" if dim == Dim::Feature && name != "all features" => {
            format!(
                "Compare feature {name} today with the last 7 days on its row of the overview                  (`Enter` drills into its users); check recent deploys and traffic."
            )
        }
        "today_vs_7d" | "daily_average" | "drift" => {
            "Compare today with the last 7 days in the overview (the features' today and 7-day              columns); check recent deploys and traffic."
                .to_string()
        }
        "day_over_budget_pace" | "forecast_over_budget" => {
            "Check the month forecast and the largest features in the overview; raise              budget.monthly_usd if the growth is planned."
                .to_string()
        }
        "feature_budget" if dim == Dim::Feature => format!(
            "Feature {name} is near or over its monthly budget: its row of the overview              (`Enter` drills into its users) shows who spends it; or raise the limit in the              config."
        ),
        "feature_budget" | "quota" => format!(
            "{dim} {name} is near or over its monthly limit: check what it spends on (in the              overview, `d` pivots to users and other dimensions), or raise the limit in the              config."
        ),
        _ => format!("Look at {dim} {name} in burnrate."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hints name the keys that do what they say (by their defaults), and never
    /// "Enter on the row" for a user or model, which are not rows of the overview.
    #[test]
    fn hints_name_the_right_keys_and_only_possible_paths() {
        use crate::app::keymap::{Action, Keymap};
        let keys = Keymap::default();
        let (anomaly, requests, drill, pivot) = (
            keys.first_key(Action::Anomaly),
            keys.first_key(Action::TopRequests),
            keys.first_key(Action::Drill),
            keys.first_key(Action::Pivot),
        );
        let runaway = hint_for("runaway_user", Dim::User, "user_7", "15m");
        assert!(
            runaway.contains(&format!("`{anomaly}` (the anomaly key)")),
            "{runaway}"
        );
        assert!(
            runaway.contains(&format!("`{requests}`, top requests")),
            "{runaway}"
        );
        assert!(!runaway.contains("`r`"), "{runaway}");
        for dim in [Dim::Model, Dim::User] {
            let h = hint_for("spike_5m", dim, "x", "5m");
            assert!(!h.contains("Enter"), "{h}");
            assert!(h.contains(&format!("`{anomaly}`")), "{h}");
            assert!(h.contains(&format!("opens {dim} x")), "{h}");
        }
        let feature = hint_for("today_vs_7d", Dim::Feature, "chat", "today");
        assert!(feature.contains(&format!("`{drill}` drills")), "{feature}");
        let tenant = hint_for("quota", Dim::Tenant, "acme", "month");
        assert!(!tenant.contains("Enter"), "{tenant}");
        assert!(tenant.contains(&format!("`{pivot}` pivots")), "{tenant}");
        for (rule, dim) in [
            ("spike_60m", Dim::Feature),
            ("runaway_requests", Dim::User),
            ("user_share", Dim::User),
            ("unpriced", Dim::Model),
            ("drift", Dim::Feature),
            ("feature_budget", Dim::Feature),
            ("forecast_over_budget", Dim::Feature),
        ] {
            let h = hint_for(rule, dim, "all features", "");
            assert!(!h.contains("`r`") && !h.contains("then r"), "{rule}: {h}");
        }
    }

    #[test]
    fn shared_alerts_are_listed_until_the_local_detector_confirms_them() {
        let mut labels = Labels::new();
        labels.insert("feature".into(), "support_qa".into());
        let at: DateTime<Utc> = "2026-11-28T12:00:00Z".parse().unwrap();
        let o = Observation {
            rule: "spike_15m".into(),
            labels,
            severity: Severity::Critical,
            summary: "support_qa $65.00 in the last 15m vs typical $5.00, 13.0x".into(),
            window: "15m".into(),
            observed: Some(Money::from_dollars(65)),
            expected: Some(Money::from_dollars(5)),
            ratio: Some(13.0),
            baseline: "same hour".into(),
            contributors: vec![ContributorLine {
                dim: "user".into(),
                name: "user_runaway".into(),
                cost: Money::from_dollars(60),
                share: 0.9,
            }],
            hint: String::new(),
            since: None,
        };
        let mut book = Book::default();
        book.step(
            &Evaluation {
                now: at,
                observations: vec![(o, Hold::Confirmed)],
            },
            &Policy::default(),
        );
        let a = shared_anomaly(book.firing()[0]).unwrap();
        assert_eq!((a.dim, a.name.as_str()), (Dim::Feature, "support_qa"));
        assert!(
            a.message.starts_with("[shared state] support_qa $65.00"),
            "{}",
            a.message
        );
        assert_eq!(a.since, Some(at));
        assert_eq!(a.contributors[0].dim, Dim::User);
        assert_eq!(a.observed, Money::from_dollars(65));

        // Not confirmed here yet: listed. Confirmed (whatever its window): not twice.
        assert_eq!(unconfirmed(std::slice::from_ref(&a), &[]).len(), 1);
        let local = Anomaly {
            rule: "spike_5m".into(),
            message: "support_qa local".into(),
            ..a.clone()
        };
        assert!(unconfirmed(std::slice::from_ref(&a), &[local]).is_empty());

        // Monitor health is not about one name of one dimension.
        let mut db = Labels::new();
        db.insert("database".into(), "h:5432/x".into());
        let mut h = book.firing()[0].clone();
        h.observation.labels = db;
        assert_eq!(shared_anomaly(&h), None);
    }

    #[test]
    fn fingerprints_are_stable_and_depend_on_rule_and_every_label() {
        let mut a = Labels::new();
        a.insert("feature".into(), "support_qa".into());
        let f = fingerprint("spike_5m", &a);
        assert_eq!(f.len(), 16);
        assert_eq!(f, fingerprint("spike_5m", &a.clone()));
        assert_ne!(f, fingerprint("runaway_user", &a));
        // A spike is one alert whichever window reports it.
        assert_eq!(f, fingerprint("spike_15m", &a));
        assert_eq!(f, fingerprint("spike_60m", &a));
        let mut b = a.clone();
        b.insert("model".into(), "gpt-4o".into());
        assert_ne!(f, fingerprint("spike_5m", &b));
        // Label order cannot matter: the map is sorted.
        let mut c = Labels::new();
        c.insert("model".into(), "gpt-4o".into());
        c.insert("feature".into(), "support_qa".into());
        assert_eq!(fingerprint("spike_5m", &b), fingerprint("spike_5m", &c));
        // No ambiguity between "ab"+"c" and "a"+"bc".
        let mut d = Labels::new();
        d.insert("ab".into(), "c".into());
        let mut e = Labels::new();
        e.insert("a".into(), "bc".into());
        assert_ne!(fingerprint("r", &d), fingerprint("r", &e));
        // Pinned: the stored state of older versions must keep matching.
        assert_eq!(fingerprint("r", &Labels::new()), "af63ef4c86020cd5");
    }
}
