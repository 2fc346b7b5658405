//! Socket options of every connection the CA accepts or dials.
//!
//! Without `TCP_NODELAY`, an answer written in more than one segment (HTTP/2
//! headers, data and trailers; an HTTP head and body) waits for the peer's
//! delayed ACK: 40 ms per hop on Linux. tonic's `Server::tcp_nodelay` and
//! `tcp_keepalive` are ignored by `serve_with_incoming*`, so our servers take
//! their connections from [`incoming`], our HTTP listeners pass each accepted
//! stream through [`accepted`], and [`crate::GrpcKit::endpoint_as`] sets the same on clients.
//!
//! Our two HTTP listeners (the CRL distribution point and the OCSP responder,
//! and the responder's metrics) share one accept loop, [`serve_http`]: a
//! header-read timeout per connection and a cap on open connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::{TcpListener, TcpStream};

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tonic::codegen::http;
use tonic::transport::server::TcpIncoming;
use tower_service::Service;

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

/// Why [`dial_http1`] got no connection.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("{authority}: {source}")]
    Connect { authority: String, source: std::io::Error },
    #[error("{0}")]
    Handshake(#[source] hyper::Error),
}

/// A plain HTTP/1.1 client connection to `authority` (`host:port`), with
/// `TCP_NODELAY` set (a failure there only makes it slower). The connection
/// runs on a task of its own until the sender is dropped; how it ended is
/// logged at debug level as "`purpose` connection ended".
pub async fn dial_http1<B>(
    authority: &str,
    purpose: &'static str,
) -> Result<hyper::client::conn::http1::SendRequest<B>, DialError>
where
    B: HttpBody,
{
    let tcp = TcpStream::connect(authority)
        .await
        .map_err(|source| DialError::Connect { authority: authority.to_owned(), source })?;
    let _ = tcp.set_nodelay(true);
    let (sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(DialError::Handshake)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "{purpose} connection ended");
        }
    });
    Ok(sender)
}

/// What [`serve_http`] serves: a cloneable service of hyper requests.
pub trait HttpService<B>:
    Service<
        http::Request<hyper::body::Incoming>,
        Response = http::Response<B>,
        Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S, B> HttpService<B> for S where
    S: Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<B>,
            Error: Into<Box<dyn std::error::Error + Send + Sync>>,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// The body of an answer of an [`HttpService`].
pub trait HttpBody:
    hyper::body::Body<Data: Send, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static
{
}

impl<B> HttpBody for B where
    B: hyper::body::Body<Data: Send, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static
{
}

/// The client address of an HTTP request, put into its extensions by [`serve_http`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// An [`HttpService`] that answers each request at once with what `F` makes of
/// it (a small page, such as `/metrics`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answer<F>(pub F);

impl<F> Service<http::Request<hyper::body::Incoming>> for Answer<F>
where
    F: FnMut(http::Request<hyper::body::Incoming>) -> http::Response<String>,
{
    type Response = http::Response<String>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        std::future::ready(Ok((self.0)(req)))
    }
}

/// Bounds of an HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpListenerLimits {
    /// Time a connection has to deliver a request's headers, from connecting
    /// or from its previous response; then it is closed without an answer.
    pub header_read_timeout: Duration,
    /// Connections served at once. Beyond it the loop stops accepting: new
    /// connections wait in the kernel's listen backlog (and are refused by the
    /// kernel once that is full) until a served one closes.
    pub max_connections: usize,
    /// Threads that serve connections, each with a single-threaded runtime of
    /// its own: the caller's runtime accepts and hands each connection to the
    /// thread serving the fewest, where it lives until it closes, with no
    /// wakeup crossing threads (as nginx's worker processes). 0: serve on the
    /// caller's runtime instead.
    pub threads: usize,
    /// Answers are small (OCSP): hyper copies each answer's head and body into
    /// one buffer and writes it with one write() instead of a writev() of the
    /// pieces (hyper's `writev(false)`). Not for large bodies (CRLs): they
    /// would be copied whole.
    pub flatten_writes: bool,
}

