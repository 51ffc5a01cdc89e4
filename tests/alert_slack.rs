//! The Slack sender against a real HTTP server on 127.0.0.1 (tests/common/slack.rs):
//! scripted 200, 429 with Retry-After, 500, 404 `no_service`; what was delivered, how
//! often, with what payload; a slow or dead Slack never stalls the caller.

mod common;

use std::time::{Duration, Instant};

use burnrate::alert::slack::{
    self, Job, SlackError, SlackOptions, SlackQueue, SlackSender, WebhookUrl,
};
use burnrate::alert::{Alert, Labels, Message, MessageKind, Observation, Phase};
use burnrate::detect::Severity;
use burnrate::money::Money;
use chrono::{DateTime, Utc};
use common::slack::{Reply, SlackStandIn};
use tokio::sync::oneshot;

fn alert(feature: &str) -> Alert {
    let mut labels = Labels::new();
    labels.insert("feature".into(), feature.into());
    let at: DateTime<Utc> = "2026-11-28T12:00:00Z".parse().unwrap();
    let observation = Observation {
        rule: "spike_5m".into(),
        labels,
        severity: Severity::Critical,
        summary: format!("{feature} $65.00 in the last 5m vs typical $5.00, 13.0x"),
        window: "5m".into(),
        observed: Some(Money::from_dollars(65)),
        expected: Some(Money::from_dollars(5)),
        ratio: Some(13.0),
        baseline: "same hour of day, 14 days".into(),
        contributors: vec![],
        hint: "Drill into it".into(),
        since: Some(at),
    };
    Alert {
        fingerprint: observation.fingerprint(),
        phase: Phase::Firing,
        streak: 0,
        needed: 0,
        episode: Some(at),
        last_seen: at,
        resolved_at: None,
        acked: None,
        notified_at: Some(at),
        notifications: 1,
        observation,
        scope: None,
        resolve_due: false,
    }
}

fn message(feature: &str) -> Message {
    let a = alert(feature);
    Message {
        kind: MessageKind::Firing,
        at: a.last_seen,
        alerts: vec![a],
    }
}

fn fast() -> SlackOptions {
    SlackOptions {
        per_try_timeout: Duration::from_secs(5),
        max_attempts: 5,
        backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(5),
        queue_capacity: 8,
    }
}

fn job(m: &Message) -> (Job, oneshot::Receiver<Result<slack::Delivered, SlackError>>) {
    let (tx, rx) = oneshot::channel();
    (
        Job {
            payload: slack::payload(m, "test:1", "127.0.0.1/llm"),
            keys: m.keys(),
            done: Some(tx),
        },
        rx,
    )
}

