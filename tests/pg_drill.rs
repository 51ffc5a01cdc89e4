//! Drill-down numbers against SQL ground truth: a seeded table is backfilled into
//! the app, the app is driven down feature -> user -> model (and pivoted), and every
//! row of every level, in the window and in the previous equal window, equals the
//! same sums computed by PostgreSQL. The most expensive requests equal an ORDER BY.

mod common;
mod pg_common;

use std::collections::BTreeMap;

use burnrate::app::drill::Window;
use burnrate::app::state::App;
use burnrate::app::view::{Baseline, DrillView};
use burnrate::detect::DetectParams;
use burnrate::model::{Agg, Dim, NONE_NAME, TopQuery};
use burnrate::money::Money;
use burnrate::source::{PgSource, TopSource, schema};
use burnrate::store::{Store, StoreConfig};
use chrono::{DateTime, Duration, Utc};
use common::TestDb;
use pg_common::*;
use tokio::sync::mpsc;
use tokio_postgres::Client;

/// 6,000 rows over 16 days: three features, seven users (one NULL), four models,
/// every cost distinct, a few rows of other tenants.
async fn seed(c: &Client) {
    c.batch_execute(
        "INSERT INTO cost_events (\"timestamp\", feature_name, user_id, model, tenant_id, region, \
                                  cost_usd, input_tokens, output_tokens, request_id) \
         SELECT now() - i * interval '4 minutes', \
                (ARRAY['support_qa','chat','search'])[i % 3 + 1], \
                (ARRAY['u_a','u_b','u_c','u_d','u_e','u_f',NULL])[(i / 3) % 7 + 1], \
                (ARRAY['gpt-4o','gpt-4o-mini','claude','llama'])[(i / 2) % 4 + 1], \
                (ARRAY['acme','globex'])[i % 2 + 1], 'us-east', \
                (((i::int8 * 1009) % 100000 + 1) * 1000000 + i)::numeric / 1000000000000, \
                i % 500, (i * 7) % 300, 'req_' || i \
         FROM generate_series(0, 5999) AS i",
    )
    .await
    .expect("seed");
}

/// Per name of `dim`: exact sums of the rows matching `path` in [from, to).
async fn sql_level(
    c: &Client,
    path: &[(Dim, String)],
    dim: Dim,
    from: DateTime<Utc>,
    to: Option<DateTime<Utc>>,
) -> BTreeMap<String, Agg> {
    let col = |d: Dim| match d {
        Dim::Feature => "feature_name",
        Dim::User => "user_id",
        Dim::Model => "model",
        Dim::Tenant => "tenant_id",
        Dim::Region => "region",
    };
    let mut conds = vec!["\"timestamp\" >= $1".to_string()];
    let mut params: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> = vec![Box::new(from)];
    if let Some(to) = to {
        params.push(Box::new(to));
        conds.push(format!("\"timestamp\" < ${}", params.len()));
    }
    for (d, name) in path {
        let want = if name == NONE_NAME {
            String::new()
        } else {
            name.clone()
        };
        params.push(Box::new(want));
        conds.push(format!("coalesce({}, '') = ${}", col(*d), params.len()));
    }
    let sql = format!(
        "SELECT coalesce({g}, ''), sum(cost_usd)::text, count(*), \
                coalesce(sum(input_tokens), 0)::int8, coalesce(sum(output_tokens), 0)::int8 \
         FROM cost_events WHERE {} GROUP BY 1",
        conds.join(" AND "),
        g = col(dim)
    );
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    named_aggs(&c.query(&sql, &refs).await.expect("ground truth"))
}

fn rows_of(view: &DrillView) -> BTreeMap<String, Agg> {
    view.rows.iter().map(|r| (r.name.clone(), r.agg)).collect()
}

fn prev_of(view: &DrillView) -> BTreeMap<String, Agg> {
    view.rows
        .iter()
        .filter_map(|r| {
            r.prev
                .filter(|p| !p.is_empty())
                .map(|p| (r.name.clone(), p))
        })
        .collect()
}

