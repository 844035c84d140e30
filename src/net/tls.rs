//! TLS (rustls, ring provider) for the three listeners and for outgoing
//! node-to-node calls, with certificates that can be replaced while the
//! node runs.
//!
//! [`Tls`] holds what `tls.cert_file`, `tls.key_file` and `tls.ca_file`
//! contain. Every new handshake reads the current copy; [`Tls::reload`]
//! swaps in a new one (SIGHUP, or [`Tls::watch_files`] seeing a file
//! change), so connections already open keep going and new ones use the new
//! certificate.
//!
//! - Server side, [`Acceptor`]: [`Side::Clients`] (HTTP API, Redis) asks for
//!   a client certificate as `tls.client_auth` says; [`Side::Peers`] (Raft)
//!   always requires one signed by the CA.
//! - Client side, [`Tls::node_client`]: the node's certificate as client
//!   certificate, the CA as the only root, and the server's certificate must
//!   name the node dialed ([`node_name`]) rather than the address's host, so
//!   a peer on another node's address, or holding another node's
//!   certificate, is refused.
//! - [`ClientTls::from_files`]: a static client config (CLI, fault harness,
//!   tests): the CA file as the only root, the usual host name check.
//!
//! Invariants:
//! - A reload that fails (unreadable or mismatched files) changes nothing:
//!   the previous certificate stays in use, and the error is returned.
//! - Private keys never appear in `Debug` output or errors.
//!
//! Not here: which listener uses TLS (the node), the accept loop (`serve`).

use std::fmt;
use std::io;
use std::path::Path;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::RwLock;
use std::task::Context;
use std::task::Poll;
use std::time::Duration;
use std::time::SystemTime;

use rustls::ClientConfig;
use rustls::DigitallySignedStruct;
use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::SignatureScheme;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::client::danger::ServerCertVerified;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::ServerName;
use rustls_pki_types::UnixTime;
use rustls_pki_types::pem::PemObject;
use tokio::io::AsyncRead;
use tokio::io::AsyncWrite;
use tokio::io::ReadBuf;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Whether a client listener asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificate asked for.
    #[default]
    None,
    /// Asked for; one that is sent must be signed by the CA.
    Optional,
    /// Required, signed by the CA.
    Required,
}

/// The files of `tls.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The node's certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA certificate(s) (PEM) peers' and clients' certificates must
    /// chain to.
    pub ca: PathBuf,
    /// What the client listeners (HTTP, Redis) ask of clients.
    pub client_auth: ClientAuth,
}

/// A certificate, key or CA file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

fn err(what: impl fmt::Display) -> TlsError {
    TlsError(what.to_string())
}

/// The crypto provider dcache uses everywhere: ring. rustls 0.23.48
/// deprecates ring's provider because it lacks post-quantum key exchange;
/// the alternative, aws-lc-rs, needs cmake and a C toolchain the offline
/// image build does not have. Classical ECDHE (X25519, P-256) is what the
/// listeners negotiate.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| err(format!("{what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(err(format!(
            "{what} {}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    // The parser's error names the PEM problem, never the key's bytes.
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| err(format!("tls.key_file {}: {e}", path.display())))
}

fn read_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(path, "tls.ca_file")? {
        roots
            .add(c)
            .map_err(|e| err(format!("tls.ca_file {}: {e}", path.display())))?;
    }
    Ok(Arc::new(roots))
}

/// What one set of files gave.
struct Loaded {
    key: Arc<CertifiedKey>,
    clients: Arc<ServerConfig>,
    peers: Arc<ServerConfig>,
    verifier: Arc<WebPkiServerVerifier>,
    stamp: Vec<Option<(SystemTime, u64)>>,
}

