//! The fleetca device agent.
