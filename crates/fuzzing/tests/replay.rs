//! The fuzz targets' corpora on stable: every generated seed and every past finding kept in
//! `fuzz/regressions/<target>/` runs through the same function the fuzz target calls, so
//! CI keeps them fixed without a nightly toolchain. A corpus grown by a campaign can be
//! replayed too: `FLEETCA_FUZZ_CORPUS=fuzz/corpus cargo test -p fleetca-fuzzing`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code

use std::path::{Path, PathBuf};

use fleetca_fuzzing::{target, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `dir`, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(name: &str) {
    let Some(t) = target(name) else {
        panic!("no target {name}");
    };
    let seeds = (t.seeds)();
    assert!(seeds.len() >= 3, "{name}: only {} seeds", seeds.len());
    for seed in &seeds {
        (t.run)(seed);
    }
    for file in files(&fuzz_dir().join("regressions").join(name)) {
        let data = std::fs::read(&file).unwrap();
        (t.run)(&data);
    }
    if let Some(corpus) = std::env::var_os("FLEETCA_FUZZ_CORPUS") {
        // Relative to the workspace, where the command is typed (a test runs in its
        // crate's directory): `fuzz/corpus` was read as crates/fuzzing/fuzz/corpus,
        // which does not exist, and replayed nothing without a word.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dir = root.join(corpus).join(name);
        let inputs = files(&dir);
        // A campaign that ran only some targets leaves no directory for the others.
        if dir.exists() {
            assert!(!inputs.is_empty(), "{name}: {} is empty", dir.display());
        }
        for file in &inputs {
            let data = std::fs::read(file).unwrap();
            (t.run)(&data);
        }
        eprintln!(
            "{name}: replayed {} inputs of {}",
            inputs.len(),
            dir.display()
        );
    }
}

macro_rules! replay_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                replay(stringify!($name));
            }
        )*

        /// Every target has a test here (and nothing else is listed).
        #[test]
        fn every_target_is_replayed() {
            let mut tested = vec![$(stringify!($name)),*];
            let mut all: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
            tested.sort();
            all.sort();
            assert_eq!(tested, all);
        }
    };
}

replay_tests!(
    certificate,
    certs_only,
    est_body,
    csr,
    ocsp_request,
    ocsp_get,
    agent_response,
    serverkeygen,
    connectors,
    config,
    basic_auth,
    cmp_message,
    scep_message,
);

/// `fuzz/` builds exactly these targets, each the one-line call of its function, and
/// `fuzz/regressions/` holds inputs of known targets only.
#[test]
fn the_fuzz_crate_has_one_binary_per_target() {
    let mut binaries: Vec<String> = files(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()))
        .collect();
    binaries.sort();
    let mut names: Vec<String> = TARGETS.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(binaries, names);
    for name in &names {
        let path = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let source = std::fs::read_to_string(&path).unwrap();
        assert!(
            source.contains(&format!("fleetca_fuzzing::run(\"{name}\", data)")),
            "{} does not call its target's function",
            path.display()
        );
    }
    if let Ok(dirs) = std::fs::read_dir(fuzz_dir().join("regressions")) {
        for dir in dirs.flatten() {
            let name = dir.file_name().to_string_lossy().into_owned();
            assert!(
                target(&name).is_some(),
                "fuzz/regressions/{name}: no such target"
            );
        }
    }
}
