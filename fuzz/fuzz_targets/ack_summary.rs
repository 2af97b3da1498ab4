//! What other replicas publish under `{prefix}/acks/{program}/{replica}`: an
//! `AckSummary` decoded from etcd and combined into fleet status by `status::aggregate`,
//! with its latency histogram. A corrupt or hostile summary must not panic the Status
//! call of every operator.

#![no_main]

use killswitch_control::model::{ProgramName, ProgramState};
use killswitch_control::model::latency::Histogram;
use killswitch_control::model::status::{ReplicaSummary, aggregate};
use killswitch_proto::prost::Message as _;
use killswitch_proto::v1::store;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [generation, rest @ ..] = data else { return };
    let Ok(summary) = store::AckSummary::decode(rest) else {
        return;
    };
    let Ok(name) = ProgramName::parse("demo") else {
        return;
    };
    let state = ProgramState::from_store(
        name,
        u64::from(*generation),
        &store::ProgramState::default(),
    );
    if let Some(stored) = &summary.latency {
        let histogram = Histogram::from_store(stored);
        let _ = (histogram.count(), histogram.max(), histogram.quantile(0.99));
        let _ = histogram.to_store();
    }
    let summaries = [ReplicaSummary {
        replica: "r1".to_owned(),
        summary,
    }];
    let _ = aggregate(&state, &summaries, &["r1".to_owned(), "r2".to_owned()]);
});
