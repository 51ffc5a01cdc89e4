//! The coarse tier from the database (issue 17): history older than the store's
//! detail hours is read with one GROUPING SETS scan per billing day (hours by
//! feature, model, tenant and region; users by day) and gives, on every query the
//! tier claims, exactly what a full backfill gives and what SQL says: raw, from the
//! rollup, and across a backfill cut in the middle and finished on a new connection.

mod common;
mod pg_common;

use std::collections::BTreeMap;

use burnrate::model::{Agg, Dim, SourceMsg};
use burnrate::source::columns::MapSpec;
use burnrate::source::{PgSource, rollup, schema};
use burnrate::store::{Store, StoreConfig};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use common::TestDb;
use pg_common::*;
use tokio::sync::mpsc;

const DETAIL_HOURS: i64 = 30;

fn tiered() -> StoreConfig {
    StoreConfig {
        detail_hours: Some(DETAIL_HOURS),
        ..StoreConfig::default()
    }
}

/// Four days of rows every 7 minutes from many users (some names NULL), one
/// rejected row, all dated relative to `now`.
async fn fill(c: &tokio_postgres::Client, now: DateTime<Utc>) {
    c.execute(
        "INSERT INTO cost_events (\"timestamp\", feature_name, user_id, model, tenant_id, region, \
           cost_usd, input_tokens, output_tokens) \
         SELECT $1::timestamptz - make_interval(mins => i * 7), \
           'f' || (i % 6), CASE WHEN i % 13 = 0 THEN NULL ELSE 'user_' || (i * 7919 % 53) END, \
           'm' || (i % 4), 't' || (i % 3), CASE WHEN i % 5 = 0 THEN NULL ELSE 'eu' END, \
           ((i * 104729 % 9973) + 1)::numeric / 1000000, i % 900, i % 300 \
         FROM generate_series(1, 4 * 24 * 60 / 7) AS i",
        &[&now],
    )
    .await
    .expect("fill");
    c.execute(
        "INSERT INTO cost_events (\"timestamp\", feature_name, cost_usd) \
         VALUES ($1::timestamptz - interval '50 hours', 'bad', 'NaN')",
        &[&now],
    )
    .await
    .expect("rejected row");
}

fn named(s: &Store, dim: Dim, from: i64) -> BTreeMap<String, Agg> {
    s.by_dim(dim, from..=i64::MAX)
        .into_iter()
        .map(|(id, a)| (s.name(dim, id).to_string(), a))
        .collect()
}

/// Per user from `from` on, from SQL (the valid rows; NULL as the store names it).
async fn users_sql(c: &tokio_postgres::Client, from: DateTime<Utc>) -> BTreeMap<String, Agg> {
    let rows = c
        .query(
            "SELECT coalesce(user_id, ''), sum(cost_usd)::text, count(*), \
               coalesce(sum(input_tokens), 0)::int8, coalesce(sum(output_tokens), 0)::int8 \
             FROM cost_events WHERE \"timestamp\" >= $1 AND cost_usd < 'Infinity' \
               AND cost_usd > '-Infinity' GROUP BY 1",
            &[&from],
        )
        .await
        .expect("users");
    named_aggs(&rows)
}

/// The tiered store answers like the full one and like SQL.
/// The month's sum sent before the history equals the month in the store and SQL.
async fn assert_month_so_far(seen: &Collector, c: &tokio_postgres::Client, now: DateTime<Utc>) {
    let cal = *seen.store.calendar();
    let (start, agg) = seen.month_so_far.expect("the month's sum was sent");
    assert_eq!(start, cal.month_start(now));
    assert_eq!(
        Some(agg),
        seen.month_at_backfill_end,
        "the month's sum and the history sent after it"
    );
    let sql: String = c
        .query_one(
            "SELECT sum(cost_usd)::text FROM cost_events WHERE \"timestamp\" >= $1 \
               AND cost_usd < 'Infinity' AND cost_usd > '-Infinity'",
            &[&start],
        )
        .await
        .expect("month sum")
        .get(0);
    // Equal unless another session's open transaction held the horizon back (the
    // first poll then takes the rest).
    let sql: burnrate::money::Money = sql.parse().unwrap();
    assert!(
        agg.cost <= sql,
        "the month's sum {} and SQL {sql}",
        agg.cost
    );
    let after_poll = seen
        .store
        .total(seen.store.hour_index(start)..=i64::MAX)
        .cost;
    assert_eq!(after_poll, sql);
}

