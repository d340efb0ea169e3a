//! The agent: the renewal state machine driven against real files, a real server and a
//! real clock. `once` and `run` are the two commands of the binary.

use std::future::Future;
use std::sync::Arc;

use fleetca_pki::Clock;
use time::{Duration, OffsetDateTime};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::est::{Credential, EnrollAnswer, EstClient};
use crate::hooks::{run_hooks, HookEnv};
use crate::identity::{Identity, IdentityStore, Repair};
use crate::machine::{
    schedule, Decision, Machine, Operation, Outcome, Schedule, Validity, View, WaitReason,
};
use crate::request::{accept_issued, chain_pem, new_request, pending, validity, NewRequest};
use crate::status::{rfc3339, StatusRecord};
use crate::trust::{format_fingerprint, load_anchors, merged, pinned, rollover, save_anchors};
use crate::AgentError;

/// Longest the daemon sleeps in one go, whatever the machine says (clock jumps, suspend).
const MAX_SLEEP: Duration = Duration::hours(1);
/// `once` follows at most this many `202` answers in-process.
const ONCE_MAX_PENDING_ROUNDS: u32 = 10;
/// `once` waits at most this long for one `202` Retry-After in-process.
const ONCE_MAX_PENDING_WAIT: Duration = Duration::minutes(15);
/// The daemon stops when a renewal follows the previous one sooner than this share of the
/// previous certificate's lifetime (a healthy schedule never renews before
/// [`MIN_RENEW_FRACTION`](crate::MIN_RENEW_FRACTION) of it).
const LOOP_FRACTION: f64 = 0.05;

/// What one step did.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing to send before `until`.
    Wait {
        /// When to look again.
        until: OffsetDateTime,
        /// Why.
        reason: WaitReason,
    },
    /// A request was sent; this is how it ended.
    Attempted {
        /// Which request.
        operation: Operation,
        /// Its outcome.
        outcome: Outcome,
    },
}

/// How `once` ended; each maps to an exit code of `fleetca-agent once`.
#[derive(Debug, Clone, PartialEq)]
pub enum OnceResult {
    /// Nothing was due (exit 0).
    NothingDue,
    /// A certificate was issued and installed (exit 0).
    Renewed,
    /// Renewed, but a post-renewal hook failed (exit 6).
    RenewedHookFailed,
    /// The request failed or is backing off; try again later (exit 1).
    Failed(String),
    /// The server refused (`403`, other client errors) (exit 3).
    Denied(String),
    /// Still waiting for approval (`202`) (exit 4).
    Pending,
    /// No usable certificate to authenticate with (exit 5).
    Stuck(String),
}

impl OnceResult {
    /// The process exit code (see the binary's `--help`).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NothingDue | Self::Renewed => 0,
            Self::Failed(_) => 1,
            Self::Denied(_) => 3,
            Self::Pending => 4,
            Self::Stuck(_) => 5,
            Self::RenewedHookFailed => 6,
        }
    }
}

/// The device agent.
pub struct Agent {
    config: Config,
    clock: Arc<dyn Clock>,
    machine: Machine,
    store: IdentityStore,
    birth: Identity,
    serial: String,
    anchors: Vec<Vec<u8>>,
    client: Option<EstClient>,
    pending: Option<(Operation, NewRequest)>,
    /// Where `pending` is kept across restarts.
    pending_file: std::path::PathBuf,
    record: StatusRecord,
    expiry_reported: bool,
    /// The certificate whose clamped renewal point was last warned about.
    clamp_warned: Option<Validity>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("device", &self.serial)
            .finish_non_exhaustive()
    }
}

fn std_duration(d: Duration) -> std::time::Duration {
    std::time::Duration::try_from(d).unwrap_or_default()
}

