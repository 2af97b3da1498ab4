//! Operator signing keys: `killswitch keys new`, and signing resume statements with them
//! for `resume` and `approve --signing-key`.
//!
//! A key is an ed25519 key pair in a PKCS#8 file (mode 0600) that only its operator
//! reads. Its public half goes to the control plane's `auth.toml` (`signing_key`, which
//! binds it to the operator) and to collectors (`ClientBuilder::trusted_keys`), which
//! then open their gates only for resumes it signed.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use killswitch_proto::prost::Message;
use killswitch_proto::v1;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};

use crate::exit::{Error, Exit};
use crate::output::OutputFormat;
use crate::sink::Sink;
use crate::token::OperatorName;

/// How long a signed resume statement stays valid, at least.
pub const STATEMENT_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// The longest a statement this CLI signs may still be valid: an approval request's
/// longest life (24 h) and a minute for clocks that disagree. A statement valid for
/// longer was not made by a `killswitch resume`, so an approver refuses to sign it.
pub const MAX_STATEMENT_LIFETIME: Duration = Duration::from_secs(24 * 3600 + 60);

/// What collectors accept by default (`ClientBuilder::max_statement_lifetime`): a
/// statement valid for longer makes `resume` warn.
pub const COLLECTOR_STATEMENT_LIFETIME: Duration = Duration::from_secs(3600);

/// Refuses to sign a resume replacing `generation` when no real program can be at it: a
/// generation is an etcd revision, a signed 64-bit number.
pub fn check_generation(generation: u64) -> Result<(), Error> {
    if generation > killswitch_proto::MAX_GENERATION {
        return Err(Error::new(
            Exit::Error,
            format!(
                "refusing to sign: the control plane reports generation {generation}, beyond \
                 the largest etcd revision ({}); it cannot be real",
                killswitch_proto::MAX_GENERATION
            ),
        ));
    }
    Ok(())
}

/// Decodes the statement an approval request asks this operator to sign and checks it
/// against what the request says it is (the program, the generation it replaces) and
/// against `now`: not expired, and not valid for longer than [`MAX_STATEMENT_LIFETIME`].
/// A replica that hands over anything else gets no signature.
pub fn check_statement(
    encoded: &[u8],
    program: &str,
    replaces: u64,
    scope: &StatementScope,
    now: SystemTime,
) -> Result<v1::ResumeStatement, Error> {
    let refuse = |why: String| Error::new(Exit::Error, format!("refusing to sign: {why}"));
    if encoded.is_empty() {
        return Err(refuse(
            "the request carries no statement (the requester did not sign); approve without \
             --signing-key, or have the requester resume again with theirs"
                .to_owned(),
        ));
    }
    let statement = v1::ResumeStatement::decode(encoded)
        .map_err(|error| refuse(format!("the statement cannot be decoded: {error}")))?;
    if statement.program != program {
        return Err(refuse(format!(
            "the statement is for program {:?}, but the request is for {:?}",
            crate::output::clean(&statement.program),
            crate::output::clean(program)
        )));
    }
    if statement.replaces_generation != replaces {
        return Err(refuse(format!(
            "the statement replaces generation {}, but the request replaces {replaces}",
            statement.replaces_generation
        )));
    }
    check_generation(statement.replaces_generation)?;
    let named = StatementScope {
        selector: statement.selector.clone(),
        stages_percent: statement.stages_percent.clone(),
        stage_interval_ms: if statement.stages_percent.is_empty() {
            0
        } else {
            statement.stage_interval_ms
        },
    };
    if &named != scope {
        return Err(refuse(format!(
            "the statement opens {}, but the request is for {}",
            describe_scope(&named),
            describe_scope(scope)
        )));
    }
    let now_unix = unix(now);
    if statement.expires_at_unix <= now_unix {
        return Err(refuse(format!(
            "the statement expired {} s ago",
            now_unix.saturating_sub(statement.expires_at_unix)
        )));
    }
    let max = i64::try_from(MAX_STATEMENT_LIFETIME.as_secs()).unwrap_or(i64::MAX);
    if statement.expires_at_unix.saturating_sub(now_unix) > max {
        return Err(refuse(format!(
            "the statement stays valid for {} s, more than the {max} s any resume request \
             lives",
            statement.expires_at_unix.saturating_sub(now_unix)
        )));
    }
    Ok(statement)
}