async fn assert_same(full: &Store, tiered: &Store, c: &tokio_postgres::Client, now: DateTime<Utc>) {
    let cal = *full.calendar();
    let cur = full.hour_index(now);
    assert!(tiered.memory().coarse_hours > 40, "{:?}", tiered.memory());
    assert!(tiered.memory().cells < full.memory().cells);
    assert_eq!(store_by_feature(tiered), ground_truth(c).await);
    assert_eq!(store_by_feature(tiered), store_by_feature(full));
    assert_eq!(tiered.intake().rows, full.intake().rows);
    assert_eq!(tiered.intake().rejected, full.intake().rejected);
    for h in full.oldest_hour().unwrap()..=cur {
        assert_eq!(tiered.total(h..=h), full.total(h..=h), "hour {h}");
    }
    for dim in [Dim::Model, Dim::Tenant, Dim::Region] {
        for from in [i64::MIN, cur - 60, cur - 2] {
            assert_eq!(named(tiered, dim, from), named(full, dim, from), "{dim:?}");
        }
    }
    // The nightly user's coarse hours: its spend at its hour (sent as one of the
    // hour's biggest users), nothing in the others, as in the full store.
    let series = |s: &Store| {
        let id = s.lookup(Dim::User, "nightly").expect("the nightly user");
        s.hourly_series(
            Dim::User,
            Some(id),
            full.oldest_hour().unwrap(),
            tiered.detail_floor() - 1,
        )
        .iter()
        .map(|a| a.cost)
        .collect::<Vec<_>>()
    };
    let nightly = series(tiered);
    assert_eq!(nightly, series(full));
    // And its part of its feature, which a user's usual share reads.
    let pair = |s: &Store| {
        let f = s.lookup(Dim::Feature, "reindex").unwrap();
        let u = s.lookup(Dim::User, "nightly").unwrap();
        s.pair_cost_for_baseline(f, u, i64::MIN..=cur)
    };
    assert_eq!(pair(tiered), pair(full));
    assert_eq!(pair(tiered).to_string(), "75");
    assert!(nightly.iter().filter(|c| c.picos() > 0).count() >= 2);
    for back in 0..4 {
        let day = cal.day_start(now - ChronoDuration::days(back));
        let from = full.hour_index(day);
        assert!(tiered.users_exact_from(from));
        let users = named(tiered, Dim::User, from);
        assert_eq!(users, named(full, Dim::User, from), "users from {day}");
        assert_eq!(users, users_sql(c, day).await, "users from {day}, SQL");
    }
}

