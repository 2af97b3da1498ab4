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

/// A new encoded statement resuming `program` from generation `replaces`, valid for
/// `lifetime` from `now`, with a random nonce.
pub fn statement(
    program: &str,
    replaces: u64,
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
    let expires = (now + lifetime)
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    Ok(v1::ResumeStatement {
        program: program.to_owned(),
        replaces_generation: replaces,
        expires_at_unix: expires,
        nonce,
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
        let statement =
            statement("demo", 7, SystemTime::now(), STATEMENT_LIFETIME).expect("statement");
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
