//! The API's connection handling: TLS, then HTTP/1.1 only, with every limit a client without a key could
//! otherwise abuse.
//!
//! - At most [`Limits::max_connections`] connections are open at once; past that the listener stops
//!   accepting (the kernel's backlog queues, then refuses) until one closes.
//! - The TLS handshake and every request head must arrive within [`Limits::header_timeout`], counted
//!   from the accept or from the end of the previous response; a keep-alive connection that sends nothing
//!   is closed after it too. A slowloris client therefore holds a slot for at most that long.
//! - The request body must arrive within [`Limits::body_timeout`] of its head (enforced by the request
//!   pipeline, which reads the body).
//! - Only HTTP/1.1 is spoken: ALPN offers `http/1.1` alone ([`crate::tls::server_config`]), and hyper's
//!   HTTP/1-only connection refuses a client that sends the HTTP/2 preface anyway, without an HTTP/2
//!   SETTINGS frame.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// Connection limits of the API listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// How long a stop waits for requests in flight before the remaining connections are dropped.
const DRAIN: Duration = Duration::from_secs(10);

/// Accepts connections on `listener` until `shutdown` turns true, then lets requests in flight finish
/// (up to ten seconds). `on_open` is called with +1/-1 as connections open and close (for a gauge).
pub(crate) async fn run(
    listener: std::net::TcpListener,
    tls: axum_server::tls_rustls::RustlsConfig,
    router: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
    on_open: Arc<dyn Fn(i64) + Send + Sync>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let max = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stopped(&mut shutdown) => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning; the listener itself is fine.
                    tracing::warn!(error = %e, "Accepting an API connection failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.get_inner());
        let router = router.clone();
        let mut stop = shutdown.clone();
        let on_open = on_open.clone();
        tokio::spawn(async move {
            let _permit = permit;
            on_open(1);
            serve_connection(tcp, peer, acceptor, router, limits, &mut stop).await;
            on_open(-1);
        });
    }
    // Stop accepting, then wait for the connections to finish (each was told to close after its current
    // request), at most DRAIN.
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, slots.acquire_many(u32::try_from(max).unwrap_or(u32::MAX))).await;
    Ok(())
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    router: Router,
    limits: Limits,
    stop: &mut watch::Receiver<bool>,
) {
    let tls = match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        // A failed or slow handshake is the client's problem; nothing to report beyond debug.
        Ok(Err(e)) => {
            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed.");
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %peer, "TLS handshake timed out.");
            return;
        }
    };
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let mut req = req.map(axum::body::Body::new);
        req.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .max_buf_size(super::MAX_QUERY_BYTES + 64 * 1024);
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(peer = %peer, error = %e, "API connection ended with an error.");
            }
        }
        _ = stopped(stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN, conn).await;
        }
    }
}

/// Resolves once `rx` reads true (or its sender is gone). The guard `wait_for` returns is dropped here,
/// so callers stay `Send`.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
