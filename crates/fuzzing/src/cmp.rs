//! The CMP front end's reading of a request body (`fleetca_cmp::parse_request`): the
//! PKIMessage envelope and the bytes its protection covers, header checks, the protection
//! (signature with the first of extraCerts, or PasswordBasedMac with a fixed secret), and
//! each CRMF (`ir`, `cr`, `kur`) or PKCS#10 (`p10cr`) request with its proof of possession.

use crate::fixed;

/// The secret a MAC-protected input is checked with.
const MAC_SECRET: &[u8] = b"fleetca fuzz cmp secret";

/// A DER PKIMessage as a client POSTs it to `/.well-known/cmp`.
pub fn run(data: &[u8]) {
    let _ = fleetca_cmp::parse_request(data, MAC_SECRET);
}

/// Key update requests of the fixed device, signed with its key, for three new keys.
pub fn seeds() -> Vec<Vec<u8>> {
    let Some(pki) = fixed::pki() else {
        return Vec::new();
    };
    [
        "fleetca fuzz cmp new key",
        "fleetca fuzz cmp other key",
        "fleetca fuzz cmp third key",
    ]
    .iter()
    .filter_map(|phrase| fixed::p256_key(phrase))
    .filter_map(|new_key| {
        fleetca_cmp::client::key_update_request(
            &pki.device_certificate,
            &pki.device_key,
            &new_key,
            pki.made,
        )
        .ok()
    })
    .collect()
}

#[cfg(test)]
mod tests {
    /// The seeds are requests the front end reads through: they reach the proof of
    /// possession and the protection check (a fuzzer starts deep).
    #[test]
    fn seeds_are_read_without_error() {
        let seeds = super::seeds();
        assert_eq!(seeds.len(), 3);
        for seed in seeds {
            fleetca_cmp::parse_request(&seed, super::MAC_SECRET).unwrap();
        }
    }
}