/// A statement in words, for the operator about to sign it.
#[must_use]
pub fn describe(statement: &v1::ResumeStatement) -> String {
    let until = u64::try_from(statement.expires_at_unix)
        .ok()
        .and_then(|secs| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs)))
        .map_or_else(
            || format!("Unix time {}", statement.expires_at_unix),
            |at| humantime::format_rfc3339_seconds(at).to_string(),
        );
    let scope = StatementScope {
        selector: statement.selector.clone(),
        stages_percent: statement.stages_percent.clone(),
        stage_interval_ms: statement.stage_interval_ms,
    };
    format!(
        "resume of {} ({}) replacing generation {}, valid until {until}",
        crate::output::clean(&statement.program),
        describe_scope(&scope),
        statement.replaces_generation,
    )
}

/// A statement's scope in words: `every collector`, `the collectors matching 'S'`,
/// `every collector in stages 1%,10%,100% 5m apart`.
fn describe_scope(scope: &StatementScope) -> String {
    let who = if scope.selector.is_empty() {
        "every collector".to_owned()
    } else {
        format!(
            "the collectors matching '{}'",
            crate::output::clean(&scope.selector)
        )
    };
    if scope.stages_percent.is_empty() {
        return who;
    }
    let stages = scope
        .stages_percent
        .iter()
        .map(|p| format!("{p}%"))
        .collect::<Vec<_>>()
        .join(",");
    format!(
        "{who} in stages {stages} {} apart",
        humantime::format_duration(Duration::from_millis(scope.stage_interval_ms))
    )
}

/// A policy change waiting for approval, in words.
#[must_use]
pub fn describe_policy_change(change: &v1::PolicyChange) -> String {
    let policy = change.policy.unwrap_or_default();
    let lost = match v1::LostContact::try_from(policy.on_lost_contact) {
        Ok(v1::LostContact::Keep) => "keep (fail open)".to_owned(),
        _ => format!(
            "pause after {}",
            humantime::format_duration(Duration::from_millis(policy.grace_ms))
        ),
    };
    format!(
        "on lost contact: {lost}; resume approvals: {}",
        change.resume_approvals
    )
}

/// Seconds since the Unix epoch, 0 before it.
fn unix(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `killswitch keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make an operator's ed25519 signing key for resumes and approvals
    #[command(after_help = NEW_HELP)]
    New(NewKeyArgs),
}

/// After `keys new --help`.
const NEW_HELP: &str = "\
Writes DIR/NAME.ed25519 (PKCS#8, mode 0600; never overwritten) and prints the public key,
64 hex digits, alone on stdout. Add it to the operator's entry in the control plane's
auth.toml as `signing_key = \"HEX\"` (then their resumes and approvals must be signed
with --signing-key), and to the collectors' trusted keys (ClientBuilder::trusted_keys).";

/// `killswitch keys new`
#[derive(Debug, Args)]
pub struct NewKeyArgs {
    /// Operator name, as in auth.toml
    #[arg(value_name = "NAME", value_parser = OperatorName::parse)]
    pub name: OperatorName,

    /// Directory to write NAME.ed25519 in
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Runs `killswitch keys ...`: the public key on `out`, the auth.toml line on stderr.
pub fn run(command: KeysCommand, format: OutputFormat, out: &mut Sink<'_>) -> Result<(), Error> {
    let KeysCommand::New(args) = command;
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| Error::new(Exit::Error, "cannot generate an ed25519 key"))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|_| Error::new(Exit::Error, "cannot read the generated key"))?;
    let path = args.out.join(format!("{}.ed25519", args.name));
    write_secret(&path, pkcs8.as_ref())?;
    let public = hex(pair.public_key().as_ref());
    if format == OutputFormat::Json {
        return out.write(&crate::output::json(&serde_json::json!({
            "name": args.name.to_string(),
            "path": path.display().to_string(),
            "public_key": public,
            "auth_toml_line": format!("signing_key = \"{public}\""),
        }))?);
    }
    out.write(&format!("{public}\n"))?;
    let instructions = format!(
        "Wrote {path}. Add this line to {name}'s [[operator]] entry in the control plane's \
         auth.toml, and the key to the collectors' trusted keys:\n\nsigning_key = \"{public}\"\n",
        path = path.display(),
        name = args.name,
    );
    std::io::stderr()
        .lock()
        .write_all(instructions.as_bytes())
        .map_err(|e| Error::new(Exit::Error, format!("cannot write the instructions: {e}")))
}