/// Checks the open level, built at `now`, against SQL: rows, parent total, and the
/// baseline the view says it used (the previous equal window, the hours just before
/// the window, or none: which one depends on how much history lies before the
/// window, so on the day of the month for month to date).
async fn check_level(c: &Client, app: &App, now: DateTime<Utc>) -> DrillView {
    let view = app.drill.clone().expect("a level is open");
    let from = view.window_start;
    let truth = sql_level(c, &view.path, view.dim, from, None).await;
    assert_eq!(rows_of(&view), truth, "{:?} by {}", view.path, view.dim);
    let parent = truth.values().fold(Agg::default(), |mut t, a| {
        t.add(a);
        t
    });
    assert_eq!(view.parent, parent);
    let len = app.store.hour_index(now) - app.store.hour_index(from) + 1;
    // [from, to) of the baseline.
    let prev = match view.baseline {
        Baseline::PreviousWindow => Some((from - Duration::hours(len), from)),
        Baseline::HoursBefore {
            hours,
            window_hours,
        } => {
            assert_eq!(window_hours, len);
            Some((from - Duration::hours(hours), from))
        }
        // This hour: the same minutes of the previous one (or all of it, pro rata).
        Baseline::SamePartOfPreviousHour { covered_secs, .. } => {
            let start = from - Duration::hours(1);
            Some((start, start + Duration::seconds(covered_secs)))
        }
        Baseline::None => None,
    };
    let expected: BTreeMap<String, Agg> = match prev {
        Some((prev_from, prev_to)) => sql_level(c, &view.path, view.dim, prev_from, Some(prev_to))
            .await
            .into_iter()
            .filter(|(n, _)| view.rows.iter().any(|r| r.name == *n))
            .collect(),
        None => BTreeMap::new(),
    };
    assert_eq!(
        prev_of(&view),
        expected,
        "{:?} baseline of {:?}",
        view.baseline,
        view.path
    );
    view
}

