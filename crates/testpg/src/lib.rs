//! Test support (dev-dependency only): a PostgreSQL database per test.
//!
//! [`database_url`] returns the URL of a fresh, empty database (`t_<pid>_<n>`):
//!
//! - if `FLEETCA_TEST_DATABASE_URL` is set, on that server (the URL names any database the
//!   user may connect to and must be allowed to `CREATE DATABASE`; test databases are left
//!   behind there);
//! - otherwise on one throwaway cluster per test process, created with the installed
//!   `initdb` and `pg_ctl` (`/usr/lib/postgresql/<newest>/bin`, or `FLEETCA_PG_BIN`) in a
//!   temporary directory, listening on a free 127.0.0.1 port only. As root (initdb refuses
//!   root) the cluster runs as the `postgres` user through `runuser`. A small watcher
//!   process stops the cluster and deletes its directory when the test process ends,
//!   however it ends.
//!
//! The throwaway cluster also accepts TLS, with a server certificate for `127.0.0.1` and
//! `localhost` from a CA made at start-up: [`tls_ca_pem`] returns that CA (with
//! `FLEETCA_TEST_DATABASE_URL`, the PEM file named by `FLEETCA_TEST_DATABASE_CA`).
//!
//! Nothing is skipped: when PostgreSQL cannot be started the error says why, and tests
//! fail with it (`.ci/run` installs the `postgresql` package).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The test server: an admin URL and a way to make URLs for other databases on it.
#[derive(Debug, Clone)]
struct Server {
    /// URL of the database to connect to for `CREATE DATABASE`.
    admin_url: String,
    /// The admin URL up to (excluding) its database name.
    prefix: String,
    /// Its query string (with `?`), if any.
    query: String,
    /// The CA certificate (PEM) its TLS server certificate chains to, if known.
    ca_pem: Option<String>,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static NEXT: AtomicU64 = AtomicU64::new(0);

/// The URL of a new, empty database for one test. Starts the process's throwaway cluster
/// on first use (a few seconds).
pub fn database_url() -> Result<String, String> {
    let server = SERVER.get_or_init(server).clone()?;
    let name = format!(
        "t_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let admin = server.admin_url.clone();
    let sql = format!("CREATE DATABASE {name}");
    // Own thread and runtime: callers may be inside a runtime (tokio tests) or not.
    std::thread::spawn(move || -> Result<(), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("cannot connect to the test PostgreSQL server: {e}"))?;
            let conn = tokio::spawn(connection);
            let created = client
                .batch_execute(&sql)
                .await
                .map_err(|e| format!("{sql}: {e}"));
            drop(client);
            let _ = conn.await;
            created
        })
    })
    .join()
    .map_err(|_| "the database-creating thread panicked".to_string())??;
    Ok(format!("{}{name}{}", server.prefix, server.query))
}

/// The CA certificate (PEM) that the test server's TLS certificate chains to.
pub fn tls_ca_pem() -> Result<String, String> {
    SERVER.get_or_init(server).clone()?.ca_pem.ok_or_else(|| {
        "FLEETCA_TEST_DATABASE_URL is set: name the CA of its TLS certificate (PEM) in \
         FLEETCA_TEST_DATABASE_CA"
            .to_string()
    })
}

fn server() -> Result<Server, String> {
    if let Ok(url) = std::env::var("FLEETCA_TEST_DATABASE_URL") {
        let mut server = from_url(&url)?;
        if let Some(path) = std::env::var_os("FLEETCA_TEST_DATABASE_CA") {
            server.ca_pem = Some(
                std::fs::read_to_string(&path)
                    .map_err(|e| format!("FLEETCA_TEST_DATABASE_CA: {e}"))?,
            );
        }
        return Ok(server);
    }
    start_cluster()
}

/// A CA and a server certificate for 127.0.0.1 and localhost: (CA, certificate, key) PEM.
fn tls_material() -> Result<(String, String, String), String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let e = |e: rcgen::Error| format!("test TLS certificate: {e}");
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "fleetca test PostgreSQL CA");
    let ca_cert = ca.self_signed(&ca_key).map_err(e)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().map_err(e)?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .map_err(e)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "fleetca test PostgreSQL");
    let cert = params.signed_by(&key, &issuer).map_err(e)?;
    Ok((ca_cert.pem(), cert.pem(), key.serialize_pem()))
}

