//! Delivery of the durable outbox: claim due messages (leased, so one node sends each),
//! send through their channel, record the outcome; failures back off exponentially until
//! the message is older than the maximum age, then it is marked failed.

use std::collections::HashMap;
use std::sync::Arc;

use fleetca_pki::Clock;
use fleetca_store::{DeliveryOutcome, MonitoringStore};
use time::Duration;

use crate::channel::{self, Channel};
use crate::config::{MonitorSettings, RetrySettings};
use crate::metrics::Metrics;
use crate::MonitorError;

/// What one delivery pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub delivered: usize,
    pub retrying: usize,
    pub failed: usize,
}

/// Sends the outbox.
pub struct Outbox {
    store: Arc<dyn MonitoringStore>,
    clock: Arc<dyn Clock>,
    channels: HashMap<String, Box<dyn Channel>>,
    retry: RetrySettings,
    metrics: Option<Arc<Metrics>>,
}

/// How long a claimed message is held before another sender may take it.
const LEASE: Duration = Duration::minutes(5);
/// Messages claimed per round; at most `MAX_ROUNDS` rounds per pass.
const BATCH: u32 = 32;
const MAX_ROUNDS: usize = 64;

/// Back-off before attempt `attempts + 1`.
pub fn backoff(retry: &RetrySettings, attempts: u32) -> Duration {
    let factor = 1i64.checked_shl(attempts.min(30)).unwrap_or(i64::MAX);
    let secs = retry.initial.whole_seconds().saturating_mul(factor);
    Duration::seconds(secs).min(retry.max_backoff)
}

impl Outbox {
    /// An outbox sender with the configured channels.
    pub fn new(
        store: Arc<dyn MonitoringStore>,
        clock: Arc<dyn Clock>,
        settings: &MonitorSettings,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self, MonitorError> {
        let mut channels = HashMap::new();
        for (name, s) in &settings.channels {
            channels.insert(name.clone(), channel::build(name, s)?);
        }
        Ok(Self {
            store,
            clock,
            channels,
            retry: settings.retry,
            metrics,
        })
    }

    /// Sends every message due now (bounded number of rounds).
    pub async fn deliver_due(&self) -> Result<DeliveryReport, MonitorError> {
        let mut report = DeliveryReport::default();
        for _ in 0..MAX_ROUNDS {
            let now = self.clock.now();
            let batch = self.store.claim_due(now, now + LEASE, BATCH).await?;
            if batch.is_empty() {
                break;
            }
            for message in batch {
                let result = match self.channels.get(&message.channel) {
                    Some(c) => c.send(&message).await,
                    None => Err(MonitorError::UnknownChannel(message.channel.clone())),
                };
                let now = self.clock.now();
                let (outcome, label) = match result {
                    Ok(()) => {
                        report.delivered += 1;
                        tracing::info!(id = message.id, channel = %message.channel, tier = %message.tier, event = %message.event, "notification delivered");
                        (DeliveryOutcome::Delivered, "delivered")
                    }
                    Err(e) => {
                        let error = e.to_string();
                        if now - message.created_at >= self.retry.max_age {
                            report.failed += 1;
                            tracing::error!(id = message.id, channel = %message.channel, error = %error, "notification failed for good (maximum age passed)");
                            (DeliveryOutcome::Failed { error }, "failed")
                        } else {
                            report.retrying += 1;
                            let at = now + backoff(&self.retry, message.attempts);
                            tracing::warn!(id = message.id, channel = %message.channel, error = %error, retry_at = %at, "notification not delivered; will retry");
                            (DeliveryOutcome::Retry { at, error }, "retry")
                        }
                    }
                };
                self.store.record_delivery(message.id, outcome, now).await?;
                if let Some(m) = &self.metrics {
                    m.delivery(&message.channel, label);
                }
            }
        }
        Ok(report)
    }
}
