//! Who is on the other end of a loopback connection: a loopback console serves only the
//! user who started it, so that another user of the same machine cannot act through it
//! under the operator's name.
//!
//! On Linux the kernel says which user owns each TCP socket (`/proc/net/tcp` and
//! `/proc/net/tcp6`, column `uid`): the browser's socket is the one whose local address
//! is the connection's peer and whose remote address is the console's. Elsewhere there is
//! no such table, and the check is skipped (documented in the runbook).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Refuses a connection from `peer` to `local` whose socket belongs to another user than
/// this process's.
#[cfg(target_os = "linux")]
pub(super) fn same_user(peer: SocketAddr, local: SocketAddr) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;

    let own = std::fs::metadata("/proc/self")
        .map_err(|e| format!("cannot read this process's user from /proc/self: {e}"))?
        .uid();
    let mut found = None;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        if let Some(uid) = owner(&text, peer, local) {
            found = Some(uid);
            break;
        }
    }
    match found {
        Some(uid) if uid == own => Ok(()),
        Some(uid) => Err(format!(
            "This console serves the user who started it (uid {own}); this connection \
             comes from uid {uid}. Start your own console."
        )),
        None => Err(format!(
            "Cannot tell which user opened this connection ({peer}): the kernel's socket \
             table does not list it."
        )),
    }
}

/// Without a socket table, every local user is let through.
#[cfg(not(target_os = "linux"))]
pub(super) fn same_user(_peer: SocketAddr, _local: SocketAddr) -> Result<(), String> {
    Ok(())
}

/// The uid owning the socket from `peer` to `local` in a `/proc/net/tcp*` table.
fn owner(table: &str, peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (from, to, uid) = (fields.get(1)?, fields.get(2)?, fields.get(7)?);
        (same(address(from)?, peer) && same(address(to)?, local))
            .then(|| uid.parse().ok())
            .flatten()
    })
}

/// Whether two socket addresses are the same, an IPv4 address in IPv6 form included.
fn same(a: SocketAddr, b: SocketAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    a.port() == b.port() && canonical(a.ip()) == canonical(b.ip())
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): each 32-bit word of the
/// address is written in the kernel's byte order, little-endian here.
fn address(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |hex: &str| u32::from_str_radix(hex, 16).ok().map(u32::to_le_bytes);
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(ip)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(ip.get(i * 8..i * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 2 1 0000000000000000 20 4 30 10 -1
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:C350 00000000000000000000000001000000:1F91 01 00000000:00000000 00:00000000 00000000  1001        0 3 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn finds_the_owner_of_the_browser_socket() {
        let console: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let browser: SocketAddr = "127.0.0.1:54321".parse().unwrap();
        assert_eq!(owner(TCP, browser, console), Some(1000));
        // The listening socket and unknown peers are not it.
        assert_eq!(owner(TCP, "127.0.0.1:1".parse().unwrap(), console), None);
        let console6: SocketAddr = "[::1]:8081".parse().unwrap();
        let browser6: SocketAddr = "[::1]:50000".parse().unwrap();
        assert_eq!(owner(TCP6, browser6, console6), Some(1001));
    }

    #[test]
    fn addresses() {
        assert_eq!(
            address("0100007F:1F90"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            address("0000000000000000FFFF00000100007F:0050"),
            Some("[::ffff:127.0.0.1]:80".parse().unwrap())
        );
        assert!(same(
            "[::ffff:127.0.0.1]:80".parse().unwrap(),
            "127.0.0.1:80".parse().unwrap()
        ));
        for bad in ["", "zz:1", "0100007F", "0100007F:XYZ", "01:10"] {
            assert_eq!(address(bad), None, "{bad}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_real_connection_is_ours() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        same_user(peer, listener.local_addr().unwrap()).unwrap();
    }
}
