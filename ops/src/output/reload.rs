//! `reload`: what the replica put in force after reading its credentials again.

use super::table::{Row, block};
use super::{Error, OutputFormat, json, time};
use crate::view::ReloadView;

/// `reload`: the replica, its certificate and what its auth file holds now, or one JSON
/// document.
pub fn reload(view: &ReloadView, format: OutputFormat) -> Result<String, Error> {
    if format == OutputFormat::Json {
        return json(view);
    }
    let mut out = format!(
        "replica {} reloaded its credentials\n",
        super::clean(&view.replica_id)
    );
    out.push_str(&block(&[
        Row::new("certificate serial", &view.certificate_serial),
        Row::new(
            "certificate expires",
            &time(view.certificate_not_after.as_ref()),
        ),
        Row::new("operators", &view.operators.to_string()),
        Row::new("collector rules", &view.collector_rules.to_string()),
        Row::new("revoked collectors", &view.revoked_collectors.to_string()),
        Row::new("revoked serials", &view.revoked_serials.to_string()),
    ]));
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::{Duration, SystemTime};

    use killswitch_proto::prost_types::Timestamp;
    use serde_json::json;

    use super::*;
    use crate::view::Time;

    fn view() -> ReloadView {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        ReloadView {
            replica_id: "r1".to_owned(),
            operators: 3,
            collector_rules: 0,
            revoked_collectors: 1,
            revoked_serials: 2,
            certificate_serial: "3a5f91".to_owned(),
            certificate_not_after: Time::from_wire(&Timestamp::from(at)),
        }
    }

    #[test]
    fn reload_as_a_table_and_as_json() {
        assert_eq!(
            reload(&view(), OutputFormat::Table).unwrap(),
            "replica r1 reloaded its credentials\n\
             certificate serial:   3a5f91\n\
             certificate expires:  2027-01-15T08:00:00Z\n\
             operators:            3\n\
             collector rules:      0\n\
             revoked collectors:   1\n\
             revoked serials:      2\n"
        );
        let value: serde_json::Value =
            serde_json::from_str(&reload(&view(), OutputFormat::Json).unwrap()).unwrap();
        assert_eq!(
            value,
            json!({
                "replica_id": "r1",
                "operators": 3,
                "collector_rules": 0,
                "revoked_collectors": 1,
                "revoked_serials": 2,
                "certificate_serial": "3a5f91",
                "certificate_not_after": "2027-01-15T08:00:00Z",
            })
        );
    }
}