/// Creates `path` (which must not exist) with mode 0600.
fn write_secret(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let fail = |e: std::io::Error| {
        let exit = if e.kind() == std::io::ErrorKind::AlreadyExists {
            Exit::Usage
        } else {
            Exit::Error
        };
        Error::new(exit, format!("cannot create {}: {e}", path.display()))
    };
    let mut file = options.open(path).map_err(fail)?;
    file.write_all(contents).map_err(fail)?;
    file.sync_all().map_err(fail)
}

/// An operator's signing key, read from its PKCS#8 file.
pub struct SigningKey(Ed25519KeyPair);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SigningKey")
            .field(&hex(self.0.public_key().as_ref()))
            .finish()
    }
}

impl SigningKey {
    /// Reads the key at `path` (`--signing-key`).
    pub fn load(path: &Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|e| {
            Error::usage(format!(
                "cannot read the signing key {}: {e}",
                path.display()
            ))
        })?;
        Ed25519KeyPair::from_pkcs8(&bytes).map(Self).map_err(|_| {
            Error::usage(format!(
                "{} is not an ed25519 key in PKCS#8 (make one with `killswitch keys new`)",
                path.display()
            ))
        })
    }

    /// Signs an encoded `ResumeStatement`.
    #[must_use]
    pub fn sign(&self, statement: &[u8]) -> v1::Signature {
        v1::Signature {
            public_key: self.0.public_key().as_ref().to_vec(),
            signature: self
                .0
                .sign(&killswitch_proto::resume_signed_bytes(statement))
                .as_ref()
                .to_vec(),
        }
    }
}

/// What a signed statement opens: the scope `resume` asks for, which the statement
/// names so that collectors open their gates only inside it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatementScope {
    /// The canonical selector of a scoped resume; empty for every collector.
    pub selector: String,
    /// A staged resume's stages; empty when not staged.
    pub stages_percent: Vec<u32>,
    /// A staged resume's least time between stages, in milliseconds.
    pub stage_interval_ms: u64,
}

/// A new encoded statement resuming `program` from generation `replaces` for `scope`,
/// signed `now` and valid for `lifetime` from then, with a random nonce.
pub fn statement(
    program: &str,
    replaces: u64,
    scope: &StatementScope,
    now: SystemTime,
    lifetime: Duration,
) -> Result<Vec<u8>, Error> {
    let mut nonce = vec![0u8; 16];
    SystemRandom::new().fill(&mut nonce).map_err(|_| {
        Error::new(
            Exit::Error,
            "the operating system's random number generator failed",
        )
    })?;
    Ok(v1::ResumeStatement {
        program: program.to_owned(),
        replaces_generation: replaces,
        expires_at_unix: unix(now + lifetime),
        nonce,
        selector: scope.selector.clone(),
        stages_percent: scope.stages_percent.clone(),
        stage_interval_ms: scope.stage_interval_ms,
        issued_at_unix: unix(now),
    }
    .encode_to_vec())
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(text, "{byte:02x}");
    }
    text
}

#[cfg(test)]
mod tests {
    use ring::signature::{ED25519, UnparsedPublicKey};

    use super::*;

