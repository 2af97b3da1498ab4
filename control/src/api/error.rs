//! The one place where failures become gRPC statuses.
//!
//! Known causes map to the code a client can act on; anything unexpected is logged once
//! here and leaves as `INTERNAL` with a stable message.

use tonic::Status;

use crate::api::auth::AuthError;
use crate::api::reload::ReloadError;
use crate::api::signing::SignatureError;
use crate::model::InvalidInput;
use crate::store::StoreError;

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request broke a rule of the API; nothing was changed.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The caller is unknown or may not do this; nothing was read or changed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A signed resume was missing or not acceptable; nothing was changed.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The replica's credentials could not be reloaded; those in force are kept.
    #[error(transparent)]
    Reload(#[from] ReloadError),
}

impl ApiError {
    /// The status of a call that only reads, failed with `error`: as for any call, except
    /// that etcd being unavailable does not add "nothing was changed", which only a
    /// change needs to be told (and which could be misread after one that committed).
    pub fn read(error: impl Into<ApiError>) -> Status {
        match error.into() {
            ApiError::Store(store)
                if store.is_unavailable()
                    && !matches!(store, StoreError::OutcomeUnknown { .. }) =>
            {
                tracing::warn!(error = %store, "etcd unavailable");
                Status::unavailable(format!("etcd is unavailable: {}", store.brief()))
            }
            other => other.into(),
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::Invalid(conflict @ InvalidInput::Conflict(_))
            | ApiError::Store(StoreError::Invalid(conflict @ InvalidInput::Conflict(_))) => {
                Status::failed_precondition(conflict.to_string())
            }
            ApiError::Invalid(invalid)
            | ApiError::Auth(AuthError::InvalidActor(invalid))
            | ApiError::Store(StoreError::Invalid(invalid)) => {
                Status::invalid_argument(invalid.to_string())
            }
            ApiError::Auth(auth) if auth.is_unauthenticated() => {
                Status::unauthenticated(auth.to_string())
            }
            ApiError::Auth(auth) => Status::permission_denied(auth.to_string()),
            ApiError::Signature(error) if error.is_invalid_argument() => {
                Status::invalid_argument(error.to_string())
            }
            ApiError::Signature(error) => Status::failed_precondition(error.to_string()),
            ApiError::Reload(error) => Status::failed_precondition(error.to_string()),
            ApiError::Store(StoreError::NotFound(name)) => Status::not_found(format!(
                "program {name} does not exist: check the name with `killswitch program list`"
            )),
            ApiError::Store(StoreError::AlreadyExists(name)) => Status::already_exists(format!(
                "program {name} already exists: see it with `killswitch program show {name}`"
            )),
            ApiError::Store(error @ StoreError::NoApprovalRequest(_)) => {
                Status::not_found(error.to_string())
            }
            ApiError::Store(error @ StoreError::SelfApproval) => {
                Status::permission_denied(error.to_string())
            }
            ApiError::Store(
                error @ (StoreError::StaleApproval
                | StoreError::StaleStatement
                | StoreError::AuditHeadMissing(_)),
            ) => Status::failed_precondition(error.to_string()),
            ApiError::Store(StoreError::Contention) => {
                Status::aborted("too many concurrent changes; try again")
            }
            ApiError::Store(error @ StoreError::OutcomeUnknown { .. }) => {
                tracing::warn!(%error, "etcd did not confirm a change");
                Status::unavailable(format!(
                    "{error}; check the program's state with `killswitch status` once etcd \
                     answers, and repeat the command if needed"
                ))
            }
            ApiError::Store(store) if store.is_unavailable() => {
                tracing::warn!(error = %store, "etcd unavailable");
                Status::unavailable(format!(
                    "etcd is unavailable, nothing was changed: {}",
                    store.brief()
                ))
            }
            ApiError::Store(store) => {
                tracing::error!(error = %store, "internal error");
                Status::internal("internal error in the control plane; see the replica's log")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ProgramName;

    #[test]
    fn maps_known_causes() {
        let name = || ProgramName::parse("demo").expect("valid");
        let cases: Vec<(ApiError, tonic::Code)> = vec![
            (
                InvalidInput::ProgramName("X".into()).into(),
                tonic::Code::InvalidArgument,
            ),
            (StoreError::NotFound(name()).into(), tonic::Code::NotFound),
            (
                StoreError::AlreadyExists(name()).into(),
                tonic::Code::AlreadyExists,
            ),
            (StoreError::Contention.into(), tonic::Code::Aborted),
            (
                StoreError::NoApprovalRequest("0badcafe".into()).into(),
                tonic::Code::NotFound,
            ),
            (
                StoreError::SelfApproval.into(),
                tonic::Code::PermissionDenied,
            ),
            (
                StoreError::StaleApproval.into(),
                tonic::Code::FailedPrecondition,
            ),
            (
                AuthError::NoCredentials.into(),
                tonic::Code::Unauthenticated,
            ),
            (AuthError::UnknownToken.into(), tonic::Code::Unauthenticated),
            (
                AuthError::CollectorOnAdmin.into(),
                tonic::Code::PermissionDenied,
            ),
            (
                AuthError::InvalidActor(InvalidInput::ControlCharacters { field: "actor" }).into(),
                tonic::Code::InvalidArgument,
            ),
            (
                StoreError::Etcd(etcd_client::Error::GRpcStatus(Status::unavailable("down")))
                    .into(),
                tonic::Code::Unavailable,
            ),
            (
                StoreError::Timeout(std::time::Duration::from_secs(1)).into(),
                tonic::Code::Unavailable,
            ),
            (
                StoreError::OutcomeUnknown {
                    write: Box::new(StoreError::Timeout(std::time::Duration::from_secs(1))),
                    read: Box::new(StoreError::Timeout(std::time::Duration::from_secs(1))),
                }
                .into(),
                tonic::Code::Unavailable,
            ),
            (
                StoreError::Etcd(etcd_client::Error::InvalidArgs("x".into())).into(),
                tonic::Code::Internal,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(Status::from(error).code(), code);
        }
    }

    #[test]
    fn only_a_change_is_told_that_nothing_was_changed() {
        let slow = || StoreError::Timeout(std::time::Duration::from_secs(1));
        let change = Status::from(ApiError::from(slow()));
        assert_eq!(change.code(), tonic::Code::Unavailable);
        assert_eq!(
            change.message(),
            "etcd is unavailable, nothing was changed: etcd did not answer within 1s"
        );
        let read = ApiError::read(slow());
        assert_eq!(read.code(), tonic::Code::Unavailable);
        assert_eq!(
            read.message(),
            "etcd is unavailable: etcd did not answer within 1s"
        );
        // Anything else reads as it would for any call.
        let name = ProgramName::parse("demo").expect("valid");
        let missing = ApiError::read(StoreError::NotFound(name));
        assert_eq!(missing.code(), tonic::Code::NotFound);
    }
}
