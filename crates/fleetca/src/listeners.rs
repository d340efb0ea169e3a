//! Binding the server's listeners, with errors that say which setting to change, and the
//! start-up check that certificates name a status URL that reaches the status listener.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;

/// One of the server's listeners and where its address comes from.
#[derive(Debug, Clone, Copy)]
pub struct ListenerSetting {
    /// What it serves, for people ("EST", "CRL/OCSP status", "metrics").
    pub what: &'static str,
    /// Its setting in fleetca.toml ("[server] listen"), with the environment variable
    /// that overrides it if there is one.
    pub setting: &'static str,
    /// The `fleetca serve` flag that overrides the setting ("--listen").
    pub flag: &'static str,
}

/// The EST (HTTPS) listener.
pub const EST: ListenerSetting = ListenerSetting {
    what: "EST",
    setting: "[server] listen in fleetca.toml (or FLEETCA_LISTEN)",
    flag: "--listen",
};
/// The CRL/OCSP (plain HTTP) listener.
pub const STATUS: ListenerSetting = ListenerSetting {
    what: "CRL/OCSP status",
    setting: "[publication] listen in fleetca.toml",
    flag: "--status-listen",
};
/// The admin API (HTTPS) listener.
pub const ADMIN: ListenerSetting = ListenerSetting {
    what: "admin API",
    setting: "[admin] listen in fleetca.toml",
    flag: "--admin-listen",
};
/// The SCEP plain-HTTP listener.
pub const SCEP_HTTP: ListenerSetting = ListenerSetting {
    what: "SCEP (plain HTTP)",
    setting: "[scep] http_listen in fleetca.toml",
    flag: "(none)",
};
/// The Prometheus listener.
pub const METRICS: ListenerSetting = ListenerSetting {
    what: "metrics",
    setting: "[monitoring] metrics_listen in fleetca.toml",
    flag: "--metrics-listen",
};

/// Binds `addr` for `listener`; `from_flag` says whether the address came from the flag.
/// A failure ("address in use", "permission denied") names the listener, the address and
/// the setting and flag that choose it.
pub async fn bind(
    listener: ListenerSetting,
    addr: SocketAddr,
    from_flag: bool,
) -> anyhow::Result<tokio::net::TcpListener> {
    let ListenerSetting {
        what,
        setting,
        flag,
    } = listener;
    let source = if from_flag {
        format!("given by {flag}; without it: {setting}")
    } else {
        format!("{setting}; or override it with {flag}")
    };
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot open the {what} listener on {addr} ({source})"))
}

/// Why certificates issued with `base_url` do not reach a status listener bound to
/// `bound`, or `None` when they may. A host name is compared by port only (it may resolve
/// to this machine or to a proxy); an IP address must be this one (or the listener bound
/// to all addresses).
pub fn base_url_mismatch(base_url: &str, bound: SocketAddr) -> Option<String> {
    let authority = base_url
        .strip_prefix("http://")
        .unwrap_or(base_url)
        .split('/')
        .next()
        .unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port.parse::<u16>().ok()?),
        _ => (authority, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip_differs = match host.parse::<IpAddr>() {
        Ok(ip) => !bound.ip().is_unspecified() && ip != bound.ip(),
        Err(_) => false,
    };
    (port != bound.port() || ip_differs).then(|| {
        format!(
            "certificates name {base_url} for their CRL and OCSP URLs, but the status listener \
             is on {bound} (--status-listen): relying parties will not reach it there. Set \
             [publication] base_url in fleetca.toml to the URL that reaches this listener (or \
             start without --status-listen); certificates already issued keep the URL they name"
        )
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn base_urls_that_reach_the_listener_are_accepted() {
        let bound: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        for url in [
            "http://127.0.0.1:8080",
            "http://ca.example.net:8080",
            "http://localhost:8080/",
        ] {
            assert_eq!(base_url_mismatch(url, bound), None, "{url}");
        }
        let all: SocketAddr = "0.0.0.0:80".parse().unwrap();
        assert_eq!(base_url_mismatch("http://192.0.2.7", all), None);
        let v6: SocketAddr = "[::1]:8080".parse().unwrap();
        assert_eq!(base_url_mismatch("http://[::1]:8080", v6), None);
    }

    #[test]
    fn base_urls_elsewhere_are_reported_with_the_setting_to_change() {
        let bound: SocketAddr = "127.0.0.1:9080".parse().unwrap();
        for url in [
            "http://127.0.0.1:8080",
            "http://192.0.2.7:9080",
            "http://ca.example.net",
        ] {
            let warning = base_url_mismatch(url, bound).unwrap();
            assert!(warning.contains("[publication] base_url"), "{warning}");
            assert!(warning.contains(url), "{warning}");
        }
    }
}