    #[test]
    fn an_approver_signs_only_a_statement_that_says_what_the_request_says() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let whole = StatementScope::default();
        let emea = StatementScope {
            selector: "region=emea".to_owned(),
            ..StatementScope::default()
        };
        let staged = StatementScope {
            stages_percent: vec![10, 100],
            stage_interval_ms: 300_000,
            ..StatementScope::default()
        };
        let good = statement("demo", 7, &whole, now, STATEMENT_LIFETIME).expect("statement");
        let checked = check_statement(&good, "demo", 7, &whole, now).expect("good");
        assert_eq!(
            describe(&checked),
            "resume of demo (every collector) replacing generation 7, valid until \
             1970-01-12T14:01:40Z"
        );
        let scoped = statement("demo", 7, &emea, now, STATEMENT_LIFETIME).expect("statement");
        let checked = check_statement(&scoped, "demo", 7, &emea, now).expect("scoped");
        assert!(
            describe(&checked).contains("(the collectors matching 'region=emea')"),
            "{}",
            describe(&checked)
        );
        let stages = statement("demo", 7, &staged, now, STATEMENT_LIFETIME).expect("statement");
        let checked = check_statement(&stages, "demo", 7, &staged, now).expect("staged");
        assert!(
            describe(&checked).contains("(every collector in stages 10%,100% 5m apart)"),
            "{}",
            describe(&checked)
        );
        let far =
            statement("demo", 7, &whole, now, Duration::from_secs(48 * 3600)).expect("statement");
        let absurd =
            statement("demo", u64::MAX, &whole, now, STATEMENT_LIFETIME).expect("statement");
        for (encoded, scope, message) in [
            (
                good.clone(),
                &emea,
                "opens every collector, but the request is for the collectors matching \
                 'region=emea'",
            ),
            (scoped.clone(), &whole, "opens the collectors matching"),
            (stages.clone(), &whole, "in stages 10%,100%"),
        ] {
            let error = check_statement(&encoded, "demo", 7, scope, now).expect_err(message);
            assert!(error.message().contains(message), "{}", error.message());
        }
        for (encoded, program, replaces, message) in [
            (
                good.clone(),
                "other",
                7,
                "the statement is for program \"demo\", but the request is for \"other\"",
            ),
            (
                good.clone(),
                "demo",
                8,
                "replaces generation 7, but the request replaces 8",
            ),
            (far, "demo", 7, "stays valid for 172800 s"),
            (absurd, "demo", u64::MAX, "beyond the largest etcd revision"),
            (vec![0xff, 0xff], "demo", 7, "cannot be decoded"),
            (Vec::new(), "demo", 7, "carries no statement"),
        ] {
            let error =
                check_statement(&encoded, program, replaces, &whole, now).expect_err(message);
            assert!(
                error.message().starts_with("refusing to sign: "),
                "{}",
                error.message()
            );
            assert!(error.message().contains(message), "{}", error.message());
            assert_eq!(error.exit(), Exit::Error);
        }
        let later = now + STATEMENT_LIFETIME + Duration::from_secs(1);
        let expired = check_statement(&good, "demo", 7, &whole, later).expect_err("expired");
        assert!(
            expired.message().contains("expired 1 s ago"),
            "{}",
            expired.message()
        );
    }

    #[test]
    fn policy_changes_are_described() {
        let change = v1::PolicyChange {
            policy: Some(v1::FailurePolicy {
                on_lost_contact: v1::LostContact::Keep as i32,
                grace_ms: 0,
            }),
            resume_approvals: 1,
        };
        assert_eq!(
            describe_policy_change(&change),
            "on lost contact: keep (fail open); resume approvals: 1"
        );
    }

    #[test]
    fn signed_statements_verify_with_the_public_key() {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("key");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("alice.ed25519");
        write_secret(&path, pkcs8.as_ref()).expect("write");
        assert!(write_secret(&path, b"x").is_err(), "overwrote a key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let key = SigningKey::load(&path).expect("load");
        let statement = statement(
            "demo",
            7,
            &StatementScope::default(),
            SystemTime::now(),
            STATEMENT_LIFETIME,
        )
        .expect("statement");
        let decoded = v1::ResumeStatement::decode(statement.as_slice()).expect("decode");
        assert_eq!(decoded.program, "demo");
        assert_eq!(decoded.replaces_generation, 7);
        assert_eq!(decoded.nonce.len(), 16);
        let signature = key.sign(&statement);
        UnparsedPublicKey::new(&ED25519, &signature.public_key)
            .verify(
                &killswitch_proto::resume_signed_bytes(&statement),
                &signature.signature,
            )
            .expect("valid signature");
        assert!(SigningKey::load(&dir.path().join("missing")).is_err());
    }
}