impl Agent {
    /// Loads the birth identity, repairs an interrupted swap of the operational one, and
    /// restores a refusal back-off recorded by an earlier run.
    pub fn new(config: Config, clock: Arc<dyn Clock>) -> Result<Self, AgentError> {
        let ids = &config.identity;
        let birth = Identity::load(&ids.birth_key, &ids.birth_certificate)?.ok_or_else(|| {
            AgentError::Identity(format!(
                "the birth key {} and certificate {} are required",
                ids.birth_key.display(),
                ids.birth_certificate.display()
            ))
        })?;
        let serial = birth
            .info
            .device_serial()
            .ok_or_else(|| {
                AgentError::Identity(format!(
                    "the birth certificate ({}) has no serialNumber attribute",
                    birth.info.subject_display()
                ))
            })?
            .to_string();
        let store = IdentityStore::new(&ids.key, &ids.certificate);
        match store.repair()? {
            Repair::Clean => {}
            Repair::RolledForward => {
                info!(device = %serial, "completed an interrupted certificate swap")
            }
            Repair::DiscardedIncomplete => {
                info!(device = %serial, "removed the leftovers of an interrupted certificate swap")
            }
            Repair::RestoredPrevious => {
                warn!(device = %serial, "the active key did not match its certificate: restored the previous pair")
            }
            Repair::MovedAside => {
                warn!(device = %serial, "the active key did not match its certificate and no previous pair did: moved them aside as .broken; enrolling again with the birth certificate")
            }
        }
        let mut machine = Machine::new(config.renewal.clone(), rand::random());
        let record = StatusRecord::load(&ids.status_file);
        if record.waiting_for.as_deref() == Some("denied") {
            if let Some(until) = record.next_check.as_deref().and_then(|t| {
                OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            }) {
                machine.restore_hold(until, WaitReason::Denied, record.consecutive_denials);
            }
        }
        let pending_file = pending::path(&ids.key);
        let pending = match pending::load(&pending_file) {
            Ok(Some((operation, request))) => {
                info!(device = %serial, operation = operation.path(), "resuming a request waiting for approval");
                Some((operation, request))
            }
            Ok(None) => None,
            Err(e) => {
                warn!(device = %serial, error = %e, "ignoring an unreadable pending request; a new one will be made");
                None
            }
        };
        Ok(Self {
            config,
            clock,
            machine,
            store,
            birth,
            serial,
            anchors: Vec::new(),
            client: None,
            pending,
            pending_file,
            record,
            expiry_reported: false,
            clamp_warned: None,
        })
    }

