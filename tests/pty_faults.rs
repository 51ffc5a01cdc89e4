//! The real binary in a pseudo-terminal through faults: a database outage (banner
//! within one refresh, live again after), a hung query (the UI stays responsive and
//! `q` quits at once), a long transaction (named in the status bar), a panic
//! (terminal restored, report in the log without secrets, non-zero exit), SIGTERM and
//! SIGHUP (clean exit), and Ctrl-Z / SIGTSTP then SIGCONT (suspend and redraw).

mod common;

use std::time::{Duration, Instant};

use burnrate::source::{ConnectTarget, schema};
use common::TestDb;
use common::proxy::FaultProxy;
use common::pty::PtyApp;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// A throwaway database with `cost_events` and a few rows of feature `feature`.
fn database(rt: &tokio::runtime::Runtime, feature: &str) -> TestDb {
    rt.block_on(async {
        let db = TestDb::create().await;
        schema::init(&ConnectTarget::from_url(&db.url).unwrap(), "cost_events")
            .await
            .expect("db init");
        let c = db.client().await;
        c.execute(
            "INSERT INTO cost_events (feature_name, user_id, model, cost_usd, input_tokens, output_tokens) \
             SELECT $1, 'u' || g, 'gpt-x', 1.25, 10, 20 FROM generate_series(1, 4) g",
            &[&feature],
        )
        .await
        .unwrap();
        db
    })
}

/// The terminal is usable again: main screen, cursor shown, raw mode off.
fn assert_terminal_restored(term: &PtyApp) {
    let screen = term.parser.screen();
    assert!(!screen.alternate_screen(), "left the alternate screen");
    assert!(!screen.hide_cursor(), "cursor shown again");
    #[cfg(unix)]
    assert!(
        term.terminal_is_cooked(),
        "raw mode was switched off (ICANON and ECHO back on)"
    );
}

fn watch(url: &str) -> PtyApp {
    PtyApp::spawn(&["watch", "--database-url", url], 120, 30)
}

#[test]
fn an_outage_shows_a_banner_within_one_refresh_and_the_data_stays() {
    let rt = runtime();
    let db = database(&rt, "before_outage");
    let proxy = FaultProxy::start();
    let mut term = watch(&proxy.url(&db.url));
    term.wait_until("live with data", Duration::from_secs(60), |t| {
        t.contains(" Live ") && t.contains("before_outage")
    });

    let down = Instant::now();
    proxy.outage();
    // The default refresh interval is 2 s: the next poll finds the server gone.
    let screen = term.wait_until("the disconnected banner", Duration::from_secs(10), |t| {
        t.contains("DISCONNECTED") && t.contains("data as of")
    });
    let shown_after = down.elapsed();
    eprintln!("measured: disconnected banner after {shown_after:?}");
    assert!(
        shown_after <= Duration::from_millis(3500),
        "the banner took {shown_after:?} (refresh 2 s)"
    );
    assert!(
        screen.contains("before_outage"),
        "the last data stays on screen:\n{screen}"
    );
    // "data as of HH:MM:SS UTC"
    let at = screen.find("data as of ").unwrap() + "data as of ".len();
    let stamp: String = screen[at..].chars().take(8).collect();
    assert!(
        chrono::NaiveTime::parse_from_str(&stamp, "%H:%M:%S").is_ok(),
        "a time: {stamp:?}\n{screen}"
    );

    proxy.pass();
    term.press(b"r"); // retry now instead of at the end of the backoff
    term.wait_until("live again", Duration::from_secs(30), |t| {
        t.contains(" Live ") && !t.contains("DISCONNECTED")
    });
    term.press(b"q");
    let status = term.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
    assert_terminal_restored(&term);
    drop(proxy);
    rt.block_on(db.drop_db());
}