/// Rebuilds the open level now; returns the instant it was built at.
fn refresh(app: &mut App) -> DateTime<Utc> {
    let now = Utc::now();
    app.rebuild_if_due(now, Duration::zero());
    now
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_numbers_equal_sql_along_a_filtered_path() {
    let db = TestDb::create().await;
    schema::init(&target(&db.url), TABLE)
        .await
        .expect("db init");
    let c = db.client().await;
    seed(&c).await;
    settle(&c).await;

    let cfg = StoreConfig::default();
    let mut source = PgSource::connect(target(&db.url), options(cfg))
        .await
        .expect("connect");
    let (tx, mut rx) = mpsc::channel(100_000);
    source.backfill(&tx, Utc::now()).await.expect("backfill");
    let mut app = App::new(
        Store::new(cfg, Utc::now()),
        None,
        DetectParams::default(),
        "test",
    );
    while let Ok(msg) = rx.try_recv() {
        app.on_source(msg, Utc::now());
    }
    assert!(matches!(
        rx.try_recv(),
        Err(mpsc::error::TryRecvError::Empty)
    ));
    refresh(&mut app);

    // 7 days: support_qa -> its users -> u_b's models; then the NULL user.
    app.nav.set_window(Window::Week);
    app.nav.drill("support_qa");
    let now = refresh(&mut app);
    let users = check_level(&c, &app, now).await;
    assert_eq!(users.dim, Dim::User);
    assert_eq!(users.rows.len(), 7);
    assert!(
        users.rows.iter().any(|r| r.name == NONE_NAME),
        "NULL users read (none)"
    );
    assert!(
        users.rows.iter().any(|r| r.change.is_some()),
        "changes are compared"
    );
    app.nav.drill("u_b");
    let now = refresh(&mut app);
    let models = check_level(&c, &app, now).await;
    assert_eq!(models.dim, Dim::Model);
    assert_eq!(models.rows.len(), 4, "every model of u_b in 7 days");
    assert_eq!(
        models.path,
        [
            (Dim::Feature, "support_qa".to_string()),
            (Dim::User, "u_b".to_string())
        ]
    );
    app.nav.back();
    app.nav.drill(NONE_NAME);
    let now = refresh(&mut app);
    check_level(&c, &app, now).await;

    // Every window, and a pivot: support_qa by tenant.
    for w in Window::ALL {
        app.nav.set_window(w);
        let now = refresh(&mut app);
        check_level(&c, &app, now).await;
    }
    app.nav.back();
    app.nav.back();
    app.nav.drill("support_qa");
    app.nav.pivot(); // model
    app.nav.pivot(); // tenant
    let now = refresh(&mut app);
    let tenants = check_level(&c, &app, now).await;
    assert_eq!(tenants.dim, Dim::Tenant);

    // The most expensive requests behind support_qa > u_b > gpt-4o, last 7 days.
    let from = Utc::now() - Duration::days(7);
    let query = TopQuery {
        path: vec![
            (Dim::Feature, "support_qa".into()),
            (Dim::User, "u_b".into()),
            (Dim::Model, "gpt-4o".into()),
        ],
        from,
        limit: 5,
    };
    let top = TopSource::Pg(Box::new((target(&db.url), options(cfg))))
        .fetch(&query)
        .await
        .expect("top requests");
    let truth: Vec<(String, String)> = c
        .query(
            "SELECT request_id, cost_usd::text FROM cost_events \
             WHERE \"timestamp\" >= $1 AND feature_name = 'support_qa' AND user_id = 'u_b' \
               AND model = 'gpt-4o' ORDER BY cost_usd DESC LIMIT 5",
            &[&from],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(truth.len(), 5);
    let got: Vec<(String, Money)> = top.iter().map(|r| (r.request_id.clone(), r.cost)).collect();
    let want: Vec<(String, Money)> = truth
        .into_iter()
        .map(|(id, cost)| (id, cost.parse().unwrap()))
        .collect();
    assert_eq!(got, want);
    assert!(top.iter().all(|r| r.user == "u_b" && r.model == "gpt-4o"));
    // A NULL name is asked for as (none); a hostile name is just a parameter.
    let none = TopQuery {
        path: vec![(Dim::User, NONE_NAME.into())],
        from,
        limit: 3,
    };
    let rows = TopSource::Pg(Box::new((target(&db.url), options(cfg))))
        .fetch(&none)
        .await
        .expect("top requests of (none)");
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.user.is_empty()));
    let hostile = TopQuery {
        path: vec![(Dim::Feature, "x'; DROP TABLE cost_events; --".into())],
        from,
        limit: 3,
    };
    let rows = TopSource::Pg(Box::new((target(&db.url), options(cfg))))
        .fetch(&hostile)
        .await
        .expect("a quote in a name is data");
    assert!(rows.is_empty());
    let n: i64 = c
        .query_one("SELECT count(*) FROM cost_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 6000);

    drop(source);
    db.drop_db().await;
}

/// Newest wins on the server too: a fetch that is dropped (the user moved on) has
/// its query cancelled instead of left running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_top_requests_fetch_cancels_its_query() {
    let db = TestDb::create().await;
    schema::init(&target(&db.url), TABLE)
        .await
        .expect("db init");
    let c = db.client().await;
    seed(&c).await;
    // Hold the table so the query waits on the lock.
    let mut locker = db.client().await;
    let tx = locker.transaction().await.unwrap();
    let cfg = StoreConfig::default();
    let source = TopSource::Pg(Box::new((target(&db.url), options(cfg))));
    let query = TopQuery {
        path: vec![(Dim::Feature, "chat".into())],
        from: Utc::now() - Duration::days(1),
        limit: 5,
    };
    tx.batch_execute("LOCK TABLE cost_events IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let task = tokio::spawn(async move { source.fetch(&query).await });
    let waiting = || async {
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND query LIKE 'SELECT %ORDER BY%' AND state = 'active' AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        n
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while waiting().await == 0 {
        if std::time::Instant::now() > deadline {
            let rows = c
                .query(
                    "SELECT state, query FROM pg_stat_activity WHERE datname = current_database()",
                    &[],
                )
                .await
                .unwrap();
            let seen: Vec<(Option<String>, String)> =
                rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            panic!("the fetch never ran: {seen:#?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    task.abort();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while waiting().await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned query is still running"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tx.rollback().await.unwrap();
    drop(locker);
    db.drop_db().await;
}
