//! CA rollover: recording the next generation of a CA, audited.

use fleetca_store::{CaGeneration, OperatorChange};

use crate::{Actor, AdminError, AdminStore, Audited, Permission};

/// Records `generations` (the new generation of one CA, preceded by generation 1 on the
/// first rollover of a data directory) with a `ca-rollover` audit event. The caller has
/// made the keys and certificates; the store refuses a second rollover while one is
/// pending and a number that does not follow the recorded ones.
pub async fn record_ca_rollover<S: AdminStore + ?Sized>(
    store: &S,
    actor: &Actor,
    generations: Vec<CaGeneration>,
    comment: Option<&str>,
) -> Result<(), AdminError> {
    let newest = generations
        .last()
        .ok_or_else(|| AdminError::Invalid("a rollover records at least one generation".into()))?;
    // One CA, or a root rollover: the root with the issuing CAs it re-certifies.
    let root = generations.iter().any(|g| g.ca == "root");
    if !root && generations.iter().any(|g| g.ca != newest.ca) {
        return Err(AdminError::Invalid(
            "a rollover records the generations of one CA, or of the root and the CAs it re-certifies".into(),
        ));
    }
    let subject = if root { "root" } else { newest.ca.as_str() };
    let facts = generations
        .iter()
        .filter(|g| g.generation > 1)
        .map(|g| format!("{} generation {} (key {})", g.ca, g.generation, g.key))
        .collect::<Vec<_>>()
        .join(", ");
    let audited = Audited {
        actor,
        needs: Permission::Administer,
        action: "ca-rollover",
        subject: format!("ca:{subject}"),
        facts: format!(
            "{facts}; activates at {}, valid until {}",
            newest.activate_at, newest.not_after
        ),
        comment,
    };
    audited
        .apply(store, OperatorChange::AddCaGenerations(generations))
        .await?;
    Ok(())
}
