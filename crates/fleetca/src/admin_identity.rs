//! `fleetca admin token|user`: API tokens and operator users of the admin API, offline on
//! the data directory, through the same operations as `POST /api/v1/tokens` and
//! `/api/v1/users` (the command line acts as `cli:$USER` with the admin role).

use std::io::BufRead;

use anyhow::{bail, Context};
use clap::Subcommand;
use fleetca_admin::{Actor, Role};
use fleetca_pki::HumanDuration;

use crate::admin::{load, runtime};
use crate::DataDir;

fn role(s: &str) -> Result<Role, String> {
    s.parse::<Role>().map_err(|e| e.to_string())
}

/// `fleetca admin ...`
#[derive(Subcommand)]
pub enum AdminCommand {
    /// API tokens for automation (Authorization: Bearer fca_...).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Operator users (people: they log in to the admin API and the console).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

/// `fleetca admin token ...`
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token; prints its secret once on stdout (only its SHA-256 is stored).
    Create {
        #[command(flatten)]
        dir: DataDir,
        /// Token name (`token:NAME` in the audit trail; never reused).
        name: String,
        /// viewer, auditor, operator or admin.
        #[arg(long, value_parser = role)]
        role: Role,
        /// Lifetime (e.g. 90d); without it the token lasts until revoked.
        #[arg(long)]
        expires: Option<HumanDuration>,
    },
    /// Every token with its role, state and last use (never the secrets).
    List {
        #[command(flatten)]
        dir: DataDir,
    },
    /// Revoke a token: it authenticates nothing from now on.
    Revoke {
        #[command(flatten)]
        dir: DataDir,
        /// Token name.
        name: String,
    },
}

/// `fleetca admin user ...`
#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user; prints a generated password (or reads one line from stdin).
    Add {
        #[command(flatten)]
        dir: DataDir,
        /// Login name.
        name: String,
        /// viewer, auditor, operator or admin.
        #[arg(long, value_parser = role)]
        role: Role,
        /// Read the password from the first line of stdin instead of generating one
        /// (at least 12 characters; under 20 it needs three of lower-case, upper-case,
        /// digits, other characters).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Every user with role, state and last login.
    List {
        #[command(flatten)]
        dir: DataDir,
    },
    /// Disable a user (their sessions end).
    Disable {
        #[command(flatten)]
        dir: DataDir,
        /// Login name.
        name: String,
    },
    /// Enable a disabled user.
    Enable {
        #[command(flatten)]
        dir: DataDir,
        /// Login name.
        name: String,
    },
    /// Change a user's role (their sessions end).
    SetRole {
        #[command(flatten)]
        dir: DataDir,
        /// Login name.
        name: String,
        /// The new role.
        #[arg(value_parser = role)]
        role: Role,
    },
    /// Replace a user's password (their sessions end); generated unless --password-stdin.
    SetPassword {
        #[command(flatten)]
        dir: DataDir,
        /// Login name.
        name: String,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user and their sessions (the audit trail keeps what they did).
    Remove {
        #[command(flatten)]
        dir: DataDir,
        /// Login name.
        name: String,
    },
}

/// A password from stdin, or a generated one (then printed).
fn password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        let p = line.trim_end_matches(['\r', '\n']).to_string();
        if p.is_empty() {
            bail!("no password on stdin");
        }
        Ok((p, false))
    } else {
        let mut bytes = [0u8; 18];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
        Ok((
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes),
            true,
        ))
    }
}

fn or_dash(v: Option<&str>) -> &str {
    v.unwrap_or("-")
}

/// Runs `fleetca admin ...`.
pub fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Token { command } => token(command),
        AdminCommand::User { command } => user(command),
    }
}

