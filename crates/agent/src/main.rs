//! `fleetca-agent`: the device agent daemon.

fn main() {}
