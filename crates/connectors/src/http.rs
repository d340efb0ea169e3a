//! `kind = "http"`: a device record from an HTTP JSON service (a CMDB or asset API).
//!
//! `200` with a JSON object is the record, `404` means the device is unknown, everything
//! else is an error. Timeouts, connection failures and `5xx` are retried a few times with
//! a short backoff; `4xx` never are. Records and `404`s are cached for `cache_ttl`; errors
//! are not.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use fleetca_ra::{DeviceDirectory, DirectoryError, DirectoryRecord};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::StatusCode;
use serde_json::Value;

use crate::cache::AnswerCache;
use crate::config::{read_file, HttpConfig};
use crate::duration::ConfigDuration;
use crate::error::ConfigError;

/// The largest response body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// Everything but ASCII letters, digits and `-._~` is percent-encoded, so a serial stays
/// one path segment or one query value.
const SERIAL: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

const MAX_RETRIES: u32 = 10;

/// A directory backed by an HTTP JSON service.
pub struct HttpDirectory {
    name: String,
    client: reqwest::Client,
    template: String,
    /// `host:port`, what error texts name (never the path or query, which may hold keys).
    authority: String,
    /// `Bearer <token>`, marked sensitive.
    authorization: Option<HeaderValue>,
    timeout: ConfigDuration,
    retries: u32,
    record: Option<String>,
    cache: Option<AnswerCache>,
}

