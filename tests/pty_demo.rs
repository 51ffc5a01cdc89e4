//! The real binary in a pseudo-terminal: `burnrate demo` draws the overview, the
//! anomaly pane lights up, `q` quits, and the terminal is left usable.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};

struct Term {
    parser: vt100::Parser,
    rx: mpsc::Receiver<Vec<u8>>,
    raw: Vec<u8>,
}

impl Term {
    fn pump(&mut self, wait: Duration) {
        if let Ok(bytes) = self.rx.recv_timeout(wait) {
            self.parser.process(&bytes);
            self.raw.extend_from_slice(&bytes);
        }
        while let Ok(bytes) = self.rx.try_recv() {
            self.parser.process(&bytes);
            self.raw.extend_from_slice(&bytes);
        }
    }

    fn screen_text(&self) -> String {
        self.parser.screen().contents()
    }

    fn wait_for(&mut self, what: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            self.pump(Duration::from_millis(100));
            let text = self.screen_text();
            if text.contains(what) {
                return text;
            }
            assert!(
                start.elapsed() < timeout,
                "{what:?} did not appear within {timeout:?}; screen:\n{text}"
            );
        }
    }
}

#[cfg(unix)]
fn termios_is_cooked(fd: std::os::unix::io::RawFd) -> bool {
    // SAFETY: tcgetattr only writes into the zeroed struct we own.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            panic!("tcgetattr failed: {}", std::io::Error::last_os_error());
        }
        t.c_lflag & libc::ICANON != 0 && t.c_lflag & libc::ECHO != 0
    }
}

#[test]
fn demo_shows_the_overview_lights_up_and_quits_cleanly() {
    let (cols, rows) = (100, 30);
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
        raw: Vec::new(),
    };

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

    let mut writer = pty.master.take_writer().unwrap();
    writer.write_all(b"q").unwrap();
    writer.flush().unwrap();
    let start = Instant::now();
    let status = loop {
        term.pump(Duration::from_millis(50));
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "q did not quit within 10 s"
        );
    };
    term.pump(Duration::from_millis(200));
    assert!(status.success(), "exit status {status:?}");
    let screen = term.parser.screen();
    assert!(!screen.alternate_screen(), "left the alternate screen");
    assert!(!screen.hide_cursor(), "cursor shown again");
    #[cfg(unix)]
    assert!(
        termios_is_cooked(pty.master.as_raw_fd().expect("master fd")),
        "raw mode was switched off (ICANON and ECHO back on)"
    );
}
