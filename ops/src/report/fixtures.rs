//! A synthetic incident for the report's tests: a CA and collector certificates (rcgen),
//! receipts signed with the collectors' keys (ring), and an audit log chained by the
//! control plane's hashing rule.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use killswitch_proto::prost::Message as _;
use killswitch_proto::prost_types::Timestamp;
use killswitch_proto::v1;
use killswitch_proto::v1::store;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};

use super::verify::audit_hash;
use super::{Inputs, Query, Selection};
use crate::view::{CollectorListView, CollectorView, RunState, Time};

/// 2026-11-29T09:00:00Z, when the incident's pause is committed.
pub(crate) const T0: i64 = 1_795_942_800;

/// `T0` plus `ms` milliseconds.
pub(crate) fn at_ms(ms: i64) -> Timestamp {
    let nanos = ms.rem_euclid(1000) * 1_000_000;
    Timestamp {
        seconds: T0 + ms.div_euclid(1000),
        nanos: i32::try_from(nanos).unwrap(),
    }
}

/// A CA that issues collector certificates.
pub(crate) struct Pki {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub(crate) fn new(name: &str) -> Self {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    pub(crate) fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A collector's certificate (`spiffe://test.example/collector/ID?region=...`) and key.
    pub(crate) fn collector(&self, id: &str) -> CollectorKey {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, id);
        params.distinguished_name = dn;
        let uri = format!("spiffe://test.example/collector/{id}?region=emea");
        params.subject_alt_names = vec![SanType::URI(uri.as_str().try_into().unwrap())];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let rng = SystemRandom::new();
        let signing =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &key.serialize_der(), &rng)
                .unwrap();
        CollectorKey {
            certificate: cert.der().to_vec(),
            key: signing,
        }
    }
}

/// A collector's certificate and signing key.
pub(crate) struct CollectorKey {
    pub(crate) certificate: Vec<u8>,
    key: EcdsaKeyPair,
}

impl CollectorKey {
    /// The receipt, signed as the SDK signs it.
    pub(crate) fn sign(&self, receipt: &v1::Receipt) -> v1::SignedReceipt {
        let bytes = receipt.encode_to_vec();
        let signed = killswitch_proto::receipt_signed_bytes(&bytes);
        let signature = self.key.sign(&SystemRandom::new(), &signed).unwrap();
        v1::SignedReceipt {
            receipt: bytes,
            signature: signature.as_ref().to_vec(),
            certificate: self.certificate.clone(),
            algorithm: "ecdsa-p256-sha256".to_owned(),
            unsigned_reason: String::new(),
        }
    }
}

/// One audit entry to write: action, program, the state it set, detail, incident,
/// generation, and when (ms after `T0`).
pub(crate) struct Change(
    pub(crate) &'static str,
    pub(crate) &'static str,
    pub(crate) RunState,
    pub(crate) &'static str,
    pub(crate) &'static str,
    pub(crate) u64,
    pub(crate) i64,
);

/// The log, chained and listed as `ListAudit` returns it.
pub(crate) fn audit_log(changes: &[Change]) -> Vec<v1::AuditEntry> {
    let mut prev_hash = vec![0; 32];
    let mut listed = Vec::new();
    for (i, Change(action, program, to, detail, incident, generation, ms)) in
        changes.iter().enumerate()
    {
        let to = match to {
            RunState::Running => v1::RunState::Running,
            RunState::Paused => v1::RunState::Paused,
            RunState::Unspecified => v1::RunState::Unspecified,
        };
        let mut entry = store::AuditEntry {
            seq: u64::try_from(i).unwrap() + 1,
            at: Some(at_ms(*ms)),
            actor: if action.starts_with("rollout-") {
                "rollout-driver@r1".to_owned()
            } else {
                "alice".to_owned()
            },
            action: (*action).to_owned(),
            program: (*program).to_owned(),
            from: v1::RunState::Paused as i32,
            to: to as i32,
            reason: format!("{action} {program}"),
            incident_id: (*incident).to_owned(),
            prev_hash: prev_hash.clone(),
            hash: Vec::new(),
            detail: (*detail).to_owned(),
        };
        entry.hash = audit_hash(&entry);
        prev_hash = entry.hash.clone();
        listed.push(v1::AuditEntry {
            seq: entry.seq,
            at: entry.at,
            actor: entry.actor.clone(),
            action: entry.action.clone(),
            program: entry.program.clone(),
            from: entry.from,
            to: entry.to,
            reason: entry.reason.clone(),
            incident_id: entry.incident_id.clone(),
            detail: entry.detail.clone(),
            hash: entry.hash.clone(),
            prev_hash: entry.prev_hash.clone(),
            generation: *generation,
            stored: entry.encode_to_vec(),
        });
    }
    listed
}

/// A receipt of `demo`: collector, generation, gate, scope, ms after `T0` its gate moved
/// (`None`: it did not) and its hook returned, error, purged.
#[allow(clippy::too_many_arguments)]
pub(crate) fn receipt(
    collector: &str,
    generation: u64,
    effective: v1::RunState,
    scope: &str,
    gate_ms: Option<i64>,
    hook_ms: i64,
    error: &str,
    purged: bool,
) -> v1::Receipt {
    v1::Receipt {
        collector_id: collector.to_owned(),
        program: "demo".to_owned(),
        generation,
        effective: effective as i32,
        scope: scope.to_owned(),
        cause: "update".to_owned(),
        gate_changed_at: gate_ms.map(at_ms),
        hook_returned_at: Some(at_ms(hook_ms)),
        error: error.to_owned(),
        purged,
        committed_at: None,
        sdk_version: "0.1.0-test".to_owned(),
    }
}