    /// The device serial.
    pub fn device(&self) -> &str {
        &self.serial
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Loads the trust anchors, bootstrapping them from `/cacerts` with the pinned
    /// fingerprint when the file does not exist yet.
    pub async fn ensure_anchors(&mut self) -> Result<(), AgentError> {
        if self.client.is_some() {
            return Ok(());
        }
        let path = self.config.server.trust_anchor.clone();
        let anchors = match load_anchors(&path)? {
            Some(a) => a,
            None => {
                let pin = self.config.server.bootstrap_fingerprint.ok_or_else(|| {
                    AgentError::Trust(format!(
                        "{} does not exist and server.bootstrap_fingerprint is not set",
                        path.display()
                    ))
                })?;
                let offered = EstClient::cacerts_unverified(
                    &self.config.server.endpoint,
                    self.config.server.timeout,
                )
                .await?;
                let anchor = pinned(&offered, &pin).ok_or_else(|| {
                    AgentError::Trust(format!(
                        "no certificate in {} has the pinned fingerprint {}",
                        self.config.server.endpoint.url_of("cacerts"),
                        format_fingerprint(&pin)
                    ))
                })?;
                save_anchors(&path, std::slice::from_ref(&anchor))?;
                info!(device = %self.serial, anchor = %path.display(), "trust anchor bootstrapped from cacerts (fingerprint matched the pin)");
                vec![anchor]
            }
        };
        self.set_anchors(anchors)
    }

    fn set_anchors(&mut self, anchors: Vec<Vec<u8>>) -> Result<(), AgentError> {
        let client = EstClient::new(
            self.config.server.endpoint.clone(),
            &anchors,
            self.config.server.timeout,
        )?;
        self.anchors = anchors;
        self.client = Some(client);
        Ok(())
    }

    /// Fetches `/cacerts` (over TLS verified with the current anchors) and adds the new
    /// roots it proves (CA roll-over). Returns how many were added.
    pub async fn refresh_anchors(&mut self) -> Result<usize, AgentError> {
        let client = self.client()?;
        let offered = client.cacerts().await?;
        let now = self.clock.now();
        let added = rollover(&self.anchors, &offered, now);
        if added.is_empty() {
            return Ok(0);
        }
        let all = merged(&self.anchors, &added, now);
        save_anchors(&self.config.server.trust_anchor, &all)?;
        info!(device = %self.serial, added = added.len(), "CA roll-over: new trust anchor verified by the current one and saved");
        self.set_anchors(all)?;
        Ok(added.len())
    }

    fn client(&self) -> Result<EstClient, AgentError> {
        self.client
            .clone()
            .ok_or_else(|| AgentError::Trust("no trust anchor loaded".into()))
    }

    fn view(&self) -> Result<(View, Option<Identity>), AgentError> {
        let current = match self.store.load() {
            Ok(c) => c,
            Err(AgentError::Identity(e)) => {
                // Changed under our feet since the repair at start: repair again.
                warn!(device = %self.serial, "{e}; repairing");
                self.store.repair()?;
                self.store.load()?
            }
            Err(e) => return Err(e),
        };
        let view = View {
            operational: current.as_ref().map(|c| validity(&c.info)),
            birth: Some(validity(&self.birth.info)),
        };
        Ok((view, current))
    }

    /// Decides and, if something is due, sends one request.
    pub async fn step(&mut self) -> Result<Step, AgentError> {
        match self.step_or_look(true).await? {
            Some(step) => Ok(step),
            // Unreachable with `send`; a wait of zero is the harmless answer.
            None => Ok(Step::Wait {
                until: self.clock.now(),
                reason: WaitReason::Backoff,
            }),
        }
    }

    /// Decides without sending: the wait [`step`](Self::step) would make now (recorded in
    /// the status file), or `None` when a request is due.
    async fn look(&mut self) -> Result<Option<Step>, AgentError> {
        self.step_or_look(false).await
    }

    fn warn_if_clamped(&mut self, cert: &Validity) {
        if self.clamp_warned == Some(*cert) {
            return;
        }
        self.clamp_warned = Some(*cert);
        if schedule(self.machine.policy(), cert).clamped {
            let policy = self.machine.policy();
            warn!(
                device = %self.serial,
                renew_before_seconds = policy.renew_before.map(|d| d.whole_seconds()),
                lifetime_seconds = cert.lifetime().whole_seconds(),
                "renewal.renew_before is not shorter than this certificate's lifetime: renewing at renew_at ({:.2}) of its lifetime instead (it would be due at once, again and again)",
                policy.renew_at
            );
        }
    }

    async fn step_or_look(&mut self, send: bool) -> Result<Option<Step>, AgentError> {
        let (view, current) = self.view()?;
        let now = self.clock.now();
        if let Some(cert) = view.operational {
            self.warn_if_clamped(&cert);
        }
        match self.machine.decide(now, &view) {
            Decision::Wait { until, reason } => {
                if reason == WaitReason::Stuck {
                    self.report_stuck(&view, now);
                }
                if let Some(cert) = &view.operational {
                    let point = self.machine.renewal_point(cert);
                    if let Some(c) = &current {
                        self.record.renewal_point_serial = Some(c.info.serial.to_string());
                        self.record.renewal_point = Some(rfc3339(point));
                    }
                }
                self.note_wait(until, &reason);
                Ok(Some(Step::Wait { until, reason }))
            }
            Decision::Request { .. } if !send => Ok(None),
            Decision::Request { operation, .. } => {
                if operation == Operation::Enroll {
                    if let Some(expired) = view.operational.filter(|c| now >= c.not_after) {
                        warn!(device = %self.serial, expired_at = %rfc3339(expired.not_after), "the operational certificate expired: enrolling again with the birth certificate");
                    }
                }
                let outcome = self.attempt(operation, current.as_ref()).await?;
                let now = self.clock.now();
                self.machine.record(now, operation, outcome.clone(), &view);
                self.note_attempt(now, operation, &outcome, &view);
                Ok(Some(Step::Attempted { operation, outcome }))
            }
        }
    }

    fn report_stuck(&mut self, view: &View, now: OffsetDateTime) {
        if self.expiry_reported {
            return;
        }
        self.expiry_reported = true;
        let operational = match view.operational {
            Some(c) if now >= c.not_after => format!("expired at {}", rfc3339(c.not_after)),
            Some(_) => "refused by the server".to_string(),
            None => "missing".to_string(),
        };
        error!(
            device = %self.serial,
            birth_not_after = %rfc3339(self.birth.info.not_after),
            "NO USABLE CERTIFICATE: the operational certificate is {operational} and the birth certificate is not valid now; the device cannot enroll without operator action"
        );
    }

    async fn attempt(
        &mut self,
        operation: Operation,
        current: Option<&Identity>,
    ) -> Result<Outcome, AgentError> {
        let client = self.client()?;
        // A request the server accepted for later (202) is repeated as it was, also after a
        // restart: the server recognises it by its key.
        let repeated = matches!(&self.pending, Some((op, _)) if *op == operation);
        let request = match self.pending.take() {
            Some((op, request)) if op == operation => request,
            _ => new_request(
                self.config.identity.key_algorithm,
                operation,
                &self.birth.info,
                current.map(|c| &c.info),
            )?,
        };
        let credential = match (operation, current) {
            (Operation::Reenroll, Some(c)) => Credential::new(&c.key_pem, &c.chain)?,
            _ => Credential::new(&self.birth.key_pem, &self.birth.chain)?,
        };
        let answer = client
            .enroll(operation, &credential, &request.csr_der)
            .await;
        let outcome = match answer {
            Ok(EnrollAnswer::Issued(certificates)) => {
                match accept_issued(certificates, &request.key, &self.serial) {
                    Ok((info, chain)) => {
                        let previous_issuer = current.map(|c| c.info.issuer.clone());
                        self.store
                            .install(&request.key.to_pkcs8_pem(), &chain_pem(&chain))?;
                        self.expiry_reported = false;
                        info!(
                            device = %self.serial,
                            operation = operation.path(),
                            serial = %info.serial,
                            not_after = %rfc3339(info.not_after),
                            "certificate installed"
                        );
                        self.after_install(&info).await;
                        if previous_issuer.is_some_and(|i| i != info.issuer) {
                            if let Err(e) = self.refresh_anchors().await {
                                warn!(device = %self.serial, "the issuing CA changed; refreshing the trust anchors failed: {e}");
                            }
                        }
                        Outcome::Issued(validity(&info))
                    }
                    Err(e) => Outcome::Unavailable {
                        reason: e.to_string(),
                        retry_after: None,
                    },
                }
            }
            Ok(EnrollAnswer::Pending(wait)) => {
                if let Err(e) = pending::save(&self.pending_file, operation, &request) {
                    warn!(device = %self.serial, error = %e, "cannot keep the pending request on disk; a restart will make a new one");
                }
                Outcome::Pending {
                    retry_after: Duration::try_from(wait).unwrap_or(Duration::MAX),
                }
            }
            Ok(EnrollAnswer::Refused {
                status,
                message,
                retry_after,
            }) => {
                let retry_after =
                    retry_after.map(|d| Duration::try_from(d).unwrap_or(Duration::MAX));
                Outcome::from_status(status, &message, retry_after)
            }
            Err(e) => Outcome::Unavailable {
                reason: e.to_string(),
                retry_after: None,
            },
        };
        // Keep the request while the server holds it (202), and across failures to reach
        // the server while polling; drop it once answered.
        match &outcome {
            Outcome::Pending { .. } => self.pending = Some((operation, request)),
            Outcome::Unavailable { .. } if repeated => self.pending = Some((operation, request)),
            _ => {
                if let Err(e) = pending::remove(&self.pending_file) {
                    warn!(device = %self.serial, error = %e, "cannot remove the answered pending request");
                }
            }
        }
        Ok(outcome)
    }

    async fn after_install(&mut self, info: &fleetca_pki::CertificateInfo) {
        let env = HookEnv {
            key: self.config.identity.key.display().to_string(),
            certificate: self.config.identity.certificate.display().to_string(),
            serial: info.serial.to_string(),
            not_after: rfc3339(info.not_after),
        };
        match run_hooks(&self.config.hooks, &env).await {
            Ok(()) => self.record.hook_failed = false,
            Err(e) => {
                error!(device = %self.serial, "post-renewal hook failed: {e}");
                self.record.hook_failed = true;
            }
        }
    }

    fn note_wait(&mut self, until: OffsetDateTime, reason: &WaitReason) {
        let reason = serde_json::to_value(reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string));
        let next = Some(rfc3339(until));
        if self.record.next_check != next || self.record.waiting_for != reason {
            self.record.next_check = next;
            self.record.waiting_for = reason;
            self.save_record();
        }
    }

