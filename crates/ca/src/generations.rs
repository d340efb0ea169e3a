//! Which generation of each CA issues, and the state of every generation at a time: the
//! one rule every node applies to the generations recorded in the shared database.

use fleetca_store::CaGeneration;
use time::OffsetDateTime;

/// Where a CA generation is in its life at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerationState {
    /// Recorded, its activation time not reached: issues nothing yet.
    Pending,
    /// The newest generation whose activation time has come: issues new certificates.
    Active,
    /// Superseded but still valid: certificates it issued still chain to it, its CRL and
    /// OCSP responder keep answering, it issues nothing new.
    Retiring,
    /// Past its certificate's notAfter.
    Expired,
}

impl GenerationState {
    /// Lower-case name, as listed and documented.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Retiring => "retiring",
            Self::Expired => "expired",
        }
    }
}

impl std::fmt::Display for GenerationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The generation of `ca` that issues at `now`: the highest-numbered one whose activation
/// time has come and whose certificate has not expired.
pub fn active_generation<'a>(
    generations: &'a [CaGeneration],
    ca: &str,
    now: OffsetDateTime,
) -> Option<&'a CaGeneration> {
    generations
        .iter()
        .filter(|g| g.ca == ca && g.activate_at <= now && now < g.not_after)
        .max_by_key(|g| g.generation)
}

/// The state of `generation` at `now`, among `generations` (those of every CA).
pub fn state_of(
    generation: &CaGeneration,
    generations: &[CaGeneration],
    now: OffsetDateTime,
) -> GenerationState {
    if now >= generation.not_after {
        GenerationState::Expired
    } else if now < generation.activate_at {
        GenerationState::Pending
    } else if active_generation(generations, &generation.ca, now)
        .is_some_and(|a| a.generation == generation.generation)
    {
        GenerationState::Active
    } else {
        GenerationState::Retiring
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    fn generation(n: u32, activate: i64, expires: i64) -> CaGeneration {
        let t = |s: i64| OffsetDateTime::UNIX_EPOCH + Duration::seconds(1_000_000 + s);
        CaGeneration {
            ca: "operational".into(),
            generation: n,
            certificate_der: vec![],
            key: String::new(),
            not_before: t(0),
            not_after: t(expires),
            activate_at: t(activate),
            created_at: t(0),
            root_generation: Some(1),
            links: None,
        }
    }

    #[test]
    fn the_newest_activated_generation_issues_and_older_valid_ones_retire() {
        let all = [
            generation(1, 0, 1000),
            generation(2, 100, 2000),
            generation(3, 500, 3000),
        ];
        let at = |s: i64| OffsetDateTime::UNIX_EPOCH + Duration::seconds(1_000_000 + s);
        let states = |s: i64| {
            all.iter()
                .map(|g| state_of(g, &all, at(s)).as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(states(50), ["active", "pending", "pending"]);
        assert_eq!(states(100), ["retiring", "active", "pending"]);
        assert_eq!(states(499), ["retiring", "active", "pending"]);
        assert_eq!(states(500), ["retiring", "retiring", "active"]);
        assert_eq!(states(1000), ["expired", "retiring", "active"]);
        assert_eq!(
            active_generation(&all, "operational", at(600)).map(|g| g.generation),
            Some(3)
        );
        assert_eq!(active_generation(&all, "manufacturing", at(600)), None);
        // Past everything: no generation issues.
        assert_eq!(active_generation(&all, "operational", at(3000)), None);
    }
}
