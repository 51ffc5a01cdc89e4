//! The real binary in a pseudo-terminal: `burnrate demo` draws the overview, the
//! anomaly pane lights up, `q` quits, and the terminal is left usable.

mod common;

use std::time::Duration;

use common::pty::PtyApp;

#[test]
fn demo_shows_the_overview_lights_up_and_quits_cleanly() {
    let mut term = PtyApp::spawn(&["demo", "--spike-after", "1"], 100, 30);

    let screen = term.wait_for("support_qa", Duration::from_secs(90));
    assert!(
        term.parser.screen().alternate_screen(),
        "the dashboard uses the alternate screen"
    );
    assert!(
        screen.contains("demo"),
        "status bar names the source:\n{screen}"
    );
    // The spike starts ten seconds in; the anomaly pane says so once it has held for
    // two evaluation minutes: "support_qa $85.38 in the last 5m vs typical $8.41, ...".
    // The pane may list the user behind it first and the feature's line under
    // "… and 2 more" (the order follows the hour's traffic): then the anomaly log
    // (`n`), which lists them all, shows it.
    let screen = term.wait_until(
        "the spike in the anomaly pane",
        Duration::from_secs(90),
        |t| t.contains("ANOMAL") && (t.contains("support_qa $") || t.contains("more: n opens")),
    );
    if !screen.contains("support_qa $") {
        term.press(b"n");
        term.wait_for("support_qa $", Duration::from_secs(30));
        term.press(b"\x1b");
        term.wait_for("ANOMAL", Duration::from_secs(10));
    }

    term.press(b"q");
    let status = term.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
    let screen = term.parser.screen();
    assert!(!screen.alternate_screen(), "left the alternate screen");
    assert!(!screen.hide_cursor(), "cursor shown again");
    #[cfg(unix)]
    assert!(
        term.terminal_is_cooked(),
        "raw mode was switched off (ICANON and ECHO back on)"
    );
}

/// The harness's own guarantee: a test that panics mid-run (the PtyApp is dropped
/// while the program runs, here even while it is stopped) leaves no process behind.
#[test]
fn a_dropped_harness_leaves_no_program_running() {
    let mut app = PtyApp::spawn(&["demo"], 100, 30);
    app.wait_for("support_qa", Duration::from_secs(90));
    let pid = app.pid();
    app.signal(libc::SIGSTOP);
    drop(app);
    let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
    assert!(!alive, "burnrate (pid {pid}) outlived its harness");
}

/// Issue 16 items 12, 20 and 26 in the real binary: keys rebound in the config
/// (`[keys] quit = ["x"]`) show in the status bar's hints and quit; the help says
/// the drill order as it is and, at 80x24, scrolls rather than cutting; `n` opens
/// the anomaly log and Esc closes it.
#[test]
fn rebound_keys_the_scrolling_help_and_the_anomaly_log_in_the_demo() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("burnrate.toml");
    std::fs::write(&config, "[keys]\nquit = [\"x\"]\n").unwrap();
    let config = config.to_str().unwrap();
    let mut term = PtyApp::spawn(&["--config", config, "demo"], 120, 30);
    term.wait_until(
        "the overview with the keys in effect",
        Duration::from_secs(90),
        |t| t.contains("Spend by feature") && t.contains("x quit  ↑↓ select  r refresh  ? help"),
    );
    assert!(!term.text().contains("q quit"), "{}", term.text());
    term.press(b"?");
    term.wait_for(
        "drill into the row (feature > user > model > tenant > region, then its requests)",
        Duration::from_secs(10),
    );
    term.press(b"G");
    term.wait_for("show / hide this help", Duration::from_secs(10));
    term.press(b"/");
    term.wait_until("the help to close", Duration::from_secs(10), |t| {
        !t.contains(" Keys ")
    });
    term.press(b"n");
    term.wait_for("Anomaly log:", Duration::from_secs(10));
    term.press(b"\x1b");
    term.wait_until("the log to close", Duration::from_secs(10), |t| {
        !t.contains("Anomaly log:") && t.contains("Spend by feature")
    });
    term.press(b"q");
    term.pump(Duration::from_millis(300));
    assert!(
        term.text().contains("Spend by feature"),
        "q no longer quits"
    );
    term.press(b"x");
    let status = term.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
}

/// Issue 17 item 1: no screen that shows only a progress bar while rows could be
/// shown. The demo sends its history newest first, like the database source: the
/// dashboard shows from the first step on, with what still loads marked and
/// detection waiting, then everything once the history is in. Paced as a slow
/// database would send it: at full speed a loaded machine can load the whole
/// history before the first frame (which is right, but shows nothing to test).
#[test]
fn the_dashboard_shows_while_the_history_loads() {
    let mut term = PtyApp::spawn(&["demo", "--history-pace", "150ms"], 100, 30);
    term.wait_until(
        "the dashboard while the history loads",
        Duration::from_secs(60),
        |t| {
            t.contains("Spend by feature")
                && t.contains("Backfilling")
                && t.contains("anomaly detection: waiting for history")
        },
    );
    term.wait_until("the whole history", Duration::from_secs(90), |t| {
        t.contains(" Live ")
            && t.contains("month-to-date $")
            && !t.contains("waiting for history")
            && !t.contains("waits for older history")
    });
    term.press(b"q");
    let status = term.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
}