    fn note_attempt(
        &mut self,
        at: OffsetDateTime,
        operation: Operation,
        outcome: &Outcome,
        view: &View,
    ) {
        let ok = matches!(outcome, Outcome::Issued(_));
        let text = outcome.describe();
        if !ok {
            let expired = view.operational.is_some_and(|c| at >= c.not_after);
            match outcome {
                Outcome::Denied(_) | Outcome::Unauthorized(_) | Outcome::Rejected(_) if expired => {
                    error!(
                        device = %self.serial,
                        operation = operation.path(),
                        "THE OPERATIONAL CERTIFICATE EXPIRED and the server refuses to enroll the birth certificate: {text}"
                    )
                }
                Outcome::Denied(_) | Outcome::Unauthorized(_) | Outcome::Rejected(_) => error!(
                    device = %self.serial,
                    operation = operation.path(),
                    "request refused: {text}"
                ),
                Outcome::Pending { .. } => {
                    info!(device = %self.serial, operation = operation.path(), "{text}")
                }
                _ => {
                    warn!(device = %self.serial, operation = operation.path(), failures = self.machine.failures(), "{text}")
                }
            }
        }
        self.record.device = self.serial.clone();
        self.record.last_attempt_at = Some(rfc3339(at));
        self.record.last_operation = Some(operation.path().to_string());
        self.record.last_ok = Some(ok);
        self.record.last_result = Some(text);
        self.record.consecutive_failures = self.machine.failures();
        self.record.consecutive_denials = self.machine.denials();
        match self.machine.hold() {
            Some((until, reason)) => self.note_wait(until, &reason),
            None => self.save_record(),
        }
    }

