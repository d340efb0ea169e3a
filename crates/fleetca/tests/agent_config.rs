//! How `fleetca-agent` reads its configuration (issue 15, item 12): relative paths in
//! agent.toml are relative to the file, not to the directory the agent is started from,
//! and `--config` is accepted after the command as well as before it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{agent_bin, birth, Server};

/// A device directory holding an agent.toml whose paths are all relative to it.
fn device_dir(server: &Server, serial: &str) -> std::path::PathBuf {
    let (key, cert) = birth(server, serial);
    let dir = server.work(&format!("{serial}-device"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(key, dir.join("birth.key")).unwrap();
    std::fs::copy(cert, dir.join("birth.pem")).unwrap();
    std::fs::copy(server.root(), dir.join("root-ca.pem")).unwrap();
    std::fs::write(
        dir.join("agent.toml"),
        format!(
            r#"[server]
url = "https://{addr}/.well-known/est"
trust_anchor = "root-ca.pem"
timeout = "10s"

[identity]
birth_key = "birth.key"
birth_certificate = "birth.pem"
key = "state/device.key"
certificate = "state/device.pem"
"#,
            addr = server.addr
        ),
    )
    .unwrap();
    dir
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the agent from `cwd` with `args`.
fn agent(cwd: &Path, args: &[&str]) -> Output {
    Command::new(agent_bin())
        .current_dir(cwd)
        .env_remove("FLEETCA_AGENT_CONFIG")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn relative_paths_in_agent_toml_are_relative_to_the_file_not_the_working_directory() {
    require_tools!("openssl");
    let server = Server::start();
    let dir = device_dir(&server, "agent-relpath-0001");
    let elsewhere = tempfile::tempdir().unwrap();
    let config = dir.join("agent.toml");

    // Started from another directory, with the configuration named by its full path: the
    // agent finds root-ca.pem and the birth files next to agent.toml and writes its state
    // there (it used to look for them in the working directory and exit 2).
    let out = agent(
        elsewhere.path(),
        &["--config", config.to_str().unwrap(), "once"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("renewed"), "{}", stderr(&out));
    assert!(dir.join("state/device.pem").exists());
    assert!(dir.join("state/device.key").exists());
    assert!(
        std::fs::read_dir(elsewhere.path())
            .unwrap()
            .next()
            .is_none(),
        "nothing is written to the working directory"
    );

    // A relative --config is relative to the working directory; the paths inside it are
    // still relative to the file.
    let parent = dir.parent().unwrap();
    let relative = format!("{}/agent.toml", dir.file_name().unwrap().to_str().unwrap());
    let out = agent(parent, &["status", "--config", &relative]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json = String::from_utf8(out.stdout).unwrap();
    assert!(json.contains("\"state\": \"valid\""), "{json}");
    assert!(json.contains("agent-relpath-0001"), "{json}");
}

#[test]
fn config_is_accepted_after_the_command_as_well_as_before_it() {
    require_tools!("openssl");
    let server = Server::start();
    let dir = device_dir(&server, "agent-global-0001");
    let config = dir.join("agent.toml");
    let config = config.to_str().unwrap();

    // After the command (clap refused it with "unexpected argument '--config'").
    let out = agent(&dir, &["once", "--config", config, "--log", "warn"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("renewed"), "{}", stderr(&out));
    // Before it, as always; and the short form after it.
    let out = agent(&dir, &["--config", config, "once"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing due"), "{}", stderr(&out));
    let out = agent(&dir, &["status", "-c", config]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("agent-global-0001"));
}
