//! Validated command-line input: program names, reasons, the actor, the endpoint, the
//! bearer token, the RPC timeout and `--wait` duration, the failure policy's parts, the
//! collector filter, where `audit --since` starts, label selectors, and the stages and
//! interval of a staged resume.
//!
//! Each type is built by a `parse` function that clap uses as its value parser, so an
//! invalid value is rejected as a usage error (exit 2) before anything is sent, and the
//! rest of the crate never sees one.

use std::ffi::OsString;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Uri;

/// Longest reason the control plane accepts, in bytes (see `PauseRequest.reason`).
pub const MAX_REASON_BYTES: usize = 1024;

/// Actor recorded when neither `--actor`, `KILLSWITCH_ACTOR` nor `USER` is set.
pub const UNKNOWN_ACTOR: &str = "unknown";

/// A program name matching `^[a-z][a-z0-9-]{0,62}$`, the rule in `types.proto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramName(String);

impl ProgramName {
    /// Parses a program name; the error says what the rule is.
    pub fn parse(s: &str) -> Result<Self, String> {
        killswitch_proto::contract::program_name(s).map_err(|violation| violation.to_string())?;
        Ok(Self(s.to_owned()))
    }

    /// The name as sent on the wire.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProgramName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a change is made: not blank, at most [`MAX_REASON_BYTES`] bytes. It goes to the audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(String);

impl Reason {
    /// Parses a reason.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Err("a reason is required (it is recorded in the audit)".to_owned());
        }
        if s.len() > MAX_REASON_BYTES {
            return Err(format!(
                "the reason is {} bytes long, at most {MAX_REASON_BYTES} are allowed",
                s.len()
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The reason as sent on the wire.
    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Who is acting, sent as the `killswitch-actor` gRPC metadata on every request.
///
/// Printable ASCII only (metadata values are ASCII), not empty, no surrounding spaces.
#[derive(Debug, Clone)]
pub struct Actor {
    name: String,
    value: AsciiMetadataValue,
}

impl Actor {
    /// Parses an actor name.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("the actor must not be empty".to_owned());
        }
        if s.trim() != s {
            return Err("the actor must not start or end with whitespace".to_owned());
        }
        if !s.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
            return Err(
                "the actor must be printable ASCII (it is sent as gRPC metadata)".to_owned(),
            );
        }
        let value = AsciiMetadataValue::try_from(s)
            .map_err(|_| "the actor is not a valid gRPC metadata value".to_owned())?;
        Ok(Self {
            name: s.to_owned(),
            value,
        })
    }

    /// Picks the actor: the flag (or `KILLSWITCH_ACTOR`, which clap folds into it), else
    /// the `USER` environment variable, else [`UNKNOWN_ACTOR`].
    ///
    /// `user` is the value of `USER`, passed in so this stays testable. An unusable `USER`
    /// is an error rather than silently becoming `unknown`: the audit should say who it was.
    pub fn resolve(flag: Option<Actor>, user: Option<OsString>) -> Result<Self, String> {
        if let Some(actor) = flag {
            return Ok(actor);
        }
        match user {
            Some(user) if !user.is_empty() => {
                let user = user.to_str().ok_or_else(|| {
                    "the actor taken from USER is not valid UTF-8; set --actor or KILLSWITCH_ACTOR"
                        .to_owned()
                })?;
                Self::parse(user).map_err(|e| {
                    format!(
                        "the actor taken from USER is invalid: {e}; set --actor or KILLSWITCH_ACTOR"
                    )
                })
            }
            _ => Self::parse(UNKNOWN_ACTOR),
        }
    }

    /// The actor's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The actor as a metadata value.
    #[must_use]
    pub fn metadata_value(&self) -> &AsciiMetadataValue {
        &self.value
    }
}

/// The control plane's address, `https://HOST:PORT` (or `http://` for a replica run with
/// `--insecure-dev`). Keeps the text as typed for messages.
#[derive(Debug, Clone)]
pub struct EndpointUrl {
    text: String,
    uri: Uri,
}

impl EndpointUrl {
    /// Parses an endpoint URL: `https://` (TLS) or `http://` (plain text).
    pub fn parse(s: &str) -> Result<Self, String> {
        const EXPECTED: &str = "expected https://HOST:PORT (or http:// for --insecure-dev)";
        let uri: Uri = s
            .parse()
            .map_err(|e| format!("not a URL ({e}); {EXPECTED}"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            Some(other) => return Err(format!("unsupported scheme '{other}'; {EXPECTED}")),
            None => return Err(format!("missing scheme; {EXPECTED}")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(format!("missing host; {EXPECTED}"));
        }
        Ok(Self {
            text: s.to_owned(),
            uri,
        })
    }

    /// The parsed URI.
    #[must_use]
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// Whether the endpoint uses TLS.
    #[must_use]
    pub fn is_https(&self) -> bool {
        self.uri.scheme_str() == Some("https")
    }
}

/// A bearer token, sent as `authorization: Bearer TOKEN`. Its `Debug` hides it.
#[derive(Clone)]
pub struct BearerToken(AsciiMetadataValue);

impl BearerToken {
    /// Parses a token: printable ASCII without spaces.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("the token must not be empty".to_owned());
        }
        if !s.chars().all(|c| c.is_ascii_graphic()) {
            return Err("the token must be printable ASCII without spaces".to_owned());
        }
        let mut value = AsciiMetadataValue::try_from(format!("Bearer {s}"))
            .map_err(|_| "the token is not a valid gRPC metadata value".to_owned())?;
        value.set_sensitive(true);
        Ok(Self(value))
    }

