//! The real binary in a pseudo-terminal: spawn it, read its screen through a VT100
//! parser, type keys, and wait for what should appear.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use portable_pty::{Child, CommandBuilder, ExitStatus, MasterPty, PtySize, native_pty_system};

pub struct PtyApp {
    pub parser: vt100::Parser,
    rx: mpsc::Receiver<Vec<u8>>,
    /// Bytes read but not yet fed to the parser (the rest of a frame).
    pending: Vec<u8>,
    child: Box<dyn Child + Send + Sync>,
    writer: Box<dyn Write + Send>,
    pub master: Box<dyn MasterPty + Send>,
    _state: tempfile::TempDir,
}

impl PtyApp {
    /// Starts `burnrate ARGS` in a `cols` x `rows` terminal, with its own state and
    /// config directories (so no user config or log is touched).
    pub fn spawn(args: &[&str], cols: u16, rows: u16) -> PtyApp {
        PtyApp::spawn_env(args, &[], cols, rows)
    }

    /// `spawn` with extra environment variables.
    pub fn spawn_env(args: &[&str], env: &[(&str, &str)], cols: u16, rows: u16) -> PtyApp {
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
        cmd.args(args);
        cmd.env("TERM", "xterm-256color");
        cmd.env("XDG_STATE_HOME", state.path());
        cmd.env("XDG_CONFIG_HOME", state.path());
        cmd.env_remove("NO_COLOR");
        cmd.env_remove("BURNRATE_CONFIG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = pty.slave.spawn_command(cmd).expect("spawn burnrate");
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
        let writer = pty.master.take_writer().unwrap();
        PtyApp {
            parser: vt100::Parser::new(rows, cols, 0),
            rx,
            pending: Vec::new(),
            child,
            writer,
            master: pty.master,
            _state: state,
        }
    }

    /// Feeds whatever the program wrote (waiting up to `wait` for the first bytes).
    pub fn pump(&mut self, wait: Duration) {
        self.pump_frames(wait, |_| false);
    }

    /// `pump`, calling `ok` on the screen after every whole frame it holds (the
    /// dashboard ends each with the synchronized-update end marker) and once on
    /// what is there at the end. A test under load reads several frames at once:
    /// a state shown for one frame only is still seen. True as soon as `ok` holds.
    fn pump_frames(&mut self, wait: Duration, mut ok: impl FnMut(&str) -> bool) -> bool {
        const FRAME_END: &[u8] = b"\x1b[?2026l";
        let mut first = self.rx.recv_timeout(wait).ok();
        while let Some(bytes) = first.take().or_else(|| self.rx.try_recv().ok()) {
            self.pending.extend_from_slice(&bytes);
            while let Some(at) = self
                .pending
                .windows(FRAME_END.len())
                .position(|w| w == FRAME_END)
            {
                let frame: Vec<u8> = self.pending.drain(..at + FRAME_END.len()).collect();
                self.parser.process(&frame);
                if ok(&self.text()) {
                    return true;
                }
            }
        }
        // Output that is not a frame (messages after the dashboard ends), or a
        // frame's first part: shown as the screen is now.
        let rest = std::mem::take(&mut self.pending);
        self.parser.process(&rest);
        ok(&self.text())
    }

    /// The directory given as XDG_STATE_HOME and XDG_CONFIG_HOME (the log file is
    /// `burnrate/burnrate.log` in it).
    pub fn state_dir(&self) -> &std::path::Path {
        self._state.path()
    }

    /// The last `lines` of the program's log, for a failure's message (the state
    /// directory goes when the test unwinds).
    pub fn log_tail(&self, lines: usize) -> String {
        let path = self.state_dir().join("burnrate/burnrate.log");
        match std::fs::read_to_string(&path) {
            Ok(log) => {
                let all: Vec<&str> = log.lines().collect();
                let tail = all[all.len().saturating_sub(lines)..].join("\n");
                format!(
                    "last {} lines of {}:\n{tail}",
                    lines.min(all.len()),
                    path.display()
                )
            }
            Err(e) => format!("no log at {}: {e}", path.display()),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.process_id().expect("child pid")
    }

    /// Sends a signal to the program.
    #[cfg(unix)]
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill only sends a signal to our own child.
        let r = unsafe { libc::kill(self.pid() as i32, sig) };
        assert_eq!(r, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// The process state letter from /proc (`T` when stopped).
    pub fn proc_state(&self) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        // pid (comm) S ...: the state follows the last ')'.
        stat.rsplit_once(')')?.1.trim_start().chars().next()
    }

    pub fn text(&self) -> String {
        self.parser.screen().contents()
    }

    pub fn press(&mut self, keys: &[u8]) {
        self.writer.write_all(keys).unwrap();
        self.writer.flush().unwrap();
    }

    /// Waits until `ok` holds for the screen text (a frame may arrive in pieces).
    pub fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> String {
        let start = Instant::now();
        loop {
            if self.pump_frames(Duration::from_millis(50), &ok) {
                return self.text();
            }
            let text = self.text();
            assert!(
                start.elapsed() < timeout,
                "{what} did not happen within {timeout:?}; screen:\n{text}\n{}",
                self.log_tail(40)
            );
        }
    }

    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_until(&format!("{needle:?} on screen"), timeout, |t| {
            t.contains(needle)
        })
    }

    /// Waits for the program to exit, reading the screen meanwhile.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        let status = loop {
            self.pump(Duration::from_millis(50));
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                start.elapsed() < timeout,
                "the program did not exit within {timeout:?}"
            );
        };
        self.pump(Duration::from_millis(200));
        status
    }

    /// ICANON and ECHO are on: raw mode was switched off.
    #[cfg(unix)]
    pub fn terminal_is_cooked(&self) -> bool {
        let fd = self.master.as_raw_fd().expect("master fd");
        // SAFETY: tcgetattr only writes into the zeroed struct we own.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) != 0 {
                panic!("tcgetattr failed: {}", std::io::Error::last_os_error());
            }
            t.c_lflag & libc::ICANON != 0 && t.c_lflag & libc::ECHO != 0
        }
    }
}

/// A test that fails (or forgets to quit) must not leave the program running: it
/// would keep its database session, CPU and pty. SIGKILL, since a stopped or wedged
/// program does not act on SIGTERM; then reap it.
impl Drop for PtyApp {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if let Some(pid) = self.child.process_id() {
                #[cfg(unix)]
                // SAFETY: kill only sends a signal to our own, not yet reaped, child.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn all(text: &str, needles: &[&str]) -> bool {
    needles.iter().all(|n| text.contains(n))
}
