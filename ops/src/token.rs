//! Operator credentials: `killswitch token new`, which makes a bearer token, and the
//! `[[operator]]` entries of the control plane's `auth.toml`, which it and
//! `killswitch certs init` write.
//!
//! The control plane stores only the SHA-256 of a token, so a leaked `auth.toml` lets no
//! one in. The token is printed once and kept nowhere: whoever runs the command hands it to
//! the operator, who passes it to the CLI (`KILLSWITCH_TOKEN`).

use std::fmt::{self, Write as _};
use std::io::Write as _;

use clap::{Args, Subcommand, ValueEnum};
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

use crate::exit::{Error, Exit};
use crate::input::ProgramName;
use crate::output::OutputFormat;
use crate::sink::Sink;

/// Random bytes in a token.
pub const TOKEN_BYTES: usize = 32;

/// `killswitch token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a bearer token for an operator, and the auth.toml entry that lets it in
    #[command(after_help = NEW_HELP)]
    New(NewArgs),
}

/// After `token new --help`.
const NEW_HELP: &str = "\
The token (64 lowercase hex characters, from 32 random bytes) is printed once, alone on
stdout, and kept nowhere. The [[operator]] entry for the control plane's auth.toml goes to
stderr: it holds only the token's SHA-256 (of its 64 characters), so it is safe to commit.
Nothing is sent to the control plane; it lets the token in once its auth.toml has the
entry. The operator passes the token to the CLI in KILLSWITCH_TOKEN.";

/// `killswitch token new`
#[derive(Debug, Args)]
pub struct NewArgs {
    /// Operator name: a letter or digit, then at most 63 letters, digits, '.', '_' and '-'
    #[arg(value_name = "NAME", value_parser = OperatorName::parse)]
    pub name: OperatorName,

    /// What the operator may do: viewer (read), responder (also pause), owner (also
    /// resume, create, set policy, for its programs), admin (everything, every program)
    #[arg(long, value_enum, value_name = "ROLE")]
    pub role: Role,

    /// A program the operator may act on; repeat for several (not for an admin)
    /// [default: every program]
    #[arg(long = "program", value_name = "NAME", value_parser = ProgramName::parse)]
    pub programs: Vec<ProgramName>,

    /// How long the token is accepted (e.g. 8h, 30d): the entry gets `expires` [default:
    /// no expiry]
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    pub ttl: Option<std::time::Duration>,
}

/// A token lifetime: at least a minute.
fn parse_ttl(text: &str) -> Result<std::time::Duration, String> {
    let ttl = humantime::parse_duration(text).map_err(|e| format!("{e}: use e.g. 8h or 30d"))?;
    if ttl < std::time::Duration::from_secs(60) {
        return Err("a token must live at least 1m".to_owned());
    }
    Ok(ttl)
}

/// An operator's name, `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$` (killswitch-proto's contract):
/// the `name` of its `auth.toml` entry and the last segment of its certificate's SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorName(String);

impl OperatorName {
    /// Parses an operator name; the error says what the rule is.
    pub fn parse(s: &str) -> Result<Self, String> {
        killswitch_proto::contract::operator_name(s).map_err(|violation| violation.to_string())?;
        Ok(Self(s.to_owned()))
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OperatorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an operator may do (`DESIGN.md` section 8); each role may do what the roles
/// before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Reads: programs, status, collectors, the audit log.
    Viewer,
    /// Also pauses: stopping collection is deliberately easy.
    Responder,
    /// Also resumes, creates programs and sets their policy, for the programs it covers.
    Owner,
    /// Everything, on every program (so an admin's entry lists no programs).
    Admin,
}

impl Role {
    /// The role as written in `auth.toml` and on the command line.
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

/// How an operator may authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// With its client certificate (`cert = true`).
    Certificate,
    /// With a bearer token whose SHA-256, lowercase hex, is this (`token_sha256`).
    Token {
        /// `token_sha256`.
        sha256: String,
        /// `expires`: when the control plane stops accepting it; `None`: never.
        expires: Option<std::time::SystemTime>,
    },
}

/// One `[[operator]]` entry of `auth.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorEntry {
    /// `name`.
    pub name: OperatorName,
    /// `role`.
    pub role: Role,
    /// `programs`: the programs it may act on; empty for every program.
    pub programs: Vec<ProgramName>,
    /// `cert` and `token_sha256`.
    pub credential: Credential,
}

/// Column at which the entries' comments start, as in the documented format.
const COMMENT_COLUMN: usize = 26;

