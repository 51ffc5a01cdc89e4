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
    let screen = term.wait_for("support_qa $", Duration::from_secs(90));
    assert!(screen.contains("ANOMAL"), "{screen}");

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