    /// `Bearer TOKEN`, as the `authorization` metadata value.
    #[must_use]
    pub fn authorization(&self) -> &AsciiMetadataValue {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<hidden>)")
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses the per-RPC timeout (humantime, e.g. `10s`, `1m 30s`); zero is rejected because
/// every call would fail at once.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    parse_positive_duration(s, "the timeout")
}

/// Parses how long `--wait` waits for acknowledgements (humantime, e.g. `30s`); zero is
/// rejected because it could only ever time out.
pub fn parse_wait(s: &str) -> Result<Duration, String> {
    parse_positive_duration(s, "the wait")
}

/// `--ttl`: how long a resume request waits for approval, 2s to 24h.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 15m, 1h)"))?;
    if ttl < Duration::from_secs(2) || ttl > Duration::from_secs(24 * 3600) {
        return Err("use 2s to 24h".to_owned());
    }
    Ok(ttl)
}

/// The 8 hex digits of an approval request id, as `killswitch resume` printed them.
pub fn parse_request_id(s: &str) -> Result<String, String> {
    if s.len() == 8
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(s.to_owned())
    } else {
        Err("use the 8 hex digits `killswitch resume` printed".to_owned())
    }
}

fn parse_positive_duration(s: &str, what: &str) -> Result<Duration, String> {
    let duration =
        humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 10s, 500ms, 1m)"))?;
    if duration.is_zero() {
        return Err(format!("{what} must be greater than zero"));
    }
    Ok(duration)
}

/// A label selector as typed (`--selector 'region=emea'`), sent to the control plane as
/// it is: the control plane parses it and answers `INVALID_ARGUMENT` naming the column of
/// the first problem. Only what would change the command's meaning is refused here: a
/// blank selector, which the control plane reads as "every collector".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorArg(String);

impl SelectorArg {
    /// Longest selector sent, in bytes (the control plane's limit).
    pub const MAX_BYTES: usize = 4096;

    /// Accepts any selector that is not blank and not absurdly long.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Err(
                "the selector is empty: give one, e.g. --selector 'region=emea', or \
                        leave --selector out to act on every collector"
                    .to_owned(),
            );
        }
        if s.len() > Self::MAX_BYTES {
            return Err(format!(
                "the selector is {} bytes long, at most {} are allowed: select on fewer or \
                 broader labels",
                s.len(),
                Self::MAX_BYTES
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The selector as typed.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Most stages a staged resume may have (the control plane's limit).
pub const MAX_STAGES: usize = 10;

/// `--stages`: the percentages of a staged resume, e.g. `1%,10%,50%,100%`. Checked here
/// (the control plane checks again), so a typo is a usage error before anything is sent:
/// 1 to [`MAX_STAGES`] whole percentages from 1 to 100, each written `N%` or `N`, strictly
/// growing, the last one 100.
pub fn parse_stages(s: &str) -> Result<Vec<u32>, String> {
    const EXAMPLE: &str = "e.g. --stages 1%,10%,50%,100%";
    let mut stages = Vec::new();
    for (i, item) in s.split(',').enumerate() {
        let n = i + 1;
        if item.is_empty() {
            return Err(format!("stage {n} is empty ({EXAMPLE})"));
        }
        let digits = item.strip_suffix('%').unwrap_or(item);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "stage {n} ({item:?}) is not a whole percentage ({EXAMPLE})"
            ));
        }
        let percent: u32 = digits
            .parse()
            .ok()
            .filter(|p| (1..=100).contains(p))
            .ok_or_else(|| format!("stage {n} ({item}) is not a percentage from 1% to 100%"))?;
        if let Some(&previous) = stages.last() {
            if percent <= previous {
                return Err(format!(
                    "stage {n} ({percent}%) does not grow from stage {i} ({previous}%): each \
                     stage covers more collectors than the one before ({EXAMPLE})"
                ));
            }
        }
        stages.push(percent);
    }
    if stages.len() > MAX_STAGES {
        return Err(format!(
            "{} stages given, at most {MAX_STAGES} are allowed",
            stages.len()
        ));
    }
    if stages.last() != Some(&100) {
        return Err(format!(
            "the last stage must be 100%, so that the resume reaches every collector \
             ({EXAMPLE})"
        ));
    }
    Ok(stages)
}

/// The stages of a staged resume, parsed by [`parse_stages`]: one flag value holding the
/// whole list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stages(Vec<u32>);

impl Stages {
    /// Parses `1%,10%,50%,100%` (see [`parse_stages`]).
    pub fn parse(s: &str) -> Result<Self, String> {
        parse_stages(s).map(Self)
    }

    /// The percentages, ascending, the last 100.
    #[must_use]
    pub fn percentages(&self) -> &[u32] {
        &self.0
    }
}

/// `--interval`: the least time each stage of a staged resume runs before the next one
/// starts, 0s (as soon as it is acknowledged) to 24h.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 30s, 5m)"))?;
    if interval > Duration::from_secs(24 * 3600) {
        return Err("use 0s to 24h".to_owned());
    }
    Ok(interval)
}

