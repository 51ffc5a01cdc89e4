//! Which rules an evaluation evaluates, and under which config: its scope.
//!
//! Several copies of burnrate share one alert book, each with its own config (one
//! has a budget, one does not; one watches a single tenant). An alert stores the
//! scope it was last seen under, and an evaluation may resolve it only when it
//! evaluates the same rule under the same scope: a copy without a budget does not
//! evaluate the budget rules, so it never resolves their alerts, whatever it (does
//! not) see.

use std::collections::{BTreeMap, BTreeSet};

use super::Labels;
use crate::detect::{DetectParams, rule_family};
use crate::money::Money;

/// The monitor-health rules: evaluated by the copies that check them (`check` does
/// not check that the database is reachable: it fails instead).
const HEALTH: [&str; 2] = ["database_unreachable", "no_events"];

/// What one evaluator evaluates. [`Scopes::any`] (tests, tools) resolves anything.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scopes {
    /// Resolves every alert it does not see (the behaviour before scopes).
    any: bool,
    /// The tenant this copy is restricted to ("" for all tenants).
    tenant: String,
    /// A hash of the statistical thresholds of `[detect]`.
    detect: String,
    /// The monthly budget and its rules' knobs, when a budget is set.
    monthly: Option<String>,
    /// The daily-pace rule is on (and a budget is set).
    daily_pace: bool,
    features: BTreeMap<String, Money>,
    tenants: BTreeMap<String, Money>,
    users: BTreeMap<String, Money>,
    warn_at: String,
    /// The monitor-health rules this evaluator checks ("database_unreachable",
    /// "no_events").
    health: BTreeSet<String>,
}

impl Scopes {
    /// Resolves every alert it does not see, whoever raised it.
    pub fn any() -> Scopes {
        Scopes {
            any: true,
            ..Scopes::default()
        }
    }

    /// The scopes of a copy with these thresholds and limits, restricted to
    /// `tenant` (if any), checking these health rules.
    pub fn new(p: &DetectParams, tenant: Option<&str>, health: &[&str]) -> Scopes {
        // Debug output of floats is exact and stable: two copies with the same
        // config get the same hash.
        let stats = format!(
            "{:?}",
            (
                p.today_ratio,
                p.spike_ratio,
                p.min_excess,
                p.spike_ratio_15m,
                p.spike_ratio_60m,
                p.spike_z,
                p.today_z,
                p.mad_floor,
                (
                    p.runaway_min_excess,
                    p.runaway_share,
                    p.runaway_request_ratio,
                    p.runaway_min_requests,
                    p.daily_average_ratio,
                    p.drift_lambda,
                    p.drift_sigmas,
                    p.drift_min_ratio,
                ),
            )
        );
        let l = &p.limits;
        Scopes {
            any: false,
            tenant: tenant.unwrap_or_default().to_string(),
            detect: hash(&stats),
            monthly: l
                .monthly
                .map(|m| format!("monthly={m:?};over={:?}", l.forecast_over)),
            daily_pace: l.daily_pace,
            features: l.features.clone(),
            tenants: l.tenants.clone(),
            users: l.users.clone(),
            warn_at: format!("{:?}", l.warn_at),
            health: health.iter().map(|h| h.to_string()).collect(),
        }
    }

    /// Whether this is [`Scopes::any`].
    pub fn is_any(&self) -> bool {
        self.any
    }

    /// The scope under which this evaluator evaluates `rule` for these labels, or
    /// None when it does not evaluate it at all.
    pub fn scope_of(&self, rule: &str, labels: &Labels) -> Option<String> {
        if self.any {
            return None;
        }
        let family = rule_family(rule);
        let what = match family {
            h if HEALTH.contains(&h) => {
                if !self.health.contains(h) {
                    return None;
                }
                format!("health={h}")
            }
            "forecast_over_budget" => self.monthly.clone()?,
            "day_over_budget_pace" if self.daily_pace => self.monthly.clone()?,
            "day_over_budget_pace" => return None,
            "feature_budget" => {
                let f = labels.get("feature")?;
                format!("feature={:?};warn={}", self.features.get(f)?, self.warn_at)
            }
            "quota" => {
                let limit = match (labels.get("tenant"), labels.get("user")) {
                    (Some(t), _) => self.tenants.get(t)?,
                    (None, Some(u)) => self.users.get(u)?,
                    _ => return None,
                };
                format!("quota={limit:?};warn={}", self.warn_at)
            }
            // Every other rule of the detector (spikes, runaways, drift...) holds
            // under the statistical thresholds alone.
            _ => format!("detect={}", self.detect),
        };
        Some(hash(&format!("{family}\u{0}{}\u{0}{what}", self.tenant)))
    }

