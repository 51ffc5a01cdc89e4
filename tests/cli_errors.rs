//! What a user sees when something is wrong: a clear message naming what and where,
//! never a stack trace or a password.

use std::process::{Command, Output};

fn burnrate(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let state = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_burnrate"));
    cmd.args(args)
        .env("XDG_STATE_HOME", state.path())
        .env("XDG_CONFIG_HOME", state.path())
        .env_remove("BURNRATE_CONFIG")
        .env_remove("DATABASE_URL")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run burnrate")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A port on 127.0.0.1 that nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn unreachable_database_names_host_and_suggests_fixes() {
    let port = closed_port();
    let url = format!("postgres://alice:hunter2secret@127.0.0.1:{port}/spend");
    for args in [
        vec!["snapshot", "--json"],
        vec!["watch"],
        vec!["db", "init"],
    ] {
        let mut all = args.clone();
        all.extend(["--database-url", &url]);
        let out = burnrate(&all, &[]);
        let t = text(&out);
        assert!(!out.status.success(), "{args:?} must fail: {t}");
        assert!(
            t.contains(&format!("127.0.0.1:{port}")),
            "{args:?} names host and port: {t}"
        );
        assert!(
            t.contains("--database-url") && t.contains("burnrate demo"),
            "{args:?} suggests fixes: {t}"
        );
        assert!(
            !t.contains("hunter2secret"),
            "{args:?} leaked the password: {t}"
        );
        assert!(
            !t.contains("panicked") && !t.contains("Backtrace") && !t.contains("Location:"),
            "{t}"
        );
    }
    // The same through DATABASE_URL.
    let out = burnrate(&["snapshot", "--json"], &[("DATABASE_URL", &url)]);
    let t = text(&out);
    assert!(
        t.contains(&format!("127.0.0.1:{port}")) && !t.contains("hunter2secret"),
        "{t}"
    );
}

/// Every error path with a password in the URL: nothing printed and nothing logged
/// contains it.
#[test]
fn secrets_never_reach_output_or_logs() {
    let state = tempfile::tempdir().unwrap();
    let port = closed_port();
    let secret = "s3cr3t-Pa55word";
    let urls = [
        format!("postgres://alice:{secret}@127.0.0.1:{port}/spend"),
        format!(
            "postgres://alice:{secret}@127.0.0.1:{port}/spend?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"
        ),
        format!("postgres://alice:{secret}@127.0.0.1:{port}/spend?sslmode=sometimes"),
        format!("postgres://alice:{secret}@127.0.0.1:notaport/spend"),
        format!("host=127.0.0.1 port={port} user=alice password={secret} bogus=1"),
    ];
    for url in &urls {
        for args in [
            vec!["snapshot", "--json"],
            vec!["db", "init"],
            vec!["export", "--month", "2026-11"],
            vec!["watch"],
        ] {
            let out = Command::new(env!("CARGO_BIN_EXE_burnrate"))
                .args(&args)
                .args(["--database-url", url])
                .env("XDG_STATE_HOME", state.path())
                .env_remove("BURNRATE_CONFIG")
                .env_remove("DATABASE_URL")
                .output()
                .unwrap();
            let t = text(&out);
            assert!(!out.status.success(), "{args:?} {url} must fail: {t}");
            assert!(!t.contains(secret), "{args:?} printed the password: {t}");
        }
    }
    let log = std::fs::read_to_string(state.path().join("burnrate").join("burnrate.log")).unwrap();
    assert!(log.contains("burnrate failed"), "errors are logged: {log}");
    assert!(!log.contains(secret), "the log holds the password:\n{log}");
}

#[test]
fn bad_config_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("burnrate.toml");
    std::fs::write(
        &path,
        "[database]\ntable = \"cost_events\"\nrefresh_intervall = \"2s\"\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let out = burnrate(&["snapshot", "--json", "--config", p], &[]);
    let t = text(&out);
    assert!(!out.status.success());
    assert!(
        t.contains(p) && t.contains("line 3") && t.contains("refresh_intervall"),
        "{t}"
    );

    // Through $BURNRATE_CONFIG too.
    let out = burnrate(&["snapshot", "--json"], &[("BURNRATE_CONFIG", p)]);
    assert!(text(&out).contains("refresh_intervall"));

    // A named file that does not exist is an error, not silently the defaults.
    let out = burnrate(
        &[
            "snapshot",
            "--json",
            "--config",
            "/nonexistent/burnrate.toml",
        ],
        &[],
    );
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("/nonexistent/burnrate.toml"),
        "{t}"
    );
}