/// Serves `service` over HTTP/1.1 on `listener` until `stop` turns true (or
/// its sender goes), then lets open connections finish (bounded by the header
/// timeout plus a few seconds).
///
/// Each connection must deliver a request's headers within
/// `limits.header_read_timeout` of connecting or of its previous response, or
/// it is closed without an answer: that bounds slowloris clients, connections
/// that never send a full request and idle keep-alive connections alike
/// (hyper's header read timeout, which needs a timer; axum::serve sets none).
/// At most `limits.max_connections` are served at once (over all threads);
/// see [`HttpListenerLimits`]. `on_header_timeout` runs for each connection
/// closed by the timeout. Every request carries its client's [`PeerAddr`].
pub async fn serve_http<S, B>(
    listener: TcpListener,
    service: S,
    limits: HttpListenerLimits,
    on_header_timeout: impl Fn() + Clone + Send + Sync + 'static,
    stop: watch::Receiver<bool>,
) where
    S: HttpService<B>,
    B: HttpBody,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let server = Server { service, builder: http1_builder(limits), on_header_timeout, stop };
    if limits.threads == 0 {
        return accept_loop(listener, server, limits, slots).await;
    }
    // Worker threads, each a single-threaded runtime serving the connections handed to it.
    let mut workers = Vec::new();
    let mut done = Vec::new();
    for i in 0..limits.threads {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Handed>();
        let load = Arc::new(AtomicUsize::new(0));
        let (server, mine) = (server.clone(), load.clone());
        let (finished, finished_rx) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new().name(format!("http-{i}")).spawn(move || {
            let _finished = finished;
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(worker(rx, mine, server, limits)),
                Err(e) => tracing::error!(error = %e, "cannot start an HTTP thread's runtime"),
            }
        });
        match spawned {
            Ok(_) => {
                workers.push((tx, load));
                done.push(finished_rx);
            }
            Err(e) => tracing::error!(error = %e, "cannot start an HTTP thread"),
        }
    }
    if workers.is_empty() {
        return accept_loop(listener, server, limits, slots).await;
    }
    let mut stop = server.stop;
    loop {
        let Some((tcp, peer, permit)) = accept_one(&listener, &slots, &mut stop).await else { break };
        let std = match tcp.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand an HTTP connection to a thread");
                continue;
            }
        };
        // The thread serving the fewest connections takes it, so the load stays even.
        if let Some((tx, load)) = workers.iter().min_by_key(|(_, load)| load.load(Ordering::Relaxed)) {
            load.fetch_add(1, Ordering::Relaxed);
            if tx.send((std, peer, permit)).is_err() {
                load.fetch_sub(1, Ordering::Relaxed);
                tracing::warn!("an HTTP thread is gone; connection dropped");
            }
        }
    }
    drop(listener);
    drop(workers);
    for rx in done {
        // An error only means the thread is gone (it ended or panicked).
        let _ = rx.await;
    }
}

/// A connection handed to a worker thread: the socket, the client, its slot.
type Handed = (std::net::TcpStream, SocketAddr, OwnedSemaphorePermit);

/// What each connection of one listener is served with, on whichever thread
/// serves it.
struct Server<S, F> {
    service: S,
    builder: Arc<hyper::server::conn::http1::Builder>,
    on_header_timeout: F,
    stop: watch::Receiver<bool>,
}

// Derived Clone would want `S: Clone` and `F: Clone` spelled out anyway.
impl<S: Clone, F: Clone> Clone for Server<S, F> {
    fn clone(&self) -> Self {
        Server {
            service: self.service.clone(),
            builder: self.builder.clone(),
            on_header_timeout: self.on_header_timeout.clone(),
            stop: self.stop.clone(),
        }
    }
}

impl<S, F> Server<S, F>
where
    F: Fn() + Clone + Send + Sync + 'static,
{
    /// Serves one accepted connection (see [`serve_connection`]).
    fn serve<B>(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        permit: OwnedSemaphorePermit,
    ) -> impl std::future::Future<Output = ()>
    where
        S: HttpService<B>,
        B: HttpBody,
    {
        serve_connection(
            tcp,
            peer,
            permit,
            self.service.clone(),
            self.builder.clone(),
            self.on_header_timeout.clone(),
            self.stop.clone(),
        )
    }
}