fn stamp(files: &TlsFiles) -> Vec<Option<(SystemTime, u64)>> {
    [&files.cert, &files.key, &files.ca]
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

impl Loaded {
    fn read(files: &TlsFiles) -> Result<Loaded, TlsError> {
        let stamp = stamp(files);
        let p = provider();
        let chain = read_certs(&files.cert, "tls.cert_file")?;
        let key = CertifiedKey::from_der(chain, read_key(&files.key)?, &p)
            .map_err(|e| err(format!("tls.cert_file / tls.key_file: {e}")))?;
        let key = Arc::new(key);
        let roots = read_roots(&files.ca)?;
        let server = |auth: ClientAuth| -> Result<Arc<ServerConfig>, TlsError> {
            let b = ServerConfig::builder_with_provider(p.clone())
                .with_safe_default_protocol_versions()
                .map_err(err)?;
            let b = match auth {
                ClientAuth::None => b.with_no_client_auth(),
                ClientAuth::Optional | ClientAuth::Required => {
                    let v = WebPkiClientVerifier::builder_with_provider(roots.clone(), p.clone());
                    let v = if auth == ClientAuth::Optional {
                        v.allow_unauthenticated()
                    } else {
                        v
                    };
                    b.with_client_cert_verifier(v.build().map_err(err)?)
                }
            };
            // No ALPN: the listeners speak HTTP/1.1 or RESP, and a client
            // offering h2 falls back to HTTP/1.1 without it.
            Ok(Arc::new(b.with_cert_resolver(Arc::new(Fixed(key.clone())))))
        };
        let clients = server(files.client_auth)?;
        let peers = server(ClientAuth::Required)?;
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, p)
            .build()
            .map_err(err)?;
        Ok(Loaded {
            key,
            clients,
            peers,
            verifier,
            stamp,
        })
    }
}

/// Serves the one certificate it holds (a resolver, so a server config
/// can be built without consuming the key).
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// The node's TLS material, replaceable at run time.
pub struct Tls {
    files: TlsFiles,
    current: RwLock<Arc<Loaded>>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

/// Which listener an [`Acceptor`] serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// HTTP API and Redis: client certificates as `tls.client_auth` says.
    Clients,
    /// Raft: a CA-signed client certificate is required.
    Peers,
}

impl Tls {
    /// Read the files; fails if any is unreadable or the key does not
    /// match the certificate.
    pub fn load(files: TlsFiles) -> Result<Arc<Tls>, TlsError> {
        let loaded = Loaded::read(&files)?;
        Ok(Arc::new(Tls {
            files,
            current: RwLock::new(Arc::new(loaded)),
        }))
    }

    fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Read the files again and use them for every new handshake; on
    /// failure keep the current ones.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = Loaded::read(&self.files)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
        Ok(())
    }

    /// Reload whenever one of the files' modification time or size changes
    /// (checked every `every`), until `stop`.
    pub async fn watch_files(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if stamp(&self.files) == self.current().stamp {
                continue;
            }
            match self.reload() {
                Ok(()) => tracing::info!("TLS files changed: certificates reloaded"),
                Err(e) => {
                    // Keep the old ones; report once per change.
                    tracing::warn!(error = %e, "TLS files changed but cannot be used; keeping the current certificates");
                    let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
                    let same = Loaded {
                        key: cur.key.clone(),
                        clients: cur.clients.clone(),
                        peers: cur.peers.clone(),
                        verifier: cur.verifier.clone(),
                        stamp: stamp(&self.files),
                    };
                    *cur = Arc::new(same);
                }
            }
        }
    }

    /// Whether the node's own certificate names node `id`.
    pub fn own_certificate_names(&self, id: &str) -> bool {
        self.current()
            .key
            .end_entity_cert()
            .is_ok_and(|c| names_node(c, id))
    }

    /// The acceptor of one listener.
    pub fn acceptor(self: &Arc<Self>, side: Side) -> Acceptor {
        Acceptor {
            tls: self.clone(),
            side,
        }
    }

    /// A client config for calls from this node to another node: the
    /// node's certificate as client certificate, the CA as the only root,
    /// and the server must present a certificate naming `node` (see
    /// [`node_name`]); `None`: naming the host dialed (a join address,
    /// whose node is not known yet).
    pub fn node_client(self: &Arc<Self>, node: Option<&str>) -> Result<ClientTls, TlsError> {
        let expect = match node {
            Some(id) => Some(
                node_name(id)
                    .ok_or_else(|| err(format!("node id {id:?} is not a DNS name, IP or host:port, so no certificate can name it")))?,
            ),
            None => None,
        };
        let verifier = Arc::new(NodeVerifier {
            tls: self.clone(),
            expect,
        });
        let c = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(err)?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(Arc::new(OwnKey(self.clone())));
        Ok(ClientTls(Arc::new(c)))
    }
}

/// The name a node's certificate must carry (as a DNS or IP subject
/// alternative name): its id, or, when the id is `host:port` (the default
/// id is the Raft address), that host. None when no certificate can name
/// the id.
pub fn node_name(id: &str) -> Option<ServerName<'static>> {
    if let Ok(n) = ServerName::try_from(id) {
        return Some(n.to_owned());
    }
    let (_, port) = id.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    ServerName::try_from(host_of(id)).ok().map(|n| n.to_owned())
}

