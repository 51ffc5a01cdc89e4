//! Connection failures read clearly and never show the password.

mod common;
mod pg_common;

use burnrate::model::{Connection, SourceMsg};
use burnrate::source::{ConnectTarget, PgSource, SourceControl, SourceError, run};
use burnrate::store::StoreConfig;
use pg_common::*;
use tokio::sync::mpsc;

const PASSWORD: &str = "Sup3r-S3cret-pw";

fn closed_port() -> u16 {
    // Bind, note the port, close: nothing listens there now.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_port_gives_a_clear_error_without_the_password() {
    let port = closed_port();
    let url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/x");
    let target = ConnectTarget::from_url(&url).unwrap();
    assert_eq!(target.endpoint, format!("127.0.0.1:{port}/x"));

    let err = PgSource::connect(target.clone(), options(StoreConfig::default()))
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, SourceError::Connect { .. }));
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("cannot connect to PostgreSQL at 127.0.0.1:{port}/x (database x, user postgres): connection refused")),
        "{text}"
    );
    assert!(
        text.contains("--database-url") && text.contains("burnrate demo"),
        "{text}"
    );
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(!format!("{err:?}").contains(PASSWORD));

    // The long-running task reports the same, as a status, and keeps retrying.
    let (tx, mut rx) = mpsc::channel(16);
    let (control, handle) = SourceControl::new();
    let task = tokio::spawn(run(target, options(StoreConfig::default()), tx, control));
    loop {
        match rx.recv().await {
            Some(SourceMsg::Status(s)) => {
                assert!(!s.endpoint.contains(PASSWORD));
                if let Connection::Disconnected { error, .. } = s.connection {
                    assert!(
                        error.contains("connection refused") && !error.contains(PASSWORD),
                        "{error}"
                    );
                    break;
                }
            }
            Some(_) => {}
            None => panic!("task ended"),
        }
    }
    handle.shutdown();
    task.await.unwrap().expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_database_is_named() {
    let base = common::admin_url();
    let url = format!(
        "{}/no_such_db_for_burnrate",
        &base[..base.rfind('/').unwrap()]
    );
    let err = PgSource::connect(target(&url), options(StoreConfig::default()))
        .await
        .err()
        .expect("no database");
    let text = err.to_string();
    assert!(
        text.contains("no_such_db_for_burnrate") && text.contains("does not exist"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_is_set_on_the_session_and_explained() {
    let db = common::TestDb::create().await;
    burnrate::source::schema::init(&target(&db.url), TABLE)
        .await
        .expect("db init");
    let mut opts = options(StoreConfig::default());
    opts.statement_timeout = std::time::Duration::from_millis(300);
    let mut source = PgSource::connect(target(&db.url), opts)
        .await
        .expect("connect");
    let (tx, _rx) = mpsc::channel(1000);
    source
        .backfill(&tx, chrono::Utc::now())
        .await
        .expect("backfill");

    // A lock held elsewhere makes the tail wait; the server cancels it at 300 ms.
    let mut locker = db.client().await;
    let t = locker.transaction().await.unwrap();
    t.batch_execute("LOCK TABLE cost_events IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let err = source.poll(&tx).await.expect_err("cancelled");
    assert!(matches!(err, SourceError::StatementTimeout { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("cost_events") && text.contains("statement_timeout (300ms)"),
        "{text}"
    );
    t.rollback().await.unwrap();
    source
        .poll(&tx)
        .await
        .expect("works again once the lock is gone");
    db.drop_db().await;
}
