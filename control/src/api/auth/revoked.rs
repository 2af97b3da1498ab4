//! The `[revoked]` table of `auth.toml`: collectors refused by id and client
//! certificates refused by serial number ([`Revoked`]), parsed with the file's
//! line-numbered errors, and the serial of a DER certificate ([`serial_of`]).
//!
//! ```toml
//! [revoked]
//! collectors = ["laptop-17"]                  # exact collector ids
//! serials = ["3A:5F:00:91", "0x1b2c"]         # hex, any case, colons allowed
//! ```
//!
//! A revoked collector is refused when it opens a session, and its open sessions end when
//! the file is reloaded; a revoked serial refuses every client certificate that carries
//! it, operators' included.
//!
//! **Layer:** api. May import [`crate::model`] and its siblings' [`AuthError`] and auth
//! file errors; never `crate::store` or `crate::replica`.

use std::collections::BTreeSet;
use std::ops::Range;

use serde::Deserialize;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{AuthError, AuthFileError};
use crate::model::CollectorId;

/// Most hex digits of a serial number once leading zeros are dropped: RFC 5280 allows
/// at most 20 octets.
const MAX_SERIAL_DIGITS: usize = 40;

/// The `[revoked]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRevoked {
    #[serde(default)]
    collectors: Vec<toml::Spanned<String>>,
    #[serde(default)]
    serials: Vec<toml::Spanned<String>>,
}

/// Who is refused whatever else the auth file says: collector ids and certificate
/// serial numbers (normalized: lowercase hex without colons or leading zeros).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revoked {
    collectors: BTreeSet<CollectorId>,
    serials: BTreeSet<String>,
}

impl Revoked {
    /// How many collector ids are revoked.
    #[must_use]
    pub fn collectors(&self) -> usize {
        self.collectors.len()
    }

    /// How many certificate serials are revoked.
    #[must_use]
    pub fn serials(&self) -> usize {
        self.serials.len()
    }

    /// Refuses collector `id` if it is revoked.
    pub fn check_collector(&self, id: &CollectorId) -> Result<(), AuthError> {
        if self.collectors.contains(id) {
            return Err(AuthError::RevokedCollector(id.clone()));
        }
        Ok(())
    }

    /// Refuses a certificate whose serial (as [`serial_of`] gives it) is revoked.
    pub fn check_serial(&self, serial: Option<&str>) -> Result<(), AuthError> {
        match serial {
            Some(serial) if self.serials.contains(serial) => {
                Err(AuthError::RevokedCertificate(serial.to_owned()))
            }
            _ => Ok(()),
        }
    }

    /// Refuses the DER certificate `der` if its serial is revoked. A certificate that
    /// cannot be parsed is left to the identification, which refuses it.
    pub fn check_certificate(&self, der: &[u8]) -> Result<(), AuthError> {
        if self.serials.is_empty() {
            return Ok(());
        }
        self.check_serial(serial_of(der).as_deref())
    }
}

/// The serial number of the DER certificate `der`, normalized as the auth file's
/// serials are; `None` when it cannot be parsed.
#[must_use]
pub fn serial_of(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let hex: String = cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(strip_zeros(&hex))
}