/// One worker thread's loop: serves the connections it is handed until `stop`.
async fn worker<S, B, F>(
    mut handed: tokio::sync::mpsc::UnboundedReceiver<Handed>,
    load: Arc<AtomicUsize>,
    server: Server<S, F>,
    limits: HttpListenerLimits,
) where
    S: HttpService<B>,
    B: HttpBody,
    F: Fn() + Clone + Send + Sync + 'static,
{
    let mut stop = server.stop.clone();
    let mut connections = JoinSet::new();
    loop {
        let (std, peer, permit) = tokio::select! {
            () = stopped(&mut stop) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            next = handed.recv() => match next {
                Some(n) => n,
                None => break,
            },
        };
        let counted = Counted(load.clone());
        let tcp = match TcpStream::from_std(std) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot register an HTTP connection");
                continue;
            }
        };
        let conn = server.serve(tcp, peer, permit);
        connections.spawn(async move {
            let _counted = counted;
            conn.await
        });
    }
    drain(connections, limits).await;
}

/// One connection served by a worker thread; uncounted when it ends.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn http1_builder(limits: HttpListenerLimits) -> Arc<hyper::server::conn::http1::Builder> {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
    if limits.flatten_writes {
        builder.writev(false);
    }
    Arc::new(builder)
}

