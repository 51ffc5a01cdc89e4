//! The drill-down in the real binary, in a pseudo-terminal (`burnrate demo`):
//! Enter drills into a feature's users, Esc comes back, `/` filters by name as you
//! type, `t` lists the most expensive requests, `?` shows the keys.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};

struct Term {
    parser: vt100::Parser,
    rx: mpsc::Receiver<Vec<u8>>,
}

impl Term {
    fn pump(&mut self, wait: Duration) {
        if let Ok(bytes) = self.rx.recv_timeout(wait) {
            self.parser.process(&bytes);
        }
        while let Ok(bytes) = self.rx.try_recv() {
            self.parser.process(&bytes);
        }
    }

    fn text(&self) -> String {
        self.parser.screen().contents()
    }

    /// Waits until `ok` holds for the screen text.
    fn wait_until(&mut self, what: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            self.pump(Duration::from_millis(50));
            let text = self.text();
            if ok(&text) {
                return text;
            }
            assert!(
                start.elapsed() < timeout,
                "{what} did not happen within {timeout:?}; screen:\n{text}"
            );
        }
    }

    fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_until(&format!("{needle:?} on screen"), timeout, |t| {
            t.contains(needle)
        })
    }
}

const KEY_WAIT: Duration = Duration::from_secs(10);

fn all(text: &str, needles: &[&str]) -> bool {
    needles.iter().all(|n| text.contains(n))
}

#[test]
fn drill_down_filter_top_requests_and_help_in_the_demo() {
    let (cols, rows) = (120, 36);
    let pty = native_pty_system()
        .openpty(PtySize {
            rows,
            cols,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("open a pseudo-terminal");
    let state = tempfile::tempdir().unwrap();
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_burnrate"));
    cmd.args(["demo", "--spike-after", "1"]);
    cmd.env("TERM", "xterm-256color");
    cmd.env("XDG_STATE_HOME", state.path());
    cmd.env("XDG_CONFIG_HOME", state.path());
    cmd.env_remove("NO_COLOR");
    cmd.env_remove("BURNRATE_CONFIG");
    let mut child = pty.slave.spawn_command(cmd).expect("spawn burnrate demo");
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut term = Term {
        parser: vt100::Parser::new(rows, cols, 0),
        rx,
    };
    let mut writer = pty.master.take_writer().unwrap();
    let mut press = |keys: &[u8]| {
        writer.write_all(keys).unwrap();
        writer.flush().unwrap();
    };

    term.wait_until("the overview", Duration::from_secs(90), |t| {
        t.contains("Spend by feature") && t.contains("support_qa")
    });

    // Each step waits for its whole result: a frame may arrive in pieces.
    // Enter: the selected (top) feature's users, with the path and the window.
    press(b"\r");
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
    press(b"\r");
    term.wait_until("the models of that user", KEY_WAIT, |t| {
        all(t, &["› by model", "last 48 h, hourly"]) && !t.contains("Spend by feature")
    });

    // Esc twice: back to the overview.
    press(b"\x1b");
    term.wait_until("back at the users", KEY_WAIT, |t| {
        all(t, &["› by user", "last 48 h, hourly"])
    });
    press(b"\x1b");
    term.wait_until("back at the overview", KEY_WAIT, |t| {
        all(t, &["Spend by feature", "support_qa", "Top 5 cost drivers"]) && !t.contains("› by")
    });

    // `/` with a name: every feature, filtered as you type.
    press(b"/");
    term.wait_for("› by feature", KEY_WAIT);
    press(b"support");
    term.wait_until("only support_qa", KEY_WAIT, |t| {
        all(t, &["/support_", "support_qa", "last 48 h, hourly"])
            && !t.contains("code_review")
            && !t.contains("agent_planner")
    });
    // Enter keeps the filter; Enter again drills into support_qa.
    press(b"\r");
    term.wait_until("the filter to be kept", KEY_WAIT, |t| {
        t.contains("/support") && !t.contains("/support_")
    });
    press(b"\r");
    term.wait_until("support_qa's users", KEY_WAIT, |t| {
        all(t, &["support_qa › by user", "user_", "last 48 h, hourly"])
    });

    // `t`: the most expensive requests behind the selected user, from the demo.
    press(b"t");
    let top = term.wait_until("requests to be listed", Duration::from_secs(20), |t| {
        t.contains("Most expensive requests: support_qa › user_")
            && (all(t, &["time (UTC)", "req_"]) || t.contains("No requests in this window"))
    });
    assert!(!top.contains("could not fetch"), "{top}");
    press(b"\x1b");
    term.wait_until("the pane to close", KEY_WAIT, |t| {
        !t.contains("Most expensive") && t.contains("last 48 h, hourly")
    });

    // `?`: every key, generated from the keymap; any key closes it.
    press(b"?");
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
    press(b"x");
    term.wait_until("the help to close", KEY_WAIT, |t| {
        !t.contains("drill into the row") && t.contains("support_qa › by user")
    });

    press(b"q");
    let start = Instant::now();
    let status = loop {
        term.pump(Duration::from_millis(50));
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < KEY_WAIT, "q did not quit");
    };
    assert!(status.success(), "exit status {status:?}");
    term.pump(Duration::from_millis(200));
    assert!(
        !term.parser.screen().alternate_screen(),
        "left the alternate screen"
    );
}
