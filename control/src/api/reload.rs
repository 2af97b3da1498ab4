//! `AdminService.Reload`'s view of the replica's credentials: what reloads them
//! ([`Reloader`], implemented by `crate::tls::Credentials`), credentials read and checked
//! but not yet in force ([`Staged`]), what was put in force ([`Reloaded`]) and why a
//! reload was refused ([`ReloadError`]).
//!
//! A reload is staged first so that the handler can write its audit entry before the new
//! credentials take effect: no reload without an audit entry.
//!
//! **Layer:** api. May import [`crate::model`]; never `crate::store` or `crate::replica`.

use std::fmt;
use std::time::SystemTime;

use killswitch_proto::v1;

/// Reads a replica's credentials again.
pub trait Reloader: Send + Sync + fmt::Debug {
    /// Reads and checks every file, without putting anything in force; a refusal is
    /// counted and logged.
    fn stage(&self) -> Result<Staged, ReloadError>;
}

/// Credentials read and checked, put in force by [`Staged::apply`]; dropping it changes
/// nothing.
pub struct Staged {
    summary: Reloaded,
    apply: Box<dyn FnOnce() + Send>,
}

impl fmt::Debug for Staged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Staged")
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

impl Staged {
    /// Credentials described by `summary`, which `apply` puts in force.
    #[must_use]
    pub fn new(summary: Reloaded, apply: impl FnOnce() + Send + 'static) -> Self {
        Self {
            summary,
            apply: Box::new(apply),
        }
    }

    /// What these credentials are.
    #[must_use]
    pub fn summary(&self) -> &Reloaded {
        &self.summary
    }

    /// Puts them in force; returns what they are.
    pub fn apply(self) -> Reloaded {
        (self.apply)();
        self.summary
    }
}

/// What a reload put in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Operators in the auth file.
    pub operators: usize,
    /// Its `[[collector]]` entries.
    pub collector_rules: usize,
    /// Collector ids its `[revoked]` table lists.
    pub revoked_collectors: usize,
    /// Certificate serials its `[revoked]` table lists.
    pub revoked_serials: usize,
    /// The serial of the certificate the replica presents (lowercase hex).
    pub certificate_serial: String,
    /// When that certificate expires.
    pub certificate_not_after: Option<SystemTime>,
}

impl Reloaded {
    /// The response of `AdminService.Reload` on replica `replica_id`.
    #[must_use]
    pub fn to_wire(&self, replica_id: &str) -> v1::ReloadResponse {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        v1::ReloadResponse {
            replica_id: replica_id.to_owned(),
            operators: count(self.operators),
            collector_rules: count(self.collector_rules),
            revoked_collectors: count(self.revoked_collectors),
            revoked_serials: count(self.revoked_serials),
            certificate_serial: self.certificate_serial.clone(),
            certificate_not_after: self.certificate_not_after.map(killswitch_proto::timestamp),
        }
    }
}

impl fmt::Display for Reloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} operators, {} collector rules, {} revoked collectors, {} revoked serials, certificate serial {}",
            self.operators,
            self.collector_rules,
            self.revoked_collectors,
            self.revoked_serials,
            self.certificate_serial
        )?;
        if let Some(at) = self.certificate_not_after {
            write!(f, " valid until {}", humantime::format_rfc3339_seconds(at))?;
        }
        Ok(())
    }
}

/// Why a reload changed nothing. `FAILED_PRECONDITION` (see `error.rs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The replica serves plain text.
    #[error(
        "this replica runs with --insecure-dev: it has no certificate, client CA or auth file to reload"
    )]
    InsecureDev,
    /// The replica was given its credentials as PEM contents, not as files.
    #[error(
        "this replica was given its credentials as PEM contents, not files: there is nothing to read again"
    )]
    NoFiles,
    /// A file is unusable (the message names it).
    #[error("{0}; the credentials in force are unchanged")]
    Refused(String),
}