/// A free slot first (at the cap nothing is accepted), then a connection;
/// None once `stop` turns true.
async fn accept_one(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    stop: &mut watch::Receiver<bool>,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    let permit = tokio::select! {
        () = stopped(stop) => return None,
        permit = slots.clone().acquire_owned() => permit.ok()?,
    };
    loop {
        tokio::select! {
            () = stopped(stop) => return None,
            r = listener.accept() => match r {
                Ok((tcp, peer)) => {
                    accepted(&tcp);
                    return Some((tcp, peer, permit));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn accept_loop<S, B, F>(
    listener: TcpListener,
    server: Server<S, F>,
    limits: HttpListenerLimits,
    slots: Arc<Semaphore>,
) where
    S: HttpService<B>,
    B: HttpBody,
    F: Fn() + Clone + Send + Sync + 'static,
{
    let mut stop = server.stop.clone();
    let mut connections = JoinSet::new();
    loop {
        let next = tokio::select! {
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            // Cancel-safe: a slot taken is given back, and accept() is cancel-safe.
            next = accept_one(&listener, &slots, &mut stop) => next,
        };
        let Some((tcp, peer, permit)) = next else { break };
        connections.spawn(server.serve(tcp, peer, permit));
    }
    drop(listener);
    drain(connections, limits).await;
}

/// Lets open connections finish, bounded by the header timeout plus a few seconds.
async fn drain(mut connections: JoinSet<()>, limits: HttpListenerLimits) {
    let grace = limits.header_read_timeout + Duration::from_secs(5);
    if tokio::time::timeout(grace, async { while connections.join_next().await.is_some() {} }).await.is_err() {
        tracing::warn!(open = connections.len(), "HTTP connections still open at shutdown: closing them");
    }
}

/// Serves one connection (holding its slot) until it ends or `stop` (then gracefully).
async fn serve_connection<S, B>(
    tcp: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    svc: S,
    builder: Arc<hyper::server::conn::http1::Builder>,
    on_timeout: impl Fn() + Clone + Send + Sync + 'static,
    mut stop: watch::Receiver<bool>,
) where
    S: HttpService<B>,
    B: HttpBody,
{
    let _slot = permit;
    let with_peer = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(PeerAddr(peer));
        let mut svc = svc.clone();
        async move {
            std::future::poll_fn(|cx| svc.poll_ready(cx)).await?;
            svc.call(req).await
        }
    });
    let conn = builder.serve_connection(TokioIo::new(tcp), with_peer);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            on_timeout();
        }
        tracing::debug!(error = %e, %peer, "HTTP connection ended");
    }
}

/// Resolves once `stop` is true or its sender is gone (the guard `wait_for`
/// returns must not live across an await: it is not Send).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_stream::StreamExt;

    /// Answers every request with the client's address as seen in [`PeerAddr`].
    fn echo(req: http::Request<hyper::body::Incoming>) -> http::Response<String> {
        http::Response::new(req.extensions().get::<PeerAddr>().map(|p| p.0.to_string()).unwrap_or_default())
    }

    async fn start(limits: HttpListenerLimits) -> (SocketAddr, Arc<AtomicUsize>, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let timeouts = Arc::new(AtomicUsize::new(0));
        let counted = timeouts.clone();
        let (tx, rx) = watch::channel(false);
        let on_timeout = move || {
            counted.fetch_add(1, Ordering::SeqCst);
        };
        tokio::spawn(serve_http(listener, Answer(echo), limits, on_timeout, rx));
        (addr, timeouts, tx)
    }

    /// Sends one request and reads the answer to its end (the request closes the connection).
    async fn get(s: &mut TcpStream) -> String {
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_slowloris_connection_is_closed_after_the_header_timeout() {
        let limits = HttpListenerLimits {
            header_read_timeout: Duration::from_millis(300),
            max_connections: 8,
            threads: 0,
            flatten_writes: false,
        };
        let (addr, timeouts, _stop) = start(limits).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        let started = std::time::Instant::now();
        // Headers one byte at a time, never finished.
        let mut closed = false;
        for b in b"GET / HTTP/1.1\r\nHost: x\r\n".iter() {
            if slow.write_all(&[*b]).await.is_err() {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(80)).await;
        }
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
        assert!(closed || matches!(read, Ok(Ok(_)) | Ok(Err(_))), "the server never closed the connection");
        assert!(!String::from_utf8_lossy(&rest).contains("200"), "no answer to unfinished headers");
        assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
        assert_eq!(timeouts.load(Ordering::SeqCst), 1, "counted once");
        // A well-behaved client is still served, and sees its own address.
        let mut ok = TcpStream::connect(addr).await.unwrap();
        let me = ok.local_addr().unwrap().to_string();
        let answer = get(&mut ok).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with(&me), "{answer} vs {me}");
    }

    #[tokio::test]
    async fn beyond_the_cap_new_connections_wait_until_one_closes() {
        let limits = HttpListenerLimits {
            header_read_timeout: Duration::from_secs(30),
            max_connections: 2,
            threads: 0,
            flatten_writes: false,
        };
        let (addr, _, _stop) = start(limits).await;
        a_third_connection_waits_for_a_slot(addr).await;
    }

    /// With a cap of 2 and two idle connections open, a third is not served
    /// until one of them closes, then it is.
    async fn a_third_connection_waits_for_a_slot(addr: SocketAddr) {
        let idle_a = TcpStream::connect(addr).await.unwrap();
        let _idle_b = TcpStream::connect(addr).await.unwrap();
        // Give the loop time to accept both.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut third = TcpStream::connect(addr).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(700), get(&mut third)).await;
        assert!(waiting.is_err(), "a third connection was served beyond the cap of 2");
        drop(idle_a);
        let answer = tokio::time::timeout(Duration::from_secs(5), async {
            let mut rest = String::new();
            third.read_to_string(&mut rest).await.unwrap();
            rest
        })
        .await
        .expect("served once a slot freed");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[tokio::test]
    async fn on_threads_of_its_own_it_serves_shares_the_cap_and_stops() {
        let limits = HttpListenerLimits {
            header_read_timeout: Duration::from_secs(30),
            max_connections: 2,
            threads: 2,
            flatten_writes: true,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = watch::channel(false);
        let server = tokio::spawn(serve_http(listener, Answer(echo), limits, || {}, rx));
        // Served, with the client's address, on every new connection.
        for _ in 0..6 {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let me = c.local_addr().unwrap().to_string();
            let answer = tokio::time::timeout(Duration::from_secs(5), get(&mut c)).await.expect("served");
            assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with(&me), "{answer}");
        }
        // The cap counts connections over both threads.
        a_third_connection_waits_for_a_slot(addr).await;
        // Stopping ends every thread: serve_http returns.
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server).await.expect("serve_http returned").unwrap();
    }

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
