//! Who is calling: whom a client certificate names ([`CertSubject`], [`subject_of`],
//! [`parse_spiffe_id`]), bearer tokens, the [`Caller`] that [`identify`] makes of them
//! and what each kind of caller may call, the check of a collector's Hello against its
//! certificate ([`check_hello`]), and the actor under `--insecure-dev`.
//!
//! **Layer:** api. May import [`crate::model`], `killswitch_proto` and its siblings'
//! auth file, roles and [`AuthError`]; never `crate::store` or `crate::replica`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use killswitch_proto::contract;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::file::valid_segment;
use super::{ANONYMOUS, Action, AuthConfig, AuthError, Operator};
use crate::model::{self, CollectorId, InvalidInput};

/// A collector as its certificate names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertifiedCollector {
    /// The collector id the certificate proves.
    pub id: CollectorId,
    /// The labels its SPIFFE ID's query sets (`spiffe://TD/collector/ID?region=emea`):
    /// the values of the auth file's `pinned_labels` come from here, never from Hello.
    pub labels: BTreeMap<String, String>,
}

impl CertifiedCollector {
    /// A collector whose certificate sets no label.
    #[must_use]
    pub fn bare(id: CollectorId) -> Self {
        Self {
            id,
            labels: BTreeMap::new(),
        }
    }
}

/// Whom a client certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSubject {
    /// `spiffe://TD/collector/ID[?KEY=VALUE&...]`, or a certificate without URI SAN whose
    /// CN is `ID`.
    Collector(CertifiedCollector),
    /// `spiffe://TD/operator/NAME`.
    Operator(String),
    /// `spiffe://TD/replica/NAME`.
    Replica(String),
}

/// Reads a SPIFFE ID `spiffe://TD/KIND/NAME` whose trust domain must be `trust_domain`.
pub fn parse_spiffe_id(uri: &str, trust_domain: &str) -> Result<CertSubject, AuthError> {
    let bad = |why: &str| AuthError::BadCertificate(format!("SPIFFE ID {uri:?} {why}"));
    let rest = uri
        .strip_prefix("spiffe://")
        .ok_or_else(|| bad("does not start with spiffe://"))?;
    let (td, path) = rest.split_once('/').ok_or_else(|| {
        bad("has no path: expected spiffe://TD/collector/ID or spiffe://TD/operator/NAME")
    })?;
    if td != trust_domain {
        return Err(AuthError::ForeignTrustDomain {
            found: td.to_owned(),
            expected: trust_domain.to_owned(),
        });
    }
    let Some((kind, name)) = path.split_once('/') else {
        return Err(bad(
            "has no name: expected spiffe://TD/collector/ID or spiffe://TD/operator/NAME",
        ));
    };
    match kind {
        "collector" => {
            let (id, query) = name.split_once('?').unwrap_or((name, ""));
            let id = CollectorId::parse(id)
                .map_err(|e| bad(&format!("has an invalid collector id: {e}")))?;
            let labels = parse_label_query(query).map_err(|why| bad(&why))?;
            Ok(CertSubject::Collector(CertifiedCollector { id, labels }))
        }
        "operator" if valid_segment(name) => Ok(CertSubject::Operator(name.to_owned())),
        "replica" if valid_segment(name) => Ok(CertSubject::Replica(name.to_owned())),
        "operator" | "replica" => Err(bad(&format!("has an invalid {kind} name"))),
        _ => Err(bad(&format!(
            "names a {kind:?}: expected collector, operator or replica"
        ))),
    }
}

/// The labels of a collector SPIFFE ID's query, `region=emea&team=payments`: keys and
/// values as Hello labels, each key once, at most [`contract::MAX_LABELS`].
fn parse_label_query(query: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("has a label {pair:?} without '=': expected KEY=VALUE"))?;
        contract::label_key(key).map_err(|e| format!("has an invalid label: {e}"))?;
        contract::label_value(value).map_err(|e| format!("has an invalid label: {e}"))?;
        if labels.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(format!("sets label {key:?} twice"));
        }
    }
    if labels.len() > contract::MAX_LABELS {
        return Err(format!(
            "sets {} labels; at most {} are allowed",
            labels.len(),
            contract::MAX_LABELS
        ));
    }
    Ok(labels)
}

