//! `fleetca`: a certificate authority for IoT fleets.

/// mimalloc instead of glibc's malloc: glibc's arenas spent ~10% of a keep-alive
/// renewal's server CPU in `_int_malloc`, `malloc_consolidate` and `_int_free` (perf, issue
/// 21); measured in docs/benchmarks.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[macro_use]
mod output;
mod admin;
mod admin_identity;
mod backup;
mod bench;
mod bench_cmdb;
mod bench_fleet;
mod bench_keepalive;
mod bench_scep;
mod bench_status;
mod ca_cmd;
mod ca_root_rollover;
mod cmp_cmd;
mod cmp_setup;
mod device_cmd;
mod est_client;
mod factory;
mod factory_client;
mod generation_watch;
mod listeners;
mod manual;
mod monitor_cmd;
mod pki_setup;
mod policy_cmd;
mod process_cpu;
mod reload;
mod scep_cmd;
mod scep_setup;
mod serve;

use fleetca::{config, config_fragments, config_scep, files, keys};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use fleetca_pki::{KeyAlgorithm, RevocationReason};

use fleetca_pki::HumanDuration;

#[derive(Parser)]
#[command(
    name = "fleetca",
    version,
    about = "A certificate authority for IoT fleets: birth certificates, EST enrollment and renewal, inventory."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct DataDir {
    /// The data directory: configuration, PKI files and the SQLite inventory.
    #[arg(long, env = "FLEETCA_DATA_DIR", default_value = "./fleetca-data")]
    data_dir: PathBuf,
}

/// The operator's comment on a state change, recorded in the audit trail.
#[derive(Args, Clone)]
struct Comment {
    /// Why (a ticket number, a few words): recorded with the action in the audit trail.
    #[arg(long)]
    comment: Option<String>,
}

