//! `fleetca scep challenge create`: a one-time SCEP challenge password for a device
//! serial, through the same operation as `POST /api/v1/devices/{serial}/scep-challenge`
//! (the command line acts as `cli:$USER` with the admin role).

use clap::Subcommand;
use fleetca_admin::Actor;
use fleetca_pki::HumanDuration;

use crate::admin::{load, runtime};
use crate::DataDir;

/// `fleetca scep ...`
#[derive(Subcommand)]
pub enum ScepCommand {
    /// One-time challenge passwords for SCEP PKCSReq.
    Challenge {
        #[command(subcommand)]
        command: ChallengeCommand,
    },
}

/// `fleetca scep challenge ...`
#[derive(Subcommand)]
pub enum ChallengeCommand {
    /// Create a challenge for one device; prints it once on stdout (only its SHA-256 is
    /// stored). The device's first PKCSReq that carries it consumes it.
    Create {
        #[command(flatten)]
        dir: DataDir,
        /// The device serial number the challenge authenticates (the issued certificate's
        /// subject serialNumber).
        #[arg(long)]
        serial: String,
        /// Lifetime (default 24h, at most 30d).
        #[arg(long, default_value = "24h")]
        expires: HumanDuration,
    },
}

/// Runs `fleetca scep ...`.
pub fn run(command: ScepCommand) -> anyhow::Result<()> {
    match command {
        ScepCommand::Challenge {
            command:
                ChallengeCommand::Create {
                    dir,
                    serial,
                    expires,
                },
        } => {
            let (_, store) = load(&dir.data_dir)?;
            let created = runtime()?.block_on(fleetca_admin::create_scep_challenge(
                store.as_ref(),
                &Actor::cli(),
                &serial,
                expires.to_time(),
            ))?;
            outln!("{}", created.secret.expose());
            eprintln!(
                "fleetca: SCEP challenge for device {serial} created, valid once until {}; it is shown only now",
                crate::admin::rfc3339(created.expires_at)
            );
        }
    }
    Ok(())
}
