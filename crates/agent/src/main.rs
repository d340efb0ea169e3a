//! `fleetca-agent`: the device agent daemon and its one-shot and status commands.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use fleetca_agent::status::{report, StatusRecord};
use fleetca_agent::{renewal_schedule, Agent, Config, Identity, IdentityStore};
use fleetca_pki::{Clock, SystemClock};

/// Exit codes (also in `--help`).
const EXIT_FAILED: u8 = 1;
const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "fleetca-agent",
    version,
    about = "fleetca device agent: enrolls with the birth certificate and renews the operational certificate over EST before it expires.",
    after_help = "Exit codes:\n  0  renewed, or nothing was due (once); stopped cleanly (run); status printed\n  1  the attempt failed (server unavailable, network); the agent retries later\n  2  configuration, file or usage error\n  3  the server refused the request (403 or another client error)\n  4  waiting for approval (202) longer than `once` waits\n  5  no usable certificate: the operational certificate expired and the birth certificate cannot be used\n  6  renewed, but a post-renewal hook failed"
)]
struct Cli {
    /// Configuration file (before or after the command).
    #[arg(
        long,
        short,
        global = true,
        env = "FLEETCA_AGENT_CONFIG",
        default_value = "/etc/fleetca-agent/agent.toml"
    )]
    config: PathBuf,
    /// Log level (error, warn, info, debug, trace, off), also FLEETCA_AGENT_LOG.
    #[arg(long, global = true, env = "FLEETCA_AGENT_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run as a daemon: enroll, renew whenever due, until SIGTERM or SIGINT (which let the
    /// current request and file swap finish). Logs go to stderr.
    Run,
    /// Enroll or renew if due, then exit (for cron or a systemd timer).
    Once {
        /// Ask now even while waiting after a refusal or a failure (once the operator has
        /// fixed the cause, e.g. added the device to the inventory or resumed it).
        #[arg(long)]
        now: bool,
    },
    /// Print the current certificate, its expiry and renewal point, and the last attempt,
    /// as JSON.
    Status,
}

fn init_logging(level: &str) {
    // A level, not an EnvFilter: the filter's regex engine would add a megabyte to a
    // binary meant for small devices.
    let level = level
        .parse::<tracing_subscriber::filter::LevelFilter>()
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

fn status(config: &Config) -> Result<(), fleetca_agent::AgentError> {
    let ids = &config.identity;
    let store = IdentityStore::new(&ids.key, &ids.certificate);
    // Read only: an interrupted swap is repaired by `run`/`once`, not by `status`.
    let current = store.load().unwrap_or(None);
    let birth = Identity::load(&ids.birth_key, &ids.birth_certificate).unwrap_or(None);
    let record = StatusRecord::load(&ids.status_file);
    let schedule = current.as_ref().map(|c| renewal_schedule(config, &c.info));
    let json = report(
        current.as_ref(),
        birth.as_ref(),
        &record,
        schedule,
        SystemClock.now(),
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&json).unwrap_or_default()
    );
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending::<()>().await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fleetca-agent: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if matches!(cli.command, Command::Status) {
        return match status(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fleetca-agent: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fleetca-agent: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let code = rt.block_on(async {
        // Signals are registered before any work, so that SIGTERM during a swap is only
        // noted, and acted on between steps.
        let shutdown = match cli.command {
            Command::Run => Some(tokio::spawn(shutdown_signal())),
            _ => None,
        };
        let mut agent = match Agent::new(config, Arc::new(SystemClock)) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("fleetca-agent: {e}");
                return EXIT_CONFIG;
            }
        };
        if matches!(cli.command, Command::Once { now: true }) {
            agent.retry_now();
        }
        match shutdown {
            Some(signal) => match agent
                .run(async {
                    let _ = signal.await;
                })
                .await
            {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("fleetca-agent: {e}");
                    EXIT_FAILED
                }
            },
            None => match agent.once().await {
                Ok(result) => {
                    eprintln!("fleetca-agent: {}", describe(&result));
                    result.exit_code()
                }
                Err(e) => {
                    eprintln!("fleetca-agent: {e}");
                    EXIT_CONFIG
                }
            },
        }
    });
    ExitCode::from(code)
}

fn describe(result: &fleetca_agent::OnceResult) -> String {
    use fleetca_agent::OnceResult::*;
    match result {
        NothingDue => "nothing due".into(),
        Renewed => "renewed".into(),
        RenewedHookFailed => "renewed, but a post-renewal hook failed".into(),
        Failed(e) => format!("failed: {e}"),
        Denied(e) => format!("refused: {e}"),
        Pending => "waiting for approval".into(),
        Stuck(e) => format!("stuck: {e}"),
    }
}