    fn save_record(&self) {
        if let Err(e) = self.record.save(&self.config.identity.status_file) {
            warn!(device = %self.serial, "cannot write the status file: {e}");
        }
    }

    /// Forgets a refusal or back-off wait (also one restored from the status file), so
    /// that the next step asks at once if anything is due: `fleetca-agent once --now`, for
    /// an operator who fixed the cause of a refusal.
    pub fn retry_now(&mut self) {
        if let Some((until, reason)) = self.machine.hold() {
            info!(device = %self.serial, waiting_until = %rfc3339(until), ?reason, "asking now instead of waiting");
        }
        self.machine.clear_hold();
    }

    /// One pass for cron or a systemd timer: renews if due, follows `202` answers for a
    /// bounded time, and reports how it ended.
    pub async fn once(&mut self) -> Result<OnceResult, AgentError> {
        if let Err(e) = self.ensure_anchors().await {
            return match e {
                AgentError::Transport(_) | AgentError::Protocol(_) => {
                    Ok(OnceResult::Failed(e.to_string()))
                }
                other => Err(other),
            };
        }
        let mut pending_rounds = 0;
        loop {
            match self.step().await? {
                Step::Attempted {
                    outcome: Outcome::Issued(_),
                    ..
                } => {
                    // One issuance per run, whatever the schedule says next: a new
                    // certificate that is due at once must not renew in a loop.
                    if self.look().await?.is_none() {
                        error!(device = %self.serial, "the new certificate is already due for renewal; not renewing again in this run (check renewal.renew_before against the certificate lifetime)");
                    }
                    return Ok(if self.record.hook_failed {
                        OnceResult::RenewedHookFailed
                    } else {
                        OnceResult::Renewed
                    });
                }
                Step::Attempted {
                    outcome: Outcome::Pending { retry_after },
                    ..
                } => {
                    pending_rounds += 1;
                    if pending_rounds > ONCE_MAX_PENDING_ROUNDS
                        || retry_after > ONCE_MAX_PENDING_WAIT
                    {
                        return Ok(OnceResult::Pending);
                    }
                    tokio::time::sleep(std_duration(retry_after)).await;
                }
                Step::Attempted { outcome, .. } => {
                    let text = outcome.describe();
                    return Ok(match outcome {
                        Outcome::Denied(_) | Outcome::Rejected(_) | Outcome::Unauthorized(_) => {
                            OnceResult::Denied(text)
                        }
                        _ => OnceResult::Failed(text),
                    });
                }
                Step::Wait { reason, until } => {
                    return Ok(match reason {
                        WaitReason::NotDue => OnceResult::NothingDue,
                        WaitReason::Stuck => {
                            OnceResult::Stuck("no usable certificate to authenticate with".into())
                        }
                        WaitReason::Pending => OnceResult::Pending,
                        WaitReason::Denied => OnceResult::Denied(format!(
                            "refused earlier; not asking again before {}",
                            rfc3339(until)
                        )),
                        WaitReason::Backoff => {
                            OnceResult::Failed(format!("backing off until {}", rfc3339(until)))
                        }
                    });
                }
            }
        }
    }