impl OperatorEntry {
    /// The entry as TOML, e.g.
    ///
    /// ```toml
    /// [[operator]]
    /// name = "alice"
    /// role = "admin"            # viewer | responder | owner | admin
    /// programs = []             # empty: every program
    /// cert = true               # may authenticate with its client certificate
    /// # token_sha256 = "..."    # or with a bearer token (SHA-256 of the token, lowercase hex)
    /// ```
    ///
    /// Every value is a validated name or hex, so none needs escaping.
    #[must_use]
    pub fn to_toml(&self) -> String {
        let programs = self
            .programs
            .iter()
            .map(|program| format!("\"{program}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut toml = format!("[[operator]]\nname = \"{}\"\n", self.name);
        line(
            &mut toml,
            &format!("role = \"{}\"", self.role),
            "viewer | responder | owner | admin",
        );
        line(
            &mut toml,
            &format!("programs = [{programs}]"),
            "empty: every program",
        );
        match &self.credential {
            Credential::Certificate => {
                line(
                    &mut toml,
                    "cert = true",
                    "may authenticate with its client certificate",
                );
                line(
                    &mut toml,
                    "# token_sha256 = \"...\"",
                    "or with a bearer token (SHA-256 of the token, lowercase hex)",
                );
            }
            Credential::Token { sha256, expires } => {
                line(
                    &mut toml,
                    "cert = false",
                    "may authenticate with its client certificate",
                );
                line(
                    &mut toml,
                    &format!("token_sha256 = \"{sha256}\""),
                    "SHA-256 of the bearer token, lowercase hex",
                );
                if let Some(expires) = expires {
                    line(
                        &mut toml,
                        &format!(
                            "expires = \"{}\"",
                            humantime::format_rfc3339_seconds(*expires)
                        ),
                        "the token is refused from then on",
                    );
                }
            }
        }
        toml
    }
}

/// Appends `value`, then `# comment` at [`COMMENT_COLUMN`] (or one space further).
fn line(toml: &mut String, value: &str, comment: &str) {
    let padding = COMMENT_COLUMN.saturating_sub(value.len()).max(1);
    // Writing to a String cannot fail.
    let _ = writeln!(toml, "{value}{:padding$}# {comment}", "");
}

/// A new bearer token: [`TOKEN_BYTES`] bytes from the operating system's CSPRNG, as
/// lowercase hex.
pub fn new_token() -> Result<String, Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    SystemRandom::new().fill(&mut bytes).map_err(|_| {
        Error::new(
            Exit::Error,
            "the operating system's random number generator failed",
        )
    })?;
    Ok(hex(&bytes))
}

