//! Read replicas, on a real streaming hot standby made by this test: a second
//! cluster cloned from the test server with `pg_basebackup -R`, started on a free
//! port with `pg_ctl` (as the `postgres` OS user when the tests run as root), and
//! stopped and removed at the end, even when the test fails.
//!
//! Against it: the source detects the standby; its backfill (from the rollup) and
//! tail equal SQL on the primary after replay, across out-of-order commits (the
//! later-started transaction committing first); the rollup's rolls, `db init` and
//! the shared alert state land on the primary; the replay lag is reported; without a
//! primary URL, writes are refused or kept local, with a message saying why.
//!
//! Needs replication connections from 127.0.0.1 on the test server (scripts/test
//! adds `host replication all 127.0.0.1/32 trust` to pg_hba.conf). pg_basebackup
//! copies every database of the server: one holding more than 1 GiB (a benchmark's
//! data set; 3 GB took 35 s to clone here) is not cloned, the test then makes a
//! primary of its own with initdb and clones that (2 s). Skipped, saying so, only
//! when pg_basebackup or pg_ctl is not installed.

mod common;
mod pg_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use burnrate::source::PgSource;
use burnrate::store::StoreConfig;
use pg_common::*;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_postgres::Client;

/// The server binaries of the primary's major version, if installed.
fn server_bindir(major: u32) -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"))];
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        candidates.push(PathBuf::from(
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        ));
    }
    candidates
        .into_iter()
        .find(|d| d.join("pg_basebackup").is_file() && d.join("pg_ctl").is_file())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn id_of(flag: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .expect("run id");
    assert!(
        out.status.success(),
        "the tests run as root, and PostgreSQL refuses to: they run the standby as the \
         OS user postgres, which does not exist here"
    );
    text(&out.stdout).trim().parse().expect("numeric id")
}

