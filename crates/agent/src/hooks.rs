//! What runs after a successful renewal: a command (no shell) with a timeout, and a signal
//! to the process named by a PID file.

use std::process::Stdio;

use rustix::process::{kill_process, Pid, Signal};

use crate::config::{HookSignal, HooksConfig};
use crate::AgentError;

/// Facts about the new certificate, passed to the command as environment variables
/// `FLEETCA_AGENT_KEY`, `FLEETCA_AGENT_CERTIFICATE`, `FLEETCA_AGENT_SERIAL` (hex) and
/// `FLEETCA_AGENT_NOT_AFTER` (RFC 3339).
#[derive(Debug, Clone)]
pub struct HookEnv {
    /// The key file.
    pub key: String,
    /// The certificate file.
    pub certificate: String,
    /// The certificate serial, hex.
    pub serial: String,
    /// The end of validity, RFC 3339.
    pub not_after: String,
}

/// Runs the configured hooks. The command runs first, then the signal is sent; both are
/// attempted, and the first failure is returned.
pub async fn run_hooks(config: &HooksConfig, env: &HookEnv) -> Result<(), AgentError> {
    let mut result = Ok(());
    if let Some((program, args)) = config.command.split_first() {
        result = run_command(program, args, config, env).await;
    }
    if let Some(pid_file) = &config.pid_file {
        let signalled = signal_pid_file(pid_file, config.signal);
        if result.is_ok() {
            result = signalled;
        }
    }
    result
}

async fn run_command(
    program: &str,
    args: &[String],
    config: &HooksConfig,
    env: &HookEnv,
) -> Result<(), AgentError> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("FLEETCA_AGENT_KEY", &env.key)
        .env("FLEETCA_AGENT_CERTIFICATE", &env.certificate)
        .env("FLEETCA_AGENT_SERIAL", &env.serial)
        .env("FLEETCA_AGENT_NOT_AFTER", &env.not_after)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| AgentError::Hook(format!("cannot run {program}: {e}")))?;
    match tokio::time::timeout(config.timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(AgentError::Hook(format!("{program} exited with {status}"))),
        Ok(Err(e)) => Err(AgentError::Hook(format!("{program}: {e}"))),
        Err(_) => {
            let _ = child.kill().await;
            Err(AgentError::Hook(format!(
                "{program} did not finish within {} s and was killed",
                config.timeout.as_secs()
            )))
        }
    }
}

fn signal_pid_file(path: &std::path::Path, signal: HookSignal) -> Result<(), AgentError> {
    let text = std::fs::read_to_string(path).map_err(|e| AgentError::io(path, e))?;
    let pid = text
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 1)
        .and_then(Pid::from_raw)
        .ok_or_else(|| {
            AgentError::Hook(format!("{} does not hold a process id", path.display()))
        })?;
    let sig = match signal {
        HookSignal::Hup => Signal::HUP,
        HookSignal::Usr1 => Signal::USR1,
        HookSignal::Usr2 => Signal::USR2,
        HookSignal::Term => Signal::TERM,
    };
    kill_process(pid, sig).map_err(|e| {
        AgentError::Hook(format!(
            "cannot signal process {} from {}: {e}",
            pid.as_raw_nonzero(),
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]

    use std::time::Duration;

    use super::*;

    fn env() -> HookEnv {
        HookEnv {
            key: "/k".into(),
            certificate: "/c".into(),
            serial: "0a".into(),
            not_after: "2030-01-01T00:00:00Z".into(),
        }
    }

    fn hooks(command: &[&str], timeout: u64) -> HooksConfig {
        HooksConfig {
            command: command.iter().map(|s| s.to_string()).collect(),
            pid_file: None,
            signal: HookSignal::Hup,
            timeout: Duration::from_secs(timeout),
        }
    }

    #[tokio::test]
    async fn the_command_gets_the_certificate_facts() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = format!(
            "echo \"$FLEETCA_AGENT_SERIAL $FLEETCA_AGENT_CERTIFICATE\" > {}",
            out.display()
        );
        run_hooks(&hooks(&["sh", "-c", &script], 10), &env())
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(out).unwrap(), "0a /c\n");
    }

    #[tokio::test]
    async fn failing_and_hanging_commands_are_errors() {
        let err = run_hooks(&hooks(&["false"], 10), &env()).await.unwrap_err();
        assert!(err.to_string().contains("exited"), "{err}");
        let started = std::time::Instant::now();
        let err = run_hooks(&hooks(&["sleep", "30"], 1), &env())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("killed"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let err = run_hooks(&hooks(&["/nonexistent/program"], 1), &env())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cannot run"), "{err}");
    }

    /// Whether this process ignores SIGHUP (started under `nohup`): a shell it starts
    /// inherits that, and POSIX shells cannot trap a signal ignored on entry, so the test's
    /// shell could not record the signal the hook sends.
    fn sighup_ignored() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("SigIgn:"))
                    .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            })
            .is_some_and(|mask| mask & 1 != 0) // bit 0: signal 1, SIGHUP
    }

    #[tokio::test]
    async fn a_pid_file_process_gets_the_signal() {
        if sighup_ignored() {
            eprintln!(
                "skipped: this process ignores SIGHUP (nohup?), so no shell it starts can trap it"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("got-hup");
        // A shell that records SIGHUP, then exits.
        let script = format!(
            "trap 'echo hup > {}; exit 0' HUP; i=0; while [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done",
            marker.display()
        );
        let mut child = std::process::Command::new("sh")
            .args(["-c", &script])
            .spawn()
            .unwrap();
        let pid_file = dir.path().join("app.pid");
        std::fs::write(&pid_file, format!("{}\n", child.id())).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let mut config = hooks(&[], 5);
        config.pid_file = Some(pid_file.clone());
        run_hooks(&config, &env()).await.unwrap();
        let status = child.wait().unwrap();
        assert!(status.success());
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "hup\n");
        std::fs::write(&pid_file, "not a pid").unwrap();
        assert!(run_hooks(&config, &env()).await.is_err());
    }
}
