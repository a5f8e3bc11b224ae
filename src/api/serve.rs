//! The HTTP accept loop of the API, with a bound on the request headers.
//!
//! `axum::serve` sets no header read timeout, so a client that opens a
//! connection and sends its request line a byte a minute (slowloris) would
//! hold a connection, a task and a file descriptor for as long as it likes;
//! enough of them and the operator page cannot be opened. The tower layers
//! of [`super::router`] only start once the headers are read. Here each
//! connection is served by hyper's HTTP/1 server with a timer, so a request
//! whose headers are not all in within [`HEADER_TIMEOUT`] is dropped with
//! its connection. The same bound closes an idle keep-alive connection.
//!
//! Graceful shutdown as with `axum::serve`: when `stop` completes, no new
//! connection is accepted, idle ones close, requests in flight finish
//! (each bounded by [`super::REQUEST_TIMEOUT`]).

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// A client must send its whole request line and headers within this (and
/// a keep-alive connection is closed after this long idle). An operator's
/// browser on the site network needs milliseconds.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stop waits for requests in flight: their own bound, plus a
/// little for the answer to be written.
const DRAIN: Duration = Duration::from_secs(super::REQUEST_TIMEOUT.as_secs() + 2);

/// After a failed `accept` (e.g. out of file descriptors), before the
/// next: no busy loop while the condition lasts.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `stop` completes, then drains.
pub async fn serve(listener: TcpListener, app: Router, stop: impl Future<Output = ()>) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "API: accepting a connection failed");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            },
        };
        // The client's address, for the audit log and the login throttle.
        let app = app
            .clone()
            .layer(axum::Extension(axum::extract::ConnectInfo(peer)));
        let service = TowerToHyperService::new(app);
        let conn = graceful.watch(http.serve_connection(TokioIo::new(tcp), service));
        tokio::spawn(async move {
            // A header timeout, a reset or a client gone mid-request: the
            // client's trouble, not the gateway's.
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "API connection ended");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("API: requests still open after {DRAIN:?} at stop; abandoned");
    }
}
