//! A TCP proxy on 127.0.0.1 between burnrate and the test PostgreSQL server that can
//! refuse, cut and stall connections on command: outages without touching the
//! shared server.
//!
//! It runs on its own thread and runtime, so sync tests (the PTY ones) and async
//! tests use it alike, and dropping it never blocks a runtime.
//! - `refuse()`: new connections are accepted and closed at once (the client sees
//!   the server hang up during startup); live ones are left alone.
//! - `cut()`: every live connection is closed now.
//! - `stall()`: nothing is forwarded in either direction, on live and new
//!   connections, until `pass()`; the bytes are held, not lost (a hung server or a
//!   black-holed network).
//! - `pass()`: normal forwarding again.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Refuse,
    Stall,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    mode: Mode,
    /// Bumped by `cut()`: connections accepted under an older value close.
    cut_generation: u64,
    shutdown: bool,
}

#[derive(Default)]
struct Counters {
    /// Connections accepted (refused ones included): how often the client tried.
    accepted: AtomicU64,
    refused: AtomicU64,
}

pub struct FaultProxy {
    pub port: u16,
    state: watch::Sender<State>,
    counters: Arc<Counters>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// host:port of the test server, from `BURNRATE_TEST_ADMIN_URL` (or the default).
pub fn upstream_addr() -> SocketAddr {
    let url = super::admin_url();
    let after_at = url.rsplit_once('@').map_or(url.as_str(), |(_, r)| r);
    let host_port = after_at.split('/').next().unwrap_or("127.0.0.1:5432");
    let host_port = if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:5432")
    };
    let host_port = host_port.replace("localhost", "127.0.0.1");
    host_port
        .parse()
        .unwrap_or_else(|e| panic!("test server address {host_port:?}: {e}"))
}

impl FaultProxy {
    /// A proxy in front of the test server, forwarding.
    pub fn start() -> FaultProxy {
        FaultProxy::start_to(upstream_addr())
    }

    pub fn start_to(upstream: SocketAddr) -> FaultProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (state, rx) = watch::channel(State {
            mode: Mode::Pass,
            cut_generation: 0,
            shutdown: false,
        });
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(serve(listener, upstream, rx, c));
            })
            .expect("proxy thread");
        FaultProxy {
            port,
            state,
            counters,
            thread: Some(thread),
        }
    }

    /// `url` (a test database URL on the real server) pointed at the proxy instead.
    pub fn url(&self, url: &str) -> String {
        let up = upstream_addr();
        let proxied = format!("127.0.0.1:{}", self.port);
        let mut out = url.replacen(&up.to_string(), &proxied, 1);
        if out == url {
            out = url.replacen(&format!("localhost:{}", up.port()), &proxied, 1);
        }
        assert_ne!(out, url, "cannot point {url} at the proxy");
        out
    }

    fn set_mode(&self, mode: Mode) {
        self.state.send_modify(|s| s.mode = mode);
    }

    pub fn pass(&self) {
        self.set_mode(Mode::Pass);
    }
    pub fn refuse(&self) {
        self.set_mode(Mode::Refuse);
    }
    pub fn stall(&self) {
        self.set_mode(Mode::Stall);
    }
    /// Closes every live connection (the mode stays as it is).
    pub fn cut(&self) {
        self.state.send_modify(|s| s.cut_generation += 1);
    }
    /// A server going down: live connections cut, new ones refused until `pass()`.
    pub fn outage(&self) {
        self.state.send_modify(|s| {
            s.mode = Mode::Refuse;
            s.cut_generation += 1;
        });
    }

    pub fn accepted(&self) -> u64 {
        self.counters.accepted.load(Ordering::SeqCst)
    }
    pub fn refused(&self) -> u64 {
        self.counters.refused.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.send_modify(|s| s.shutdown = true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn until(rx: &mut watch::Receiver<State>, cond: impl Fn(&State) -> bool) {
    loop {
        if cond(&rx.borrow_and_update()) {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    upstream: SocketAddr,
    mut rx: watch::Receiver<State>,
    counters: Arc<Counters>,
) {
    let listener = TcpListener::from_std(listener).expect("proxy listener");
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                counters.accepted.fetch_add(1, Ordering::SeqCst);
                let state = *rx.borrow();
                if state.mode == Mode::Refuse {
                    counters.refused.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                tasks.spawn(connection(client, upstream, rx.clone(), state.cut_generation));
            }
            _ = until(&mut rx, |s| s.shutdown) => break,
        }
        // Reap finished connections so the set does not grow.
        while tasks.try_join_next().is_some() {}
    }
    tasks.abort_all();
}

async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    rx: watch::Receiver<State>,
    generation: u64,
) {
    let _ = client.set_nodelay(true);
    let mut cut_rx = rx.clone();
    let server = tokio::select! {
        s = TcpStream::connect(upstream) => match s {
            Ok(s) => s,
            Err(_) => return,
        },
        _ = until(&mut cut_rx, |s| s.shutdown || s.cut_generation != generation) => return,
    };
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::select! {
        _ = pipe(cr, sw, rx.clone()) => {}
        _ = pipe(sr, cw, rx.clone()) => {}
        _ = until(&mut cut_rx, |s| s.shutdown || s.cut_generation != generation) => {}
    }
    // Dropping the halves closes both sockets.
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut rx: watch::Receiver<State>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // While stalled nothing is read either, so the sender's buffers fill up as
        // they would against a hung peer.
        until(&mut rx, |s| s.mode != Mode::Stall || s.shutdown).await;
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        until(&mut rx, |s| s.mode != Mode::Stall || s.shutdown).await;
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