    /// Whether this evaluator may resolve an alert of `rule` with these labels that
    /// was last seen under `scope` (None: stored by a version without scopes).
    pub fn may_resolve(&self, rule: &str, labels: &Labels, scope: Option<&str>) -> bool {
        if self.any {
            return true;
        }
        match self.scope_of(rule, labels) {
            None => false,
            Some(mine) => scope.is_none_or(|s| s == mine),
        }
    }
}

fn hash(s: &str) -> String {
    let mut l = Labels::new();
    l.insert(String::new(), s.to_string());
    super::fingerprint("scope", &l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(k: &str, v: &str) -> Labels {
        let mut l = Labels::new();
        l.insert(k.into(), v.into());
        l
    }

    fn with_budget(monthly: i64) -> DetectParams {
        let mut p = DetectParams::default();
        p.limits.monthly = Some(Money::from_dollars(monthly));
        p.limits
            .features
            .insert("chat".into(), Money::from_dollars(10));
        p
    }

    #[test]
    fn a_copy_without_a_budget_does_not_evaluate_the_budget_rules() {
        let plain = Scopes::new(&DetectParams::default(), None, &["no_events"]);
        let budget = Scopes::new(&with_budget(100), None, &["no_events"]);
        let none = Labels::new();
        let chat = labels("feature", "chat");
        for (rule, l) in [
            ("forecast_over_budget", &none),
            ("day_over_budget_pace", &none),
            ("feature_budget", &chat),
        ] {
            let raised = budget.scope_of(rule, l);
            assert!(raised.is_some(), "{rule}");
            assert_eq!(plain.scope_of(rule, l), None, "{rule}");
            assert!(!plain.may_resolve(rule, l, raised.as_deref()), "{rule}");
            assert!(budget.may_resolve(rule, l, raised.as_deref()), "{rule}");
        }
        // A feature without a budget of its own is not evaluated either.
        assert_eq!(
            budget.scope_of("feature_budget", &labels("feature", "search")),
            None
        );
        // Both evaluate the statistical rules under the same thresholds.
        let spike = plain.scope_of("spike_5m", &chat);
        assert_eq!(spike, budget.scope_of("spike_15m", &chat));
        assert!(budget.may_resolve("spike_60m", &chat, spike.as_deref()));
        // Health rules: only those checked.
        let db = labels("database", "h:5432/x");
        assert!(plain.scope_of("no_events", &db).is_some());
        assert_eq!(plain.scope_of("database_unreachable", &db), None);
        // A detector rule this code does not name holds under the thresholds.
        assert_eq!(
            plain.scope_of("recurring_job", &chat),
            budget.scope_of("recurring_job", &chat)
        );
        assert!(plain.scope_of("recurring_job", &chat).is_some());
    }

    #[test]
    fn another_budget_another_tenant_or_other_thresholds_is_another_scope() {
        let none = Labels::new();
        let chat = labels("feature", "chat");
        let a = Scopes::new(&with_budget(100), None, &[]);
        let b = Scopes::new(&with_budget(200), None, &[]);
        let raised = a.scope_of("forecast_over_budget", &none);
        assert!(!b.may_resolve("forecast_over_budget", &none, raised.as_deref()));
        // The same config again (another process): the same scope.
        let again = Scopes::new(&with_budget(100), None, &[]);
        assert_eq!(again.scope_of("forecast_over_budget", &none), raised);

        let acme = Scopes::new(&DetectParams::default(), Some("acme"), &[]);
        let all = Scopes::new(&DetectParams::default(), None, &[]);
        let raised = acme.scope_of("spike_5m", &chat);
        assert!(!all.may_resolve("spike_5m", &chat, raised.as_deref()));

        let p = DetectParams {
            spike_ratio: 9.0,
            ..DetectParams::default()
        };
        let strict = Scopes::new(&p, None, &[]);
        let raised = all.scope_of("spike_5m", &chat);
        assert!(!strict.may_resolve("spike_5m", &chat, raised.as_deref()));
        // Alerts stored before scopes existed resolve as before.
        assert!(strict.may_resolve("spike_5m", &chat, None));
        assert!(Scopes::any().may_resolve("quota", &chat, Some("x")));
    }
}