/// The incident INC-7 on `demo`, with five collectors (c-1, c-2 in emea, c-3..c-5 in
/// apac): a purge pause (c-5 never confirms, c-4 unsigned), an unrelated change of
/// `other` in between, a two-person scoped resume of emea, then a staged resume the
/// rollout driver completes, and a later change outside the incident.
pub(crate) struct Incident {
    pub(crate) pki: Pki,
    pub(crate) query: Query,
    pub(crate) audit: Vec<v1::AuditEntry>,
    pub(crate) receipts: Vec<v1::SignedReceipt>,
    pub(crate) collectors: Vec<CollectorListView>,
}

impl Incident {
    pub(crate) fn new() -> Self {
        use RunState::{Paused, Running};
        let audit = audit_log(&[
            Change("create", "demo", Paused, "", "", 2, -7_200_000),
            Change("resume", "demo", Running, "", "", 3, -3_600_000),
            Change("pause", "demo", Paused, "purge", "INC-7", 10, 0),
            Change("resume", "other", Running, "", "", 11, 5_000),
            Change(
                "resume-request",
                "demo",
                Paused,
                "selector: region=emea",
                "INC-7",
                12,
                600_000,
            ),
            Change(
                "resume",
                "demo",
                Running,
                "selector: region=emea; approved by bob, requested by alice",
                "INC-7",
                13,
                700_000,
            ),
            Change(
                "resume",
                "demo",
                Paused,
                "staged: 50%,100% every 30s",
                "INC-7",
                14,
                900_000,
            ),
            Change(
                "rollout-advance",
                "demo",
                Paused,
                "stage 2 of 2: 100%",
                "",
                15,
                930_000,
            ),
            Change(
                "rollout-complete",
                "demo",
                Running,
                "every stage acknowledged",
                "",
                16,
                960_000,
            ),
            Change("pause", "demo", Paused, "", "", 17, 4_000_000),
        ]);
        let pki = Pki::new("test CA");
        let keys: BTreeMap<&str, CollectorKey> = ["c-1", "c-2", "c-3", "c-4", "c-5"]
            .into_iter()
            .map(|id| (id, pki.collector(id)))
            .collect();
        use v1::RunState as W;
        let mut receipts = Vec::new();
        // The pause: c-1..c-4 confirm the purge in 120..480 ms; c-4 is unsigned.
        for (i, id) in ["c-1", "c-2", "c-3", "c-4"].into_iter().enumerate() {
            let ms = 120 * (i64::try_from(i).unwrap() + 1);
            let r = receipt(id, 10, W::Paused, "", Some(ms - 20), ms, "", true);
            receipts.push(if id == "c-4" {
                v1::SignedReceipt {
                    receipt: r.encode_to_vec(),
                    unsigned_reason: "the collector has no certificate".to_owned(),
                    ..v1::SignedReceipt::default()
                }
            } else {
                keys[id].sign(&r)
            });
        }
        // The scoped resume: emea opens; c-3 applies the generation, still paused.
        receipts.push(keys["c-1"].sign(&receipt(
            "c-1",
            13,
            W::Running,
            "region=emea",
            Some(700_050),
            700_060,
            "",
            false,
        )));
        receipts.push(keys["c-2"].sign(&receipt(
            "c-2",
            13,
            W::Running,
            "region=emea",
            Some(700_080),
            700_090,
            "",
            false,
        )));
        receipts.push(keys["c-3"].sign(&receipt(
            "c-3",
            13,
            W::Paused,
            "",
            None,
            700_070,
            "",
            false,
        )));
        // The staged resume completes: everyone opens; c-3's hook fails.
        for (i, id) in ["c-1", "c-2", "c-3", "c-4", "c-5"].into_iter().enumerate() {
            let ms = 960_000 + 40 * (i64::try_from(i).unwrap() + 1);
            let error = if id == "c-3" { "hook exited 1" } else { "" };
            receipts.push(keys[id].sign(&receipt(
                id,
                16,
                W::Running,
                "",
                Some(ms - 5),
                ms,
                error,
                false,
            )));
        }
        let collector = |id: &str, region: &str, acked_ms: i64| CollectorView {
            collector_id: id.to_owned(),
            labels: BTreeMap::from([("region".to_owned(), region.to_owned())]),
            replica: "r1".to_owned(),
            generation: 16,
            effective: RunState::Running,
            intended: RunState::Running,
            acked_at: Time::from_wire(&at_ms(acked_ms)),
            error: String::new(),
            connected_at: Time::from_wire(&at_ms(-7_000_000)),
        };
        let collectors = vec![CollectorListView {
            program: "demo".to_owned(),
            generation: 16,
            collectors: vec![
                collector("c-1", "emea", 960_040),
                collector("c-2", "emea", 960_080),
                collector("c-3", "apac", 960_120),
                collector("c-4", "apac", 960_160),
                collector("c-5", "apac", 2_000_000),
                collector("c-6", "emea", 2_500_000),
            ],
            unreachable_replicas: vec![],
            pinned_labels: vec![],
        }];
        Self {
            pki,
            query: Query {
                incident: Some("INC-7".to_owned()),
                ..Query::default()
            },
            audit,
            receipts,
            collectors,
        }
    }

    /// The selection for the query, and what the command would fetch for it.
    pub(crate) fn inputs(&self) -> (Selection, Inputs) {
        let selection = super::select(&self.query, &self.audit).unwrap();
        let inputs = Inputs {
            audit: self.audit.clone(),
            omitted: 0,
            receipts: self.receipts.clone(),
            collectors: self.collectors.clone(),
            now: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_000_000),
        };
        (selection, inputs)
    }

    /// The report on INC-7.
    pub(crate) fn report(&self) -> super::Report {
        let (selection, inputs) = self.inputs();
        super::build(&self.query, &selection, inputs).unwrap()
    }
}