#[test]
fn a_hung_query_leaves_the_ui_responsive_and_q_quits_at_once() {
    let rt = runtime();
    let db = database(&rt, "before_hang");
    let proxy = FaultProxy::start();
    let mut term = watch(&proxy.url(&db.url));
    term.wait_until("live with data", Duration::from_secs(60), |t| {
        t.contains(" Live ") && t.contains("before_hang")
    });

    // Nothing crosses the wire any more: the next poll hangs (until the client
    // deadline, statement_timeout + 10 s, much later).
    proxy.stall();
    std::thread::sleep(Duration::from_secs(3));
    let asked = Instant::now();
    assert!(!term.text().contains(" Keys "));
    term.press(b"?");
    // The help overlay's title.
    term.wait_for(" Keys ", Duration::from_secs(2));
    let help_after = asked.elapsed();
    term.press(b"x"); // any key closes the help
    std::thread::sleep(Duration::from_millis(300));

    let quit = Instant::now();
    term.press(b"q");
    let status = term.wait_exit(Duration::from_secs(10));
    let quit_after = quit.elapsed();
    eprintln!("measured: help after {help_after:?}, quit after {quit_after:?} with the query hung");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        help_after < Duration::from_secs(1),
        "help took {help_after:?} while the query hung"
    );
    assert!(
        quit_after < Duration::from_millis(1500),
        "q took {quit_after:?} to quit while the query hung"
    );
    assert_terminal_restored(&term);
    drop(proxy);
    rt.block_on(db.drop_db());
}

#[test]
fn a_long_transaction_is_named_in_the_status_bar() {
    let rt = runtime();
    let db = database(&rt, "committed");
    let mut term = watch(&db.url);
    term.wait_until("live with data", Duration::from_secs(60), |t| {
        t.contains(" Live ") && t.contains("committed")
    });
    let (client, txn_open) = rt.block_on(async {
        let c = db.client().await;
        c.batch_execute(
            "BEGIN; INSERT INTO cost_events (feature_name, cost_usd) VALUES ('held_back', 2.5)",
        )
        .await
        .unwrap();
        (c, Instant::now())
    });
    // Named from 5 s on ("open tx 6s: pid ... db ..."); the tail does not wait for it.
    let screen = term.wait_until("the open transaction", Duration::from_secs(30), |t| {
        t.contains("open tx ")
    });
    assert!(txn_open.elapsed() >= Duration::from_secs(5), "{screen}");
    assert!(!screen.contains("held_back"), "{screen}");
    rt.block_on(client.batch_execute("COMMIT")).unwrap();
    term.wait_until("the held-back row", Duration::from_secs(30), |t| {
        t.contains("held_back")
    });
    term.press(b"q");
    let status = term.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
    rt.block_on(db.drop_db());
}

const SECRET: &str = "hunter2-do-not-print";

fn with_password(url: &str) -> String {
    let (userinfo, rest) = url
        .split_once("://")
        .and_then(|(_, r)| r.split_once('@'))
        .expect("a URL with a user");
    let user = userinfo.split(':').next().unwrap();
    format!("postgres://{user}:{SECRET}@{rest}")
}