async fn backfill(
    url: &str,
    cfg: StoreConfig,
    rollup_on: bool,
    now: DateTime<Utc>,
) -> (bool, Collector) {
    let mut opts = options(cfg);
    opts.rollup = rollup_on;
    opts.month_first = true;
    let mut source = PgSource::connect(target(url), opts).await.expect("connect");
    let (tx, mut rx) = mpsc::channel(10_000);
    source.backfill(&tx, now).await.expect("backfill");
    let mut seen = Collector::new(cfg);
    seen.drain(&mut rx);
    // The first poll takes what the backfill's horizon left (another test's open
    // transaction can hold it back).
    source.poll(&tx).await.expect("poll");
    seen.drain(&mut rx);
    (source.read_rollup(), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coarse_backfill_equals_a_full_one_and_sql_raw_and_from_the_rollup() {
    let db = TestDb::create().await;
    let url = target(&db.url);
    schema::init(&url, TABLE).await.expect("db init");
    let c = db.client().await;
    let now = Utc::now();
    fill(&c, now).await;
    // A nightly job's user: $25 in one hour of each coarse day.
    c.execute(
        "INSERT INTO cost_events (\"timestamp\", feature_name, user_id, model, cost_usd) \
         SELECT $1::timestamptz - make_interval(hours => 40 + 24 * d), 'reindex', 'nightly', \
           'm0', 12.5 FROM generate_series(0, 2) AS d, generate_series(1, 2) AS k",
        &[&now],
    )
    .await
    .expect("nightly rows");
    settle(&c).await;

    let (_, full) = backfill(&db.url, StoreConfig::default(), false, now).await;
    let (_, raw) = backfill(&db.url, tiered(), false, now).await;
    assert_month_so_far(&raw, &c, now).await;
    assert_eq!(
        raw.store.detail_floor(),
        raw.store.hour_index(now) - DETAIL_HOURS
    );
    assert_same(&full.store, &raw.store, &c, now).await;

    rollup::init_rollup(&url, TABLE, &MapSpec::default(), 0, false)
        .await
        .expect("db init --rollup");
    // Rows the rollup has not taken in: a late one in a coarse day, a new one.
    insert_at(&c, now - ChronoDuration::hours(70), "late", "3.25").await;
    insert_at(&c, now - ChronoDuration::minutes(3), "f1", "0.5").await;
    settle(&c).await;
    let (_, full) = backfill(&db.url, StoreConfig::default(), false, now).await;
    let (used_rollup, rolled) = backfill(&db.url, tiered(), true, now).await;
    assert_month_so_far(&rolled, &c, now).await;
    assert!(used_rollup, "the rollup was read");
    assert_same(&full.store, &rolled.store, &c, now).await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coarse_backfill_cut_in_the_middle_is_finished_exactly() {
    let db = TestDb::create().await;
    schema::init(&target(&db.url), TABLE)
        .await
        .expect("db init");
    let c = db.client().await;
    let admin = db.client().await;
    let now = Utc::now();
    fill(&c, now).await;
    settle(&c).await;
    let cfg = tiered();
    let source = PgSource::connect(target(&db.url), options(cfg))
        .await
        .expect("connect");
    let mut seen = Collector::new(cfg);
    // Held on a one-slot channel until a coarse day has been sent, then cut.
    let (tx, mut rx) = mpsc::channel(1);
    let task = {
        let tx = tx.clone();
        let mut source = source;
        tokio::spawn(async move {
            let r = source.backfill(&tx, now).await;
            (source, r)
        })
    };
    loop {
        let msg = rx.recv().await.expect("message");
        let coarse = matches!(&msg, SourceMsg::Backfill { batch, .. } if !batch.coarse.is_empty());
        seen.apply(msg);
        if coarse {
            break;
        }
    }
    cut_held_backfill(&admin, &db.name).await;
    // Rows for hours already sent (detailed, and the coarse day just sent) and for
    // days still to come.
    for hours in [1, DETAIL_HOURS + 2, 80] {
        insert_at(&c, now - ChronoDuration::hours(hours), "late_write", "0.5").await;
    }
    drop(tx);
    let mut task = task;
    let (mut source, result) = loop {
        tokio::select! {
            r = &mut task => break r.expect("backfill task"),
            Some(m) = rx.recv() => seen.apply(m),
        }
    };
    seen.drain(&mut rx);
    assert!(result.is_err(), "the cut ended the first backfill");
    let (tx, mut rx) = mpsc::channel(10_000);
    source.backfill(&tx, now).await.expect("second backfill");
    catch_up(&mut source, &tx, &c).await;
    seen.drain(&mut rx);
    assert_eq!(seen.backfill_done, 1);
    assert_eq!(
        seen.month_so_far, None,
        "no month's sum unless asked (the one-shot commands do not show it)"
    );
    assert_eq!(store_by_feature(&seen.store), ground_truth(&c).await);
    let day = seen
        .store
        .calendar()
        .day_start(now - ChronoDuration::days(3));
    assert_eq!(
        named(&seen.store, Dim::User, seen.store.hour_index(day)),
        users_sql(&c, day).await
    );
    db.drop_db().await;
}

/// A 30-day window starts inside a coarse day: its users are that day's part from
/// the database and the rest from the store, equal to SQL over the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_of_a_window_starting_inside_a_coarse_day_equal_sql() {
    let db = TestDb::create().await;
    schema::init(&target(&db.url), TABLE)
        .await
        .expect("db init");
    let c = db.client().await;
    let now = Utc::now();
    fill(&c, now).await;
    settle(&c).await;
    let (_, seen) = backfill(&db.url, tiered(), false, now).await;
    let store = &seen.store;
    let cal = *store.calendar();
    // Windows starting at each of the last 60 hours' starts, some inside a coarse
    // day, some at a day's start, some within the detail hours.
    let cur = store.hour_index(now);
    let mut edges = 0;
    for back in (5..80).step_by(7) {
        let from = cal.hour_start(cur - back);
        let users = match burnrate::report::users_edge(store, from) {
            Some((edge_from, edge_to)) => {
                edges += 1;
                assert_eq!(edge_from, from);
                assert!(edge_to > from && edge_to <= cal.hour_start(store.detail_floor()));
                let mut source = PgSource::connect(target(&db.url), options(tiered()))
                    .await
                    .expect("connect");
                let q = burnrate::model::GroupQuery {
                    group: Dim::User,
                    path: Vec::new(),
                    from: edge_from,
                    to: edge_to,
                };
                let edge = source.group_totals(&q).await.expect("group totals");
                burnrate::report::users_with_edge(store, edge_to, edge, None)
            }
            None => burnrate::report::breakdown(store, Dim::User, from, None),
        };
        let got: BTreeMap<String, Agg> = users
            .into_iter()
            .map(|b| {
                let agg = Agg {
                    cost: b.cost_usd,
                    requests: b.requests,
                    input_tokens: b.input_tokens,
                    output_tokens: b.output_tokens,
                    computed: b.computed_cost_requests,
                };
                (b.name, agg)
            })
            .collect();
        assert_eq!(got, users_sql(&c, from).await, "users from {from}");
    }
    assert!(edges >= 3, "some windows started inside a coarse day");
    db.drop_db().await;
}
