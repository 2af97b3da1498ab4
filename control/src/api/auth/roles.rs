//! What an operator may do: the roles of `auth.toml` ([`Role`]), the admin calls as
//! authorization sees them ([`Action`]), and the role table that joins them
//! ([`Action::required_role`]).
//!
//! Plain data: imports nothing from the crate.

use std::fmt;

use serde::Deserialize;

/// What an operator may do, from least to most. Each role may do everything the roles
/// before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads: programs, status, collectors, the audit log, collectors' receipts.
    Viewer,
    /// Also pauses: stopping collection is deliberately easy.
    Responder,
    /// Also resumes, creates programs and sets their policy, for the programs it covers.
    Owner,
    /// Everything, on every program.
    Admin,
}

impl Role {
    /// The role's name as written in `auth.toml`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Responder => "responder",
            Role::Owner => "owner",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `AdminService` call, as far as authorization cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `GetProgram`.
    GetProgram,
    /// `ListPrograms`.
    ListPrograms,
    /// `Status`.
    Status,
    /// `WatchStatus`.
    WatchStatus,
    /// `ListCollectors`.
    ListCollectors,
    /// `ListAudit`.
    ListAudit,
    /// `ListReceipts`.
    ListReceipts,
    /// `VerifyAudit`.
    VerifyAudit,
    /// `Pause`.
    Pause,
    /// `Resume`.
    Resume,
    /// `Approve`: another operator's resume request.
    Approve,
    /// `GetApproval`: read a resume request.
    GetApproval,
    /// `CreateProgram`.
    CreateProgram,
    /// `SetPolicy`.
    SetPolicy,
    /// `StopAll` and `ClearStopAll`: every program at once.
    StopAll,
    /// `Reload`: the replica's credentials.
    Reload,
    /// `WhoAmI`: the caller's own name and role.
    WhoAmI,
}

impl Action {
    /// Every action, for tables and tests.
    pub const ALL: [Action; 17] = [
        Action::GetProgram,
        Action::ListPrograms,
        Action::Status,
        Action::WatchStatus,
        Action::ListCollectors,
        Action::ListAudit,
        Action::ListReceipts,
        Action::VerifyAudit,
        Action::GetApproval,
        Action::Pause,
        Action::Resume,
        Action::Approve,
        Action::CreateProgram,
        Action::SetPolicy,
        Action::StopAll,
        Action::Reload,
        Action::WhoAmI,
    ];

    /// The least role that may perform the action: the role table.
    #[must_use]
    pub fn required_role(self) -> Role {
        match self {
            Action::GetProgram
            | Action::ListPrograms
            | Action::Status
            | Action::WatchStatus
            | Action::ListCollectors
            | Action::ListAudit
            | Action::ListReceipts
            | Action::VerifyAudit
            | Action::GetApproval
            | Action::WhoAmI => Role::Viewer,
            Action::Pause => Role::Responder,
            Action::Resume | Action::Approve | Action::CreateProgram | Action::SetPolicy => {
                Role::Owner
            }
            Action::StopAll | Action::Reload => Role::Admin,
        }
    }

    /// The RPC's name, for messages.
    #[must_use]
    pub fn rpc(self) -> &'static str {
        match self {
            Action::GetProgram => "GetProgram",
            Action::ListPrograms => "ListPrograms",
            Action::Status => "Status",
            Action::WatchStatus => "WatchStatus",
            Action::ListCollectors => "ListCollectors",
            Action::ListAudit => "ListAudit",
            Action::ListReceipts => "ListReceipts",
            Action::VerifyAudit => "VerifyAudit",
            Action::Pause => "Pause",
            Action::Resume => "Resume",
            Action::Approve => "Approve",
            Action::GetApproval => "GetApproval",
            Action::CreateProgram => "CreateProgram",
            Action::SetPolicy => "SetPolicy",
            Action::StopAll => "StopAll",
            Action::Reload => "Reload",
            Action::WhoAmI => "WhoAmI",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::auth::Operator;

    #[test]
    fn role_table() {
        use Action::*;
        // (action, viewer, responder, owner, admin)
        let table = [
            (GetProgram, true, true, true, true),
            (ListPrograms, true, true, true, true),
            (Status, true, true, true, true),
            (WatchStatus, true, true, true, true),
            (ListCollectors, true, true, true, true),
            (ListAudit, true, true, true, true),
            (ListReceipts, true, true, true, true),
            (VerifyAudit, true, true, true, true),
            (Pause, false, true, true, true),
            (Resume, false, false, true, true),
            (Approve, false, false, true, true),
            (GetApproval, true, true, true, true),
            (CreateProgram, false, false, true, true),
            (SetPolicy, false, false, true, true),
            (StopAll, false, false, false, true),
            (Reload, false, false, false, true),
            (WhoAmI, true, true, true, true),
        ];
        assert_eq!(table.len(), Action::ALL.len());
        for (action, viewer, responder, owner, admin) in table {
            for (role, allowed) in [
                (Role::Viewer, viewer),
                (Role::Responder, responder),
                (Role::Owner, owner),
                (Role::Admin, admin),
            ] {
                let operator = Operator {
                    name: "x".into(),
                    role,
                    programs: Vec::new(),
                    cert: true,
                    token_sha256: None,
                    token_expires: None,
                    signing_key: None,
                };
                let result = operator.permits(action, Some("demo"));
                assert_eq!(result.is_ok(), allowed, "{role} {action:?}: {result:?}");
                if let Err(error) = result {
                    assert!(
                        error
                            .to_string()
                            .contains(&format!("needs role {}", action.required_role())),
                        "{error}"
                    );
                }
            }
        }
    }
}