/// The `token_sha256` of `token`: SHA-256 of its text (the characters the operator
/// sends, not the random bytes they encode), lowercase hex.
#[must_use]
pub fn token_sha256(token: &str) -> String {
    hex(digest::digest(&digest::SHA256, token.as_bytes()).as_ref())
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

/// What `token new` prints on stderr around the entry.
#[must_use]
pub fn instructions(entry: &OperatorEntry) -> String {
    format!(
        "The token above is shown once: give it to {name}, who sets it in KILLSWITCH_TOKEN.\n\
         Add this entry to the control plane's auth.toml (or, if {name} already has one, its\n\
         token_sha256 line), then restart the control plane:\n\n{entry}",
        name = entry.name,
        entry = entry.to_toml(),
    )
}

/// Checks that `role` may be limited to `programs`: the control plane refuses an admin
/// entry that lists programs.
pub fn check_scope(role: Role, programs: &[ProgramName]) -> Result<(), Error> {
    if role == Role::Admin && !programs.is_empty() {
        return Err(Error::usage(
            "an admin covers every program: drop --program, or use --role owner",
        ));
    }
    Ok(())
}

/// Runs `killswitch token ...`: the token on `out`, the entry on stderr.
pub fn run(command: TokenCommand, format: OutputFormat, out: &mut Sink<'_>) -> Result<(), Error> {
    let TokenCommand::New(args) = command;
    check_scope(args.role, &args.programs)?;
    let token = new_token()?;
    let entry = OperatorEntry {
        name: args.name,
        role: args.role,
        programs: args.programs,
        credential: Credential::Token {
            sha256: token_sha256(&token),
            expires: args.ttl.map(|ttl| std::time::SystemTime::now() + ttl),
        },
    };
    if format == OutputFormat::Json {
        return out.write(&crate::output::json(&serde_json::json!({
            "name": entry.name.to_string(),
            "token": token,
            "auth_toml_entry": entry.to_toml(),
        }))?);
    }
    out.write(&format!("{token}\n"))?;
    std::io::stderr()
        .lock()
        .write_all(instructions(&entry).as_bytes())
        .map_err(|e| {
            Error::new(
                Exit::Error,
                format!("cannot write the auth.toml entry: {e}"),
            )
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn operator_names() {
        #[track_caller]
        fn check(name: &str, valid: bool) {
            assert_eq!(OperatorName::parse(name).is_ok(), valid, "{name:?}");
        }
        check("a", true);
        check("alice", true);
        check("alice.smith_2-x", true);
        check(&format!("a{}", "b".repeat(63)), true);
        check(&format!("a{}", "b".repeat(64)), false);
        // The control plane's rule (killswitch-proto's contract): what auth.toml accepts.
        check("Alice", true);
        check("1alice", true);
        check("", false);
        check(".alice", false);
        check("-alice", false);
        check("al ice", false);
        check("al\"ice", false);
        check("alice:admin", false);
        check("alicé", false);
    }

    #[test]
    fn tokens_are_random_hex() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_eq!(a.len(), 2 * TOKEN_BYTES);
        assert!(
            a.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
            "{a}"
        );
        assert_ne!(a, b);
    }

    #[test]
    fn hashes_the_token_text() {
        // Known SHA-256 values (e.g. `printf abc | sha256sum`).
        assert_eq!(
            token_sha256(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            token_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    fn entry(programs: &[&str], credential: Credential) -> OperatorEntry {
        OperatorEntry {
            name: OperatorName::parse("alice").unwrap(),
            role: Role::Admin,
            programs: programs
                .iter()
                .map(|p| ProgramName::parse(p).unwrap())
                .collect(),
            credential,
        }
    }

    #[test]
    fn certificate_entry_has_the_documented_format() {
        assert_eq!(
            entry(&[], Credential::Certificate).to_toml(),
            r#"[[operator]]
name = "alice"
role = "admin"            # viewer | responder | owner | admin
programs = []             # empty: every program
cert = true               # may authenticate with its client certificate
# token_sha256 = "..."    # or with a bearer token (SHA-256 of the token, lowercase hex)
"#
        );
    }

    #[test]
    fn token_entry() {
        let sha256 = token_sha256("abc");
        let toml = entry(
            &["demo", "screen-v2"],
            Credential::Token {
                sha256,
                expires: None,
            },
        )
        .to_toml();
        assert_eq!(
            toml,
            r#"[[operator]]
name = "alice"
role = "admin"            # viewer | responder | owner | admin
programs = ["demo", "screen-v2"] # empty: every program
cert = false              # may authenticate with its client certificate
token_sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" # SHA-256 of the bearer token, lowercase hex
"#
        );
    }

    #[test]
    fn an_expiring_token_entry_says_when() {
        let sha256 = token_sha256("abc");
        let expires = Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_900_000_000));
        let toml = entry(&[], Credential::Token { sha256, expires }).to_toml();
        assert!(
            toml.contains("expires = \"2030-03-17T17:46:40Z\""),
            "{toml}"
        );
        let table: toml::Table = toml.parse().unwrap();
        assert_eq!(
            table["operator"].as_array().unwrap()[0]["expires"].as_str(),
            Some("2030-03-17T17:46:40Z")
        );
        assert!(parse_ttl("30s").is_err());
        assert_eq!(
            parse_ttl("8h"),
            Ok(std::time::Duration::from_secs(8 * 3600))
        );
    }

    #[test]
    fn token_entry_is_valid_toml() {
        let sha256 = token_sha256("abc");
        let toml = entry(
            &["demo"],
            Credential::Token {
                sha256,
                expires: None,
            },
        )
        .to_toml();
        let table: toml::Table = toml.parse().unwrap();
        let operator = &table["operator"].as_array().unwrap()[0];
        assert_eq!(operator["name"].as_str(), Some("alice"));
        assert_eq!(operator["role"].as_str(), Some("admin"));
        assert_eq!(operator["programs"].as_array().unwrap().len(), 1);
        assert_eq!(operator["cert"].as_bool(), Some(false));
        assert_eq!(
            operator["token_sha256"].as_str(),
            Some(token_sha256("abc").as_str())
        );
    }

    #[test]
    fn command_line() {
        use clap::Parser as _;

        use crate::cli::{Cli, Command};

        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("killswitch").chain(args.iter().copied()))
        };
        let cli = parse(&[
            "token",
            "new",
            "carol",
            "--role",
            "owner",
            "--program",
            "demo",
        ]);
        let Command::Token(TokenCommand::New(args)) = cli.unwrap().command else {
            panic!("expected token new");
        };
        assert_eq!(
            (args.name.as_str(), args.role, args.programs.len()),
            ("carol", Role::Owner, 1)
        );
        for bad in [
            &["token", "new", "carol"][..],
            &["token", "new", "--role", "admin"],
            &["token", "new", "-carol", "--role", "admin"],
            &["token", "new", "carol", "--role", "root"],
            &[
                "token",
                "new",
                "carol",
                "--role",
                "admin",
                "--program",
                "Demo",
            ],
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad:?}: {err}");
        }
    }

    #[test]
    fn admins_cover_every_program() {
        let demo = [ProgramName::parse("demo").unwrap()];
        assert_eq!(
            check_scope(Role::Admin, &demo).unwrap_err().exit(),
            Exit::Usage
        );
        assert!(check_scope(Role::Admin, &[]).is_ok());
        for role in [Role::Viewer, Role::Responder, Role::Owner] {
            assert!(check_scope(role, &demo).is_ok(), "{role}");
        }
    }

    #[test]
    fn roles_read_as_written() {
        for role in [Role::Viewer, Role::Responder, Role::Owner, Role::Admin] {
            assert_eq!(Role::from_str(role.as_str(), false), Ok(role));
        }
        assert!(Role::from_str("root", false).is_err());
    }
}