impl fmt::Debug for HttpDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpDirectory")
            .field("name", &self.name)
            .field("authority", &self.authority)
            .field(
                "bearer_token",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("record", &self.record)
            .field("cache", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

/// One failed attempt.
struct Failure {
    retryable: bool,
    text: String,
}

impl Failure {
    fn fatal(text: String) -> Self {
        Self {
            retryable: false,
            text,
        }
    }
}

impl HttpDirectory {
    /// Validates `config` and reads its files (token, certificates).
    pub fn from_config(name: &str, c: &HttpConfig, base_dir: &Path) -> Result<Self, ConfigError> {
        let invalid = |field, reason: String| ConfigError::invalid(name, field, reason);
        if !c.url.contains("{serial}") {
            return Err(invalid(
                "url",
                "must contain {serial}, where the device serial goes".into(),
            ));
        }
        let sample = reqwest::Url::parse(&c.url.replace("{serial}", "serial"))
            .map_err(|e| invalid("url", format!("not a URL: {e}")))?;
        let https = match sample.scheme() {
            "https" => true,
            "http" => false,
            other => return Err(invalid("url", format!("scheme {other}: use http or https"))),
        };
        if !sample.username().is_empty() || sample.password().is_some() {
            return Err(invalid(
                "url",
                "must not hold credentials; use bearer_token_file or mutual TLS".into(),
            ));
        }
        let host = sample
            .host_str()
            .ok_or_else(|| invalid("url", "has no host".into()))?;
        let authority = match sample.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        if c.timeout.0.is_zero() {
            return Err(invalid("timeout", "must be more than 0s".into()));
        }
        if c.retries > MAX_RETRIES {
            return Err(invalid("retries", format!("at most {MAX_RETRIES}")));
        }
        if let Some(pointer) = &c.record {
            if !pointer.is_empty() && !pointer.starts_with('/') {
                return Err(invalid(
                    "record",
                    format!("\"{pointer}\" is not a JSON pointer (write \"/{pointer}\")"),
                ));
            }
        }
        if c.cache_max_entries == 0 {
            return Err(invalid(
                "cache_max_entries",
                "must be at least 1 (cache_ttl = \"0s\" disables the cache)".into(),
            ));
        }

        let authorization = match &c.bearer_token_file {
            None => None,
            Some(file) => {
                let bytes = read_file(name, "bearer_token_file", base_dir, file)?;
                let token = std::str::from_utf8(&bytes)
                    .map_err(|_| invalid("bearer_token_file", "is not UTF-8 text".into()))?
                    .trim();
                if token.is_empty() {
                    return Err(invalid("bearer_token_file", "is empty".into()));
                }
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                        invalid(
                            "bearer_token_file",
                            "holds characters not allowed in an HTTP header".into(),
                        )
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
        };

        let mut builder = reqwest::Client::builder()
            .timeout(c.timeout.0)
            .connect_timeout(c.timeout.0)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("fleetca/", env!("CARGO_PKG_VERSION")));
        match (&c.client_certificate, &c.client_key) {
            (None, None) => {}
            (Some(cert), Some(key)) => {
                if !https {
                    return Err(invalid(
                        "client_certificate",
                        "mutual TLS needs an https:// url".into(),
                    ));
                }
                let mut pem = read_file(name, "client_certificate", base_dir, cert)?;
                pem.push(b'\n');
                pem.extend(read_file(name, "client_key", base_dir, key)?);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    invalid(
                        "client_certificate",
                        format!("certificate and key not usable: {e}"),
                    )
                })?;
                builder = builder.identity(identity);
            }
            (Some(_), None) => {
                return Err(invalid(
                    "client_key",
                    "needed with client_certificate".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "client_certificate",
                    "needed with client_key".into(),
                ))
            }
        }
        if let Some(ca_file) = &c.ca_file {
            let pem = read_file(name, "ca_file", base_dir, ca_file)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| invalid("ca_file", format!("not PEM certificates: {e}")))?;
            if certs.is_empty() {
                return Err(invalid("ca_file", "holds no PEM certificate".into()));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder
            .build()
            .map_err(|e| invalid("url", format!("HTTP client: {e}")))?;
        let cache = (!c.cache_ttl.0.is_zero())
            .then(|| AnswerCache::new(c.cache_ttl.0, c.cache_max_entries));
        Ok(Self {
            name: name.to_owned(),
            client,
            template: c.url.clone(),
            authority,
            authorization,
            timeout: c.timeout,
            retries: c.retries,
            record: c.record.clone(),
            cache,
        })
    }

    async fn fetch(&self, serial: &str) -> Result<Option<DirectoryRecord>, DirectoryError> {
        if serial.is_empty() || serial.chars().all(|c| c == '.') {
            // "." and ".." would be path segments that URL parsing removes.
            return Err(DirectoryError(format!(
                "serial '{serial}' cannot be looked up by URL"
            )));
        }
        let encoded = utf8_percent_encode(serial, SERIAL).to_string();
        let url = self.template.replace("{serial}", &encoded);
        let mut attempt: u32 = 0;
        loop {
            match self.attempt(&url).await {
                Ok(answer) => return Ok(answer),
                Err(failure) => {
                    tracing::debug!(
                        connector = %self.name,
                        serial,
                        attempt = attempt + 1,
                        error = %failure.text,
                        "directory request failed"
                    );
                    if failure.retryable && attempt < self.retries {
                        attempt += 1;
                        tokio::time::sleep(backoff(attempt)).await;
                        continue;
                    }
                    let text = if attempt > 0 {
                        format!("{} ({} attempts)", failure.text, attempt + 1)
                    } else {
                        failure.text
                    };
                    return Err(DirectoryError(text));
                }
            }
        }
    }

    async fn attempt(&self, url: &str) -> Result<Option<DirectoryRecord>, Failure> {
        let mut request = self.client.get(url).header(ACCEPT, "application/json");
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let mut response = request.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status != StatusCode::OK {
            return Err(Failure {
                retryable: status.is_server_error(),
                text: format!("HTTP {} from {}", status.as_u16(), self.authority),
            });
        }
        let too_large = || {
            Failure::fatal(format!(
                "response from {} is larger than {} KiB",
                self.authority,
                MAX_BODY / 1024
            ))
        };
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(&e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        self.record_from(&body).map(Some).map_err(Failure::fatal)
    }

    fn record_from(&self, body: &[u8]) -> Result<DirectoryRecord, String> {
        record_at(body, self.record.as_deref())
    }

    /// A failure before a status (connect, TLS, timeout). The text never holds the URL.
    fn transport(&self, e: &reqwest::Error) -> Failure {
        if e.is_timeout() {
            return Failure {
                retryable: true,
                text: format!(
                    "timed out after {} waiting for {}",
                    self.timeout, self.authority
                ),
            };
        }
        let mut cause: &dyn std::error::Error = e;
        while let Some(source) = cause.source() {
            cause = source;
        }
        let cause = cause.to_string();
        if e.is_connect() {
            Failure {
                retryable: true,
                text: format!("cannot connect to {}: {cause}", self.authority),
            }
        } else {
            Failure::fatal(format!("request to {} failed: {cause}", self.authority))
        }
    }
}

/// 100 ms, 200 ms, 400 ms, ... at most 1 s.
/// The device record in an HTTP directory's JSON answer: the whole body, or the object the
/// JSON pointer `record` (RFC 6901) names in it.
pub fn record_at(body: &[u8], record: Option<&str>) -> Result<DirectoryRecord, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("response is not a JSON object: {e}"))?;
    let (value, place) = match record {
        None => (value, "response".to_owned()),
        Some(pointer) => match value.pointer(pointer) {
            Some(inner) => (inner.clone(), format!("{pointer} in the response")),
            None => return Err(format!("response has nothing at {pointer}")),
        },
    };
    match value {
        Value::Object(record) => Ok(record),
        other => Err(format!(
            "{place} is not a JSON object: got {}",
            kind_of(&other)
        )),
    }
}

fn backoff(attempt: u32) -> Duration {
    let ms = 100u64.saturating_mul(1 << attempt.saturating_sub(1).min(4));
    Duration::from_millis(ms.min(1000))
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[async_trait]
impl DeviceDirectory for HttpDirectory {
    async fn lookup(&self, device_serial: &str) -> Result<Option<DirectoryRecord>, DirectoryError> {
        if let Some(cache) = &self.cache {
            if let Some(answer) = cache.get(device_serial) {
                return Ok(answer);
            }
        }
        let answer = self.fetch(device_serial).await?;
        if let Some(cache) = &self.cache {
            cache.insert(device_serial, answer.clone());
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_encoded_as_one_segment() {
        let e = |s| utf8_percent_encode(s, SERIAL).to_string();
        assert_eq!(e("SN-0001_a.b~c"), "SN-0001_a.b~c");
        assert_eq!(e("a/b?c#d e"), "a%2Fb%3Fc%23d%20e");
        assert_eq!(e("ü"), "%C3%BC");
    }

    #[test]
    fn backoff_is_short() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(10), Duration::from_secs(1));
    }
}
