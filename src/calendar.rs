//! Time arithmetic in the billing time zone: hour buckets, days, months.
//!
//! Buckets are hours of the billing time zone. Zones with a half- or quarter-hour
//! offset (India, Nepal, Eucla, Chatham, Marquesas) shift every bucket by that phase,
//! so that local hours, days and months are always whole buckets, as SQL's
//! `date_trunc(.., ts AT TIME ZONE zone)` has them.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

pub const HOUR_SECS: i64 = 3600;
pub const MINUTE_SECS: i64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    tz: Tz,
    /// Seconds past a UTC hour at which local hours start (0, 900, 1800 or 2700):
    /// local :00 is UTC minus the offset, so +5:45 starts hours at :15 UTC.
    phase: i64,
}

impl Default for Calendar {
    fn default() -> Self {
        Calendar::new(chrono_tz::UTC)
    }
}

impl Calendar {
    pub fn new(tz: Tz) -> Self {
        // The offset's part below an hour is the same in winter and summer for every
        // zone but Lord Howe (30-minute DST); take it from a fixed instant.
        let probe = Utc
            .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default();
        let offset = tz
            .offset_from_utc_datetime(&probe.naive_utc())
            .fix()
            .local_minus_utc() as i64;
        Calendar {
            tz,
            phase: (-offset).rem_euclid(HOUR_SECS),
        }
    }

    pub fn tz(&self) -> Tz {
        self.tz
    }
    pub fn phase_secs(&self) -> i64 {
        self.phase
    }

    /// The bucket (hour) an instant falls in.
    pub fn hour_index(&self, t: DateTime<Utc>) -> i64 {
        (t.timestamp() - self.phase).div_euclid(HOUR_SECS)
    }
    pub fn hour_start(&self, idx: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(idx * HOUR_SECS + self.phase, 0).unwrap_or_default()
    }
    pub fn minute_index(t: DateTime<Utc>) -> i64 {
        t.timestamp().div_euclid(MINUTE_SECS)
    }
    pub fn minute_start(idx: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(idx * MINUTE_SECS, 0).unwrap_or_default()
    }

    /// The local date whose span (`date_start` to the next one) holds `t`: the
    /// wall-clock date, except in the hour before a midnight that happens twice.
    pub fn local_date(&self, t: DateTime<Utc>) -> NaiveDate {
        let d = t.with_timezone(&self.tz).date_naive();
        match d.pred_opt() {
            Some(before) if self.date_start(d) > t => before,
            _ => d,
        }
    }

