//! Real receivers on loopback for the monitor's channels: an SMTP sink that speaks enough
//! SMTP for lettre (no TLS), and an HTTP webhook receiver (axum over hyper). Shared with
//! `crates/fleetca/tests/monitor_e2e.rs` (included there by path): keep it to tokio,
//! axum and serde_json, which both crates have.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One message received by the SMTP sink: (envelope recipients, DATA).
pub type Mail = (Vec<String>, String);

/// Messages received by the SMTP sink.
#[derive(Clone, Default)]
pub struct SmtpSink {
    pub addr: Option<SocketAddr>,
    pub messages: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = SmtpSink {
            addr: Some(listener.local_addr().unwrap()),
            ..Default::default()
        };
        let messages = Arc::clone(&sink.messages);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let messages = Arc::clone(&messages);
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    write.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                    let mut rcpt = Vec::new();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let upper = line.to_ascii_uppercase();
                        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO")
                        {
                            b"250-sink\r\n250 8BITMIME\r\n"
                        } else if upper.starts_with("MAIL FROM") {
                            rcpt.clear();
                            b"250 ok\r\n"
                        } else if upper.starts_with("RCPT TO") {
                            rcpt.push(line[8..].trim().to_string());
                            b"250 ok\r\n"
                        } else if upper == "DATA" {
                            write.write_all(b"354 go ahead\r\n").await.unwrap();
                            let mut data = String::new();
                            while let Ok(Some(l)) = lines.next_line().await {
                                if l == "." {
                                    break;
                                }
                                data.push_str(&l);
                                data.push('\n');
                            }
                            messages.lock().unwrap().push((rcpt.clone(), data));
                            b"250 queued\r\n"
                        } else if upper == "QUIT" {
                            write.write_all(b"221 bye\r\n").await.unwrap();
                            break;
                        } else {
                            b"250 ok\r\n"
                        };
                        if write.write_all(reply).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        sink
    }

    pub fn received(&self) -> Vec<Mail> {
        self.messages.lock().unwrap().clone()
    }
}

/// One webhook request: headers (lower-case names) and body.
#[derive(Clone, Debug)]
pub struct Hook {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Hook {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// A webhook receiver that can be stopped and started again on the same port.
pub struct WebhookReceiver {
    pub addr: SocketAddr,
    pub hooks: Arc<Mutex<Vec<Hook>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl WebhookReceiver {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut r = Self {
            addr: listener.local_addr().unwrap(),
            hooks: Arc::default(),
            stop: None,
        };
        r.serve(listener);
        r
    }

    /// A port where nothing listens yet (start it later with `up`).
    pub async fn down() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        Self {
            addr,
            hooks: Arc::default(),
            stop: None,
        }
    }

    pub async fn up(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    fn serve(&mut self, listener: TcpListener) {
        let hooks = Arc::clone(&self.hooks);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let hooks = Arc::clone(&hooks);
                async move {
                    let headers = headers
                        .iter()
                        .map(|(k, v)| {
                            (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                        })
                        .collect();
                    hooks.lock().unwrap().push(Hook { headers, body });
                    "ok"
                }
            }),
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.stop = Some(tx);
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn received(&self) -> Vec<Hook> {
        self.hooks.lock().unwrap().clone()
    }
}