/// Confirmation of an irreversible change.
#[derive(Args, Clone)]
struct Confirm {
    /// Do it without asking (scripts). Without --yes, fleetca asks on the terminal, and
    /// refuses when there is no terminal to ask on.
    #[arg(long, short = 'y')]
    yes: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new PKI (root, manufacturing and operational CAs, server certificate),
    /// the configuration and the database. Refuses to overwrite an existing CA.
    Init {
        #[command(flatten)]
        dir: DataDir,
        /// Key algorithm of the CAs.
        #[arg(long, default_value = "p256", value_parser = parse_key_algorithm)]
        key_algorithm: KeyAlgorithm,
        /// Organization (O) of the CA certificates.
        #[arg(long, default_value = "fleetca")]
        organization: String,
        /// Extra DNS name or IP address for the server certificate (repeatable);
        /// localhost, 127.0.0.1 and ::1 are always included.
        #[arg(long = "server-name")]
        server_names: Vec<String>,
        /// Address written to the configuration as server.listen.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: String,
        /// Address of the CRL/OCSP listener written to the configuration (and, as
        /// http://ADDR, into issued certificates as publication.base_url).
        #[arg(long, default_value = "127.0.0.1:8080")]
        status_listen: String,
        #[command(flatten)]
        pkcs11: Pkcs11Args,
    },
    /// Serve EST over HTTPS. Refuses a data directory without a CA (a mistyped path must
    /// not become a second CA); initialises one first only when the directory exists, is
    /// empty and was named with --data-dir (or FLEETCA_DATA_DIR), or with --init.
    Serve {
        #[command(flatten)]
        dir: DataDir,
        /// Create a new CA in the data directory if it is missing or empty (as `fleetca
        /// init` with its defaults); an existing CA is served as it is.
        #[arg(long)]
        init: bool,
        /// Listen address (overrides server.listen).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// CRL/OCSP listen address (overrides publication.listen).
        #[arg(long)]
        status_listen: Option<SocketAddr>,
        /// Prometheus /metrics listen address (overrides monitoring.metrics_listen).
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
        /// Admin API (HTTPS) listen address (overrides admin.listen); off when neither is set.
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
        /// Validate the configuration, keys and database, then exit.
        #[arg(long)]
        check_config: bool,
    },
    /// Enrollment accounts (HTTP Basic credentials for EST).
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Devices: issue birth certificates centrally.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// The inventory of issued certificates: list and show.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// Trust birth certificates issued by other manufacturers' CAs.
    Trust {
        #[command(subcommand)]
        command: TrustCommand,
    },
    /// Factory stations: registration authorities that obtain birth certificates.
    Factory {
        #[command(subcommand)]
        command: FactoryCommand,
    },
    /// The CAs: their generations (list, rollover) and trust settings.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// The admin API's identities: API tokens and operator users (README, "Admin API").
    Admin {
        #[command(subcommand)]
        command: admin_identity::AdminCommand,
    },
    /// CMP (RFC 9483): one-time shared secrets for a device's first enrollment.
    Cmp {
        #[command(subcommand)]
        command: cmp_cmd::CmpCommand,
    },
    /// SCEP (README, "SCEP"): one-time challenge passwords for devices' PKCSReq.
    Scep {
        #[command(subcommand)]
        command: scep_cmd::ScepCommand,
    },
    /// The hash-chained audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Requests waiting for manual approval: list, approve, reject.
    Request {
        #[command(subcommand)]
        command: RequestCommand,
    },
    /// The RA's decision log: every request with the result of each rule.
    Decision {
        #[command(subcommand)]
        command: DecisionCommand,
    },
    /// Evaluate the rules offline, before deploying a policy.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Expiry monitoring: run one scan and delivery pass.
    Monitor {
        #[command(subcommand)]
        command: MonitorCommand,
    },
    /// Reports over the inventory.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Escalations: which devices are in which tier, when notified, delivery state.
    Alerts {
        #[command(subcommand)]
        command: AlertsCommand,
    },
    /// Write a snapshot of the data directory to one archive (mode 0600): a consistent
    /// copy of the SQLite inventory (safe while the server runs), pki/ and fleetca.toml.
    /// With PostgreSQL, pki/ and fleetca.toml only: back the database up with pg_dump.
    Backup {
        #[command(flatten)]
        dir: DataDir,
        /// The archive to write (replaced atomically if it exists).
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a `fleetca backup` archive into a new (or empty) data directory, after
    /// checking it: every CA key must match its certificate and the audit chain verify.
    Restore {
        /// The archive.
        archive: PathBuf,
        /// The new data directory (must not exist, or be empty).
        #[arg(long, env = "FLEETCA_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell
    /// (e.g. `fleetca completions bash > /etc/bash_completion.d/fleetca`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Man pages from this CLI: the main page on stdout, or with --out DIR one page per
    /// command (fleetca.1, fleetca-device-list.1, ...).
    Man {
        /// Directory for the pages (e.g. /usr/local/share/man/man1).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Benchmarks against a running server.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

/// `fleetca init` with the CA keys in a PKCS#11 token.
#[derive(Args)]
struct Pkcs11Args {
    /// Generate every CA key and the OCSP signing keys inside a PKCS#11 token
    /// (non-extractable) through this module, e.g. /usr/lib/softhsm/libsofthsm2.so.
    #[arg(long, requires_all = ["pkcs11_token", "pin_file"])]
    pkcs11_module: Option<PathBuf>,
    /// Label of the token (with --pkcs11-module).
    #[arg(long, requires = "pkcs11_module")]
    pkcs11_token: Option<String>,
    /// File whose first line is the token's user PIN, mode 0600 (with --pkcs11-module).
    #[arg(long, requires = "pkcs11_module")]
    pin_file: Option<PathBuf>,
}

impl Pkcs11Args {
    fn settings(self) -> anyhow::Result<Option<keys::Pkcs11Settings>> {
        let (Some(module), Some(token), Some(pin_file)) =
            (self.pkcs11_module, self.pkcs11_token, self.pin_file)
        else {
            return Ok(None);
        };
        // The configuration outlives the current directory: store absolute paths.
        let absolute = |p: PathBuf| -> anyhow::Result<PathBuf> {
            Ok(if p.is_absolute() {
                p
            } else {
                std::env::current_dir()?.join(p)
            })
        };
        Ok(Some(keys::Pkcs11Settings {
            module: absolute(module)?,
            token,
            pin_file: absolute(pin_file)?,
        }))
    }
}

#[derive(Subcommand)]
enum MonitorCommand {
    /// Scan for expiring certificates now, queue the digests, and try to deliver every
    /// due notification once (what `serve` does periodically).
    RunOnce {
        #[command(flatten)]
        dir: DataDir,
    },
}

#[derive(Subcommand)]
enum ReportCommand {
    /// Devices whose current certificate expires within a time (or expired recently)
    /// without a successor, soonest first within each chunk.
    Expiring {
        #[command(flatten)]
        dir: DataDir,
        /// Horizon, e.g. 30d.
        #[arg(long, default_value = "30d")]
        within: HumanDuration,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: monitor_cmd::Format,
    },
}

#[derive(Subcommand)]
enum AlertsCommand {
    /// Open escalations: tier, when notified, delivery state of that notification.
    List {
        #[command(flatten)]
        dir: DataDir,
        /// Include resolved escalations.
        #[arg(long)]
        all: bool,
        /// At most this many rows.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: monitor_cmd::Format,
    },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Add an account; prints a generated password (or reads one line from stdin).
    Add {
        #[command(flatten)]
        dir: DataDir,
        /// Account name (the Basic user name).
        name: String,
        /// The EST label the account may use (default: the unlabelled endpoint only).
        #[arg(long)]
        label: Option<String>,
        /// Regular expression the whole device serial must match (anchored at both ends:
        /// `SN-[0-9]{4}` accepts SN-0001, not XSN-0001 or SN-00011).
        #[arg(long)]
        serial_pattern: Option<String>,
        /// Without --serial-pattern: the account may name any serial (still only devices
        /// new to the inventory, unless --allow-known-devices).
        #[arg(long, conflicts_with = "serial_pattern")]
        any_serial: bool,
        /// Let the account enroll devices the inventory already knows (by default it
        /// enrolls only new devices, each once: a password must not be able to take over a
        /// device that has its own certificates).
        #[arg(long)]
        allow_known_devices: bool,
        /// Read the password from the first line of stdin instead of generating one. Weak
        /// ones are refused: under 12 characters; under 20 without three of lower-case,
        /// upper-case, digits, other; under 8 different characters; or containing the
        /// account name.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        comment: Comment,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// The fleet: devices by serial number, with what was recorded at provisioning.
    /// Every filter given must match.
    List {
        #[command(flatten)]
        dir: DataDir,
        /// Only devices in this state: manufactured, active, suspended, decommissioned.
        #[arg(long, value_parser = parse_device_status)]
        status: Option<fleetca_store::DeviceStatus>,
        /// Only devices bound to this profile (their first operational enrollment).
        #[arg(long)]
        profile: Option<String>,
        /// Only this model (as recorded by the factory station).
        #[arg(long)]
        model: Option<String>,
        /// Only this batch (as recorded by the factory station).
        #[arg(long)]
        batch: Option<String>,
        /// Only devices provisioned by this factory station.
        #[arg(long)]
        station: Option<String>,
        /// Only serials starting with this text (plain text, no wildcards).
        #[arg(long)]
        serial_prefix: Option<String>,
        /// Continue after this serial (the next page of a list cut at its limit).
        #[arg(long)]
        after: Option<String>,
        /// At most this many rows.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        #[arg(long, value_enum, default_value = "table")]
        format: output::Format,
    },
    /// One device: status, birth issuer, profile, station, model and batch, its certificate
    /// lineage (birth -> operational -> renewals), newest decisions, open escalations.
    Show {
        #[command(flatten)]
        dir: DataDir,
        /// Device serial number.
        serial: String,
        /// table (for people) or json.
        #[arg(long, value_enum, default_value = "table")]
        format: output::Format,
    },
    /// Retire a device: revoke every live certificate and refuse any later enrollment,
    /// re-enrollment or birth re-issue. Irreversible.
    Decommission {
        #[command(flatten)]
        dir: DataDir,
        /// Device serial number.
        serial: String,
        /// RFC 5280 reason for the revocations.
        #[arg(long, default_value = "cessationOfOperation", value_parser = parse_reason)]
        reason: RevocationReason,
        #[command(flatten)]
        comment: Comment,
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Block a device reversibly: its certificates go on hold (certificateHold).
    Suspend {
        #[command(flatten)]
        dir: DataDir,
        /// Device serial number.
        serial: String,
        #[command(flatten)]
        comment: Comment,
    },
    /// Lift a suspension: held certificates become valid again.
    Resume {
        #[command(flatten)]
        dir: DataDir,
        /// Device serial number.
        serial: String,
        #[command(flatten)]
        comment: Comment,
    },
    /// Let a device re-enroll before its profile's re-enrollment window opens (e.g. after
    /// a suspected key compromise), or enroll again with its birth certificate while an
    /// operational certificate is live or after a keyCompromise revocation. Every other
    /// rule and limit still applies.
    ForceReenroll {
        #[command(flatten)]
        dir: DataDir,
        /// Device serial number.
        serial: String,
        /// How long the override lasts.
        #[arg(long = "for", default_value = "7d")]
        window: HumanDuration,
        #[command(flatten)]
        comment: Comment,
    },
    /// Issue a birth certificate centrally (the simplest manufacturing path).
    Birth {
        #[command(flatten)]
        dir: DataDir,
        /// Device serial number.
        #[arg(long)]
        serial: String,
        /// The device's CSR (PEM or DER).
        #[arg(long)]
        csr: PathBuf,
        /// Where to write the certificate (PEM); stdout if omitted.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Re-issue even though the device has a live birth certificate (recorded).
        #[arg(long)]
        reissue: bool,
    },
}

#[derive(Subcommand)]
enum CertCommand {
    /// List certificates, soonest expiry first.
    List {
        #[command(flatten)]
        dir: DataDir,
        /// Only this device's certificates.
        #[arg(long)]
        device: Option<String>,
        /// Only unexpired certificates expiring within this time (e.g. 30d).
        #[arg(long)]
        expiring_within: Option<HumanDuration>,
        /// At most this many rows.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        #[arg(long, value_enum, default_value = "table")]
        format: output::Format,
    },
    /// Revoke one certificate (serial in hex, colons allowed).
    Revoke {
        #[command(flatten)]
        dir: DataDir,
        serial: String,
        /// RFC 5280 reason: keyCompromise, superseded, cessationOfOperation,
        /// affiliationChanged, privilegeWithdrawn, cACompromise, aACompromise, unspecified,
        /// or certificateHold (reversible only through `device resume`). keyCompromise asks
        /// for confirmation (or --yes).
        #[arg(long, value_parser = parse_reason)]
        reason: RevocationReason,
        #[command(flatten)]
        comment: Comment,
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Show one certificate (serial in hex, colons allowed) with its PEM.
    Show {
        #[command(flatten)]
        dir: DataDir,
        serial: String,
    },
}

#[derive(Subcommand)]
enum TrustCommand {
    /// Import a manufacturer's CA certificate: birth certificates it issued may enroll.
    AddManufacturer {
        #[command(flatten)]
        dir: DataDir,
        /// Name for the CA (letters, digits, '-', '_').
        name: String,
        /// The CA certificate (PEM).
        certificate: PathBuf,
        /// Regular expression the whole serial of its birth certificates must match: the
        /// manufacturer vouches only for its own devices (without it: any serial, still
        /// never a device born under another CA).
        #[arg(long)]
        serial_pattern: Option<String>,
        #[command(flatten)]
        comment: Comment,
    },
}

#[derive(Subcommand)]
enum FactoryCommand {
    /// Register a station and write its credential (key + certificate chain, PEM).
    AddStation {
        #[command(flatten)]
        dir: DataDir,
        /// Station name (its credential's CN).
        name: String,
        /// Regular expression the whole device serial must match (anchored at both ends).
        #[arg(long)]
        serial_pattern: String,
        /// Inclusive range PREFIX<number>..PREFIX<number> with one prefix, compared as
        /// numbers (SN-99 < SN-100); a serial of another shape (SN-100x) is outside it.
        #[arg(long)]
        serial_range: Option<String>,
        /// Most birth certificates the station may obtain.
        #[arg(long)]
        quota: Option<u64>,
        /// Validity of the station credential, in days.
        #[arg(long, default_value_t = 365)]
        valid_days: u32,
        /// Allow the station to re-issue a birth certificate (with the fleetca-reissue header).
        #[arg(long)]
        allow_reissue: bool,
        /// Directory for NAME.key and NAME.pem.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Also write NAME.p12 (key and chain), encrypted with the passphrase on the first
        /// line of this file.
        #[arg(long)]
        p12_passphrase_file: Option<PathBuf>,
        #[command(flatten)]
        comment: Comment,
    },
    /// Stations with issued counts and remaining quota.
    List {
        #[command(flatten)]
        dir: DataDir,
    },
    /// Refuse a station's requests until resumed (effective at once).
    Suspend {
        #[command(flatten)]
        dir: DataDir,
        name: String,
        #[command(flatten)]
        comment: Comment,
    },
    /// Accept a suspended station's requests again.
    Resume {
        #[command(flatten)]
        dir: DataDir,
        name: String,
        #[command(flatten)]
        comment: Comment,
    },
    /// Retire a station for good (asks for confirmation, or --yes).
    Remove {
        #[command(flatten)]
        dir: DataDir,
        name: String,
        #[command(flatten)]
        comment: Comment,
        #[command(flatten)]
        confirm: Confirm,
    },
    /// Set how many birth certificates a station may obtain in all (its issued count is
    /// kept): a number, or `none` for no quota.
    SetQuota {
        #[command(flatten)]
        dir: DataDir,
        name: String,
        #[arg(value_parser = parse_quota)]
        quota: Quota,
        #[command(flatten)]
        comment: Comment,
    },
    /// The station tool: provision devices end to end against a fleetca server.
    Provision(factory_client::ProvisionArgs),
}

#[derive(Subcommand)]
enum CaCommand {
    /// Every generation of every CA with its state (pending, active, retiring, expired),
    /// activation time and validity.
    List {
        #[command(flatten)]
        dir: DataDir,
        #[arg(long, value_enum, default_value = "table")]
        format: output::Format,
    },
    /// Create the next generation of an issuing CA (operational, manufacturing,
    /// registration): a new key (a file next to the current one, or a key in the PKCS#11
    /// token when the current one is there) and a certificate signed by the root. Needs
    /// the root key for this step only. From the activation time the new generation
    /// issues; the older ones stay valid for what they issued.
    Rollover {
        #[command(flatten)]
        dir: DataDir,
        /// The CA: operational, manufacturing or registration.
        ca: String,
        /// When the new generation starts issuing: an RFC 3339 time
        /// (2030-01-31T12:00:00Z), a duration from now (10m, 2d) or `now` (the default).
        #[arg(long)]
        activate_at: Option<String>,
        /// Validity of the new CA certificate (default 20 years and a month, never past
        /// the root's).
        #[arg(long)]
        validity: Option<HumanDuration>,
        #[command(flatten)]
        comment: Comment,
    },
    /// Trust birth certificates issued by a vendor's IDevID CA (same as
    /// `trust add-manufacturer`, named after the file).
    TrustBirthIssuer {
        #[command(flatten)]
        dir: DataDir,
        /// The CA certificate (PEM).
        certificate: PathBuf,
        /// Regular expression the whole serial of its birth certificates must match.
        #[arg(long)]
        serial_pattern: Option<String>,
        #[command(flatten)]
        comment: Comment,
    },
}

#[derive(Subcommand)]
enum RequestCommand {
    /// Pending requests, oldest first (--all: every state).
    List {
        #[command(flatten)]
        dir: DataDir,
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Approve a pending request: the device's next poll gets its certificate.
    Approve {
        #[command(flatten)]
        dir: DataDir,
        id: i64,
        #[command(flatten)]
        comment: Comment,
    },
    /// Reject a pending request: the device's next poll gets 403 with the reason.
    Reject {
        #[command(flatten)]
        dir: DataDir,
        id: i64,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum DecisionCommand {
    /// The newest decisions, oldest first.
    List {
        #[command(flatten)]
        dir: DataDir,
        /// Only this device.
        #[arg(long)]
        device: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only decisions older than this id (the next page of a list cut at its limit).
        #[arg(long)]
        before: Option<i64>,
        /// Show every rule of each decision (table); JSON always has them.
        #[arg(long, short)]
        verbose: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: output::Format,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Evaluate a label's rules for a CSR, as the server would (connectors included),
    /// without writing anything; print rule -> pass/fail/reason. Exit status 1 unless
    /// the request would be issued.
    Test {
        #[command(flatten)]
        dir: DataDir,
        /// EST label (default: the default label).
        #[arg(long)]
        label: Option<String>,
        /// The CSR (PEM or DER).
        #[arg(long)]
        csr: PathBuf,
        /// The TLS client certificate the device would present (birth: simpleenroll;
        /// operational: simplereenroll).
        #[arg(long)]
        client_cert: Option<PathBuf>,
        /// Or the enrollment account it would use.
        #[arg(long)]
        account: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// The newest events, oldest first.
    List {
        #[command(flatten)]
        dir: DataDir,
        /// Only this actor: `cli:USER` (an operator on the command line), `station:NAME`,
        /// `device:SERIAL`, `account:NAME`.
        #[arg(long)]
        actor: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Only events older than this event id (the next page of a list cut at its limit).
        #[arg(long)]
        before: Option<i64>,
        #[arg(long, value_enum, default_value = "table")]
        format: output::Format,
    },
    /// Recompute the hash chain and report the first altered event.
    Verify {
        #[command(flatten)]
        dir: DataDir,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Drive a running server with simulated devices: birth certificates are prepared up
    /// front, then each device does simpleenroll and simplereenroll, one new mutual-TLS
    /// connection per request.
    Enroll(bench::EnrollArgs),
    /// Run N device agents (renewal state machines) in one process against a running
    /// server with short-lived certificates, for a fixed time; report renewals/s,
    /// failures, the worst renewal margin and any expired certificate.
    Fleet(bench_fleet::FleetArgs),
    /// Build a CRL of many entries with a throwaway CA and time it.
    Crl(bench_status::CrlArgs),
    /// Drive a running OCSP responder with GET (or POST) requests, no nonce, for a warm
    /// set of certificates taken from the inventory.
    Ocsp(bench_status::OcspArgs),
    /// Serve a small HTTP JSON CMDB on loopback for the HTTP inventory connector:
    /// GET /devices/{serial} answers {"serial": ..., "status": "active"} (404 for an
    /// unknown prefix); request counts go to stderr.
    Cmdb(bench_cmdb::CmdbArgs),
}

/// A station quota on the command line: a number or `none`.
#[derive(Clone, Copy)]
struct Quota(Option<u64>);

fn parse_quota(s: &str) -> Result<Quota, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(Quota(None));
    }
    s.parse::<u64>()
        .map(|q| Quota(Some(q)))
        .map_err(|_| format!("'{s}' is not a quota: a whole number, or none"))
}

fn parse_device_status(s: &str) -> Result<fleetca_store::DeviceStatus, String> {
    s.parse()
}

fn parse_reason(s: &str) -> Result<RevocationReason, String> {
    s.parse()
}

fn parse_key_algorithm(s: &str) -> Result<KeyAlgorithm, String> {
    s.parse()
}

/// rustls warns (through `log`) about what a peer did in a handshake: an IP address as
/// SNI (common in embedded TLS stacks), an unexpected message, a warning alert. Per
/// connection, with nothing an operator can do, that floods the log at fleet scale; the
/// handshake failures that matter are logged by fleetca itself. So rustls logs errors
/// only, unless the configured level names it (e.g. `info,rustls=debug`).
fn log_directives(level: &str) -> String {
    if level.contains("rustls") {
        level.to_string()
    } else {
        format!("{level},rustls=error")
    }
}

/// Changes the log level of the running process (a configuration reload); set by
/// [`init_logging`].
type LevelReloader = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;
static LOG_LEVEL_RELOAD: std::sync::OnceLock<LevelReloader> = std::sync::OnceLock::new();

/// Sets the log level of the running process, as `log_level` in the configuration says.
pub(crate) fn reload_log_level(level: &str) -> Result<(), String> {
    match LOG_LEVEL_RELOAD.get() {
        Some(reload) => reload(level),
        None => Err("logging is not initialised".into()),
    }
}

fn env_filter(level: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    tracing_subscriber::EnvFilter::try_new(log_directives(level)).map_err(|e| e.to_string())
}

fn init_logging(level: &str, format: config::LogFormat) {
    let filter = env_filter(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_directives("info")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let reloader: LevelReloader = match format {
        config::LogFormat::Json => {
            let builder = builder.json().with_filter_reloading();
            let handle = builder.reload_handle();
            let _ = builder.try_init();
            Box::new(move |level| handle.reload(env_filter(level)?).map_err(|e| e.to_string()))
        }
        config::LogFormat::Text => {
            let builder = builder.with_filter_reloading();
            let handle = builder.reload_handle();
            let _ = builder.try_init();
            Box::new(move |level| handle.reload(env_filter(level)?).map_err(|e| e.to_string()))
        }
    };
    let _ = LOG_LEVEL_RELOAD.set(reloader);
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run(cli: Cli, data_dir_explicit: bool) -> anyhow::Result<()> {
    match cli.command {
        Command::Init {
            dir,
            key_algorithm,
            organization,
            server_names,
            listen,
            status_listen,
            pkcs11,
        } => pki_setup::init(
            &dir.data_dir,
            &pki_setup::InitOptions {
                key_algorithm,
                organization,
                server_names,
                listen,
                status_listen,
                pkcs11: pkcs11.settings()?,
            },
        ),
        Command::Serve {
            dir,
            init,
            listen,
            status_listen,
            metrics_listen,
            admin_listen,
            check_config,
        } => {
            let config_file = pki_setup::config_path(&dir.data_dir);
            let create = pki_setup::serve_may_initialise(
                &dir.data_dir,
                pki_setup::ServeInit {
                    flag: init,
                    explicit: data_dir_explicit,
                    check_config,
                },
            )?;
            if create {
                pki_setup::init(
                    &dir.data_dir,
                    &pki_setup::InitOptions {
                        key_algorithm: KeyAlgorithm::P256,
                        organization: "fleetca".into(),
                        server_names: Vec::new(),
                        listen: listen.map_or_else(|| "127.0.0.1:8443".into(), |l| l.to_string()),
                        status_listen: status_listen
                            .map_or_else(|| "127.0.0.1:8080".into(), |l| l.to_string()),
                        pkcs11: None,
                    },
                )?;
            }
            files::refuse_writable_by_others(&config_file, "configuration")?;
            let config = config::Config::load(&config_file)?;
            init_logging(&config.log_level, config.log_format);
            let rt = runtime()?;
            let _guard = rt.enter();
            let notes = config.notes();
            for note in &notes {
                tracing::warn!(note = %note, "configuration note");
            }
            let prepared = serve::prepare(config)?;
            if check_config {
                for note in &notes {
                    outln!("note: {note}");
                }
                outln!("fleetca: configuration {} is valid", config_file.display());
                return Ok(());
            }
            rt.block_on(serve::run(
                prepared,
                listen,
                status_listen,
                metrics_listen,
                admin_listen,
                &dir.data_dir,
                config_file,
            ))
        }
        Command::Account {
            command:
                AccountCommand::Add {
                    dir,
                    name,
                    label,
                    serial_pattern,
                    any_serial,
                    allow_known_devices,
                    password_stdin,
                    comment,
                },
        } => admin::account_add(
            &dir.data_dir,
            &name,
            label,
            admin::AccountScope {
                serial_pattern,
                any_serial,
                known_devices: allow_known_devices,
            },
            password_stdin,
            comment.comment.as_deref(),
        ),
        Command::Device { command } => match command {
            DeviceCommand::List {
                dir,
                status,
                profile,
                model,
                batch,
                station,
                serial_prefix,
                after,
                limit,
                format,
            } => device_cmd::list(
                &dir.data_dir,
                fleetca_store::DeviceQuery {
                    status,
                    profile,
                    model,
                    batch,
                    station,
                    serial_prefix,
                    after,
                    limit,
                },
                format,
            ),
            DeviceCommand::Show {
                dir,
                serial,
                format,
            } => device_cmd::show(&dir.data_dir, &serial, format),
            DeviceCommand::Birth {
                dir,
                serial,
                csr,
                out,
                reissue,
            } => admin::device_birth(&dir.data_dir, &serial, &csr, out.as_deref(), reissue),
            DeviceCommand::Decommission {
                dir,
                serial,
                reason,
                comment,
                confirm,
            } => admin::device_lifecycle(
                &dir.data_dir,
                &serial,
                admin::DeviceChange::Decommission(reason),
                comment.comment.as_deref(),
                confirm.yes,
            ),
            DeviceCommand::Suspend {
                dir,
                serial,
                comment,
            } => admin::device_lifecycle(
                &dir.data_dir,
                &serial,
                admin::DeviceChange::Suspend,
                comment.comment.as_deref(),
                false,
            ),
            DeviceCommand::Resume {
                dir,
                serial,
                comment,
            } => admin::device_lifecycle(
                &dir.data_dir,
                &serial,
                admin::DeviceChange::Resume,
                comment.comment.as_deref(),
                false,
            ),
            DeviceCommand::ForceReenroll {
                dir,
                serial,
                window,
                comment,
            } => policy_cmd::force_reenroll(
                &dir.data_dir,
                &serial,
                window.to_time(),
                comment.comment.as_deref(),
            ),
        },
        Command::Request { command } => match command {
            RequestCommand::List { dir, all, limit } => {
                policy_cmd::request_list(&dir.data_dir, all, limit)
            }
            RequestCommand::Approve { dir, id, comment } => {
                policy_cmd::request_decide(&dir.data_dir, id, true, comment.comment.as_deref())
            }
            RequestCommand::Reject { dir, id, reason } => {
                policy_cmd::request_decide(&dir.data_dir, id, false, Some(&reason))
            }
        },
        Command::Decision {
            command:
                DecisionCommand::List {
                    dir,
                    device,
                    limit,
                    before,
                    verbose,
                    format,
                },
        } => policy_cmd::decision_list(
            &dir.data_dir,
            device.as_deref(),
            admin::Page { before, limit },
            verbose,
            format,
        ),
        Command::Policy {
            command:
                PolicyCommand::Test {
                    dir,
                    label,
                    csr,
                    client_cert,
                    account,
                },
        } => policy_cmd::policy_test(
            &dir.data_dir,
            label.as_deref(),
            &csr,
            policy_cmd::TestClient {
                certificate: client_cert.as_deref(),
                account: account.as_deref(),
            },
        )
        .and_then(|issued| {
            if issued {
                Ok(())
            } else {
                Err(anyhow::anyhow!("the request would not be issued"))
            }
        }),
        Command::Cert { command } => match command {
            CertCommand::List {
                dir,
                device,
                expiring_within,
                limit,
                format,
            } => admin::cert_list(
                &dir.data_dir,
                admin::CertFilter {
                    device,
                    expiring_within,
                    limit,
                },
                format,
            ),
            CertCommand::Show { dir, serial } => admin::cert_show(&dir.data_dir, &serial),
            CertCommand::Revoke {
                dir,
                serial,
                reason,
                comment,
                confirm,
            } => admin::cert_revoke(
                &dir.data_dir,
                &serial,
                reason,
                comment.comment.as_deref(),
                confirm.yes,
            ),
        },
        Command::Trust {
            command:
                TrustCommand::AddManufacturer {
                    dir,
                    name,
                    certificate,
                    serial_pattern,
                    comment,
                },
        } => admin::trust_add_manufacturer(
            &dir.data_dir,
            &name,
            &certificate,
            serial_pattern.as_deref(),
            comment.comment.as_deref(),
        ),
        Command::Factory { command } => match command {
            FactoryCommand::AddStation {
                dir,
                name,
                serial_pattern,
                serial_range,
                quota,
                valid_days,
                allow_reissue,
                out,
                p12_passphrase_file,
                comment,
            } => factory::add_station(
                &dir.data_dir,
                factory::StationOptions {
                    name,
                    serial_pattern,
                    serial_range,
                    quota,
                    valid_days,
                    allow_reissue,
                    out,
                    p12_passphrase_file,
                    comment: comment.comment,
                },
            ),
            FactoryCommand::List { dir } => factory::list(&dir.data_dir),
            FactoryCommand::Suspend { dir, name, comment } => factory::set_status(
                &dir.data_dir,
                &name,
                fleetca_store::StationStatus::Suspended,
                comment.comment.as_deref(),
                false,
            ),
            FactoryCommand::Resume { dir, name, comment } => factory::set_status(
                &dir.data_dir,
                &name,
                fleetca_store::StationStatus::Active,
                comment.comment.as_deref(),
                false,
            ),
            FactoryCommand::Remove {
                dir,
                name,
                comment,
                confirm,
            } => factory::set_status(
                &dir.data_dir,
                &name,
                fleetca_store::StationStatus::Removed,
                comment.comment.as_deref(),
                confirm.yes,
            ),
            FactoryCommand::SetQuota {
                dir,
                name,
                quota,
                comment,
            } => factory::set_quota(&dir.data_dir, &name, quota.0, comment.comment.as_deref()),
            FactoryCommand::Provision(args) => {
                init_logging("warn", config::LogFormat::Text);
                runtime()?.block_on(factory_client::provision(args))
            }
        },
        Command::Ca {
            command: CaCommand::List { dir, format },
        } => ca_cmd::list(&dir.data_dir, format),
        Command::Ca {
            command:
                CaCommand::Rollover {
                    dir,
                    ca,
                    activate_at,
                    validity,
                    comment,
                },
        } => ca_cmd::rollover(
            &dir.data_dir,
            &ca_cmd::RolloverRequest {
                ca: &ca,
                activate_at: activate_at.as_deref(),
                validity,
                comment: comment.comment.as_deref(),
            },
        ),
        Command::Ca {
            command:
                CaCommand::TrustBirthIssuer {
                    dir,
                    certificate,
                    serial_pattern,
                    comment,
                },
        } => {
            let name = certificate
                .file_stem()
                .map(|s| {
                    s.to_string_lossy().replace(
                        |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_',
                        "-",
                    )
                })
                .unwrap_or_default();
            admin::trust_add_manufacturer(
                &dir.data_dir,
                &name,
                &certificate,
                serial_pattern.as_deref(),
                comment.comment.as_deref(),
            )
        }
        Command::Admin { command } => admin_identity::run(command),
        Command::Cmp { command } => cmp_cmd::run(command),
        Command::Scep { command } => scep_cmd::run(command),
        Command::Audit { command } => match command {
            AuditCommand::List {
                dir,
                actor,
                limit,
                before,
                format,
            } => admin::audit_list(
                &dir.data_dir,
                actor.as_deref(),
                admin::Page { before, limit },
                format,
            ),
            AuditCommand::Verify { dir } => admin::audit_verify(&dir.data_dir),
        },
        Command::Monitor {
            command: MonitorCommand::RunOnce { dir },
        } => monitor_cmd::run_once(&dir.data_dir),
        Command::Report {
            command:
                ReportCommand::Expiring {
                    dir,
                    within,
                    format,
                },
        } => monitor_cmd::report_expiring(&dir.data_dir, within, format),
        Command::Alerts {
            command:
                AlertsCommand::List {
                    dir,
                    all,
                    limit,
                    format,
                },
        } => monitor_cmd::alerts_list(&dir.data_dir, all, limit, format),
        Command::Completions { shell } => manual::completions(Cli::command(), shell),
        Command::Man { out } => manual::man(Cli::command(), out.as_deref()),
        Command::Backup { dir, out } => backup::backup(&dir.data_dir, &out),
        Command::Restore { archive, data_dir } => backup::restore(&archive, &data_dir),
        Command::Bench { command } => {
            init_logging("warn", config::LogFormat::Text);
            match command {
                BenchCommand::Enroll(args) => runtime()?.block_on(bench::enroll(args)),
                BenchCommand::Fleet(args) => runtime()?.block_on(bench_fleet::fleet(args)),
                BenchCommand::Crl(args) => bench_status::crl(args),
                BenchCommand::Ocsp(args) => runtime()?.block_on(bench_status::ocsp(args)),
                BenchCommand::Cmdb(args) => runtime()?.block_on(bench_cmdb::cmdb(args)),
            }
        }
    }
}

/// Whether `serve` was given its data directory explicitly (`--data-dir` or
/// `FLEETCA_DATA_DIR`), not by the default `./fleetca-data`.
fn serve_data_dir_explicit(matches: &clap::ArgMatches) -> bool {
    use clap::parser::ValueSource;
    matches
        .subcommand_matches("serve")
        .and_then(|m| m.value_source("data_dir"))
        .is_some_and(|source| matches!(source, ValueSource::CommandLine | ValueSource::EnvVariable))
}

fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    let explicit = serve_data_dir_explicit(&matches);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli, explicit) {
        Ok(()) => ExitCode::SUCCESS,
        // `fleetca cert list | head -1`: the reader has what it wanted.
        Err(e) if output::is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleetca: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