    /// The UTC instant at which a local date starts, as PostgreSQL reads
    /// `'YYYY-MM-DD 00:00'::timestamp AT TIME ZONE zone`: where DST skips midnight,
    /// the first valid local time; where clocks go back over midnight (Havana), the
    /// second 00:00.
    pub fn date_start(&self, d: NaiveDate) -> DateTime<Utc> {
        use chrono::LocalResult;
        let mut time = NaiveTime::MIN;
        for _ in 0..4 {
            match self.tz.from_local_datetime(&d.and_time(time)) {
                LocalResult::Single(t) | LocalResult::Ambiguous(_, t) => {
                    return t.with_timezone(&Utc);
                }
                LocalResult::None => time += Duration::minutes(30),
            }
        }
        Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN))
    }

    pub fn day_start(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        self.date_start(self.local_date(t))
    }

    pub fn month_start(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let d = self.local_date(t);
        self.date_start(d.with_day(1).unwrap_or(d))
    }

    pub fn next_month_start(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let d = self.local_date(t);
        let (y, m) = if d.month() == 12 {
            (d.year() + 1, 1)
        } else {
            (d.year(), d.month() + 1)
        };
        self.date_start(NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(d))
    }

    /// Days in the local month containing `t` (28-31).
    pub fn days_in_month(&self, t: DateTime<Utc>) -> u32 {
        let d = self.local_date(t);
        let first = d.with_day(1).unwrap_or(d);
        let (y, m) = if d.month() == 12 {
            (d.year() + 1, 1)
        } else {
            (d.year(), d.month() + 1)
        };
        let next = NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(first);
        (next - first).num_days() as u32
    }

    /// Local days elapsed in the month, counting today as a fraction.
    pub fn days_elapsed(&self, t: DateTime<Utc>) -> f64 {
        let start = self.month_start(t);
        let today = self.day_start(t);
        let whole = self.local_date(today).day0() as f64;
        let next = self.date_start(self.local_date(t) + Duration::days(1));
        let day_len = (next - today).num_seconds().max(1) as f64;
        let frac = (t - today).num_seconds() as f64 / day_len;
        let _ = start;
        whole + frac.clamp(0.0, 1.0)
    }

    /// "2026-11"
    pub fn month_label(&self, t: DateTime<Utc>) -> String {
        let d = self.local_date(t);
        format!("{:04}-{:02}", d.year(), d.month())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn utc_hours_and_months() {
        let c = Calendar::default();
        let t = utc("2026-02-14T10:30:00Z");
        assert_eq!(c.hour_start(c.hour_index(t)), utc("2026-02-14T10:00:00Z"));
        assert_eq!(c.days_in_month(t), 28);
        assert_eq!(c.month_start(t), utc("2026-02-01T00:00:00Z"));
        assert_eq!(c.next_month_start(t), utc("2026-03-01T00:00:00Z"));
        assert!((c.days_elapsed(t) - (13.0 + 10.5 / 24.0)).abs() < 1e-9);
        assert_eq!(c.month_label(t), "2026-02");
        assert_eq!(c.days_in_month(utc("2028-02-10T00:00:00Z")), 29);
        assert_eq!(c.days_in_month(utc("2026-12-31T23:00:00Z")), 31);
    }

    #[test]
    fn half_hour_zone_buckets_align_with_local_days() {
        let c = Calendar::new("Asia/Kolkata".parse().unwrap());
        assert_eq!(c.phase_secs(), 1800);
        let t = utc("2026-03-01T05:10:00Z"); // 10:40 local
        assert_eq!(c.hour_start(c.hour_index(t)), utc("2026-03-01T04:30:00Z"));
        // Local midnight is a bucket boundary.
        let midnight = c.day_start(t);
        assert_eq!(midnight, utc("2026-02-28T18:30:00Z"));
        assert_eq!(c.hour_start(c.hour_index(midnight)), midnight);
    }

    #[test]
    fn month_boundary_follows_the_billing_zone() {
        let c = Calendar::new("America/New_York".parse().unwrap());
        // 03:00 UTC on Dec 1 is still November 30 in New York.
        let t = utc("2026-12-01T03:00:00Z");
        assert_eq!(c.month_label(t), "2026-11");
        assert_eq!(c.days_in_month(t), 30);
        assert_eq!(c.month_start(t), utc("2026-11-01T04:00:00Z"));
    }

    #[test]
    fn quarter_hour_zones_start_local_hours_at_the_right_utc_minute() {
        // Local :00 in +5:45 is :15 UTC; in +8:45 and +12:45 also :15; in -9:30 :30.
        for (zone, at, hour_start, month_start) in [
            (
                "Asia/Kathmandu",
                "2026-02-28T18:14:00Z", // 23:59 local on Feb 28
                "2026-02-28T17:15:00Z",
                "2026-01-31T18:15:00Z",
            ),
            (
                "Australia/Eucla",
                "2026-03-01T05:20:00Z", // 14:05 local
                "2026-03-01T05:15:00Z",
                "2026-02-28T15:15:00Z",
            ),
            (
                "Pacific/Chatham", // +13:45 in (southern) summer
                "2026-01-15T10:00:00Z",
                "2026-01-15T09:15:00Z",
                "2025-12-31T10:15:00Z",
            ),
            (
                "Pacific/Marquesas",
                "2026-03-01T09:29:00Z", // 23:59 local on Feb 28
                "2026-03-01T08:30:00Z",
                "2026-02-01T09:30:00Z",
            ),
        ] {
            let c = Calendar::new(zone.parse().unwrap());
            let t = utc(at);
            assert_eq!(c.hour_start(c.hour_index(t)), utc(hour_start), "{zone}");
            assert_eq!(c.month_start(t), utc(month_start), "{zone}");
            let m = c.month_start(t);
            assert_eq!(
                c.hour_start(c.hour_index(m)),
                m,
                "{zone}: month start is a bucket start"
            );
        }
    }

    /// Instants worth checking in a zone: every month start of 2024 to 2027 and, for
    /// each offset change in those years, the change and the second before it.
    fn probe_instants(tz: Tz) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let c = Calendar::new(tz);
        for year in 2024..=2027 {
            for month in 1..=12 {
                let first = NaiveDate::from_ymd_opt(year, month, 1).unwrap();
                let start = c.date_start(first);
                out.extend([
                    start,
                    start - Duration::seconds(1),
                    start + Duration::minutes(5),
                ]);
            }
        }
        let offset_at = |t: DateTime<Utc>| {
            tz.offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc()
        };
        let mut t = utc("2024-01-01T00:00:00Z");
        let end = utc("2028-01-01T00:00:00Z");
        let mut before = offset_at(t);
        while t < end {
            let next = t + Duration::minutes(15);
            let after = offset_at(next);
            if after != before {
                out.extend([
                    next,
                    next - Duration::seconds(1),
                    next + Duration::minutes(50),
                ]);
            }
            (t, before) = (next, after);
        }
        out
    }

    /// The start of `t`'s local hour as PostgreSQL computes it,
    /// `date_trunc('hour', t AT TIME ZONE z) AT TIME ZONE z`: an ambiguous local time
    /// is read as the later instant, a skipped one with the offset before the skip.
    fn sql_hour_start(tz: Tz, t: DateTime<Utc>) -> DateTime<Utc> {
        let local = t.with_timezone(&tz).naive_local();
        let hour = local.date().and_hms_opt(local.hour(), 0, 0).unwrap();
        match tz.from_local_datetime(&hour) {
            chrono::LocalResult::Single(x) => x.with_timezone(&Utc),
            chrono::LocalResult::Ambiguous(_, later) => later.with_timezone(&Utc),
            chrono::LocalResult::None => {
                let before = tz
                    .offset_from_utc_datetime(&(t - Duration::hours(3)).naive_utc())
                    .fix();
                Utc.from_utc_datetime(&(hour - Duration::seconds(before.local_minus_utc() as i64)))
            }
        }
    }

    #[test]
    fn every_zone_of_the_tz_database_gives_buckets_on_local_hours_days_and_months() {
        // Lord Howe's DST moves the clock by 30 minutes: its local hours start at :00
        // UTC in summer and :30 in winter, which one fixed grid of hour buckets cannot
        // follow (its days and months are still exact in the season of the probe).
        let two_phases = ["Australia/Lord_Howe", "Australia/LHI"];
        let mut checked = 0;
        for tz in chrono_tz::TZ_VARIANTS {
            if two_phases.contains(&tz.name()) {
                continue;
            }
            let c = Calendar::new(tz);
            for t in probe_instants(tz) {
                let bucket = c.hour_start(c.hour_index(t));
                let next = c.hour_start(c.hour_index(t) + 1);
                assert!(bucket <= t && t < next, "{} {t}", tz.name());
                // The bucket starts at a local :00, in the local hour that holds `t`.
                let local = bucket.with_timezone(&tz).naive_local();
                assert_eq!(
                    (local.minute(), local.second()),
                    (0, 0),
                    "{}: bucket of {t} starts at local {local}",
                    tz.name()
                );
                // Where SQL's own answer is an hour that holds `t`, the bucket is that
                // hour. Right after a fall-back SQL's local hour is no real hour:
                // it starts after `t` (New York's repeated 01:00) or up to 1h45m
                // before it (Chatham's clocks go back at 03:45, mid-hour).
                let sql = sql_hour_start(tz, t);
                if sql <= t && t - sql < Duration::hours(1) {
                    assert_eq!(bucket, sql, "{}: bucket of {t}", tz.name());
                }
                // Days and months start on bucket boundaries at local midnight.
                for start in [c.day_start(t), c.month_start(t), c.next_month_start(t)] {
                    assert_eq!(
                        c.hour_start(c.hour_index(start)),
                        start,
                        "{} {t}",
                        tz.name()
                    );
                    let l = start.with_timezone(&tz).naive_local();
                    assert_eq!(l.date(), c.local_date(start), "{}", tz.name());
                    assert!(
                        l.time() < NaiveTime::from_hms_opt(2, 0, 0).unwrap(),
                        "{}",
                        tz.name()
                    );
                }
                assert_eq!(
                    c.month_start(t).with_timezone(&tz).day(),
                    1,
                    "{}",
                    tz.name()
                );
                assert!(
                    c.month_start(t) <= t && t < c.next_month_start(t),
                    "{}",
                    tz.name()
                );
                checked += 1;
            }
        }
        assert!(checked > 80_000, "{checked} instants");
    }

    #[test]
    fn a_midnight_that_happens_twice_starts_the_day_at_the_second_as_sql_does() {
        // Havana, 2026-11-01: 01:00 CDT goes back to 00:00 CST (05:00 UTC).
        let c = Calendar::new("America/Havana".parse().unwrap());
        let first = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        assert_eq!(c.date_start(first), utc("2026-11-01T05:00:00Z"));
        let t = utc("2026-11-01T04:30:00Z"); // the first 00:30
        assert_eq!(c.local_date(t), first.pred_opt().unwrap());
        assert_eq!(c.month_label(t), "2026-10");
        assert_eq!(c.next_month_start(t), utc("2026-11-01T05:00:00Z"));
        assert_eq!(
            c.month_start(utc("2026-11-01T05:00:00Z")),
            utc("2026-11-01T05:00:00Z")
        );
    }

    #[test]
    fn dst_days_start_at_local_midnight() {
        let c = Calendar::new("Europe/Berlin".parse().unwrap());
        let t = utc("2026-03-29T12:00:00Z"); // spring-forward day
        assert_eq!(c.day_start(t), utc("2026-03-28T23:00:00Z"));
    }
}