    /// The daemon: renews whenever due until `shutdown` completes. A shutdown never
    /// interrupts a request or a swap: it is looked at only between steps.
    pub async fn run(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
        tokio::pin!(shutdown);
        let mut delay = self.config.renewal.retry_initial;
        while let Err(e) = self.ensure_anchors().await {
            match e {
                AgentError::Transport(_) | AgentError::Protocol(_) => {
                    warn!(device = %self.serial, "trust anchor bootstrap failed, retrying in {}s: {e}", delay.whole_seconds());
                    tokio::select! {
                        biased;
                        () = &mut shutdown => return Ok(()),
                        () = tokio::time::sleep(std_duration(delay)) => {}
                    }
                    let doubled: Duration = delay * 2;
                    delay = doubled.min(self.config.renewal.retry_max);
                }
                other => return Err(other),
            }
        }
        if let Err(e) = self.refresh_anchors().await {
            warn!(device = %self.serial, "cannot check cacerts for a CA roll-over: {e}");
        }
        info!(device = %self.serial, url = self.config.server.endpoint.url(), "agent running");
        // When the last renewal (simplereenroll) was issued, and the lifetime of the
        // certificate it replaced.
        let mut last_renewal: Option<(OffsetDateTime, Duration)> = None;
        loop {
            let view = self.view()?.0;
            let wait = match self.step().await? {
                Step::Wait { until, .. } => {
                    (until - self.clock.now()).clamp(Duration::ZERO, MAX_SLEEP)
                }
                Step::Attempted {
                    operation: Operation::Reenroll,
                    outcome: Outcome::Issued(_),
                } => {
                    let now = self.clock.now();
                    if let Some((at, lifetime)) = last_renewal {
                        let window = lifetime * LOOP_FRACTION;
                        if now - at < window {
                            let text = format!(
                                "renewed twice within {}s (certificates live {}s): every new certificate is due at once; stopping instead of filling the server's inventory (check renewal.renew_before and the clock)",
                                (now - at).whole_seconds(),
                                lifetime.whole_seconds()
                            );
                            error!(device = %self.serial, "{text}");
                            self.record.waiting_for = Some("stopped-renewal-loop".into());
                            self.save_record();
                            return Err(AgentError::RenewalLoop(text));
                        }
                    }
                    let lifetime = view.operational.map_or(Duration::ZERO, |c| c.lifetime());
                    last_renewal = Some((now, lifetime));
                    Duration::ZERO
                }
                Step::Attempted { .. } => Duration::ZERO,
            };
            tokio::select! {
                biased;
                () = &mut shutdown => {
                    info!(device = %self.serial, "stopping");
                    return Ok(());
                }
                () = tokio::time::sleep(std_duration(wait)) => {}
            }
        }
    }
}

/// The renewal schedule of a certificate under `config`: the same computation `once` and
/// `run` use, for `status`.
pub fn renewal_schedule(config: &Config, info: &fleetca_pki::CertificateInfo) -> Schedule {
    schedule(&config.renewal, &validity(info))
}
