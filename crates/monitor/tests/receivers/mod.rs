//! Real receivers on loopback for the monitor's channels: an SMTP sink that speaks enough
//! SMTP for lettre (plain, or with STARTTLS and a self-signed certificate), and an HTTP
//! webhook receiver (axum over hyper). Shared with `crates/fleetca/tests/monitor_e2e.rs`
//! (included there by path): keep it to tokio, tokio-rustls, rustls, rcgen, axum and
//! serde_json, which both crates have.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One message received by the SMTP sink: (envelope recipients, DATA).
pub type Mail = (Vec<String>, String);

/// The client asked for STARTTLS and was told to go ahead.
struct Upgrade;

/// One SMTP conversation; returns `Some(Upgrade)` after a STARTTLS the sink offered.
async fn session<S>(
    stream: &mut BufReader<S>,
    messages: &Mutex<Vec<Mail>>,
    offer_tls: bool,
) -> Option<Upgrade>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut rcpt = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if stream.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let text = line.trim_end().to_string();
        let upper = text.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            if offer_tls {
                b"250-sink\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
            } else {
                b"250-sink\r\n250 8BITMIME\r\n"
            }
        } else if upper == "STARTTLS" && offer_tls {
            stream.get_mut().write_all(b"220 go ahead\r\n").await.ok()?;
            return Some(Upgrade);
        } else if upper.starts_with("MAIL FROM") {
            rcpt.clear();
            b"250 ok\r\n"
        } else if upper.starts_with("RCPT TO") {
            rcpt.push(text.get(8..).unwrap_or("").trim().to_string());
            b"250 ok\r\n"
        } else if upper == "DATA" {
            stream.get_mut().write_all(b"354 go ahead\r\n").await.ok()?;
            let mut data = String::new();
            loop {
                line.clear();
                if stream.read_line(&mut line).await.ok()? == 0 {
                    return None;
                }
                let l = line.trim_end_matches(['\r', '\n']);
                if l == "." {
                    break;
                }
                data.push_str(l);
                data.push('\n');
            }
            messages.lock().unwrap().push((rcpt.clone(), data));
            b"250 queued\r\n"
        } else if upper == "QUIT" {
            let _ = stream.get_mut().write_all(b"221 bye\r\n").await;
            return None;
        } else {
            b"250 ok\r\n"
        };
        stream.get_mut().write_all(reply).await.ok()?;
    }
}

/// Messages received by the SMTP sink.
#[derive(Clone, Default)]
pub struct SmtpSink {
    pub addr: Option<SocketAddr>,
    pub messages: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    /// A plain SMTP sink.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A sink that offers STARTTLS with a fresh self-signed certificate for 127.0.0.1 and
    /// localhost; returns it with the certificate (PEM) clients must trust.
    pub async fn start_starttls() -> (Self, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        (Self::start_with(Some(acceptor)).await, cert.pem())
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = SmtpSink {
            addr: Some(listener.local_addr().unwrap()),
            ..Default::default()
        };
        let messages = Arc::clone(&sink.messages);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let messages = Arc::clone(&messages);
                let tls = tls.clone();
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    if stream
                        .get_mut()
                        .write_all(b"220 sink ESMTP\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                    if let Some(Upgrade) = session(&mut stream, &messages, tls.is_some()).await {
                        let Some(acceptor) = tls else { return };
                        let Ok(tls_stream) = acceptor.accept(stream.into_inner()).await else {
                            return;
                        };
                        let mut tls_stream = BufReader::new(tls_stream);
                        let _ = session(&mut tls_stream, &messages, false).await;
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
