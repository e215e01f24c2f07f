//! TLS for the suite's listeners and its internal calls.
//!
//! - The gateway's listener serves TLS when `CRM_TLS_CERT_FILE` and
//!   `CRM_TLS_KEY_FILE` are set. The certificate is read again when either
//!   file changes (checked at each handshake, by size and modification time),
//!   so a renewed certificate (cert-manager, certbot) takes effect on the next
//!   connection without a restart; files that do not parse leave the old one
//!   in use, with a warning.
//! - Roles serve mutual TLS when `CRM_INTERNAL_TLS_CA_FILE`,
//!   `CRM_INTERNAL_TLS_CERT_FILE` and `CRM_INTERNAL_TLS_KEY_FILE` are set:
//!   a caller must present a certificate signed by that CA (the gateway and
//!   the roles do, with the same files), and internal channels
//!   ([`internal_endpoint`]) speak TLS with it. The signed principal stays:
//!   TLS says which process calls, the principal who it calls for.
//!
//! Handshakes run in tasks of their own, bounded by [`HANDSHAKE_TIMEOUT`],
//! so a client that never finishes one holds up nobody else.

use std::{
    io,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use anyhow::Context;
use futures_util::Stream;
use rustls::{
    RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_util::sync::CancellationToken;

/// A handshake that takes longer than this is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A certificate chain and its private key, as PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Mutual TLS between the processes of an install.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InternalTls {
    /// The CA that signs every process's certificate; callers must present one.
    pub ca: PathBuf,
    /// This process's certificate and key, as server and as client.
    pub identity: TlsFiles,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What the certificate files looked like when last read.
type Stamp = [(u64, Option<SystemTime>); 2];

fn stamp(files: &TlsFiles) -> io::Result<Stamp> {
    let of = |path: &Path| std::fs::metadata(path).map(|meta| (meta.len(), meta.modified().ok()));
    Ok([of(&files.cert)?, of(&files.key)?])
}

fn load(files: &TlsFiles) -> anyhow::Result<CertifiedKey> {
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the certificate chain in {}", files.cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", files.cert.display());
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading the private key in {}", files.key.display()))?;
    CertifiedKey::from_der(chain, key, &provider()).with_context(|| {
        format!("{} and {} do not make a certificate and its key", files.cert.display(), files.key.display())
    })
}

/// Serves the certificate in `files`, read again whenever they change.
#[derive(Debug)]
pub struct ReloadingCert {
    files: TlsFiles,
    current: RwLock<(Stamp, Arc<CertifiedKey>)>,
}

impl ReloadingCert {
    pub fn new(files: TlsFiles) -> anyhow::Result<ReloadingCert> {
        let stamp =
            stamp(&files).with_context(|| format!("reading {} and {}", files.cert.display(), files.key.display()))?;
        let key = Arc::new(load(&files)?);
        Ok(ReloadingCert { files, current: RwLock::new((stamp, key)) })
    }

    fn refresh(&self) {
        let Ok(now) = stamp(&self.files) else { return };
        if self.current.read().unwrap_or_else(|poison| poison.into_inner()).0 == now {
            return;
        }
        let mut current = self.current.write().unwrap_or_else(|poison| poison.into_inner());
        match load(&self.files) {
            Ok(key) => {
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                *current = (now, Arc::new(key));
            }
            Err(error) => {
                // Half-written files are common during a renewal: keep serving the old one.
                tracing::warn!(
                    error = format!("{error:#}"),
                    "TLS certificate files changed but do not load; keeping the old certificate"
                );
                current.0 = now;
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.refresh();
        Some(self.current.read().unwrap_or_else(|poison| poison.into_inner()).1.clone())
    }
}

/// The server side of TLS: `files`' certificate (reloaded), and when
/// `client_ca` is given, only clients with a certificate it signed.
/// `http1` also offers HTTP/1.1 (gRPC-Web from browsers).
pub fn server_config(files: &TlsFiles, client_ca: Option<&Path>, http1: bool) -> anyhow::Result<Arc<ServerConfig>> {
    let builder = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                .build()
                .context("building the client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(ReloadingCert::new(files.clone())?));
    config.alpn_protocols = if http1 { vec![b"h2".to_vec(), b"http/1.1".to_vec()] } else { vec![b"h2".to_vec()] };
    Ok(Arc::new(config))
}

fn roots(ca: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("reading the CA in {}", ca.display()))? {
        roots.add(cert.with_context(|| format!("reading the CA in {}", ca.display()))?)?;
    }
    anyhow::ensure!(!roots.is_empty(), "{} holds no CA certificate", ca.display());
    Ok(roots)
}

/// Connections accepted on `listener`, each after its TLS handshake (done
/// concurrently, each bounded by [`HANDSHAKE_TIMEOUT`]), until `shutdown`.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    shutdown: CancellationToken,
) -> impl Stream<Item = io::Result<TlsStream<TcpStream>>> {
    let acceptor = TlsAcceptor::from(config);
    let (ready, connections) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (acceptor, ready) = (acceptor.clone(), ready.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = ready.send(Ok(tls)).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(connections)
}

/// An endpoint for an internal call to `url` (another role), with mutual TLS
/// when the install has it.
pub fn internal_endpoint(url: &str, tls: Option<&InternalTls>) -> anyhow::Result<tonic::transport::Endpoint> {
    let endpoint =
        tonic::transport::Endpoint::from_shared(url.to_string()).with_context(|| format!("{url} is not a URL"))?;
    let Some(tls) = tls else {
        return Ok(endpoint);
    };
    let read = |path: &Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let config = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(read(&tls.ca)?))
        .identity(tonic::transport::Identity::from_pem(read(&tls.identity.cert)?, read(&tls.identity.key)?));
    Ok(endpoint.tls_config(config)?)
}