#[tokio::test]
async fn scripted_slack_200_429_500_404() {
    let server = SlackStandIn::start(vec![
        Reply::Ok,
        Reply::RateLimited(1),
        Reply::Status(500, "rollup_error"),
        Reply::Status(404, "no_service"),
    ])
    .await;
    let url = WebhookUrl::parse(&server.url, "test").unwrap();
    let queue = SlackQueue::start(SlackSender::new(url, fast()).unwrap(), None);

    // First message: 200 at once.
    let first = message("support_qa");
    let (j, rx) = job(&first);
    let payload = j.payload.clone();
    queue.enqueue(j).unwrap();
    let r = rx.await.unwrap().unwrap();
    assert_eq!(r.attempts, 1);

    // Second: 429 (wait Retry-After), 500 (back off), then 404 no_service: a
    // configuration error, not retried.
    let second = message("search");
    let (j, rx) = job(&second);
    queue.enqueue(j).unwrap();
    let err = rx.await.unwrap().unwrap_err();
    match &err {
        SlackError::Config { status, body, .. } => {
            assert_eq!((*status, body.as_str()), (404, "no_service"))
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
    assert!(
        err.to_string().contains("create a new incoming webhook"),
        "{err}"
    );
    assert!(!err.to_string().contains("secret-token"), "{err}");
    let status = queue.status();
    assert_eq!((status.sent, status.failed), (1, 1));
    assert!(
        status
            .config_error
            .as_deref()
            .is_some_and(|e| e.contains("HTTP 404 no_service")),
        "{status:?}"
    );

    let got = server.received();
    assert_eq!(got.len(), 4, "one try, then three for the second message");
    // The first payload arrived as built: text fallback and blocks.
    assert_eq!(got[0].json(), payload);
    let v = got[0].json();
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("1 alert firing: [CRITICAL] spike_5m feature support_qa")
    );
    assert_eq!(v["blocks"][0]["type"], "header");
    let section = v["blocks"][1]["text"]["text"].as_str().unwrap();
    assert!(
        section.contains("Observed *$65.00* vs expected *$5.00* (13.0x)"),
        "{section}"
    );
    assert!(section.contains("What to look at"), "{section}");
    // Retry-After was honoured: a second between the 429 and the next try.
    let gap = got[2].at - got[1].at;
    assert!(gap >= Duration::from_millis(950), "{gap:?}");
    assert!(gap < Duration::from_secs(3), "{gap:?}");
    // The retries carried the same message.
    assert_eq!(got[1].body, got[2].body);
    assert_eq!(got[2].body, got[3].body);
    assert!(got[1].body.contains("feature search"));

    // The queue goes on: the next message goes through and clears the error.
    let (j, rx) = job(&message("chat"));
    queue.enqueue(j).unwrap();
    assert_eq!(rx.await.unwrap().unwrap().attempts, 1);
    assert_eq!(queue.status().config_error, None);
    assert_eq!(server.received().len(), 5);
}

#[tokio::test]
async fn server_errors_are_retried_until_the_tries_run_out() {
    let server = SlackStandIn::start(vec![Reply::Status(503, "down"); 3]).await;
    let url = WebhookUrl::parse(&server.url, "test").unwrap();
    let opts = SlackOptions {
        max_attempts: 3,
        ..fast()
    };
    let sender = SlackSender::new(url, opts).unwrap();
    let err = sender
        .send(&slack::payload(&message("x"), "t", "127.0.0.1/llm"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SlackError::GaveUp { attempts: 3, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("HTTP 503 down"), "{err}");
    assert_eq!(server.received().len(), 3);
}

#[tokio::test]
async fn a_slow_slack_never_stalls_the_caller() {
    // Every answer takes 3 s; each try may take 300 ms.
    let server = SlackStandIn::start(vec![Reply::Slow(Duration::from_secs(3)); 100]).await;
    let url = WebhookUrl::parse(&server.url, "test").unwrap();
    let opts = SlackOptions {
        per_try_timeout: Duration::from_millis(300),
        max_attempts: 2,
        queue_capacity: 4,
        ..fast()
    };
    let queue = SlackQueue::start(SlackSender::new(url, opts).unwrap(), None);
    let started = Instant::now();
    let mut accepted = 0;
    let mut receivers = Vec::new();
    let mut slowest = Duration::ZERO;
    for i in 0..200 {
        let (j, rx) = job(&message(&format!("f{i}")));
        let t = Instant::now();
        if queue.enqueue(j).is_ok() {
            accepted += 1;
            receivers.push(rx);
        }
        slowest = slowest.max(t.elapsed());
    }
    let total = started.elapsed();
    eprintln!("200 enqueues took {total:?}, the slowest {slowest:?}");
    assert!(total < Duration::from_millis(200), "{total:?}");
    assert!(slowest < Duration::from_millis(20), "{slowest:?}");
    // Bounded: the queue's capacity plus the one being sent, at most.
    assert!(accepted <= 5, "{accepted}");
    assert_eq!(queue.status().dropped, 200 - accepted as u64);
    // The first one times out on each try and gives up, reporting why.
    let t = Instant::now();
    let first = receivers.remove(0).await.unwrap().unwrap_err();
    assert!(
        first.to_string().contains("no answer within 300ms"),
        "{first}"
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}
