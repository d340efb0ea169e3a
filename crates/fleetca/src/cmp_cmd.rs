//! `fleetca cmp secret create`: a one-time shared secret for a device's first CMP
//! enrollment (MAC-protected `ir`), through the operations layer (role check, audit).

use clap::Subcommand;
use fleetca_admin::Actor;
use fleetca_pki::HumanDuration;

use crate::admin::{load, runtime};
use crate::DataDir;

/// `fleetca cmp ...`
#[derive(Subcommand)]
pub enum CmpCommand {
    /// One-time shared secrets for MAC-protected `ir` (README, "CMP").
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
}

/// `fleetca cmp secret ...`
#[derive(Subcommand)]
pub enum SecretCommand {
    /// Creates a secret for one device's first enrollment; prints the reference (the
    /// client's senderKID, `openssl cmp -ref`) and the secret (`-secret pass:...`) once.
    /// Only a hash of the secret is stored; it is consumed by its first use.
    Create {
        #[command(flatten)]
        dir: DataDir,
        /// The device's serial number (the subject serialNumber it must request).
        #[arg(long)]
        serial: String,
        /// Lifetime (default: `[cmp] secret_lifetime`, 24h).
        #[arg(long)]
        expires: Option<HumanDuration>,
    },
}

/// Runs `fleetca cmp ...`.
pub fn run(command: CmpCommand) -> anyhow::Result<()> {
    match command {
        CmpCommand::Secret {
            command:
                SecretCommand::Create {
                    dir,
                    serial,
                    expires,
                },
        } => {
            let (config, store) = load(&dir.data_dir)?;
            let key = crate::cmp_setup::secret_key(&config)?;
            let expires = expires.map_or(config.cmp.secret_lifetime, HumanDuration::to_time);
            let reference = fleetca_cmp::new_reference()?;
            let device = serial.clone();
            let derive = move |reference: &str| key.secret(reference, &device);
            let created = runtime()?.block_on(fleetca_admin::create_cmp_secret(
                store.as_ref(),
                &Actor::cli(),
                &serial,
                expires,
                reference,
                &derive,
            ))?;
            outln!("reference {}", created.reference);
            outln!("secret {}", created.secret);
            eprintln!(
                "fleetca: CMP secret for device {} created, valid until {} for one enrollment; it is shown only now",
                created.device_serial,
                crate::admin::rfc3339(created.expires_at)
            );
            Ok(())
        }
    }
}