/// Splits `postgres://user@host:port/db?params` around its database name.
fn from_url(url: &str) -> Result<Server, String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let rest = base
        .strip_prefix("postgres://")
        .or_else(|| base.strip_prefix("postgresql://"))
        .ok_or("FLEETCA_TEST_DATABASE_URL must be a postgres:// URL")?;
    let prefix = match rest.find('/') {
        Some(slash) => base
            .get(..base.len() - rest.len() + slash + 1)
            .unwrap_or(base)
            .to_string(),
        None => format!("{base}/"),
    };
    Ok(Server {
        admin_url: url.to_string(),
        prefix,
        query,
        ca_pem: None,
    })
}

/// The newest installed PostgreSQL's `bin` directory.
fn pg_bin() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("FLEETCA_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("/usr/lib/postgresql: {e}"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| "no /usr/lib/postgresql/*/bin/initdb".to_string())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A command run as the cluster's owner.
fn as_owner(root: bool, program: &Path) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn start_cluster() -> Result<Server, String> {
    let why = |e: String| {
        format!(
            "cannot start a throwaway PostgreSQL for the tests ({e}); install the `postgresql` \
             package (see .ci/run) or set FLEETCA_TEST_DATABASE_URL"
        )
    };
    start_cluster_inner().map_err(why)
}

fn start_cluster_inner() -> Result<Server, String> {
    let bin = pg_bin()?;
    let root = is_root();
    let dir = std::env::temp_dir().join(format!(
        "fleetca-testpg-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if root {
        let mut chown = Command::new("chown");
        chown.arg("postgres:postgres").arg(&dir);
        run(chown, "chown postgres")?;
    }
    let data = dir.join("data");
    let mut initdb = as_owner(root, &bin.join("initdb"));
    initdb
        .args([
            "--auth=trust",
            "--username=postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ])
        .arg("-D")
        .arg(&data);
    run(initdb, "initdb")?;

    // TLS: the server's certificate and key, readable by the cluster's owner only.
    let (ca_pem, cert_pem, key_pem) = tls_material()?;
    let (cert_file, key_file) = (dir.join("server.crt"), dir.join("server.key"));
    for (file, pem) in [(&cert_file, &cert_pem), (&key_file, &key_pem)] {
        std::fs::write(file, pem).map_err(|e| format!("{}: {e}", file.display()))?;
        let mut chmod = Command::new("chmod");
        chmod.arg("0600").arg(file);
        run(chmod, "chmod 0600")?;
        if root {
            let mut chown = Command::new("chown");
            chown.arg("postgres:postgres").arg(file);
            run(chown, "chown postgres")?;
        }
    }

    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    // Small and fast: tests need no crash safety (benchmarks use a real server).
    let options = format!(
        "-p {port} -h 127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c max_connections=300 -c shared_buffers=32MB \
         -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
        dir.display(),
        cert_file.display(),
        key_file.display()
    );
    let mut start = as_owner(root, &bin.join("pg_ctl"));
    start
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("log"))
        .args(["-w", "-t", "60", "-o", &options, "start"]);
    run(start, "pg_ctl start")?;

    // Stops the cluster and removes it once this process is gone, whatever way it ends.
    let pg_ctl = bin.join("pg_ctl");
    let stop = if root {
        format!(
            "runuser -u postgres -- {} -D {} -m immediate stop",
            pg_ctl.display(),
            data.display()
        )
    } else {
        format!(
            "{} -D {} -m immediate stop",
            pg_ctl.display(),
            data.display()
        )
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        dir = dir.display()
    );
    Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the cluster's watcher: {e}"))?;

    Ok(Server {
        admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        prefix: format!("postgres://postgres@127.0.0.1:{port}/"),
        query: String::new(),
        ca_pem: Some(ca_pem),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split_around_the_database_name() {
        let s = from_url("postgres://u:p@h:5/db?sslmode=disable").unwrap();
        assert_eq!(s.prefix, "postgres://u:p@h:5/");
        assert_eq!(s.query, "?sslmode=disable");
        let s = from_url("postgresql://h").unwrap();
        assert_eq!(s.prefix, "postgresql://h/");
        assert!(from_url("mysql://h").is_err());
    }

    #[test]
    fn each_call_makes_a_new_database() {
        let a = database_url().unwrap();
        let b = database_url().unwrap();
        assert_ne!(a, b);
    }
}
