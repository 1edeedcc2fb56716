//! The listener: plain TCP, or TLS (rustls) when a certificate and key are given; one HTTP/1
//! connection task per client, with a deadline for a request's headers (a client that trickles
//! them is cut off, so idle sockets cannot pile up); graceful shutdown that also ends open
//! event streams.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Extension;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio_rustls::server::TlsStream;

use crate::events::Closing;

/// A PEM certificate chain and its PEM private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("failed to load the TLS certificate {path}: {message}")]
    Certificate { path: String, message: String },
    #[error("failed to load the TLS private key {path}: {message}")]
    Key { path: String, message: String },
    #[error("invalid TLS certificate or key: {0}")]
    Tls(String),
    #[error("the HTTP server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long requests in flight may finish after shutdown was asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers (a whole request line and header
/// block) after it connected, or after its previous answer on a kept-alive connection.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve `router` on `listener` until `shutdown` completes; then stop accepting, end event
/// streams, and give requests in flight up to 10 s to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsFiles>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (closing_tx, closing_rx) = watch::channel(false);
    let router = router.layer(Extension(Closing(closing_rx)));
    let (grace_tx, mut grace_rx) = watch::channel(false);
    let signal = async move {
        shutdown.await;
        let _ = closing_tx.send(true);
        let _ = grace_tx.send(true);
    };
    let grace = async move {
        let _ = grace_rx.wait_for(|started| *started).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let stopping = {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            signal.await;
            let _ = tx.send(true);
        });
        rx
    };
    let connections = match tls {
        None => tokio::spawn(accept_loop(listener, router, stopping, HEADER_READ_TIMEOUT)),
        Some(files) => {
            let listener = TlsListener::new(listener, acceptor(&files)?)?;
            tokio::spawn(accept_loop(listener, router, stopping, HEADER_READ_TIMEOUT))
        }
    };
    tokio::select! {
        r = connections => r.map_err(|e| std::io::Error::other(e.to_string()))?,
        _ = grace => {}
    }
    Ok(())
}

/// Resolves once `stopping` is true (or its sender is gone).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

/// Accept connections until `stopping`, serving each in its own task; then ask every open
/// connection to finish its request in flight and close, and wait until they have.
async fn accept_loop<L>(mut listener: L, router: Router, mut stopping: watch::Receiver<bool>, header_read: Duration)
where
    L: axum::serve::Listener,
{
    // Every connection task holds a clone of `open`; `all_closed` resolves when none is left.
    let (all_closed, open) = watch::channel(());
    loop {
        let (io, _peer) = tokio::select! {
            c = listener.accept() => c,
            () = stopped(&mut stopping) => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let mut stopping = stopping.clone();
        let open = open.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_read);
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service).with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stopped(&mut stopping) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(open);
        });
    }
    drop(open);
    all_closed.closed().await;
}

impl TlsFiles {
    /// Load and check the certificate and key now, so a bad file is reported before the
    /// controller starts acting rather than when the listener comes up.
    pub fn check(&self) -> Result<(), ServeError> {
        acceptor(self).map(|_| ())
    }
}

fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, ServeError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServeError::Certificate { path: files.cert.display().to_string(), message: e.to_string() })?;
    if certs.is_empty() {
        return Err(ServeError::Certificate {
            path: files.cert.display().to_string(),
            message: "no PEM certificate in the file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| ServeError::Key { path: files.key.display().to_string(), message: e.to_string() })?;
    // Name the provider: with several rustls providers compiled in, none is the default.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A listener that yields connections whose TLS handshake is done. Handshakes run in their
/// own tasks, so a slow or silent client never holds up the others.
struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor_task: JoinHandle<()>,
}

impl TlsListener {
    fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor_task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        log_line(&format!("meridian-api: accept failed: {e}"));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        Ok(TlsListener { ready, local, acceptor_task })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The acceptor task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Where this crate's log lines go: set once by the command that serves the API (so they come
/// out in its `--log-format`); stderr until then.
static LOG_SINK: std::sync::OnceLock<fn(&str)> = std::sync::OnceLock::new();

/// Send this crate's log lines to `sink` (the first call wins).
pub fn set_log_sink(sink: fn(&str)) {
    let _ = LOG_SINK.set(sink);
}

/// One line to the log that never panics (`eprintln!` does when stderr is a closed pipe, and a
/// log line must not take the accept loop down).
pub(crate) fn log_line(line: &str) {
    use std::io::Write as _;
    match LOG_SINK.get() {
        Some(sink) => sink(line),
        None => {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    }
}