/// `hex` without leading zeros, `0` when nothing else is left.
fn strip_zeros(hex: &str) -> String {
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// A serial as an operator writes it (`3A:5F:00:91`, `3a5f0091`, `0x3a5f0091`),
/// normalized; `None` when it is not one.
fn parse_serial(text: &str) -> Option<String> {
    let body = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    let digits: String = body
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let serial = strip_zeros(&digits);
    (serial.len() <= MAX_SERIAL_DIGITS).then_some(serial)
}

/// Checks the `[revoked]` table; `fail` makes an error at a span of the file. Listing
/// an id or serial twice is harmless and accepted.
pub(super) fn parse_revoked(
    raw: RawRevoked,
    fail: &impl Fn(Option<Range<usize>>, String) -> AuthFileError,
) -> Result<Revoked, AuthFileError> {
    let mut revoked = Revoked::default();
    for id in &raw.collectors {
        let parsed = CollectorId::parse(id.get_ref()).map_err(|e| {
            fail(
                Some(id.span()),
                format!("[revoked] collectors: {e}: list collector ids exactly as their certificates name them"),
            )
        })?;
        revoked.collectors.insert(parsed);
    }
    for serial in &raw.serials {
        let parsed = parse_serial(serial.get_ref()).ok_or_else(|| {
            fail(
                Some(serial.span()),
                format!(
                    "[revoked] serials: {:?} is not a certificate serial number: write it in hex \
                     (any case, colons allowed, at most 20 bytes), as `openssl x509 -noout -serial` prints it",
                    serial.get_ref()
                ),
            )
        })?;
        revoked.serials.insert(parsed);
    }
    Ok(revoked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::auth::AuthConfig;
    use crate::api::auth::fixtures::TD;

    #[test]
    fn serials_are_hex_in_any_case_with_colons() {
        for (text, parsed) in [
            ("3A:5F:00:91", Some("3a5f0091")),
            ("3a5f0091", Some("3a5f0091")),
            ("0x3A5F0091", Some("3a5f0091")),
            ("00:8f", Some("8f")),
            ("0", Some("0")),
            ("00", Some("0")),
            (&"ab".repeat(20), Some(&*"ab".repeat(20))),
            (&format!("00{}", "ab".repeat(20)), Some(&*"ab".repeat(20))),
            (&"ab".repeat(21), None),
            ("", None),
            (":", None),
            ("0x", None),
            ("3g", None),
            ("3a 5f", None),
            ("-1", None),
        ] {
            assert_eq!(parse_serial(text).as_deref(), parsed, "{text:?}");
        }
    }

    #[test]
    fn the_revoked_table_is_checked_with_lines() {
        let text = format!(
            "trust_domain = \"{TD}\"\n\n[revoked]\ncollectors = [\"laptop-17\", \"laptop-17\"]\nserials = [\"3A:5F\", \"0x00ff\"]\n"
        );
        let config = AuthConfig::parse(&text, "auth.toml").expect("valid");
        let revoked = &config.revoked;
        assert_eq!((revoked.collectors(), revoked.serials()), (1, 2));
        let laptop = CollectorId::parse("laptop-17").expect("id");
        let other = CollectorId::parse("laptop-18").expect("id");
        assert_eq!(
            revoked.check_collector(&laptop),
            Err(AuthError::RevokedCollector(laptop.clone()))
        );
        assert_eq!(revoked.check_collector(&other), Ok(()));
        assert!(revoked.check_serial(Some("3a5f")).is_err());
        assert!(revoked.check_serial(Some("ff")).is_err());
        assert_eq!(revoked.check_serial(Some("3a5f00")), Ok(()));
        assert_eq!(revoked.check_serial(None), Ok(()));

        let none =
            AuthConfig::parse(&format!("trust_domain = \"{TD}\"\n"), "auth.toml").expect("valid");
        assert_eq!(none.revoked, Revoked::default());

        #[track_caller]
        fn check(table: &str, line: usize, message: &str) {
            let text = format!("trust_domain = \"{TD}\"\n\n[revoked]\n{table}");
            let error = AuthConfig::parse(&text, "/etc/killswitch/auth.toml").expect_err(table);
            assert_eq!(error.line(), Some(line), "{error}");
            let error = error.to_string();
            assert!(
                error.starts_with(&format!("/etc/killswitch/auth.toml:{line}: ")),
                "{error}"
            );
            assert!(error.contains(message), "{error} lacks {message:?}");
        }
        check(
            "collectors = [\"ok\"]\nserials = [\"3A:5F\", \"xyz\"]\n",
            5,
            "[revoked] serials: \"xyz\" is not a certificate serial number",
        );
        check(
            "collectors = [\"ok\", \"bad id\"]\n",
            4,
            "[revoked] collectors: ",
        );
        check("collector = [\"a\"]\n", 4, "unknown field `collector`");
        check("serials = \"3a\"\n", 4, "invalid type");
    }

    #[test]
    fn the_serial_of_a_certificate_is_read_from_its_der() {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x3a, 0x5f, 0x91]));
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("certificate");
        let serial = serial_of(cert.der()).expect("a serial");
        assert_eq!(serial, "3a5f91");
        let revoked = Revoked {
            serials: [serial].into(),
            ..Revoked::default()
        };
        assert_eq!(
            revoked.check_certificate(cert.der()),
            Err(AuthError::RevokedCertificate("3a5f91".to_owned()))
        );
        assert_eq!(serial_of(b"not a certificate"), None);
        assert_eq!(revoked.check_certificate(b"not a certificate"), Ok(()));
    }
}
