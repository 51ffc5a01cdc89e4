//! Recurring jobs: work that runs on a clock rather than when people are busy (an
//! hourly digest, a nightly re-index or evaluation batch). After chat they are the
//! commonest LLM workload, and a spend monitor must not page on them every time
//! they run: the backtest feeds them on top of the generator's traffic.

use chrono::{DateTime, Duration, Timelike, Utc};

use crate::calendar::Calendar;
use crate::model::{Agg, Fact};
use crate::money::Money;

/// When a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Every {
    /// At `minute` past every hour (UTC).
    Hour { minute: u32 },
    /// At `hour:minute` UTC every day.
    Day { hour: u32, minute: u32 },
}

/// A job: `requests` requests costing `cost` in all per run, spread evenly over
/// `minutes` minutes from its start, by one user through one model on one feature.
#[derive(Debug, Clone, PartialEq)]
pub struct RecurringJob {
    pub every: Every,
    pub minutes: u32,
    pub requests: u64,
    pub cost: Money,
    /// Feature, user, model, tenant, region.
    pub names: [String; 5],
}

impl RecurringJob {
    /// The digest: 60 requests and $2.40 within five minutes at :10 of
    /// every hour, on summarize through gpt-4o.
    pub fn hourly_digest() -> RecurringJob {
        RecurringJob {
            every: Every::Hour { minute: 10 },
            minutes: 5,
            requests: 60,
            cost: Money::from_micros(2_400_000),
            names: names("summarize", "svc_digest", "gpt-4o"),
        }
    }

    /// A nightly batch: 1,200 requests and $36 within ten minutes at 02:20 UTC, on
    /// extract_entities through claude-sonnet-4.
    pub fn nightly_batch() -> RecurringJob {
        RecurringJob {
            every: Every::Day {
                hour: 2,
                minute: 20,
            },
            minutes: 10,
            requests: 1_200,
            cost: Money::from_dollars(36),
            names: names("extract_entities", "svc_batch", "claude-sonnet-4"),
        }
    }

    /// Whether a run starts at this minute (a minute start).
    fn starts_at(&self, t: DateTime<Utc>) -> bool {
        match self.every {
            Every::Hour { minute } => t.minute() == minute,
            Every::Day { hour, minute } => t.hour() == hour && t.minute() == minute,
        }
    }

    /// The job's facts in `[from, to)`: one per minute it runs, at the minute's
    /// start (the first minutes of a run take the remainder of its even split).
    pub fn facts(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Fact> {
        let mut out = Vec::new();
        let n = i128::from(self.minutes.max(1));
        let first = Calendar::minute_index(from)
            + i64::from(Calendar::minute_start(Calendar::minute_index(from)) < from);
        let last = Calendar::minute_index(to - Duration::nanoseconds(1));
        for m in first..=last {
            let t = Calendar::minute_start(m);
            // Which minute of a run this is, if any (runs never overlap).
            let Some(k) = (0..self.minutes.max(1))
                .find(|k| self.starts_at(t - Duration::minutes(i64::from(*k))))
            else {
                continue;
            };
            let k = i128::from(k);
            let share = |total: i128| total / n + i128::from(k < total % n);
            let requests = share(i128::from(self.requests)) as u64;
            out.push(Fact {
                at: t,
                names: self.names.clone(),
                agg: Agg {
                    cost: Money::from_picos(share(self.cost.picos())),
                    requests,
                    input_tokens: 4_000 * requests,
                    output_tokens: 300 * requests,
                    computed: 0,
                },
            });
        }
        out
    }

    /// The same job at another time (moved, or run once more).
    pub fn at(&self, every: Every) -> RecurringJob {
        RecurringJob {
            every,
            ..self.clone()
        }
    }

    /// The same job `k` times its size.
    pub fn times(&self, k: u64) -> RecurringJob {
        RecurringJob {
            requests: self.requests * k,
            cost: self.cost.times(k),
            ..self.clone()
        }
    }
}

fn names(feature: &str, user: &str, model: &str) -> [String; 5] {
    [
        feature.into(),
        user.into(),
        model.into(),
        "internal".into(),
        "us-east".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_run_is_split_evenly_over_its_minutes_and_sums_exactly() {
        let job = RecurringJob::hourly_digest();
        let facts = job.facts(utc("2026-03-02T09:00:00Z"), utc("2026-03-02T11:00:00Z"));
        assert_eq!(facts.len(), 10);
        assert_eq!(facts[0].at, utc("2026-03-02T09:10:00Z"));
        assert_eq!(facts[4].at, utc("2026-03-02T09:14:00Z"));
        assert_eq!(facts[5].at, utc("2026-03-02T10:10:00Z"));
        let cost: Money = facts[..5].iter().map(|f| f.agg.cost).sum();
        let requests: u64 = facts[..5].iter().map(|f| f.agg.requests).sum();
        assert_eq!((cost, requests), (job.cost, job.requests));
        // Half-open, minute-wise: a partial minute at the start is not repeated.
        let split = job.facts(utc("2026-03-02T09:12:30Z"), utc("2026-03-02T09:20:00Z"));
        assert_eq!(split.len(), 2);
        let nightly = RecurringJob::nightly_batch();
        let f = nightly.facts(utc("2026-03-02T00:00:00Z"), utc("2026-03-03T00:00:00Z"));
        assert_eq!(f.len(), 10);
        assert_eq!(f[0].at, utc("2026-03-02T02:20:00Z"));
        assert_eq!(f.iter().map(|f| f.agg.cost).sum::<Money>(), nightly.cost);
    }
}
