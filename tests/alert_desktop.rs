//! Desktop notifications end to end: a private D-Bus session bus (`dbus-daemon`)
//! started here, an `org.freedesktop.Notifications` server in this process that
//! records what it receives, and burnrate's `DesktopNotifier` (notify-rust, zbus)
//! talking to it through DBUS_SESSION_BUS_ADDRESS.
//!
//! The bus address is process-wide environment, so every case runs in the one test
//! below, one after the other: no daemon, a daemon (summary, body, urgency, a burst
//! grouped into one notification, hostile names, in the background), the daemon
//! going away, no bus at all, and a bus that never answers.

mod dbus_common;

use std::time::{Duration, Instant};

use burnrate::alert::desktop::{Availability, DesktopError, DesktopNotice, DesktopNotifier};
use dbus_common::{NotificationServer, PrivateBus};

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

fn set_bus_address(address: &str) {
    // SAFETY: this test binary has a single test, and no other thread of it reads
    // the environment while the address is switched between the cases.
    unsafe { std::env::set_var("DBUS_SESSION_BUS_ADDRESS", address) };
}

fn unavailable_reason(notifier: &DesktopNotifier) -> String {
    match notifier.availability() {
        Availability::Unavailable { reason } => reason.clone(),
        other => panic!("expected desktop notifications to be unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desktop_notifications_over_a_private_session_bus() {
    let mut bus = PrivateBus::start();
    set_bus_address(&bus.address);

    // 1. A session bus without a notification daemon: unavailable, with the reason.
    let t = Instant::now();
    let notifier = DesktopNotifier::probe(PROBE_TIMEOUT).await;
    let took = t.elapsed();
    eprintln!("probe, bus without a daemon: {took:?}");
    let reason = unavailable_reason(&notifier);
    assert!(
        reason.contains("org.freedesktop.DBus.Error.ServiceUnknown"),
        "{reason}"
    );
    assert!(
        took < PROBE_TIMEOUT,
        "the probe waited for its timeout: {took:?}"
    );
    let status = notifier.status().expect("a status line when unavailable");
    assert!(
        status.starts_with(
            "desktop notifications unavailable: no notification daemon on the session bus"
        ),
        "{status}"
    );
    let sent = notifier
        .notify(&[DesktopNotice::firing("nobody listens", "")])
        .await;
    assert_eq!(sent, Ok(None), "an unavailable notifier sends nothing");

    // 2. A daemon on the bus: available, probed once.
    let server = NotificationServer::start(&bus.address).await;
    let t = Instant::now();
    let notifier = DesktopNotifier::probe(PROBE_TIMEOUT).await;
    eprintln!("probe, bus with a daemon: {:?}", t.elapsed());
    assert_eq!(
        notifier.availability(),
        &Availability::Available {
            server: "burnrate-test-daemon 1.0".into()
        }
    );
    assert!(notifier.is_available());
    assert_eq!(notifier.status(), None);
    {
        let log = server.log.lock().unwrap();
        assert_eq!(log.server_information_calls, 1);
        assert_eq!(log.capabilities_calls, 1);
        assert!(log.notifications.is_empty(), "the probe shows nothing");
    }

    // 3. One firing alert: its summary and body, critical urgency, app "burnrate".
    let t = Instant::now();
    let id = notifier
        .notify(&[DesktopNotice::firing(
            "support_qa $412 in the last 60m vs typical $98, 4.2x",
            "observed $412 vs expected $98 (4.2x) since 04:57 UTC\ntop: user user_4812 $290 71%",
        )])
        .await
        .expect("notification delivered")
        .expect("an id from the daemon");
    eprintln!("notify, one alert: {:?}", t.elapsed());
    let got = server.received();
    assert_eq!(got.len(), 1, "{got:#?}");
    let n = &got[0];
    assert_eq!(n.id, id);
    assert_eq!(n.app_name, "burnrate");
    assert_eq!(
        n.summary,
        "support_qa $412 in the last 60m vs typical $98, 4.2x"
    );
    assert_eq!(
        n.body,
        "observed $412 vs expected $98 (4.2x) since 04:57 UTC\ntop: user user_4812 $290 71%"
    );
    assert_eq!(n.urgency, Some(2), "firing is critical: {n:?}");
    assert_eq!(n.replaces_id, 0);

    // 4. A resolved alert: normal urgency.
    notifier
        .notify(&[DesktopNotice::resolved(
            "support_qa back to normal",
            "$96 in the last 60m",
        )])
        .await
        .expect("notification delivered");
    let got = server.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].summary, "support_qa back to normal");
    assert_eq!(got[1].body, "$96 in the last 60m");
    assert_eq!(got[1].urgency, Some(1), "resolved is normal: {:?}", got[1]);

    // 5. A burst is ONE notification: counted in the summary, a line per alert.
    let burst = [
        DesktopNotice::firing("support_qa spike 17.6x", "a"),
        DesktopNotice::resolved("chat back to normal", "b"),
        DesktopNotice::firing("user user_0591 runaway", "c"),
    ];
    notifier.notify(&burst).await.expect("burst delivered");
    let got = server.received();
    assert_eq!(got.len(), 3, "the burst of 3 must be one notification");
    let n = &got[2];
    assert_eq!(n.summary, "2 alerts firing, 1 resolved");
    assert_eq!(
        n.body,
        "support_qa spike 17.6x\nuser user_0591 runaway\nresolved: chat back to normal"
    );
    assert_eq!(n.urgency, Some(2));
    assert_eq!(n.app_name, "burnrate");

    // 6. Names from the database: escape sequences and bidi controls neutralised,
    //    markup escaped for a daemon that renders it (this one says body-markup).
    notifier
        .notify(&[DesktopNotice::firing(
            "feat\u{1b}[2J\u{1b}]0;owned\u{7}ure <b>x</b>",
            "user \u{202e}evil & <i>co</i>",
        )])
        .await
        .expect("delivered");
    let got = server.received();
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].summary, "feature <b>x</b>");
    assert_eq!(got[3].body, "user \u{fffd}evil &amp; &lt;i&gt;co&lt;/i&gt;");

    // 7. In the background: returns at once, delivered shortly after.
    let t = Instant::now();
    let handle = notifier.notify_in_background(vec![DesktopNotice::firing("background", "")]);
    let returned = t.elapsed();
    eprintln!("notify_in_background returned after {returned:?}");
    assert!(returned < Duration::from_millis(50), "{returned:?}");
    handle
        .await
        .expect("task")
        .expect("delivered")
        .expect("an id");
    let got = server.wait_for(5, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 5);
    assert_eq!(got[4].summary, "background");
    assert_eq!(got[4].urgency, Some(2));

    // 8. The daemon goes away later: the send fails with the reason, promptly.
    server.stop().await;
    let t = Instant::now();
    let err = notifier
        .notify(&[DesktopNotice::firing("after the daemon left", "")])
        .await
        .expect_err("no daemon to deliver to");
    eprintln!("notify, daemon gone: {:?}: {err}", t.elapsed());
    match &err {
        DesktopError::Failed(reason) => assert!(
            reason.contains("org.freedesktop.DBus.Error.ServiceUnknown"),
            "{reason}"
        ),
        other => panic!("expected a failure naming ServiceUnknown, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(2));

    // 9. No session bus at all (the address points nowhere): unavailable, at once.
    let nowhere = tempfile::tempdir().expect("tempdir");
    set_bus_address(&format!(
        "unix:path={}",
        nowhere.path().join("no-bus-here").display()
    ));
    let t = Instant::now();
    let none = DesktopNotifier::probe(PROBE_TIMEOUT).await;
    let took = t.elapsed();
    eprintln!("probe, no bus: {took:?}");
    let reason = unavailable_reason(&none);
    assert!(reason.starts_with("no D-Bus session bus"), "{reason}");
    assert!(reason.contains("DBUS_SESSION_BUS_ADDRESS"), "{reason}");
    assert!(took < PROBE_TIMEOUT, "{took:?}");
    // The blocking variant says the same.
    let blocking = DesktopNotifier::probe_blocking(PROBE_TIMEOUT);
    assert_eq!(unavailable_reason(&blocking), reason);

    // 10. A bus that accepts the connection and never answers: the probe and a send
    //     give up after their timeouts instead of hanging the caller.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    set_bus_address(&format!("tcp:host=127.0.0.1,port={port}"));
    let t = Instant::now();
    let hung = DesktopNotifier::probe(Duration::from_millis(700)).await;
    let took = t.elapsed();
    eprintln!("probe, silent bus: {took:?}");
    assert_eq!(
        unavailable_reason(&hung),
        "the D-Bus session bus did not answer within 700ms"
    );
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let impatient = notifier
        .clone()
        .with_notify_timeout(Duration::from_millis(500));
    let t = Instant::now();
    let err = impatient
        .notify(&[DesktopNotice::firing("into the void", "")])
        .await
        .expect_err("a silent bus delivers nothing");
    let took = t.elapsed();
    eprintln!("notify, silent bus: {took:?}");
    assert_eq!(err, DesktopError::Timeout(Duration::from_millis(500)));
    assert!(took < Duration::from_secs(2), "{took:?}");
    drop(silent);

    assert!(bus.is_running(), "dbus-daemon died during the test");
    drop(bus); // kills and reaps dbus-daemon
}