fn token(command: TokenCommand) -> anyhow::Result<()> {
    let actor = Actor::cli();
    match command {
        TokenCommand::Create {
            dir,
            name,
            role,
            expires,
        } => {
            let (_, store) = load(&dir.data_dir)?;
            let created = runtime()?.block_on(fleetca_admin::create_token(
                store.as_ref(),
                &actor,
                &name,
                role,
                expires.map(HumanDuration::to_time),
            ))?;
            outln!("{}", created.secret.expose());
            eprintln!(
                "fleetca: token '{name}' ({role}) created, {}; it is shown only now: store it in a secret manager",
                created
                    .expires_at
                    .map_or_else(|| "valid until revoked".to_string(), |t| format!("valid until {}", crate::admin::rfc3339(t)))
            );
        }
        TokenCommand::List { dir } => {
            let (_, store) = load(&dir.data_dir)?;
            let tokens = runtime()?.block_on(fleetca_admin::list_tokens(store.as_ref(), &actor))?;
            outln!(
                "{:<24}  {:<8}  {:<7}  {:<20}  {:<20}  LAST USED",
                "TOKEN",
                "ROLE",
                "STATE",
                "CREATED",
                "EXPIRES"
            );
            for t in &tokens {
                outln!(
                    "{:<24}  {:<8}  {:<7}  {:<20}  {:<20}  {}",
                    t.name,
                    t.role,
                    t.state,
                    t.created_at,
                    or_dash(t.expires_at.as_deref()),
                    or_dash(t.last_used_at.as_deref())
                );
            }
            eprintln!("{} token(s)", tokens.len());
        }
        TokenCommand::Revoke { dir, name } => {
            let (_, store) = load(&dir.data_dir)?;
            runtime()?.block_on(fleetca_admin::revoke_token(store.as_ref(), &actor, &name))?;
            eprintln!("fleetca: token '{name}' revoked");
        }
    }
    Ok(())
}

fn user(command: UserCommand) -> anyhow::Result<()> {
    let actor = Actor::cli();
    let on = |dir: &DataDir| -> anyhow::Result<_> { Ok((load(&dir.data_dir)?.1, runtime()?)) };
    match command {
        UserCommand::Add {
            dir,
            name,
            role,
            password_stdin,
        } => {
            let (store, rt) = on(&dir)?;
            let (password, generated) = password(password_stdin)?;
            rt.block_on(fleetca_admin::add_user(
                store.as_ref(),
                &actor,
                &name,
                role,
                password.clone(),
            ))?;
            if generated {
                outln!("{password}");
                eprintln!(
                    "fleetca: user '{name}' ({role}) added; the password above is shown only now"
                );
            } else {
                eprintln!("fleetca: user '{name}' ({role}) added");
            }
        }
        UserCommand::List { dir } => {
            let (store, rt) = on(&dir)?;
            let users = rt.block_on(fleetca_admin::list_users(store.as_ref(), &actor))?;
            outln!(
                "{:<24}  {:<8}  {:<8}  {:<20}  LAST LOGIN",
                "USER",
                "ROLE",
                "STATE",
                "CREATED"
            );
            for u in &users {
                outln!(
                    "{:<24}  {:<8}  {:<8}  {:<20}  {}",
                    u.name,
                    u.role,
                    if u.enabled { "enabled" } else { "disabled" },
                    u.created_at,
                    or_dash(u.last_login_at.as_deref())
                );
            }
            eprintln!("{} user(s)", users.len());
        }
        UserCommand::Disable { dir, name } => {
            let (store, rt) = on(&dir)?;
            rt.block_on(fleetca_admin::set_user_enabled(
                store.as_ref(),
                &actor,
                &name,
                false,
                None,
            ))?;
            eprintln!("fleetca: user '{name}' disabled; their sessions ended");
        }
        UserCommand::Enable { dir, name } => {
            let (store, rt) = on(&dir)?;
            rt.block_on(fleetca_admin::set_user_enabled(
                store.as_ref(),
                &actor,
                &name,
                true,
                None,
            ))?;
            eprintln!("fleetca: user '{name}' enabled");
        }
        UserCommand::SetRole { dir, name, role } => {
            let (store, rt) = on(&dir)?;
            rt.block_on(fleetca_admin::set_user_role(
                store.as_ref(),
                &actor,
                &name,
                role,
            ))?;
            eprintln!("fleetca: user '{name}' is now {role}; their sessions ended");
        }
        UserCommand::SetPassword {
            dir,
            name,
            password_stdin,
        } => {
            let (store, rt) = on(&dir)?;
            let (password, generated) = password(password_stdin)?;
            rt.block_on(fleetca_admin::set_user_password(
                store.as_ref(),
                &actor,
                &name,
                password.clone(),
            ))?;
            if generated {
                outln!("{password}");
            }
            eprintln!("fleetca: password of '{name}' replaced; their sessions ended");
        }
        UserCommand::Remove { dir, name } => {
            let (store, rt) = on(&dir)?;
            rt.block_on(fleetca_admin::remove_user(store.as_ref(), &actor, &name))?;
            eprintln!("fleetca: user '{name}' removed");
        }
    }
    Ok(())
}
