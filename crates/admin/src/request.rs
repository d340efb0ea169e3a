//! The approval queue: approve or reject a waiting request.

use fleetca_store::{Applied, ApprovalRecord, OperatorChange};

use crate::{Actor, AdminError, AdminStore, Audited, Permission};

/// Approves (the device's next poll gets its certificate) or rejects (it gets 403 with
/// `reason`) a pending request. A rejection needs a reason.
pub async fn decide_request<S: AdminStore + ?Sized>(
    store: &S,
    actor: &Actor,
    id: i64,
    approve: bool,
    reason: Option<&str>,
) -> Result<ApprovalRecord, AdminError> {
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    let audited = Audited {
        actor,
        needs: Permission::Operate,
        action: if approve {
            "request-approve"
        } else {
            "request-reject"
        },
        subject: format!("request:{id}"),
        facts: match (approve, reason) {
            (false, Some(r)) => format!("reason: {r}"),
            _ => String::new(),
        },
        comment: if approve { reason } else { None },
    };
    audited.permitted(store).await?;
    if !approve && reason.is_none() {
        return Err(AdminError::field(
            "reason",
            "a rejection needs a reason (the device is told it)",
        ));
    }
    let change = OperatorChange::DecideApproval {
        id,
        approve,
        by: actor.to_string(),
        reason: reason.map(str::to_string),
    };
    match audited.apply(store, change).await? {
        Applied::Approval(a) => Ok(a),
        other => Err(crate::device::unexpected(&other)),
    }
}
