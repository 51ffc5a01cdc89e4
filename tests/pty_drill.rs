//! The drill-down in the real binary, in a pseudo-terminal (`burnrate demo`):
//! Enter drills into a feature's users, Esc comes back, `/` filters by name as you
//! type, `t` lists the most expensive requests, `?` shows the keys.

mod common;

use std::time::Duration;

use common::pty::{PtyApp, all};

const KEY_WAIT: Duration = Duration::from_secs(10);

#[test]
fn drill_down_filter_top_requests_and_help_in_the_demo() {
    let mut term = PtyApp::spawn(&["demo", "--spike-after", "1"], 120, 36);

    term.wait_until("the overview", Duration::from_secs(90), |t| {
        t.contains("Spend by feature") && t.contains("support_qa")
    });

    // Each step waits for its whole result: a frame may arrive in pieces.
    // Enter: the selected (top) feature's users, with the path and the window.
    term.press(b"\r");
    term.wait_until("the users of the top feature", KEY_WAIT, |t| {
        all(
            t,
            &[
                "› by user",
                "window 24h",
                "user_",
                "vs prev",
                "last 48 h, hourly",
            ],
        )
    });
    // Enter again: that user's models.
    term.press(b"\r");
    term.wait_until("the models of that user", KEY_WAIT, |t| {
        all(t, &["› by model", "last 48 h, hourly"]) && !t.contains("Spend by feature")
    });

    // Esc twice: back to the overview.
    term.press(b"\x1b");
    term.wait_until("back at the users", KEY_WAIT, |t| {
        all(t, &["› by user", "last 48 h, hourly"])
    });
    term.press(b"\x1b");
    term.wait_until("back at the overview", KEY_WAIT, |t| {
        all(
            t,
            &["Spend by feature", "support_qa", "cost drivers this week"],
        ) && !t.contains("› by")
    });

    // `/` with a name: every feature, filtered as you type.
    term.press(b"/");
    term.wait_for("› by feature", KEY_WAIT);
    term.press(b"support");
    term.wait_until("only support_qa", KEY_WAIT, |t| {
        all(t, &["/support_", "support_qa", "last 48 h, hourly"])
            && !t.contains("code_review")
            && !t.contains("agent_planner")
    });
    // Enter keeps the filter; Enter again drills into support_qa.
    term.press(b"\r");
    term.wait_until("the filter to be kept", KEY_WAIT, |t| {
        t.contains("/support") && !t.contains("/support_")
    });
    term.press(b"\r");
    term.wait_until("support_qa's users", KEY_WAIT, |t| {
        all(t, &["support_qa › by user", "user_", "last 48 h, hourly"])
    });

    // `t`: the most expensive requests behind the selected user, from the demo.
    term.press(b"t");
    let top = term.wait_until("requests to be listed", Duration::from_secs(20), |t| {
        t.contains("Most expensive requests: support_qa › user_")
            && (all(t, &["time (UTC)", "req_"]) || t.contains("No requests in this window"))
    });
    assert!(!top.contains("could not fetch"), "{top}");
    term.press(b"\x1b");
    term.wait_until("the pane to close", KEY_WAIT, |t| {
        !t.contains("Most expensive") && t.contains("last 48 h, hourly")
    });

    // `?`: every key, generated from the keymap; any key closes it.
    term.press(b"?");
    term.wait_until("the help", KEY_WAIT, |t| {
        all(
            t,
            &[
                "Keys",
                "drill into the row",
                "back up one level",
                "window: 7 days",
                "filter rows by name",
                "show / hide this help",
            ],
        )
    });
    term.press(b"x");
    term.wait_until("the help to close", KEY_WAIT, |t| {
        !t.contains("drill into the row") && t.contains("support_qa › by user")
    });

    term.press(b"q");
    let status = term.wait_exit(KEY_WAIT);
    assert!(status.success(), "exit status {status:?}");
    assert!(
        !term.parser.screen().alternate_screen(),
        "left the alternate screen"
    );
}
