//! A private D-Bus session bus and an `org.freedesktop.Notifications` stand-in for
//! the desktop-notification tests.
//!
//! `PrivateBus::start()` runs `dbus-daemon` with a minimal session configuration of
//! its own (no service activation, so nothing installed on the machine answers in
//! the test's place) on a socket in a temporary directory; dropping it kills the
//! daemon. `NotificationServer::start(address)` serves the notification interface of
//! the Desktop Notifications Specification from this process and records every
//! call, like a desktop's notification daemon would receive them.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zbus::zvariant::OwnedValue;

pub const NOTIFICATIONS_NAME: &str = "org.freedesktop.Notifications";
pub const NOTIFICATIONS_PATH: &str = "/org/freedesktop/Notifications";

/// A `dbus-daemon` of the test's own; killed when dropped.
pub struct PrivateBus {
    child: Child,
    /// The address to put in DBUS_SESSION_BUS_ADDRESS.
    pub address: String,
    _dir: tempfile::TempDir,
}

impl PrivateBus {
    pub fn start() -> PrivateBus {
        let dir = tempfile::Builder::new()
            .prefix("burnrate-dbus-")
            .tempdir()
            .expect("temporary directory for the private bus");
        let socket = dir.path().join("bus");
        let config = dir.path().join("session.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .expect("write the bus configuration");
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start dbus-daemon ({e}); install it (Debian: apt-get install dbus-daemon), \
                     or run scripts/test, which does"
                )
            });
        // The daemon prints its address once it listens.
        let stdout = child.stdout.take().expect("dbus-daemon stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the address dbus-daemon prints");
        let address = line.trim().to_string();
        assert!(
            address.starts_with("unix:"),
            "dbus-daemon printed no address: {line:?}"
        );
        PrivateBus {
            child,
            address,
            _dir: dir,
        }
    }

    /// True while the daemon process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `Notify` call as the daemon received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub app_name: String,
    pub replaces_id: u32,
    pub app_icon: String,
    pub summary: String,
    pub body: String,
    pub actions: Vec<String>,
    /// The `urgency` hint (a byte: 0 low, 1 normal, 2 critical), if sent.
    pub urgency: Option<u8>,
    pub hint_names: Vec<String>,
    pub expire_timeout: i32,
    pub id: u32,
}

/// Everything the stand-in was asked, in order.
#[derive(Debug, Default)]
pub struct Log {
    pub notifications: Vec<Received>,
    pub server_information_calls: usize,
    pub capabilities_calls: usize,
    pub closed: Vec<u32>,
}

pub type SharedLog = Arc<Mutex<Log>>;

struct Notifications {
    log: SharedLog,
    next_id: u32,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Notifications {
    #[allow(clippy::too_many_arguments)]
    fn notify(
        &mut self,
        app_name: String,
        replaces_id: u32,
        app_icon: String,
        summary: String,
        body: String,
        actions: Vec<String>,
        hints: HashMap<String, OwnedValue>,
        expire_timeout: i32,
    ) -> u32 {
        self.next_id += 1;
        let urgency = hints
            .get("urgency")
            .and_then(|v| v.downcast_ref::<u8>().ok());
        let mut hint_names: Vec<String> = hints.keys().cloned().collect();
        hint_names.sort();
        self.log.lock().unwrap().notifications.push(Received {
            app_name,
            replaces_id,
            app_icon,
            summary,
            body,
            actions,
            urgency,
            hint_names,
            expire_timeout,
            id: self.next_id,
        });
        self.next_id
    }

    fn get_capabilities(&self) -> Vec<String> {
        self.log.lock().unwrap().capabilities_calls += 1;
        vec!["body".into(), "body-markup".into()]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        self.log.lock().unwrap().server_information_calls += 1;
        (
            "burnrate-test-daemon".into(),
            "burnrate tests".into(),
            "1.0".into(),
            "1.2".into(),
        )
    }

    fn close_notification(&self, id: u32) {
        self.log.lock().unwrap().closed.push(id);
    }
}

/// The notification daemon stand-in, connected to a bus and owning
/// `org.freedesktop.Notifications` there.
pub struct NotificationServer {
    pub log: SharedLog,
    connection: zbus::Connection,
}

impl NotificationServer {
    pub async fn start(address: &str) -> NotificationServer {
        let log = SharedLog::default();
        let connection = zbus::connection::Builder::address(address)
            .expect("bus address")
            .name(NOTIFICATIONS_NAME)
            .expect("well-known name")
            .serve_at(
                NOTIFICATIONS_PATH,
                Notifications {
                    log: log.clone(),
                    next_id: 0,
                },
            )
            .expect("serve the notification interface")
            .build()
            .await
            .expect("connect the notification server to the private bus");
        NotificationServer { log, connection }
    }

    /// The notifications received so far.
    pub fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().notifications.clone()
    }

    /// Waits (up to `timeout`) until `n` notifications were received.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let got = self.received();
            if got.len() >= n || start.elapsed() > timeout {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Gives up `org.freedesktop.Notifications`: the bus then has no daemon.
    pub async fn stop(self) {
        self.connection
            .release_name(NOTIFICATIONS_NAME)
            .await
            .expect("release the notifications name");
    }
}
