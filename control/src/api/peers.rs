//! Calls to peer replicas: each replica knows only its own collectors, so listing a
//! program's collectors asks every registered peer for theirs (`local_only`), over TLS
//! presenting this replica's own certificate.

use std::time::Duration;

use killswitch_proto::v1::{self, admin_service_client::AdminServiceClient};
use tonic::Status;

/// How long a peer replica may take to list its collectors.
const PEER_TIMEOUT: Duration = Duration::from_secs(3);

/// Asks a peer replica for its own collectors, over TLS (presenting this replica's
/// certificate) when `tls` is given.
pub(crate) async fn ask_peer(
    address: &str,
    tls: Option<tonic::transport::ClientTlsConfig>,
    request: v1::ListCollectorsRequest,
) -> Result<Vec<v1::CollectorInfo>, Status> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(address.to_owned())
        .map_err(|e| Status::internal(format!("bad peer address {address}: {e}")))?
        .connect_timeout(PEER_TIMEOUT)
        .timeout(PEER_TIMEOUT);
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| Status::internal(format!("bad TLS settings for peer {address}: {e}")))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let response = AdminServiceClient::new(channel)
        .list_collectors(request)
        .await?;
    Ok(response.into_inner().collectors)
}