/// Whom the DER certificate `der` names: its one `spiffe://` URI SAN, or without any URI
/// SAN, its common name as a collector id.
pub fn subject_of(der: &[u8], trust_domain: &str) -> Result<CertSubject, AuthError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| AuthError::BadCertificate(format!("cannot parse it: {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| AuthError::BadCertificate(format!("bad subject alternative names: {e}")))?;
    let uris: Vec<&str> = san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [] => {
            let cn = cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .ok_or_else(|| {
                    AuthError::BadCertificate(
                        "it has neither a spiffe:// URI SAN nor a common name".to_owned(),
                    )
                })?;
            CollectorId::parse(cn)
                .map(|id| CertSubject::Collector(CertifiedCollector::bare(id)))
                .map_err(|e| {
                    AuthError::BadCertificate(format!("its common name is not a collector id: {e}"))
                })
        }
        [uri] => parse_spiffe_id(uri, trust_domain),
        more => Err(AuthError::BadCertificate(format!(
            "it has {} URI SANs; expected one spiffe:// ID",
            more.len()
        ))),
    }
}

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller<'a> {
    /// `--insecure-dev`: anyone, named by the `killswitch-actor` metadata.
    Developer(String),
    /// An operator listed in `auth.toml`.
    Operator(&'a Operator),
    /// A collector, by its certificate.
    Collector(CertifiedCollector),
    /// A peer replica asking for this replica's collectors.
    Replica(String),
}

impl Caller<'_> {
    /// May this caller perform `action` (on `program`)? Returns the actor to record.
    pub fn authorize(&self, action: Action, program: Option<&str>) -> Result<String, AuthError> {
        match self {
            Caller::Developer(actor) => Ok(actor.clone()),
            Caller::Operator(operator) => {
                operator.permits(action, program)?;
                Ok(operator.name.clone())
            }
            Caller::Collector(_) => Err(AuthError::CollectorOnAdmin),
            Caller::Replica(name) if action == Action::ListCollectors => {
                Ok(format!("replica {name}"))
            }
            Caller::Replica(_) => Err(AuthError::ReplicaOnAdmin(action.rpc())),
        }
    }
}

/// Identifies the caller of a TLS replica from the leaf of its verified certificate
/// chain, else its `authorization` metadata. `own_cert` is this replica's certificate: a
/// peer replica presenting it is a [`Caller::Replica`].
pub fn identify<'a>(
    config: &'a AuthConfig,
    own_cert: &[u8],
    leaf: Option<&[u8]>,
    authorization: Option<&AsciiMetadataValue>,
) -> Result<Caller<'a>, AuthError> {
    if let Some(der) = leaf {
        if der == own_cert {
            return Ok(Caller::Replica("peer".to_owned()));
        }
        return match subject_of(der, &config.trust_domain)? {
            CertSubject::Collector(collector) => Ok(Caller::Collector(collector)),
            CertSubject::Replica(name) => Ok(Caller::Replica(name)),
            CertSubject::Operator(name) => match config.operator(&name) {
                None => Err(AuthError::UnknownOperator(name)),
                Some(operator) if !operator.cert => Err(AuthError::CertificateNotAllowed(name)),
                Some(operator) => Ok(Caller::Operator(operator)),
            },
        };
    }
    let Some(value) = authorization else {
        return Err(AuthError::NoCredentials);
    };
    let token = bearer_token(value).ok_or(AuthError::MalformedAuthorization)?;
    let operator = config
        .operator_by_token(token)
        .ok_or(AuthError::UnknownToken)?;
    match operator.token_expires {
        Some(at) if at <= SystemTime::now() => Err(AuthError::TokenExpired {
            operator: operator.name.clone(),
            at: humantime::format_rfc3339_seconds(at).to_string(),
        }),
        _ => Ok(Caller::Operator(operator)),
    }
}

