//! Registering a factory station and issuing its credential from the registration CA:
//! the one path of `fleetca factory add-station` and `POST /api/v1/stations`.

use fleetca_pki::{station_certificate, CertificateInfo, Issuer};
use fleetca_store::{NewStation, OperatorChange};
use time::{Duration, OffsetDateTime};

use crate::registry::{validate_pattern, validate_station_name};
use crate::{Actor, AdminError, AdminStore, Audited, Permission};

/// A station to register.
#[derive(Debug, Clone)]
pub struct StationRequest {
    /// Its name (the credential's CN).
    pub name: String,
    /// Regular expression every device serial it asks for must match (whole serial).
    pub serial_pattern: String,
    /// An optional `FROM..TO` range of serials.
    pub serial_range: Option<String>,
    /// Most birth certificates it may obtain in all.
    pub quota: Option<u64>,
    /// Validity of the credential, in days (1..=3650).
    pub valid_days: u32,
    /// Whether it may obtain a second birth certificate for a serial.
    pub allow_reissue: bool,
}

/// The issued credential.
#[derive(Debug, Clone)]
pub struct StationCredential {
    /// The station certificate (DER).
    pub certificate_der: Vec<u8>,
    /// PEM: the station certificate, then the registration CA.
    pub chain_pem: String,
    /// Its serial (hex).
    pub serial: String,
    /// End of its validity.
    pub not_after: OffsetDateTime,
}

/// Splits a `FROM..TO` range and checks both ends.
fn parse_range(range: &str) -> Result<(String, String), AdminError> {
    let bad = |why: String| AdminError::field("serial_range", why);
    let (from, to) = range
        .split_once("..")
        .ok_or_else(|| bad(format!("serial range '{range}' must be FROM..TO")))?;
    if from.is_empty() || to.is_empty() {
        return Err(bad(format!(
            "serial range '{range}' must be FROM..TO with both ends"
        )));
    }
    fleetca_pki::validate_device_serial(from).map_err(|e| bad(e.to_string()))?;
    fleetca_pki::validate_device_serial(to).map_err(|e| bad(e.to_string()))?;
    fleetca_ra::validate_serial_range(from, to).map_err(|e| bad(e.to_string()))?;
    Ok((from.to_string(), to.to_string()))
}

/// Registers a factory station and issues its credential for the public key `spki_der`
/// (the station keeps its private key) from the `registration` CA. Returns the
/// credential; the station is recorded (with its audit event) before it is returned.
pub async fn add_station<S: AdminStore + ?Sized>(
    store: &S,
    actor: &Actor,
    registration: &Issuer,
    organization: &str,
    request: StationRequest,
    spki_der: &[u8],
    comment: Option<&str>,
) -> Result<StationCredential, AdminError> {
    let mut audited = Audited {
        actor,
        needs: Permission::Administer,
        action: "station-add",
        subject: format!("station:{}", request.name),
        facts: String::new(),
        comment,
    };
    audited.permitted(store).await?;
    validate_station_name(&request.name).map_err(|e| AdminError::field("name", e.to_string()))?;
    validate_pattern("serial pattern", &request.serial_pattern)
        .map_err(|e| AdminError::field("serial_pattern", e.to_string()))?;
    let range = request
        .serial_range
        .as_deref()
        .map(parse_range)
        .transpose()?;
    if request.valid_days == 0 || request.valid_days > 3650 {
        return Err(AdminError::field(
            "valid_days",
            "the credential's validity must be between 1 and 3650 days",
        ));
    }
    let now = OffsetDateTime::now_utc();
    let der = station_certificate(
        registration,
        spki_der,
        organization,
        &request.name,
        Duration::days(i64::from(request.valid_days)),
        now,
    )
    .map_err(|e| AdminError::field("csr", format!("cannot issue for this key: {e}")))?;
    let info = CertificateInfo::from_der(&der).map_err(|e| AdminError::Internal(e.to_string()))?;
    let serial = info.serial.to_hex();
    let station = NewStation {
        name: request.name.clone(),
        serial_pattern: request.serial_pattern.clone(),
        range_from: range.as_ref().map(|r| r.0.clone()),
        range_to: range.as_ref().map(|r| r.1.clone()),
        quota: request.quota,
        valid_days: request.valid_days,
        allow_reissue: request.allow_reissue,
        credential_serial: serial.clone(),
        created_at: now,
    };
    audited.facts = format!(
        "serials {}, range {}, quota {}, credential {serial}",
        station.serial_pattern,
        request.serial_range.as_deref().unwrap_or("none"),
        station
            .quota
            .map_or_else(|| "none".to_string(), |q| q.to_string()),
    );
    audited
        .apply(store, OperatorChange::AddStation(station))
        .await?;
    let chain_pem = format!(
        "{}{}",
        fleetca_pki::pem_certificate(&der),
        fleetca_pki::pem_certificate(registration.certificate_der())
    );
    Ok(StationCredential {
        certificate_der: der,
        chain_pem,
        serial,
        not_after: info.not_after,
    })
}

/// [`add_station`] from the station's PKCS#10 request in PEM (its proof of possession is
/// checked); `registration` is `None` when the server has not loaded the registration CA.
pub async fn add_station_from_csr<S: AdminStore + ?Sized>(
    store: &S,
    actor: &Actor,
    registration: Option<&Issuer>,
    organization: &str,
    request: StationRequest,
    csr_pem: &str,
    comment: Option<&str>,
) -> Result<StationCredential, AdminError> {
    Audited {
        actor,
        needs: Permission::Administer,
        action: "station-add",
        subject: format!("station:{}", request.name),
        facts: String::new(),
        comment,
    }
    .permitted(store)
    .await?;
    let Some(registration) = registration else {
        return Err(AdminError::Unavailable(
            "the registration CA is not loaded on this server: run `fleetca factory add-station` \
             once on a CA host (it creates the registration CA), then restart `fleetca serve`"
                .into(),
        ));
    };
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|_| {
            AdminError::field(
                "csr",
                "not a PEM certificate request (-----BEGIN CERTIFICATE REQUEST-----)",
            )
        })?;
    let csr = fleetca_pki::CertificateRequest::from_der(der.as_ref())
        .map_err(|e| AdminError::field("csr", format!("certificate request refused: {e}")))?;
    add_station(
        store,
        actor,
        registration,
        organization,
        request,
        csr.spki_der(),
        comment,
    )
    .await
}
