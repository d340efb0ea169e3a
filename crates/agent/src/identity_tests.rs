//! The swap, stopped after every step, always repairs to a consistent pair.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use fleetca_pki::{rcgen, KeyAlgorithm};

use super::*;

/// A key (PEM) and a self-signed certificate (PEM) for it.
pub(crate) fn pair(cn: &str) -> (String, String) {
    let key = KeyAlgorithm::P256.generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let cert = params.self_signed(&key).unwrap();
    (key.to_pkcs8_pem(), cert.pem())
}

fn store(dir: &Path) -> IdentityStore {
    IdentityStore::new(dir.join("keys/device.key"), dir.join("certs/device.pem"))
}

fn active_cn(store: &IdentityStore) -> String {
    let id = store.load().unwrap().expect("an active pair");
    id.info.subject_display()
}

#[test]
fn install_writes_a_matching_pair_keeps_prev_and_a_0600_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    // A first start: the directories do not exist yet.
    assert_eq!(s.repair().unwrap(), Repair::Clean);
    assert!(s.load().unwrap().is_none());
    let (k1, c1) = pair("one");
    s.install(&k1, &c1).unwrap();
    assert_eq!(active_cn(&s), "CN=one");
    assert!(s.load_previous().unwrap().is_none());
    let (k2, c2) = pair("two");
    s.install(&k2, &c2).unwrap();
    assert_eq!(active_cn(&s), "CN=two");
    assert_eq!(
        s.load_previous().unwrap().unwrap().info.subject_display(),
        "CN=one"
    );
    for key in [s.key_path().to_path_buf(), sibling(s.key_path(), ".prev")] {
        let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
    }
    assert_eq!(s.repair().unwrap(), Repair::Clean);
}

#[test]
fn a_mismatched_pair_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let (k1, _) = pair("one");
    let (_, c2) = pair("two");
    assert!(s.install(&k1, &c2).is_err());
    assert!(!s.key_path().exists() && !sibling(s.key_path(), ".new").exists());
}

#[test]
fn a_swap_stopped_after_any_step_repairs_to_a_consistent_pair() {
    for stop in SwapStep::ALL {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let (k1, c1) = pair("old");
        s.install(&k1, &c1).unwrap();
        let (k2, c2) = pair("new");
        s.install_with(&k2, &c2, |step| step != stop).unwrap();

        // Restart: a fresh store over the same files.
        let s = store(dir.path());
        let report = s.repair().unwrap();
        let cn = active_cn(&s);
        match stop {
            SwapStep::KeyStaged => {
                assert_eq!(report, Repair::DiscardedIncomplete, "{stop:?}");
                assert_eq!(cn, "CN=old", "{stop:?}");
            }
            _ => {
                assert_eq!(report, Repair::RolledForward, "{stop:?}");
                assert_eq!(cn, "CN=new", "{stop:?}");
                assert_eq!(
                    s.load_previous().unwrap().unwrap().info.subject_display(),
                    "CN=old",
                    "{stop:?}"
                );
            }
        }
        for leftover in [".new", ".tmp", ".new.tmp"] {
            assert!(
                !sibling(s.key_path(), leftover).exists(),
                "{stop:?} {leftover}"
            );
            assert!(
                !sibling(s.cert_path(), leftover).exists(),
                "{stop:?} {leftover}"
            );
        }
        assert_eq!(s.repair().unwrap(), Repair::Clean, "{stop:?}: idempotent");
    }
}

#[test]
fn a_first_install_stopped_half_way_leaves_no_identity_or_the_new_one() {
    for stop in SwapStep::ALL {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let (k, c) = pair("first");
        s.install_with(&k, &c, |step| step != stop).unwrap();
        let s = store(dir.path());
        s.repair().unwrap();
        match s.load().unwrap() {
            None => assert_eq!(stop, SwapStep::KeyStaged),
            Some(id) => assert_eq!(id.info.subject_display(), "CN=first"),
        }
    }
}

#[test]
fn half_written_temporary_files_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let (k1, c1) = pair("old");
    s.install(&k1, &c1).unwrap();
    fs::write(sibling(s.key_path(), ".new.tmp"), "-----BEGIN PRIV").unwrap();
    fs::write(sibling(s.cert_path(), ".new.tmp"), "").unwrap();
    assert_eq!(s.repair().unwrap(), Repair::Clean);
    assert!(!sibling(s.key_path(), ".new.tmp").exists());
    assert_eq!(active_cn(&s), "CN=old");
}

#[test]
fn a_mismatched_active_pair_is_replaced_by_prev_or_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let (k1, c1) = pair("one");
    let (k2, c2) = pair("two");
    s.install(&k1, &c1).unwrap();
    s.install(&k2, &c2).unwrap();
    // Someone copies the wrong key over the active one.
    let (k3, _) = pair("three");
    fs::write(s.key_path(), k3).unwrap();
    assert_eq!(s.repair().unwrap(), Repair::RestoredPrevious);
    assert_eq!(active_cn(&s), "CN=one");

    // Without a usable previous pair: moved aside, no active identity.
    fs::remove_file(sibling(s.key_path(), ".prev")).unwrap();
    let (k4, _) = pair("four");
    fs::write(s.key_path(), k4).unwrap();
    assert_eq!(s.repair().unwrap(), Repair::MovedAside);
    assert!(s.load().unwrap().is_none());
    assert!(sibling(s.key_path(), ".broken").exists());
}

#[test]
fn a_key_with_loose_permissions_is_tightened() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let (k, c) = pair("one");
    s.install(&k, &c).unwrap();
    fs::set_permissions(s.key_path(), fs::Permissions::from_mode(0o644)).unwrap();
    s.repair().unwrap();
    let mode = fs::metadata(s.key_path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}