/// A cluster of this test's own (the standby, and the primary when the test server
/// is too big to clone), stopped and removed when dropped.
struct Standby {
    bindir: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Standby {
    /// A server command, as the postgres OS user when we are root.
    fn command(bindir: &Path, program: &str) -> Command {
        let path = bindir.join(program);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// A temporary directory the server's OS user owns.
    fn temp_dir(prefix: &str) -> tempfile::TempDir {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("temp dir");
        if is_root() {
            std::os::unix::fs::chown(dir.path(), Some(id_of("-u")), Some(id_of("-g")))
                .expect("chown the cluster's directory to postgres");
        }
        dir
    }

    /// A free port: bound, read and released just before the server takes it.
    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port()
    }

    /// A new, empty primary of our own (initdb), accepting replication connections.
    fn own_primary(bindir: PathBuf) -> Standby {
        let dir = Self::temp_dir("burnrate-primary-");
        let data = dir.path().join("data");
        let out = Self::command(&bindir, "initdb")
            .args(["-U", "postgres", "-A", "trust", "--no-sync", "-D"])
            .arg(&data)
            .stdin(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb: {}", text(&out.stderr));
        let port = Self::free_port();
        let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        conf.push_str(&format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             wal_level = replica\nmax_wal_senders = 5\nshared_buffers = 16MB\nfsync = off\n",
            dir.path().display()
        ));
        write_as_postgres(&data.join("postgresql.conf"), &conf);
        write_as_postgres(
            &data.join("pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 trust\n\
             host replication all 127.0.0.1/32 trust\n",
        );
        let cluster = Standby {
            bindir,
            data,
            port,
            _dir: dir,
        };
        cluster.pg_ctl_start();
        cluster
    }

    fn pg_ctl_start(&self) {
        let log = self.data.parent().unwrap().join("server.log");
        let out = Self::command(&self.bindir, "pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "start"])
            .stdin(Stdio::null())
            .output()
            .expect("run pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}",
            text(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    async fn start(primary: &Client, admin_url: &str, bindir: PathBuf) -> Standby {
        let dir = Self::temp_dir("burnrate-standby-");
        let data = dir.path().join("data");
        let out = Self::command(&bindir, "pg_basebackup")
            .args(["-d", admin_url, "-D"])
            .arg(&data)
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"])
            .stdin(Stdio::null())
            .output()
            .expect("run pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup from {admin_url} failed: {}. The test server must accept \
             replication connections from 127.0.0.1 (scripts/test adds `host replication all \
             127.0.0.1/32 trust` to its pg_hba.conf and reloads it), with wal_level replica or \
             logical and max_wal_senders above 0",
            text(&out.stderr).trim()
        );
        // A standby needs at least the primary's values of these.
        let mut conf = String::new();
        for name in [
            "max_connections",
            "max_worker_processes",
            "max_wal_senders",
            "max_prepared_transactions",
            "max_locks_per_transaction",
        ] {
            let v: String = primary
                .query_one(&format!("SELECT current_setting('{name}')"), &[])
                .await
                .expect("read a setting of the primary")
                .get(0);
            conf.push_str(&format!("{name} = {v}\n"));
        }
        let port = Self::free_port();
        conf.push_str(&format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             hot_standby = on\nhot_standby_feedback = on\nshared_buffers = 16MB\nfsync = off\n\
             logging_collector = off\n",
            dir.path().display()
        ));
        // Debian keeps these under /etc: the copy has none. Local trust: the cluster
        // lives for this test only and listens on 127.0.0.1.
        write_as_postgres(&data.join("postgresql.conf"), &conf);
        write_as_postgres(
            &data.join("pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 trust\n",
        );
        write_as_postgres(&data.join("pg_ident.conf"), "");
        let standby = Standby {
            bindir,
            data,
            port,
            _dir: dir,
        };
        standby.pg_ctl_start();
        standby
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        let _ = Self::command(&self.bindir, "pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // The temp dir goes with `_dir`.
    }
}

/// Writes a file the server (running as postgres) reads.
fn write_as_postgres(path: &Path, contents: &str) {
    std::fs::write(path, contents).expect("write a standby config file");
    if is_root() {
        std::os::unix::fs::chown(path, Some(id_of("-u")), Some(id_of("-g"))).expect("chown");
    }
}

/// Waits until the standby has replayed everything the primary wrote so far.
async fn wait_replayed(primary: &Client, standby: &Client) {
    let lsn: String = primary
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    for _ in 0..600 {
        let done: bool = standby
            .query_one(
                "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)",
                &[&lsn],
            )
            .await
            .unwrap()
            .get(0);
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the standby did not replay up to {lsn} within 30 s");
}

/// After replay: waits until the standby's snapshot has passed every transaction
/// that started on the primary before this call (other tests' included), so a poll
/// on the standby reads everything committed by then.
async fn settle_standby(primary: &Client, standby: &Client) {
    let xmax: String = primary
        .query_one("SELECT pg_snapshot_xmax(pg_current_snapshot())::text", &[])
        .await
        .unwrap()
        .get(0);
    wait_replayed(primary, standby).await;
    for _ in 0..1200 {
        let passed: bool = standby
            .query_one(
                "SELECT pg_snapshot_xmin(pg_current_snapshot()) >= $1::text::xid8",
                &[&xmax],
            )
            .await
            .unwrap()
            .get(0);
        if passed {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Replay of the primary's next records moves the standby's xmin on.
        let _ = primary.batch_execute("SELECT pg_switch_wal()").await;
    }
    panic!("the standby's snapshot did not pass {xmax} within 60 s");
}

/// The rollup's watermark on the primary.
async fn rollup_upto(c: &Client) -> u64 {
    let r = c
        .query_one("SELECT upto::text FROM cost_events_rollup_state", &[])
        .await
        .unwrap();
    r.get::<_, String>(0).parse().unwrap()
}

fn burnrate(args: &[&str], state: &Path, primary: Option<&str>) -> Output {
    burnrate_with(args, state, primary, None)
}

fn burnrate_with(
    args: &[&str],
    state: &Path,
    primary: Option<&str>,
    webhook: Option<&str>,
) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_burnrate"));
    cmd.args(args)
        .env("XDG_STATE_HOME", state)
        .env_remove("BURNRATE_CONFIG")
        .env_remove("DATABASE_URL")
        .env_remove("BURNRATE_PRIMARY_URL")
        .env_remove("BURNRATE_SLACK_WEBHOOK_URL")
        .stdin(Stdio::null());
    if let Some(p) = primary {
        cmd.args(["--primary-url", p]);
    }
    if let Some(w) = webhook {
        cmd.env("BURNRATE_SLACK_WEBHOOK_URL", w);
    }
    cmd.output().expect("run burnrate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_standby_reads_exactly_and_writes_go_to_the_primary() {
    let admin = common::connect(&common::admin_url()).await;
    let major: u32 = admin
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .unwrap()
        .get::<_, i32>(0) as u32
        / 10_000;
    let Some(bindir) = server_bindir(major) else {
        eprintln!(
            "SKIPPED: no pg_basebackup and pg_ctl of PostgreSQL {major} (looked in \
             /usr/lib/postgresql/{major}/bin and `pg_config --bindir`); install the \
             postgresql-{major} server package to run the read-replica test"
        );
        return;
    };
    // pg_basebackup copies the whole cluster: a test server holding big databases
    // (a benchmark's 10M rows) is not cloned, the test makes a primary of its own.
    let cluster_bytes: i64 = admin
        .query_one(
            "SELECT sum(pg_database_size(oid))::int8 FROM pg_database",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let (own_primary, admin_url) = if cluster_bytes <= MAX_CLONED_BYTES {
        (None, common::admin_url())
    } else {
        eprintln!(
            "the test server holds {} MB, over the {} MB this test clones: using a primary of \
             its own (initdb) instead",
            cluster_bytes >> 20,
            MAX_CLONED_BYTES >> 20
        );
        let p = Standby::own_primary(bindir.clone());
        let url = p.url("postgres");
        (Some(p), url)
    };
    let admin = common::connect(&admin_url).await;
    let name = format!("burnrate_t_replica_{}", std::process::id());
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create the test database");
    let db_url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    let state = tempfile::tempdir().unwrap();
    let primary = common::connect(&db_url).await;
    let started = std::time::Instant::now();
    let standby = Standby::start(&admin, &admin_url, bindir).await;
    eprintln!(
        "standby cloned and started in {} ms",
        started.elapsed().as_millis()
    );
    let standby_url = standby.url(&name);

    // `db init` through the standby's URL: refused without the primary, saying how.
    let out = burnrate(
        &["db", "init", "--database-url", &standby_url],
        state.path(),
        None,
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("hot standby") && err.contains("--primary-url"),
        "{err}"
    );
    // With it, the tables are made on the primary.
    let out = burnrate(
        &["db", "init", "--rollup", "--database-url", &standby_url],
        state.path(),
        Some(&db_url),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // History and a runaway, written on the primary.
    let out = burnrate(
        &[
            "simulate",
            "--backfill-days",
            "3",
            "--backfill-rate",
            "0.3",
            "--seed",
            "11",
            "--quiet",
            "--database-url",
            &db_url,
        ],
        state.path(),
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    primary
        .execute(
            "INSERT INTO cost_events (timestamp, feature_name, user_id, model, tenant_id, region, \
             cost_usd, input_tokens, output_tokens) \
             SELECT now() - make_interval(secs => s), 'support_qa', 'user_runaway', 'gpt-4o', \
             'acme', 'us-east-1', 0.5, 4000, 900 FROM generate_series(1, 240) AS s",
            &[],
        )
        .await
        .unwrap();
    // Roll what is there on the primary, so the standby's backfill reads the rollup.
    let out = burnrate(
        &["db", "rollup", "--database-url", &db_url],
        state.path(),
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let sb = common::connect(&standby_url).await;
    settle_standby(&primary, &sb).await;

    // The source on the standby: detected as one, backfilled from the rollup.
    let cfg = StoreConfig::default();
    let mut opts = options(cfg);
    opts.rollup = true;
    opts.rollup_every = Duration::from_millis(1);
    opts.primary = Some(target(&db_url));
    let mut source = PgSource::connect(target(&standby_url), opts)
        .await
        .expect("connect to the standby");
    assert!(source.is_standby());
    let (tx, mut rx) = mpsc::channel(10_000);
    let mut seen = Collector::new(cfg);
    source
        .backfill(&tx, chrono::Utc::now())
        .await
        .expect("backfill on the standby");
    source.poll(&tx).await.expect("poll on the standby");
    seen.drain(&mut rx);
    assert!(source.read_rollup(), "the backfill read the rollup");
    assert_eq!(store_by_feature(&seen.store), ground_truth(&primary).await);

    // Out-of-order commits on the primary: `early` starts first and commits last.
    let mut early_conn = common::connect(&db_url).await;
    let early = early_conn.transaction().await.unwrap();
    insert(&early, "early_started", 1_000_000_000_001, 1, 1).await;
    insert(&primary, "later_started", 2_000_000_000_002, 2, 2).await;
    wait_replayed(&primary, &sb).await;
    // What the standby's pg_current_snapshot() says meanwhile, for the record: on
    // PostgreSQL 15 it lists no running transaction, hence the tail's xmin cut.
    let snap: String = sb
        .query_one("SELECT pg_current_snapshot()::text", &[])
        .await
        .unwrap()
        .get(0);
    eprintln!("standby snapshot with a transaction open on the primary: {snap}");
    for _ in 0..3 {
        source.poll(&tx).await.expect("poll");
    }
    seen.drain(&mut rx);
    // Nothing counted that the primary does not hold committed, nothing twice.
    let truth = ground_truth(&primary).await;
    let mid = store_by_feature(&seen.store);
    assert!(!mid.contains_key("early_started"));
    for (feature, agg) in &mid {
        let t = truth.get(feature).expect("a feature the primary has");
        assert!(agg.requests <= t.requests, "{feature}: {agg:?} vs {t:?}");
    }
    early.commit().await.unwrap();
    settle_standby(&primary, &sb).await;
    source.poll(&tx).await.expect("poll after the commit");
    seen.drain(&mut rx);
    let truth = ground_truth(&primary).await;
    assert_eq!(store_by_feature(&seen.store), truth);
    assert_eq!(truth["early_started"].requests, 1);
    assert_eq!(truth["later_started"].requests, 1);

    // The replay lag, measured on the standby and against the primary.
    let lag = source
        .replay_lag()
        .expect("a replay lag on a standby")
        .clone();
    eprintln!("replay lag after catching up: {lag:?} ({})", lag.short());
    assert!(lag.secs >= 0 && lag.unreplayed_bytes >= 0, "{lag:?}");
    assert!(lag.behind_primary_bytes.is_some(), "{lag:?}");
    let last_status = source.last_status().expect("a status").clone();
    assert_eq!(last_status.replay_lag.as_ref(), Some(&lag));

    // The rollup is rolled on the primary by the standby's source.
    let before = rollup_upto(&primary).await;
    source.maintain_rollup().await;
    let after = rollup_upto(&primary).await;
    assert!(
        after > before,
        "the rollup's watermark moved on the primary: {before} -> {after}"
    );

    // `check` on the standby with the primary's URL: alert state on the primary,
    // and the message claimed there before Slack gets it.
    let slack = common::slack::SlackStandIn::start(vec![]).await;
    let out = burnrate_with(
        &["check", "--json", "--database-url", &standby_url],
        state.path(),
        Some(&db_url),
        Some(&slack.url),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "the runaway fires: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        !text(&out.stderr).contains("local file"),
        "{}",
        text(&out.stderr)
    );
    let stored: i64 = primary
        .query_one("SELECT count(*) FROM burnrate_alerts", &[])
        .await
        .unwrap()
        .get(0);
    assert!(stored > 0, "alert state written on the primary");
    let logged: i64 = primary
        .query_one("SELECT count(*) FROM burnrate_alert_log", &[])
        .await
        .unwrap()
        .get(0);
    assert!(logged > 0, "the alert log written on the primary");
    assert!(!slack.wait_for(1, Duration::from_secs(5)).await.is_empty());

    // Without it: alerts still evaluated, kept in a local file, and said so.
    let local_state = tempfile::tempdir().unwrap();
    let out = burnrate(
        &["check", "--json", "--database-url", &standby_url],
        local_state.path(),
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("hot standby") && err.contains("cannot be shared"),
        "{err}"
    );
    let files: Vec<_> = std::fs::read_dir(local_state.path().join("burnrate"))
        .expect("the local state directory")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("alerts-"))
        .collect();
    assert!(!files.is_empty(), "a local alert state file");

    // `snapshot --json` through the standby: the totals of the primary, and the lag.
    let out = burnrate(
        &["snapshot", "--json", "--database-url", &standby_url],
        state.path(),
        Some(&db_url),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("snapshot --json");
    assert_eq!(
        v["source"]["replay_lag_secs"].as_i64().map(|s| s >= 0),
        Some(true),
        "{}",
        v["source"]
    );
    let sql_total: String = primary
        .query_one(
            "SELECT round(sum(cost_usd), 6)::text FROM cost_events \
             WHERE \"timestamp\" >= $1",
            &[&v["window_start"]
                .as_str()
                .unwrap()
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        v["totals"]["cost_usd"].as_str(),
        Some(sql_total.as_str()),
        "{}",
        v["totals"]
    );

    // `doctor` reports the standby and its lag.
    let out = burnrate(
        &["doctor", "--json", "--database-url", &standby_url],
        state.path(),
        Some(&db_url),
    );
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json ({e}): {}", text(&out.stderr)));
    assert_eq!(v["standby"], true, "{v:#}");
    assert!(v["replay_lag"]["secs"].is_i64(), "{v:#}");
    assert!(v["replay_lag"]["behind_primary_bytes"].is_i64(), "{v:#}");

    drop(source);
    drop(sb);
    drop(early_conn);
    drop(primary);
    drop(standby);
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .expect("drop the test database");
    drop(own_primary);
}

/// The most the test clones of the test server (all its databases); over it, the
/// test makes a primary of its own.
const MAX_CLONED_BYTES: i64 = 1 << 30;