/// The host of `host:port` (the brackets of an IPv6 literal removed); the
/// whole of `addr` when it has no port.
pub fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Whether `cert` (already verified against the CA) names node `id`.
pub fn names_node(cert: &CertificateDer<'_>, id: &str) -> bool {
    let Some(name) = node_name(id) else {
        return false;
    };
    webpki::EndEntityCert::try_from(cert)
        .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
}

/// Verifies a server certificate against the current CA, for the expected
/// node's name (or the host dialed).
#[derive(Debug)]
struct NodeVerifier {
    tls: Arc<Tls>,
    expect: Option<ServerName<'static>>,
}

impl NodeVerifier {
    /// The CA's verifier as of now (a reload may swap it).
    fn inner(&self) -> Arc<WebPkiServerVerifier> {
        self.tls.current().verifier.clone()
    }
}

impl ServerCertVerifier for NodeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = self.expect.as_ref().unwrap_or(server_name);
        self.inner()
            .verify_server_cert(end_entity, intermediates, name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner().supported_verify_schemes()
    }
}

/// The node's current certificate, as client certificate.
#[derive(Debug)]
struct OwnKey(Arc<Tls>);

impl rustls::client::ResolvesClientCert for OwnKey {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A TLS client configuration for `http_client`.
#[derive(Clone)]
pub struct ClientTls(Arc<ClientConfig>);

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// Trust the CA certificate(s) in `ca` only (host names checked as
    /// usual); present `cert_key` (certificate, key files) when given.
    pub fn from_files(ca: &Path, cert_key: Option<(&Path, &Path)>) -> Result<Self, TlsError> {
        let roots = read_roots(ca)?;
        let b = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(err)?
            .with_root_certificates(roots);
        let c = match cert_key {
            Some((cert, key)) => b
                .with_client_auth_cert(read_certs(cert, "client certificate")?, read_key(key)?)
                .map_err(|e| err(format!("client certificate {}: {e}", cert.display())))?,
            None => b.with_no_client_auth(),
        };
        Ok(ClientTls(Arc::new(c)))
    }

    /// Trusts no certificate: for clients meant for plain HTTP.
    pub fn trusting_nothing() -> Self {
        let c = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        ClientTls(Arc::new(c))
    }

    /// TLS over `tcp` to a server that must be named `host` (for
    /// protocols reqwest does not speak: the Redis port).
    pub async fn connect(
        &self,
        tcp: TcpStream,
        host: &str,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        tokio_rustls::TlsConnector::from(self.0.clone())
            .connect(name, tcp)
            .await
    }

    pub(crate) fn config(&self) -> ClientConfig {
        (*self.0).clone()
    }
}

/// A listener's TLS handshake.
#[derive(Clone, Debug)]
pub struct Acceptor {
    tls: Arc<Tls>,
    side: Side,
}

impl Acceptor {
    /// TLS handshake on an accepted connection, with the certificate
    /// current now.
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<Stream> {
        let cur = self.tls.current();
        let cfg = match self.side {
            Side::Clients => cur.clients.clone(),
            Side::Peers => cur.peers.clone(),
        };
        let s = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await?;
        Ok(Stream::Tls(Box::new(s)))
    }
}

/// An accepted connection: plain TCP or TLS over it.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Stream {
    /// The client's certificate chain (TLS with a client certificate only;
    /// verified against the CA during the handshake).
    pub fn peer_certificates(&self) -> Option<Arc<[CertificateDer<'static>]>> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(s) => s.get_ref().1.peer_certificates().map(Arc::from),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_of_an_address() {
        assert_eq!(host_of("node1.example:12000"), "node1.example");
        assert_eq!(host_of("127.0.0.1:12000"), "127.0.0.1");
        assert_eq!(host_of("[::1]:12000"), "::1");
        assert_eq!(host_of("n1"), "n1");
    }

    #[test]
    fn a_node_is_named_by_its_id_or_the_host_of_an_address_id() {
        let dns = |s: &str| Some(ServerName::try_from(s.to_string()).unwrap());
        assert_eq!(node_name("n1"), dns("n1"));
        assert_eq!(node_name("node1.example:12000"), dns("node1.example"));
        assert_eq!(node_name("127.0.0.1:12000"), dns("127.0.0.1"));
        assert_eq!(node_name("[::1]:12000"), dns("::1"));
        assert_eq!(node_name("not a name"), None);
        assert_eq!(node_name("host:notaport"), None);
    }
}
