//! Channels: SMTP (lettre) and webhooks (reqwest, HMAC-SHA256 signed). A channel sends
//! one rendered outbox payload; errors are reported without secrets.

use std::time::Duration;

use async_trait::async_trait;
use fleetca_store::OutboxMessage;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{ChannelSettings, SmtpChannel, SmtpSecurity, WebhookChannel};
use crate::MonitorError;

/// Something that delivers rendered notifications.
#[async_trait]
pub trait Channel: Send + Sync {
    /// Sends one message; `Ok` only when the receiver accepted it.
    async fn send(&self, message: &OutboxMessage) -> Result<(), MonitorError>;
}

/// Builds the channel for its settings.
pub fn build(name: &str, settings: &ChannelSettings) -> Result<Box<dyn Channel>, MonitorError> {
    Ok(match settings {
        ChannelSettings::Smtp(s) => Box::new(SmtpSender::new(name, s)?),
        ChannelSettings::Webhook(w) => Box::new(WebhookSender::new(name, w)?),
    })
}

fn payload_field<'a>(
    channel: &str,
    payload: &'a serde_json::Value,
    field: &str,
) -> Result<&'a str, MonitorError> {
    payload
        .get(field)
        .and_then(|v| v.as_str())
        .ok_or_else(|| MonitorError::Delivery {
            channel: channel.into(),
            reason: format!("queued message has no '{field}' (queued for another channel type?)"),
        })
}

/// E-mail over SMTP.
pub struct SmtpSender {
    name: String,
    settings: SmtpChannel,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl SmtpSender {
    fn new(name: &str, s: &SmtpChannel) -> Result<Self, MonitorError> {
        let err = |e: lettre::transport::smtp::Error| {
            MonitorError::Config(format!("monitoring.channels.{name}: {e}"))
        };
        let mut builder = match s.security {
            SmtpSecurity::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.server)
            }
            SmtpSecurity::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.server).map_err(err)?
            }
            SmtpSecurity::Tls => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&s.server).map_err(err)?
            }
        }
        .port(s.port)
        .timeout(Some(s.timeout));
        if let (Some(pem), false) = (&s.ca_pem, matches!(s.security, SmtpSecurity::None)) {
            let params = TlsParameters::builder(s.server.clone())
                .add_root_certificate(Certificate::from_pem(pem).map_err(err)?)
                .build_rustls()
                .map_err(err)?;
            builder = builder.tls(match s.security {
                SmtpSecurity::Tls => Tls::Wrapper(params),
                _ => Tls::Required(params),
            });
        }
        if let Some((user, password)) = &s.credentials {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                String::from_utf8_lossy(password.expose()).into_owned(),
            ));
        }
        Ok(Self {
            name: name.into(),
            settings: s.clone(),
            transport: builder.build(),
        })
    }
}

#[async_trait]
impl Channel for SmtpSender {
    async fn send(&self, message: &OutboxMessage) -> Result<(), MonitorError> {
        let fail = |reason: String| MonitorError::Delivery {
            channel: self.name.clone(),
            reason,
        };
        let payload: serde_json::Value =
            serde_json::from_str(&message.payload).map_err(|e| fail(e.to_string()))?;
        let subject = payload_field(&self.name, &payload, "subject")?;
        let body = payload_field(&self.name, &payload, "body")?;
        let id = payload_field(&self.name, &payload, "id")?;
        let mut email = Message::builder()
            .from(
                self.settings
                    .from
                    .parse()
                    .map_err(|e| fail(format!("from: {e}")))?,
            )
            .subject(subject)
            .message_id(Some(format!("<{id}.{}@fleetca>", message.id)))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.settings.to {
            email = email.to(to.parse().map_err(|e| fail(format!("to: {e}")))?);
        }
        let email = email
            .body(body.to_string())
            .map_err(|e| fail(e.to_string()))?;
        self.transport
            .send(email)
            .await
            .map_err(|e| fail(e.to_string()))?;
        Ok(())
    }
}

/// HTTP POST of a JSON body.
pub struct WebhookSender {
    name: String,
    settings: WebhookChannel,
    client: reqwest::Client,
}

/// `sha256=<hex HMAC-SHA256 of body>`, the value of the signature header.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    format!(
        "sha256={}",
        hex::encode(aws_lc_rs::hmac::sign(&key, body).as_ref())
    )
}

impl WebhookSender {
    fn new(name: &str, w: &WebhookChannel) -> Result<Self, MonitorError> {
        let client = reqwest::Client::builder()
            .timeout(w.timeout)
            .connect_timeout(w.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| MonitorError::Config(format!("monitoring.channels.{name}: {e}")))?;
        Ok(Self {
            name: name.into(),
            settings: w.clone(),
            client,
        })
    }
}

#[async_trait]
impl Channel for WebhookSender {
    async fn send(&self, message: &OutboxMessage) -> Result<(), MonitorError> {
        let fail = |reason: String| MonitorError::Delivery {
            channel: self.name.clone(),
            reason,
        };
        let payload: serde_json::Value =
            serde_json::from_str(&message.payload).map_err(|e| fail(e.to_string()))?;
        let body = payload_field(&self.name, &payload, "body")?.to_string();
        let mut request = self
            .client
            .post(&self.settings.url)
            .header("content-type", "application/json")
            .header("x-fleetca-delivery", message.id.to_string())
            .header("x-fleetca-event", message.event.as_str());
        for (k, v) in &self.settings.headers {
            request = request.header(k.as_str(), v.as_str());
        }
        for (k, v) in &self.settings.secret_headers {
            let mut value = reqwest::header::HeaderValue::from_bytes(v.expose())
                .map_err(|_| fail(format!("secret header {k} is not a valid header value")))?;
            value.set_sensitive(true);
            request = request.header(k.as_str(), value);
        }
        if let Some(key) = &self.settings.hmac_key {
            request = request.header(
                self.settings.signature_header.as_str(),
                signature(key.expose(), body.as_bytes()),
            );
        }
        // The error text of reqwest names the URL but never headers or body.
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(fail(format!("receiver answered {status}")))
        }
    }
}
