//! Billing time zones against PostgreSQL's `AT TIME ZONE`: burnrate's hour, day and
//! month boundaries equal SQL's in zones with quarter- and half-hour offsets and DST,
//! and a $1,000 row at 23:55 local on a month's last day stays out of the next
//! month's month-to-date, read raw and from the rollup.

mod common;
mod pg_common;

use burnrate::calendar::Calendar;
use burnrate::money::Money;
use burnrate::source::columns::MapSpec;
use burnrate::source::{PgSource, rollup, schema};
use burnrate::store::StoreConfig;
use chrono::{DateTime, Duration, Utc};
use common::TestDb;
use pg_common::*;
use tokio::sync::mpsc;

const ZONES: [&str; 12] = [
    "Asia/Kathmandu",
    "Australia/Eucla",
    "Pacific/Chatham",
    "Pacific/Marquesas",
    "Asia/Kolkata",
    "America/St_Johns",
    "Australia/Adelaide",
    "America/New_York",
    "Europe/Berlin",
    "America/Havana",
    "Asia/Tehran",
    "UTC",
];

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[tokio::test]
async fn hour_day_and_month_boundaries_equal_sql_at_time_zone() {
    let db = TestDb::create().await;
    let c = db.client().await;
    // Month ends in both hemispheres' seasons and around DST changes of 2026.
    let mut instants = Vec::new();
    for base in [
        "2026-01-31T23:59:00Z",
        "2026-02-28T18:14:00Z",
        "2026-03-08T06:59:00Z",
        "2026-03-08T07:01:00Z",
        "2026-03-29T00:59:00Z",
        "2026-03-29T01:01:00Z",
        "2026-04-05T02:29:00Z",
        "2026-04-05T13:31:00Z",
        "2026-06-30T14:44:00Z",
        "2026-09-27T13:59:00Z",
        "2026-10-04T14:01:00Z",
        "2026-10-25T01:30:00Z",
        "2026-11-01T05:30:00Z",
        "2026-11-01T06:30:00Z",
        "2026-11-30T10:16:00Z",
        "2026-12-31T11:00:00Z",
    ] {
        let t = utc(base);
        for minutes in (-60..=60).step_by(15) {
            instants.push(t + Duration::minutes(minutes));
        }
    }
    let mut compared = 0;
    for zone in ZONES {
        let cal = Calendar::new(zone.parse().unwrap());
        for &t in &instants {
            let row = c
                .query_one(
                    "SELECT date_trunc('month', $1::timestamptz AT TIME ZONE $2) AT TIME ZONE $2, \
                            date_trunc('day', $1::timestamptz AT TIME ZONE $2) AT TIME ZONE $2, \
                            date_trunc('hour', $1::timestamptz AT TIME ZONE $2) AT TIME ZONE $2, \
                            to_char($1::timestamptz AT TIME ZONE $2, 'YYYY-MM-DD')",
                    &[&t, &zone],
                )
                .await
                .unwrap();
            let (month, day, hour): (DateTime<Utc>, DateTime<Utc>, DateTime<Utc>) =
                (row.get(0), row.get(1), row.get(2));
            // Where clocks go back over midnight (Havana), `date_trunc` dates the
            // first 00:xx with the new day, whose start `AT TIME ZONE` reads as the
            // second 00:00, after it; burnrate follows the boundary, so such a row
            // counts in the day and month that end at that boundary, as a
            // `ts < '.. 00:00' AT TIME ZONE zone` query has it.
            if month <= t {
                assert_eq!(cal.month_start(t), month, "{zone} month of {t}");
            }
            if day <= t {
                assert_eq!(cal.day_start(t), day, "{zone} day of {t}");
            }
            assert!(cal.month_start(t) <= t && cal.day_start(t) <= t);
            // Right after a fall-back SQL's local hour is no real hour (it starts
            // after `t`, or more than an hour before it where clocks go back
            // mid-hour); every other hour must agree.
            if hour <= t && t - hour < Duration::hours(1) {
                assert_eq!(
                    cal.hour_start(cal.hour_index(t)),
                    hour,
                    "{zone} hour of {t}"
                );
            }
            compared += 1;
        }
    }
    assert_eq!(compared, ZONES.len() * 16 * 9);
    db.drop_db().await;
}

/// A $1,000 row at 23:55 local on the last day of the month before now, and $1 at
/// the new month's first instant, in Asia/Kathmandu (+5:45): month-to-date is $1,
/// from the raw table and from the rollup (which records the hour phase).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_five_minutes_before_a_kathmandu_month_stays_in_its_month() {
    let db = TestDb::create().await;
    let url_target = target(&db.url);
    schema::init(&url_target, TABLE).await.expect("db init");
    let c = db.client().await;
    let cal = Calendar::new("Asia/Kathmandu".parse().unwrap());
    let now = Utc::now();
    // Whenever the test runs, the latest month start is within the 35 days kept.
    let month_start = cal.month_start(now);
    insert_at(&c, month_start - Duration::minutes(5), "batch", "1000").await;
    insert_at(&c, month_start, "chat", "1").await;
    let hours_in_sql: Vec<DateTime<Utc>> = c
        .query(
            "SELECT date_trunc('hour', \"timestamp\" AT TIME ZONE 'Asia/Kathmandu') \
               AT TIME ZONE 'Asia/Kathmandu' FROM cost_events ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(hours_in_sql[1], month_start);

    let cfg = StoreConfig {
        calendar: cal,
        ..StoreConfig::default()
    };
    for rollup_on in [false, true] {
        if rollup_on {
            rollup::init_rollup(
                &url_target,
                TABLE,
                &MapSpec::default(),
                cal.phase_secs(),
                false,
            )
            .await
            .expect("db init --rollup");
            let rolled: Vec<DateTime<Utc>> = c
                .query("SELECT hour FROM cost_events_rollup ORDER BY 1", &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert_eq!(
                rolled, hours_in_sql,
                "the rollup's hours are SQL's local hours"
            );
        }
        let mut opts = options(cfg);
        opts.rollup = rollup_on;
        let mut source = PgSource::connect(url_target.clone(), opts)
            .await
            .expect("connect");
        let (tx, mut rx) = mpsc::channel(10_000);
        source.backfill(&tx, now).await.expect("backfill");
        assert_eq!(source.read_rollup(), rollup_on);
        let mut seen = Collector::new(cfg);
        seen.drain(&mut rx);
        let store = &seen.store;
        let mtd = store.total(store.hours_from(cal.month_start(now)));
        assert_eq!(
            mtd.cost,
            "1".parse::<Money>().unwrap(),
            "rollup {rollup_on}"
        );
        assert_eq!(mtd.requests, 1);
        let all = store.total(store.hours_from(month_start - Duration::days(1)));
        assert_eq!(all.cost, "1001".parse::<Money>().unwrap());
    }
    db.drop_db().await;
}