fn assert_panic_handled(term: &mut PtyApp, status: portable_pty::ExitStatus) {
    assert_eq!(status.exit_code(), 101, "a panic exits with 101");
    assert_terminal_restored(term);
    let screen = term.text();
    let marker = "the report is in ";
    let at = screen
        .find(marker)
        .unwrap_or_else(|| panic!("the log path is printed:\n{screen}"));
    let path: String = screen[at + marker.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(
        path.starts_with(term.state_dir().to_str().unwrap()),
        "{path}"
    );
    let log = std::fs::read_to_string(&path).expect("the log file");
    assert!(log.contains("burnrate panicked"), "{log}");
    assert!(log.contains("BURNRATE_DEBUG_PANIC"), "{log}");
    assert!(log.contains("backtrace"), "{log}");
    assert!(!log.contains(SECRET), "the password leaked into the log");
    assert!(
        !screen.contains(SECRET),
        "the password leaked to the terminal"
    );
}

#[test]
fn a_panic_restores_the_terminal_and_logs_a_report_without_secrets() {
    let rt = runtime();
    let db = database(&rt, "before_panic");
    let url = with_password(&db.url);
    let mut term = PtyApp::spawn_env(
        &["watch", "--database-url", &url],
        &[("BURNRATE_DEBUG_PANIC", "1")],
        120,
        30,
    );
    let status = term.wait_exit(Duration::from_secs(60));
    assert!(url.contains(SECRET));
    assert_panic_handled(&mut term, status);
    rt.block_on(db.drop_db());
}

#[test]
fn a_panic_in_a_background_task_ends_the_program_the_same_way() {
    let mut term = PtyApp::spawn_env(&["demo"], &[("BURNRATE_DEBUG_PANIC", "task")], 100, 30);
    let status = term.wait_exit(Duration::from_secs(60));
    assert_panic_handled(&mut term, status);
}

#[cfg(unix)]
#[test]
fn sigterm_and_sighup_quit_cleanly() {
    for sig in [libc::SIGTERM, libc::SIGHUP] {
        let mut term = PtyApp::spawn(&["demo"], 100, 30);
        term.wait_for("demo", Duration::from_secs(60));
        assert!(term.parser.screen().alternate_screen());
        term.signal(sig);
        let status = term.wait_exit(Duration::from_secs(10));
        assert!(status.success(), "signal {sig}: exit status {status:?}");
        assert_terminal_restored(&term);
    }
}

/// Waits until the process is stopped (or running again).
#[cfg(unix)]
fn wait_stopped(term: &mut PtyApp, stopped: bool) {
    let start = Instant::now();
    loop {
        term.pump(Duration::from_millis(50));
        if (term.proc_state() == Some('T')) == stopped {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "process state {:?}, wanted stopped={stopped}",
            term.proc_state()
        );
    }
}

#[cfg(unix)]
#[test]
fn ctrl_z_and_sigtstp_suspend_and_sigcont_redraws() {
    let mut term = PtyApp::spawn(&["demo"], 100, 30);
    term.wait_for("demo", Duration::from_secs(60));

    for how in ["Ctrl-Z", "SIGTSTP"] {
        if how == "Ctrl-Z" {
            term.press(b"\x1a");
        } else {
            term.signal(libc::SIGTSTP);
        }
        wait_stopped(&mut term, true);
        term.pump(Duration::from_millis(200));
        // Suspended: the shell's screen back, usable.
        assert_terminal_restored(&term);

        term.signal(libc::SIGCONT);
        wait_stopped(&mut term, false);
        let screen = term.wait_until("the dashboard redrawn", Duration::from_secs(10), |t| {
            t.contains("demo") && t.contains("quit")
        });
        assert!(
            term.parser.screen().alternate_screen(),
            "{how}: back on the alternate screen:\n{screen}"
        );
        assert!(
            !term.terminal_is_cooked(),
            "{how}: raw mode again after SIGCONT"
        );
    }
    term.press(b"q");
    let status = term.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
    assert_terminal_restored(&term);
}

#[test]
fn rejected_rows_are_counted_by_reason_in_the_status_bar() {
    let rt = runtime();
    let db = database(&rt, "good_rows");
    rt.block_on(async {
        let c = db.client().await;
        c.batch_execute(
            "INSERT INTO cost_events (feature_name, cost_usd) VALUES \
               ('bad', 'NaN'), ('bad', 'Infinity'), ('bad', NULL), ('bad', 1e15)",
        )
        .await
        .unwrap();
    });
    let mut term = PtyApp::spawn(&["watch", "--database-url", &db.url], 200, 30);
    // Wait for the whole picture: a frame can arrive in pieces, and the feature
    // table is drawn once the overview's build (off the event loop) lands, a frame
    // or so after the status bar.
    term.wait_until(
        "the rejected rows by reason, and the good rows' feature",
        Duration::from_secs(60),
        |t| {
            t.contains(" Live ")
                && t.contains("4 rejected")
                && t.contains("non_finite_cost 2")
                && t.contains("cost_out_of_range 1")
                && t.contains("null_cost 1")
                // A NaN in the same feature does not poison the good rows' total.
                && t.contains("good_rows")
        },
    );
    term.press(b"q");
    let status = term.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
    rt.block_on(db.drop_db());
}
