//! Signatures per second with a token key, from 1 and from N threads:
//!
//! ```sh
//! SOFTHSM2_CONF=... cargo run --release -p fleetca-hsm --example sign_rate -- \
//!   /usr/lib/softhsm/libsofthsm2.so TOKEN PIN_FILE LABEL [THREADS] [SECONDS]
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetca_hsm::{Pin, Pkcs11Key, Token};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert!(
        args.len() >= 5,
        "usage: sign_rate MODULE TOKEN PIN_FILE LABEL [THREADS] [SECONDS]"
    );
    let token = Token::open(
        Path::new(&args[1]),
        &args[2],
        Pin::from_file(Path::new(&args[3])).unwrap(),
    )
    .unwrap();
    let key = Arc::new(Pkcs11Key::open(&token, &args[4]).unwrap());
    let threads: usize = args.get(5).map_or(2, |t| t.parse().unwrap());
    let seconds: u64 = args.get(6).map_or(3, |s| s.parse().unwrap());
    for n in [1, threads] {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let start = Instant::now();
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let key = Arc::clone(&key);
                std::thread::spawn(move || {
                    let mut count = 0u64;
                    let msg = [0x5au8; 400]; // about a to-be-signed certificate
                    while Instant::now() < deadline {
                        key.try_sign(&msg).unwrap();
                        count += 1;
                    }
                    count
                })
            })
            .collect();
        let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{} ({}): {n} thread(s): {:.0} signatures/s",
            args[4],
            fleetca_pki::Signer::key_algorithm(key.as_ref()),
            total as f64 / secs
        );
    }
}
