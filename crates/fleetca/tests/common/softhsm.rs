//! A SoftHSM2 token for tests whose CA keys live in PKCS#11 (`hsm.rs`, `ca_rollover.rs`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::{fleetca_bin, run, run_ok};

pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const TOKEN: &str = "fleetca";
pub const PIN: &str = "71-secret-pin";

/// A SoftHSM2 token directory with one initialised token, and a PIN file.
pub struct SoftHsm {
    pub conf: PathBuf,
    pub pin_file: PathBuf,
}

impl SoftHsm {
    /// `None` when SoftHSM2 is not installed (a failure under CI=true: `.ci/run` installs it).
    pub fn new(dir: &Path) -> Option<Self> {
        if !Path::new(MODULE).exists() || !have_softhsm2_util() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("SoftHSM2 ({MODULE}, softhsm2-util) is required in CI (.ci/run installs softhsm2)");
            }
            eprintln!("SKIPPED: SoftHSM2 is not installed (apt-get install softhsm2)");
            return None;
        }
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        run_ok(
            Command::new("softhsm2-util")
                .env("SOFTHSM2_CONF", &conf)
                .args(["--init-token", "--free", "--label", TOKEN])
                .args(["--pin", PIN, "--so-pin", "12345678"]),
        );
        let pin_file = dir.join("pin");
        write_private(&pin_file, &format!("{PIN}\n"));
        Some(Self { conf, pin_file })
    }

    pub fn env(&self) -> Vec<(String, PathBuf)> {
        vec![("SOFTHSM2_CONF".to_string(), self.conf.clone())]
    }
}

fn have_softhsm2_util() -> bool {
    Command::new("softhsm2-util")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// `fleetca init` of `DIR/data` with every CA key in the token.
pub fn init_in_token(dir: &Path, hsm: &SoftHsm) -> Output {
    run(Command::new(fleetca_bin())
        .args(["init", "--organization", "Test Fleet", "--data-dir"])
        .arg(dir.join("data"))
        .args([
            "--pkcs11-module",
            MODULE,
            "--pkcs11-token",
            TOKEN,
            "--pin-file",
        ])
        .arg(&hsm.pin_file)
        .envs(hsm.env()))
}