/// What a program's collectors do when they lose contact with the control plane. JSON
/// shows it as `pause` or `keep`, the values the flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LostContact {
    /// Fail closed: pause after the grace period without hearing from the control plane
    Pause,
    /// Fail open: keep the last state received (only for programs whose owner chose it)
    Keep,
}

impl LostContact {
    /// The name shown in tables and JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            LostContact::Pause => "pause",
            LostContact::Keep => "keep",
        }
    }
}

impl fmt::Display for LostContact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How long a collector may go without hearing from the control plane before it pauses by
/// itself: [`Grace::MIN`] to [`Grace::MAX`], the range the control plane accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grace(Duration);

impl Grace {
    /// Shortest grace accepted.
    pub const MIN: Duration = Duration::from_secs(1);
    /// Longest grace accepted.
    pub const MAX: Duration = Duration::from_secs(24 * 60 * 60);

    /// Parses a grace period (humantime, e.g. `30s`, `5m`). Checked here too, so a typo is
    /// a usage error before anything is sent.
    pub fn parse(s: &str) -> Result<Self, String> {
        let grace = humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 30s, 5m, 1h)"))?;
        if !(Self::MIN..=Self::MAX).contains(&grace) {
            return Err("the grace must be between 1s and 24h".to_owned());
        }
        Ok(Self(grace))
    }

    /// Whole milliseconds, as sent on the wire (anything finer is dropped).
    #[must_use]
    pub fn as_millis(self) -> u64 {
        // At most 24 h, so it always fits.
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Most entries `audit --limit` asks for (the control plane returns no more).
pub const MAX_AUDIT_LIMIT: u32 = 10_000;

/// Where `audit --since` starts: a point in time, or a duration before now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// An RFC 3339 time, UTC when it names no zone.
    At(SystemTime),
    /// That long before the command runs.
    Ago(Duration),
}

impl Since {
    /// Parses an RFC 3339 time (`2026-11-29T09:00:00Z`, `2026-11-29 09:00:00`) or a
    /// duration ago (`2h`, `30m`, `1day`).
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Ok(at) = humantime::parse_rfc3339_weak(s) {
            return Ok(Self::At(at));
        }
        humantime::parse_duration(s).map(Self::Ago).map_err(|_| {
            "expected an RFC 3339 time (e.g. 2026-11-29T09:00:00Z) or a duration ago \
             (e.g. 2h, 30m)"
                .to_owned()
        })
    }

    /// The point in time, with `now` for a duration ago; a duration longer than the time
    /// since 1970 starts at 1970.
    #[must_use]
    pub fn resolve(self, now: SystemTime) -> SystemTime {
        match self {
            Self::At(at) => at,
            Self::Ago(ago) => now.checked_sub(ago).unwrap_or(UNIX_EPOCH).max(UNIX_EPOCH),
        }
    }
}