/// `TOKEN` from `Bearer TOKEN` (the scheme is case-insensitive).
fn bearer_token(value: &AsciiMetadataValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    let (scheme, token) = text.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Checks the id a collector's Hello claims against the one its certificate proves, if
/// any (none under `--insecure-dev`), and its labels against the `pinned` keys: a pinned
/// key takes the certificate's value; Hello may repeat it but not contradict it, nor set a
/// pinned key the certificate leaves unset. Returns the collector's labels: Hello's, with
/// the certificate's pinned values.
pub fn check_hello(
    certified: Option<&CertifiedCollector>,
    claimed: &CollectorId,
    labels: &BTreeMap<String, String>,
    pinned: &BTreeSet<String>,
) -> Result<BTreeMap<String, String>, AuthError> {
    let Some(certified) = certified else {
        return Ok(labels.clone());
    };
    if &certified.id != claimed {
        return Err(AuthError::HelloMismatch {
            certified: certified.id.clone(),
            claimed: claimed.clone(),
        });
    }
    let mut merged = labels.clone();
    for key in pinned {
        match (labels.get(key), certified.labels.get(key)) {
            (Some(said), Some(pinned)) if said != pinned => {
                return Err(AuthError::PinnedLabel {
                    collector: claimed.clone(),
                    key: key.clone(),
                    claimed: said.clone(),
                    certified: Some(pinned.clone()),
                });
            }
            (Some(said), None) => {
                return Err(AuthError::PinnedLabel {
                    collector: claimed.clone(),
                    key: key.clone(),
                    claimed: said.clone(),
                    certified: None,
                });
            }
            (_, Some(pinned)) => {
                merged.insert(key.clone(), pinned.clone());
            }
            (None, None) => {}
        }
    }
    if merged.len() > contract::MAX_LABELS {
        return Err(AuthError::BadCertificate(format!(
            "its pinned labels and the Hello's make {} labels; at most {} are allowed",
            merged.len(),
            contract::MAX_LABELS
        )));
    }
    Ok(merged)
}

/// `--insecure-dev`: the actor named by the request, `anonymous` when absent.
pub(super) fn dev_actor(metadata: &MetadataMap) -> Result<String, AuthError> {
    match metadata.get(killswitch_proto::contract::ACTOR_METADATA) {
        None => Ok(ANONYMOUS.to_owned()),
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| InvalidInput::ControlCharacters { field: "actor" })?;
            Ok(model::actor(value)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::auth::fixtures::{TD, config};

    #[test]
    fn callers() {
        let config = config();
        let op = |name: &str| Caller::Operator(config.operator(name).expect("listed"));
        let collector = Caller::Collector(CertifiedCollector::bare(
            CollectorId::parse("c1").expect("valid"),
        ));
        #[track_caller]
        fn check(
            caller: &Caller<'_>,
            action: Action,
            program: Option<&str>,
            expected: Result<&str, &str>,
        ) {
            let got = caller.authorize(action, program);
            match (got, expected) {
                (Ok(actor), Ok(want)) => assert_eq!(actor, want),
                (Err(error), Err(want)) => {
                    assert!(error.to_string().contains(want), "{error} lacks {want:?}");
                }
                (got, want) => {
                    panic!("{caller:?} {action:?} {program:?}: got {got:?}, want {want:?}")
                }
            }
        }
        check(&op("alice"), Action::Resume, Some("anything"), Ok("alice"));
        check(&op("bob"), Action::Pause, Some("demo"), Ok("bob"));
        check(
            &op("bob"),
            Action::Resume,
            Some("demo"),
            Err("Resume needs role owner"),
        );
        check(&op("carol"), Action::Resume, Some("demo"), Ok("carol"));
        check(
            &op("carol"),
            Action::Resume,
            Some("payments"),
            Err("\"payments\" is out of scope"),
        );
        check(
            &op("carol"),
            Action::Status,
            Some("payments"),
            Err("out of scope"),
        );
        check(&op("carol"), Action::ListPrograms, None, Ok("carol"));
        check(
            &op("vic"),
            Action::Pause,
            Some("demo"),
            Err("Pause needs role responder"),
        );
        check(&op("vic"), Action::Status, Some("demo"), Ok("vic"));
        check(
            &collector,
            Action::Status,
            Some("demo"),
            Err("collector credentials cannot call the admin API"),
        );
        check(
            &Caller::Replica("peer".into()),
            Action::ListCollectors,
            Some("demo"),
            Ok("replica peer"),
        );
        check(
            &Caller::Replica("peer".into()),
            Action::Pause,
            Some("demo"),
            Err("replica credentials"),
        );
        check(
            &Caller::Developer("dev".into()),
            Action::Resume,
            Some("demo"),
            Ok("dev"),
        );
    }

    #[test]
    fn spiffe_ids() {
        let collector = |id: &str| {
            Ok(CertSubject::Collector(CertifiedCollector::bare(
                CollectorId::parse(id).expect("valid"),
            )))
        };
        let cases: Vec<(&str, Result<CertSubject, &str>)> = vec![
            ("spiffe://killswitch.test/collector/c-1", collector("c-1")),
            (
                "spiffe://killswitch.test/collector/host.example:9",
                collector("host.example:9"),
            ),
            (
                "spiffe://killswitch.test/operator/alice",
                Ok(CertSubject::Operator("alice".into())),
            ),
            (
                "spiffe://killswitch.test/replica/r1",
                Ok(CertSubject::Replica("r1".into())),
            ),
            (
                "spiffe://other.test/collector/c-1",
                Err("trust domain \"other.test\""),
            ),
            (
                "spiffe://killswitch.test/collector/",
                Err("invalid collector id"),
            ),
            (
                "spiffe://killswitch.test/collector/a/b",
                Err("invalid collector id"),
            ),
            (
                "spiffe://killswitch.test/operator/",
                Err("invalid operator name"),
            ),
            (
                "spiffe://killswitch.test/operator/a/b",
                Err("invalid operator name"),
            ),
            (
                "spiffe://killswitch.test/admin/alice",
                Err("expected collector, operator or replica"),
            ),
            ("spiffe://killswitch.test/collector", Err("has no name")),
            ("spiffe://killswitch.test", Err("has no path")),
            (
                "https://killswitch.test/collector/c-1",
                Err("does not start with spiffe://"),
            ),
        ];
        for (uri, expected) in cases {
            let got = parse_spiffe_id(uri, TD);
            match (&got, expected) {
                (Ok(got), Ok(want)) => assert_eq!(*got, want, "{uri}"),
                (Err(error), Err(want)) => {
                    assert!(
                        error.to_string().contains(want),
                        "{uri}: {error} lacks {want:?}"
                    );
                }
                (got, want) => panic!("{uri}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn bearer_tokens() {
        let config = config();
        let header = |text: &str| AsciiMetadataValue::try_from(text).expect("ascii");
        let cases: &[(Option<&str>, Result<&str, AuthError>)] = &[
            (Some("Bearer bob-token"), Ok("bob")),
            (Some("bearer carol-token"), Ok("carol")),
            (Some("Bearer  vic-token "), Ok("vic")),
            (Some("Bearer alice-token"), Err(AuthError::UnknownToken)),
            (Some("Bearer bob-token2"), Err(AuthError::UnknownToken)),
            (Some("Bearer "), Err(AuthError::MalformedAuthorization)),
            (Some("Basic Ym9i"), Err(AuthError::MalformedAuthorization)),
            (Some("bob-token"), Err(AuthError::MalformedAuthorization)),
            (None, Err(AuthError::NoCredentials)),
        ];
        for (value, expected) in cases {
            let value = value.map(header);
            let got = identify(&config, b"own", None, value.as_ref()).map(|c| match c {
                Caller::Operator(o) => o.name.as_str(),
                other => panic!("not an operator: {other:?}"),
            });
            assert_eq!(got, expected.clone(), "{value:?}");
        }
        assert!(AuthError::NoCredentials.to_string().contains("--token"));
        assert!(AuthError::NoCredentials.is_unauthenticated());
        assert!(AuthError::UnknownToken.is_unauthenticated());
        assert!(!AuthError::CollectorOnAdmin.is_unauthenticated());
    }

    /// A token past its `expires` is refused (UNAUTHENTICATED), one before it accepted.
    #[test]
    fn expired_tokens_are_refused() {
        use super::super::fixtures::{TD, sha256_hex};
        let text = format!(
            "trust_domain = \"{TD}\"\n\
             [[operator]]\nname = \"old\"\nrole = \"viewer\"\ntoken_sha256 = \"{}\"\nexpires = \"2020-01-01T00:00:00Z\"\n\
             [[operator]]\nname = \"new\"\nrole = \"viewer\"\ntoken_sha256 = \"{}\"\nexpires = \"2999-01-01T00:00:00Z\"\n",
            sha256_hex("old-token"),
            sha256_hex("new-token"),
        );
        let config = AuthConfig::parse(&text, "auth.toml").expect("valid");
        let header = |text: &str| AsciiMetadataValue::try_from(text).expect("ascii");
        let old = identify(&config, b"own", None, Some(&header("Bearer old-token")));
        let Err(error) = old else {
            panic!("an expired token was accepted");
        };
        assert!(error.is_unauthenticated());
        assert_eq!(
            error.to_string(),
            "the bearer token of operator \"old\" expired at 2020-01-01T00:00:00Z: ask an admin for a new one (`killswitch token new old --ttl ...`)"
        );
        let new = identify(&config, b"own", None, Some(&header("Bearer new-token")));
        assert!(matches!(new, Ok(Caller::Operator(o)) if o.name == "new"));
        for (entry, problem) in [
            ("expires = \"soon\"", "is not a time"),
            (
                "cert = true\nexpires = \"2999-01-01T00:00:00Z\"",
                "`expires` applies to the bearer token",
            ),
        ] {
            let hash = sha256_hex("t");
            let token = if entry.starts_with("cert") {
                String::new()
            } else {
                format!("token_sha256 = \"{hash}\"\n")
            };
            let text = format!(
                "trust_domain = \"{TD}\"\n[[operator]]\nname = \"a\"\nrole = \"viewer\"\n{token}{entry}\n"
            );
            let error = AuthConfig::parse(&text, "auth.toml").expect_err(entry);
            assert!(error.to_string().contains(problem), "{error}");
        }
    }

    /// A self-signed certificate with `uris` as URI SANs and `cn` as common name.
    fn certificate(uris: &[&str], cn: Option<&str>) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        for uri in uris {
            let uri = rcgen::string::Ia5String::try_from(*uri).expect("ascii");
            params.subject_alt_names.push(rcgen::SanType::URI(uri));
        }
        let key = rcgen::KeyPair::generate().expect("key");
        params
            .self_signed(&key)
            .expect("certificate")
            .der()
            .to_vec()
    }

    #[test]
    fn certificate_subjects() {
        let collector = |id: &str| {
            Ok(CertSubject::Collector(CertifiedCollector::bare(
                CollectorId::parse(id).expect("valid"),
            )))
        };
        const SPIFFE: &str = "spiffe://killswitch.test/collector/c-1";
        type Case<'a> = (&'a [&'a str], Option<&'a str>, Result<CertSubject, &'a str>);
        let cases: Vec<Case<'_>> = vec![
            (&[SPIFFE], None, collector("c-1")),
            (&[SPIFFE], Some("ignored"), collector("c-1")),
            (
                &["spiffe://killswitch.test/operator/bob"],
                None,
                Ok(CertSubject::Operator("bob".into())),
            ),
            (&[], Some("collector-7"), collector("collector-7")),
            (
                &[],
                Some("not a collector id"),
                Err("common name is not a collector id"),
            ),
            (
                &[],
                None,
                Err("neither a spiffe:// URI SAN nor a common name"),
            ),
            (
                &[SPIFFE, "spiffe://killswitch.test/collector/c-2"],
                None,
                Err("2 URI SANs"),
            ),
            (
                &["https://example.test/"],
                Some("c-1"),
                Err("does not start with spiffe://"),
            ),
            (
                &["spiffe://evil.test/operator/alice"],
                None,
                Err("trust domain \"evil.test\""),
            ),
        ];
        for (uris, cn, expected) in cases {
            let got = subject_of(&certificate(uris, cn), TD);
            match (&got, expected) {
                (Ok(got), Ok(want)) => assert_eq!(*got, want, "{uris:?} {cn:?}"),
                (Err(error), Err(want)) => {
                    assert!(
                        error.to_string().contains(want),
                        "{uris:?} {cn:?}: {error} lacks {want:?}"
                    );
                }
                (got, want) => panic!("{uris:?} {cn:?}: got {got:?}, want {want:?}"),
            }
        }
        assert!(matches!(
            subject_of(b"garbage", TD),
            Err(AuthError::BadCertificate(_))
        ));
    }

    #[test]
    fn certificates_identify_callers() {
        let config = config();
        let own = certificate(&[], Some("control"));
        let cert = |uri: &str| certificate(&[uri], None);
        let token = AsciiMetadataValue::from_static("Bearer vic-token");
        let name = |caller: Result<Caller<'_>, AuthError>| match caller {
            Ok(Caller::Operator(o)) => Ok(format!("operator {}", o.name)),
            Ok(Caller::Collector(c)) => Ok(format!("collector {}", c.id)),
            Ok(Caller::Replica(name)) => Ok(format!("replica {name}")),
            Ok(Caller::Developer(name)) => Ok(format!("developer {name}")),
            Err(error) => Err(error),
        };
        let id = |uri: &str| name(identify(&config, &own, Some(&cert(uri)), None));
        assert_eq!(
            id("spiffe://killswitch.test/operator/alice"),
            Ok("operator alice".into())
        );
        assert_eq!(
            id("spiffe://killswitch.test/collector/c1"),
            Ok("collector c1".into())
        );
        assert_eq!(
            id("spiffe://killswitch.test/replica/r2"),
            Ok("replica r2".into())
        );
        assert_eq!(
            id("spiffe://killswitch.test/operator/carol"),
            Err(AuthError::CertificateNotAllowed("carol".into()))
        );
        assert_eq!(
            id("spiffe://killswitch.test/operator/mallory"),
            Err(AuthError::UnknownOperator("mallory".into()))
        );
        assert_eq!(
            name(identify(&config, &own, Some(&own), None)),
            Ok("replica peer".into())
        );
        // A certificate identifies its holder even if a token comes along.
        let both = cert("spiffe://killswitch.test/collector/c1");
        assert_eq!(
            name(identify(&config, &own, Some(&both), Some(&token))),
            Ok("collector c1".into())
        );
        assert_eq!(
            name(identify(&config, &own, None, Some(&token))),
            Ok("operator vic".into())
        );
    }

    #[test]
    fn hello_must_match_the_certificate() {
        let id = |s: &str| CollectorId::parse(s).expect("valid");
        let none = BTreeMap::new();
        let unpinned = BTreeSet::new();
        let bare = |s: &str| CertifiedCollector::bare(id(s));
        assert_eq!(
            check_hello(None, &id("anyone"), &none, &unpinned),
            Ok(none.clone())
        );
        assert_eq!(
            check_hello(Some(&bare("c1")), &id("c1"), &none, &unpinned),
            Ok(none.clone())
        );
        let error =
            check_hello(Some(&bare("c1")), &id("c2"), &none, &unpinned).expect_err("mismatch");
        assert!(
            error
                .to_string()
                .starts_with("certificate says c1, Hello claims c2"),
            "{error}"
        );
    }

    #[test]
    fn pinned_labels_come_from_the_certificate() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let c1 = CollectorId::parse("c1").expect("valid");
        let certified = CertifiedCollector {
            id: c1.clone(),
            labels: labels(&[("region", "emea"), ("ignored", "x")]),
        };
        let pinned: BTreeSet<String> = ["region".to_owned(), "team".to_owned()].into();
        let check =
            |hello: &[(&str, &str)]| check_hello(Some(&certified), &c1, &labels(hello), &pinned);
        // Hello may leave a pinned label out, or repeat it; unpinned keys are its own.
        assert_eq!(
            check(&[("os", "mac")]),
            Ok(labels(&[("os", "mac"), ("region", "emea")]))
        );
        assert_eq!(
            check(&[("region", "emea"), ("ignored", "y")]),
            Ok(labels(&[("region", "emea"), ("ignored", "y")]))
        );
        // Contradicting the certificate, or setting a pinned key it leaves unset.
        let lie = check(&[("region", "us")]).expect_err("contradicts the certificate");
        assert_eq!(lie.reason(), "pinned_label");
        assert!(
            lie.to_string()
                .starts_with("collector c1 claims label region=\"us\", but region is pinned"),
            "{lie}"
        );
        assert!(lie.to_string().contains("region=\"emea\""), "{lie}");
        let unset = check(&[("team", "payments")]).expect_err("not in the certificate");
        assert!(
            unset.to_string().contains("sets no value for it"),
            "{unset}"
        );
        // Without a certificate (--insecure-dev) nothing is pinned.
        assert_eq!(
            check_hello(None, &c1, &labels(&[("region", "us")]), &BTreeSet::new()),
            Ok(labels(&[("region", "us")]))
        );
    }

    #[test]
    fn collector_ids_carry_labels_in_their_query() {
        let subject = |uri: &str| parse_spiffe_id(uri, TD);
        let Ok(CertSubject::Collector(c)) =
            subject("spiffe://killswitch.test/collector/c-1?region=emea&team=pay")
        else {
            panic!("a collector");
        };
        assert_eq!(c.id.as_str(), "c-1");
        assert_eq!(
            c.labels.into_iter().collect::<Vec<_>>(),
            vec![
                ("region".to_owned(), "emea".to_owned()),
                ("team".to_owned(), "pay".to_owned())
            ]
        );
        for (uri, why) in [
            ("spiffe://killswitch.test/collector/c?region", "without '='"),
            ("spiffe://killswitch.test/collector/c?a=1&a=2", "twice"),
            (
                "spiffe://killswitch.test/collector/c?Bad Key=1",
                "invalid label",
            ),
            (
                "spiffe://killswitch.test/collector/c?k=v\tv",
                "invalid label",
            ),
            (
                "spiffe://killswitch.test/operator/alice?role=x",
                "invalid operator",
            ),
        ] {
            let error = subject(uri).expect_err(uri).to_string();
            assert!(error.contains(why), "{uri}: {error}");
        }
    }
}
