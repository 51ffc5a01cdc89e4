//! Delivery failures through the real engine, a real PostgreSQL alert state and a
//! Slack stand-in: a message that fails after its claim (5xx after every retry) is
//! released and sent on the next round, exactly once; one Slack refuses (a 4xx,
//! a configuration error) stays failed and is not sent again.

mod common;

use std::time::Duration;

use burnrate::alert::engine::{AlertEngine, AlertSettings, eval_now};
use burnrate::alert::health::HealthParams;
use burnrate::alert::slack::{SlackOptions, WebhookUrl};
use burnrate::alert::state::AlertStore;
use burnrate::alert::{Evaluation, Hold, Labels, Observation, Policy};
use burnrate::detect::Severity;
use burnrate::source::ConnectTarget;
use chrono::Utc;
use common::TestDb;
use common::slack::{Reply, SlackStandIn};

fn spike(feature: &str) -> Observation {
    let mut labels = Labels::new();
    labels.insert("feature".into(), feature.into());
    Observation {
        rule: "spike_5m".into(),
        labels,
        severity: Severity::Critical,
        summary: format!("{feature} is 13x its usual spend"),
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

fn eval(seen: &[&Observation]) -> Evaluation {
    Evaluation {
        now: eval_now(Utc::now()),
        observations: seen
            .iter()
            .map(|o| ((*o).clone(), Hold::Confirmed))
            .collect(),
    }
}

async fn engine(db: &TestDb, slack: &SlackStandIn, tag: &str) -> AlertEngine {
    let target = ConnectTarget::from_url(&db.url).unwrap();
    burnrate::source::schema::init(&target, "cost_events")
        .await
        .unwrap();
    let local = std::env::temp_dir().join(format!(
        "burnrate-alert-retry-{tag}-{}/alerts.json",
        std::process::id()
    ));
    let store = AlertStore::open(Some(target), "cost_events", local).await;
    assert!(store.is_shared(), "{}", store.describe());
    let settings = AlertSettings {
        policy: Policy::default(),
        health: HealthParams::default(),
        slack: SlackOptions {
            max_attempts: 2,
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(100),
            per_try_timeout: Duration::from_secs(5),
            ..SlackOptions::default()
        },
        webhook: Some(WebhookUrl::parse(&slack.url, "test").unwrap()),
        scopes: burnrate::alert::Scopes::any(),
    };
    AlertEngine::new(store, settings, None).unwrap()
}

/// One round, waiting for and recording every delivery; the statuses.
async fn round(e: &mut AlertEngine, seen: &[&Observation]) -> Vec<Result<(), bool>> {
    let r = e.round(eval(seen), false).await.unwrap();
    let mut out = Vec::new();
    for (m, rx) in r.deliveries {
        let result = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .expect("delivered in time")
            .expect("the queue answers");
        out.push(result.as_ref().map(|_| ()).map_err(|e| e.is_config()));
        e.record(&m, &result).await;
    }
    out
}

async fn log(db: &TestDb) -> Vec<(String, i32, String)> {
    let c = db.client().await;
    c.query(
        "SELECT kind, seq, status FROM burnrate_alert_log ORDER BY claimed_at",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_is_sent_next_round_and_a_refused_one_is_not() {
    let db = TestDb::create().await;
    // Two 500s: the first message fails after both tries; then 200s.
    let slack = SlackStandIn::start(vec![
        Reply::Status(500, "rollup_error"),
        Reply::Status(500, "rollup_error"),
    ])
    .await;
    let mut e = engine(&db, &slack, "5xx").await;
    let a = spike("support_qa");

    assert_eq!(round(&mut e, &[&a]).await, vec![Err(false)]);
    assert_eq!(slack.received().len(), 2);
    // Released: nothing claimed is left in the log, and the book forgot the send.
    assert!(log(&db).await.is_empty(), "{:?}", log(&db).await);

    // The next round sends it again, now delivered; the one after sends nothing.
    assert_eq!(round(&mut e, &[&a]).await, vec![Ok(())]);
    assert_eq!(slack.received().len(), 3);
    assert_eq!(
        log(&db).await,
        vec![("firing".to_string(), 1, "sent".to_string())]
    );
    assert!(round(&mut e, &[&a]).await.is_empty());
    assert_eq!(slack.received().len(), 3);
    let body = slack.received()[2].body.clone();
    assert!(body.contains("support_qa"), "{body}");

    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_delivery_stays_failed() {
    let db = TestDb::create().await;
    let slack = SlackStandIn::start(vec![Reply::Status(404, "no_service")]).await;
    let mut e = engine(&db, &slack, "4xx").await;
    let a = spike("chat");

    assert_eq!(round(&mut e, &[&a]).await, vec![Err(true)]);
    assert_eq!(slack.received().len(), 1, "a 4xx is not retried");
    let l = log(&db).await;
    assert_eq!(l.len(), 1);
    assert_eq!((l[0].0.as_str(), l[0].2.as_str()), ("firing", "failed"));
    // Not sent again on later rounds: it stays failed (and shown) until fixed.
    assert!(round(&mut e, &[&a]).await.is_empty());
    assert!(round(&mut e, &[&a]).await.is_empty());
    assert_eq!(slack.received().len(), 1);
    assert!(e.slack().unwrap().status().config_error.is_some());

    db.drop_db().await;
}
