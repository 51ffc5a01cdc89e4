//! A Slack stand-in: a real HTTP/1.1 server on 127.0.0.1 that answers from a script
//! and records every request (body, time, the answer it gave).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One scripted answer; after the script, every request gets `Ok`.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// 200 "ok".
    Ok,
    /// 429 with `Retry-After: secs`.
    RateLimited(u64),
    /// Any status with a plain-text body ("no_service", "rollup_error").
    Status(u16, &'static str),
    /// Wait this long, then 200.
    Slow(Duration),
}

#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub body: String,
    pub reply: Reply,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("the body is JSON")
    }
}

pub struct SlackStandIn {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SlackStandIn {
    pub async fn start(script: Vec<Reply>) -> SlackStandIn {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let rec = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let rec = rec.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    // Keep-alive: serve requests on this connection until it closes.
                    let mut buf = Vec::new();
                    loop {
                        let Some((head_end, len)) = read_head(&mut sock, &mut buf).await else {
                            return;
                        };
                        while buf.len() < head_end + len {
                            let mut chunk = [0u8; 8192];
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let body =
                            String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
                        buf.drain(..head_end + len);
                        let reply = script.lock().unwrap().next().unwrap_or(Reply::Ok);
                        rec.lock().unwrap().push(Received {
                            at: Instant::now(),
                            body,
                            reply: reply.clone(),
                        });
                        let (status, extra, text) = match &reply {
                            Reply::Ok => (200, String::new(), "ok"),
                            Reply::RateLimited(s) => {
                                (429, format!("Retry-After: {s}\r\n"), "rate_limited")
                            }
                            Reply::Status(code, text) => (*code, String::new(), *text),
                            Reply::Slow(d) => {
                                tokio::time::sleep(*d).await;
                                (200, String::new(), "ok")
                            }
                        };
                        let resp = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\n{extra}content-length: {}\r\n\r\n{text}",
                            text.len()
                        );
                        if sock.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        SlackStandIn {
            url: format!("http://{addr}/services/T000/B000/secret-token"),
            received,
            task,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (or the timeout passed).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SlackStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads until the end of the headers; returns (header length, content-length).
async fn read_head(sock: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<(usize, usize)> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            return Some((i + 4, len));
        }
        let mut chunk = [0u8; 8192];
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