/// Which collectors `collectors` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectorFilter {
    /// Every connected collector.
    All,
    /// Connected collectors that have not acknowledged the current generation.
    Pending,
    /// Collectors whose hooks failed at the current generation.
    Errored,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_sent_as_typed_unless_blank() {
        for ok in ["region=emea", " region = emea ", "a,,b", "x in (", "!k"] {
            assert_eq!(SelectorArg::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "  ", "\t"] {
            let err = SelectorArg::parse(bad).unwrap_err();
            assert!(err.contains("leave --selector out"), "{bad:?}: {err}");
        }
        let long = "a".repeat(SelectorArg::MAX_BYTES + 1);
        assert!(
            SelectorArg::parse(&long)
                .unwrap_err()
                .contains("4097 bytes")
        );
    }

    #[test]
    fn stages() {
        let cases: &[(&str, Result<&[u32], &str>)] = &[
            ("100%", Ok(&[100])),
            ("100", Ok(&[100])),
            ("1%,10%,50%,100%", Ok(&[1, 10, 50, 100])),
            ("20,100%", Ok(&[20, 100])),
            (
                "1%,2%,3%,4%,5%,6%,7%,8%,9%,100%",
                Ok(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 100]),
            ),
            ("", Err("stage 1 is empty")),
            ("10%,,100%", Err("stage 2 is empty")),
            ("10%,100%,", Err("stage 3 is empty")),
            (
                "10%, 100%",
                Err("stage 2 (\" 100%\") is not a whole percentage"),
            ),
            ("0.5%,100%", Err("is not a whole percentage")),
            ("%,100%", Err("is not a whole percentage")),
            ("-5%,100%", Err("is not a whole percentage")),
            ("10%%,100%", Err("is not a whole percentage")),
            (
                "0%,100%",
                Err("stage 1 (0%) is not a percentage from 1% to 100%"),
            ),
            ("101%", Err("is not a percentage from 1% to 100%")),
            ("99999999999%", Err("is not a percentage from 1% to 100%")),
            (
                "50%,10%,100%",
                Err("stage 2 (10%) does not grow from stage 1 (50%)"),
            ),
            ("10%,10%,100%", Err("does not grow")),
            ("10%,50%", Err("the last stage must be 100%")),
            (
                "1%,2%,3%,4%,5%,6%,7%,8%,9%,10%,100%",
                Err("11 stages given, at most 10"),
            ),
        ];
        for (input, expected) in cases {
            match (parse_stages(input), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{input:?}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{input:?}: {got}"),
                (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_interval("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_interval("24h"), Ok(Duration::from_secs(86_400)));
        assert!(parse_interval("24h 1s").is_err());
        assert!(parse_interval("soon").is_err());
        assert!(parse_interval("30").is_err());
    }

    #[test]
    fn program_names() {
        let long_ok = format!("a{}", "b".repeat(62));
        let too_long = format!("a{}", "b".repeat(63));
        let cases: &[(&str, bool)] = &[
            ("demo", true),
            ("a", true),
            ("web-logs-2", true),
            ("a-", true),
            (&long_ok, true),
            (&too_long, false),
            ("", false),
            ("Demo", false),
            ("1demo", false),
            ("-demo", false),
            ("de_mo", false),
            ("de mo", false),
            ("démo", false),
        ];
        for (input, ok) in cases {
            assert_eq!(ProgramName::parse(input).is_ok(), *ok, "{input:?}");
        }
    }

    #[test]
    fn reasons() {
        let max = "x".repeat(MAX_REASON_BYTES);
        let over = "x".repeat(MAX_REASON_BYTES + 1);
        let cases: &[(&str, bool)] = &[
            ("incident 42: leaking PII", true),
            (&max, true),
            (&over, false),
            ("", false),
            ("   ", false),
        ];
        for (input, ok) in cases {
            assert_eq!(Reason::parse(input).is_ok(), *ok, "{input:?}");
        }
    }

    #[test]
    fn actors() {
        let cases: &[(&str, bool)] = &[
            ("alice", true),
            ("alice@example.com", true),
            ("Alice Smith", true),
            ("", false),
            (" alice", false),
            ("alice\t", false),
            ("al\nice", false),
            ("alicé", false),
            ("al\u{7f}ice", false),
        ];
        for (input, ok) in cases {
            assert_eq!(Actor::parse(input).is_ok(), *ok, "{input:?}");
        }
    }

    #[test]
    fn actor_resolution() {
        fn check(flag: Option<&str>, user: Option<&str>, expected: Result<&str, ()>) {
            let actor = flag.map(|f| Actor::parse(f).unwrap());
            let got = Actor::resolve(actor, user.map(OsString::from));
            let got = got.as_ref().map(Actor::name).map_err(|_| ());
            assert_eq!(got, expected, "flag {flag:?}, user {user:?}");
        }
        check(Some("bob"), Some("alice"), Ok("bob"));
        check(None, Some("alice"), Ok("alice"));
        check(None, Some(""), Ok(UNKNOWN_ACTOR));
        check(None, None, Ok(UNKNOWN_ACTOR));
        check(None, Some("élodie"), Err(()));
    }

    #[test]
    fn endpoints() {
        let cases: &[(&str, bool)] = &[
            ("http://127.0.0.1:7070", true),
            ("http://localhost:7070", true),
            ("http://[::1]:7070", true),
            ("http://control.internal", true),
            ("https://control.internal:7070", true),
            ("https://127.0.0.1:7070", true),
            ("127.0.0.1:7070", false),
            ("localhost", false),
            ("ftp://host:21", false),
            ("http://", false),
            ("", false),
            ("http://bad host:7070", false),
        ];
        for (input, ok) in cases {
            assert_eq!(EndpointUrl::parse(input).is_ok(), *ok, "{input:?}");
        }
    }

    #[test]
    fn bearer_tokens() {
        let cases: &[(&str, bool)] = &[
            ("0123abcd", true),
            ("a-b_c.d~e+f/g=", true),
            ("", false),
            ("two words", false),
            ("tab\there", false),
            ("élodie", false),
        ];
        for (input, ok) in cases {
            assert_eq!(BearerToken::parse(input).is_ok(), *ok, "{input:?}");
        }
        let token = BearerToken::parse("secret").unwrap();
        assert_eq!(token.authorization().to_str().unwrap(), "Bearer secret");
        assert!(!format!("{token:?}").contains("secret"));
        assert!(EndpointUrl::parse("https://h:1").unwrap().is_https());
        assert!(!EndpointUrl::parse("http://h:1").unwrap().is_https());
    }

    #[test]
    fn endpoint_keeps_the_text_as_typed() {
        let url = EndpointUrl::parse("http://127.0.0.1:7070").unwrap();
        assert_eq!(url.to_string(), "http://127.0.0.1:7070");
    }

    #[test]
    fn timeouts() {
        let cases: &[(&str, Option<Duration>)] = &[
            ("10s", Some(Duration::from_secs(10))),
            ("500ms", Some(Duration::from_millis(500))),
            ("1m 30s", Some(Duration::from_secs(90))),
            ("0s", None),
            ("10", None),
            ("soon", None),
            ("", None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_timeout(input).ok(), *expected, "{input:?}");
            assert_eq!(parse_wait(input).ok(), *expected, "{input:?}");
        }
        assert_eq!(
            parse_wait("0s").unwrap_err(),
            "the wait must be greater than zero"
        );
    }

    #[test]
    fn graces() {
        let cases: &[(&str, Option<u64>)] = &[
            ("1s", Some(1_000)),
            ("30s", Some(30_000)),
            ("1m 30s", Some(90_000)),
            ("1s 500ms", Some(1_500)),
            ("24h", Some(86_400_000)),
            ("1day", Some(86_400_000)),
            ("999ms", None),
            ("0s", None),
            ("24h 1ms", None),
            ("2days", None),
            ("30", None),
            ("soon", None),
            ("", None),
        ];
        for (input, expected) in cases {
            assert_eq!(
                Grace::parse(input).ok().map(Grace::as_millis),
                *expected,
                "{input:?}"
            );
        }
        assert_eq!(
            Grace::parse("0s").unwrap_err(),
            "the grace must be between 1s and 24h"
        );
    }

    #[test]
    fn since() {
        // 2026-11-29T09:00:00Z
        let nine = UNIX_EPOCH + Duration::from_secs(1_795_942_800);
        let now = nine + Duration::from_secs(3 * 3600);
        let cases: &[(&str, Option<SystemTime>)] = &[
            ("2026-11-29T09:00:00Z", Some(nine)),
            ("2026-11-29 09:00:00", Some(nine)),
            (
                "2026-11-29T09:00:00.5Z",
                Some(nine + Duration::from_millis(500)),
            ),
            ("2h", Some(now - Duration::from_secs(7200))),
            ("3h", Some(nine)),
            ("1m 30s", Some(now - Duration::from_secs(90))),
            ("0s", Some(now)),
            ("100000days", Some(UNIX_EPOCH)),
            ("yesterday", None),
            ("2026-11-29", None),
            ("2026-11-29T09:00:00+02:00", None),
            ("30", None),
            ("", None),
        ];
        for (input, expected) in cases {
            let got = Since::parse(input).ok().map(|s| s.resolve(now));
            assert_eq!(got, *expected, "{input:?}");
        }
        assert!(
            Since::parse("soon")
                .unwrap_err()
                .starts_with("expected an RFC 3339 time")
        );
    }
}