#[test]
fn help_lists_the_commands() {
    let out = burnrate(&["--help"], &[]);
    let t = text(&out);
    for cmd in [
        "watch",
        "demo",
        "db",
        "simulate",
        "snapshot",
        "--database-url",
        "--config",
    ] {
        assert!(t.contains(cmd), "--help lacks {cmd}: {t}");
    }
}

/// A port where something that is not PostgreSQL answers (an HTTP server that
/// replies and hangs up); served until the test process ends.
fn http_port() -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in l.incoming().flatten() {
            let mut buf = [0u8; 512];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\nConnection: close\r\n\r\nBad Request",
            );
            // Read what else the client sends before hanging up, so the close is a
            // clean end of stream and not a reset.
            let _ = conn.set_read_timeout(Some(std::time::Duration::from_millis(300)));
            while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
        }
    });
    port
}

#[test]
fn a_service_that_is_not_postgresql_is_named_as_such() {
    let port = http_port();
    for sslmode in ["disable", "prefer"] {
        let url = format!("postgres://alice@127.0.0.1:{port}/spend?sslmode={sslmode}");
        let out = burnrate(&["snapshot", "--json", "--database-url", &url], &[]);
        let t = text(&out);
        assert!(!out.status.success(), "{t}");
        assert!(
            t.contains(&format!(
                "the server at 127.0.0.1:{port} did not answer as PostgreSQL"
            )),
            "sslmode={sslmode}: {t}"
        );
        assert!(!t.contains("bytes remaining"), "{t}");
    }
}

/// The advice after a failed connection names the setting that was used.
#[test]
fn connection_errors_name_the_setting_that_was_used() {
    let port = closed_port();
    let url = format!("postgres://alice@127.0.0.1:{port}/spend");
    let t = text(&burnrate(
        &["snapshot", "--json", "--database-url", &url],
        &[],
    ));
    assert!(t.contains("Check the URL given with --database-url"), "{t}");
    assert!(!t.contains("Set --database-url or DATABASE_URL"), "{t}");

    let t = text(&burnrate(
        &["snapshot", "--json"],
        &[("DATABASE_URL", &url)],
    ));
    assert!(t.contains("Check DATABASE_URL"), "{t}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("burnrate.toml");
    std::fs::write(&path, format!("[database]\nurl = \"{url}\"\n")).unwrap();
    let t = text(&burnrate(
        &["snapshot", "--json", "--config", path.to_str().unwrap()],
        &[],
    ));
    assert!(t.contains("Check the config key database.url"), "{t}");

    // Nothing given: libpq's variables were used, and setting a URL is the advice.
    let t = text(&burnrate(
        &["snapshot", "--json"],
        &[
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", &port.to_string()),
            ("PGUSER", "alice"),
        ],
    ));
    assert!(t.contains("set --database-url or DATABASE_URL"), "{t}");
}

#[test]
fn an_empty_snapshot_window_is_refused() {
    for window in ["0d", "0s", "30s"] {
        let out = burnrate(&["snapshot", "--json", "--window", window], &[]);
        let t = text(&out);
        assert!(!out.status.success(), "{t}");
        assert!(
            t.contains("--window") && t.contains("shorter than a minute") && t.contains("24h"),
            "{t}"
        );
        assert!(
            !t.contains("cannot connect"),
            "refused before connecting: {t}"
        );
    }
}

#[test]
fn config_type_errors_name_the_dotted_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("burnrate.toml");
    std::fs::write(&path, "[detect]\n\nspike_ratio = \"high\"\n").unwrap();
    let t = text(&burnrate(
        &["snapshot", "--json", "--config", path.to_str().unwrap()],
        &[],
    ));
    assert!(
        t.contains("detect.spike_ratio") && t.contains("line 3"),
        "{t}"
    );
    std::fs::write(&path, "[detect]\n\nspike_ratio = 0.5\n").unwrap();
    let t = text(&burnrate(
        &["snapshot", "--json", "--config", path.to_str().unwrap()],
        &[],
    ));
    assert!(
        t.contains("detect.spike_ratio") && t.contains("line 3"),
        "{t}"
    );
}
