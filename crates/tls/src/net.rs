//! Socket options of every connection the CA accepts or dials.
//!
//! Without `TCP_NODELAY`, an answer written in more than one segment (HTTP/2
//! headers, data and trailers; an HTTP head and body) waits for the peer's
//! delayed ACK: 40 ms per hop on Linux. tonic's `Server::tcp_nodelay` and
//! `tcp_keepalive` are ignored by `serve_with_incoming*`, so our servers take
//! their connections from [`incoming`], our HTTP listeners pass each accepted
//! stream through [`accepted`], and [`crate::endpoint`] sets the same on clients.

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::TcpIncoming;

/// Idle time before TCP keepalive probes start on gRPC connections, so a peer
/// that vanished (host down, cable cut) is noticed without a call failing first.
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// The connections of a gRPC server: `TCP_NODELAY` and keepalive set on each.
/// Use with `serve_with_incoming_shutdown(tls::incoming(listener), ..)`.
pub fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true)).with_keepalive(Some(TCP_KEEPALIVE))
}

/// Sets `TCP_NODELAY` on a connection accepted by one of our HTTP listeners.
/// A failure is logged, not fatal: the connection still works, only slower.
pub fn accepted(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::warn!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn accepted_grpc_connections_have_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = incoming(listener);
        let _client = TcpStream::connect(addr).await.unwrap();
        let server_side = incoming.next().await.unwrap().unwrap();
        assert!(server_side.nodelay().unwrap(), "accepted gRPC socket without TCP_NODELAY");
    }

    #[tokio::test]
    async fn accepted_http_connections_get_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (server_side, _) = listener.accept().await.unwrap();
        assert!(!server_side.nodelay().unwrap(), "the kernel default changed; this test proves nothing");
        accepted(&server_side);
        assert!(server_side.nodelay().unwrap());
    }
}
