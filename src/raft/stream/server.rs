//! The server side of the peer stream: the Raft listener's choice between
//! the stream and HTTP for each connection, the hello's checks, and the
//! loop that answers one stream's requests (see the parent module).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::io::BufReader;
use tokio_util::sync::CancellationToken;

use super::Answer;
use super::Hello;
use super::MAGIC;
use super::MAX_SMALL_RPC_BODY;
use super::Purpose;
use super::ReadIndexAnswer;
use super::Welcome;
use super::decode;
use super::frame;
use super::read_body;
use super::read_frame;
use super::read_magic;
use super::within;
use crate::net::ClusterSecret;
use crate::net::PeerCertificates;
use crate::net::serve::Activity;
use crate::net::serve::HttpConn;
use crate::net::tls::Stream;
use crate::raft::LeaderContact;
use crate::raft::NodeId;
use crate::raft::Raft;
use crate::raft::rpc;
use crate::raft::typ;

/// The server side: what the Raft listener needs to serve a stream.
pub struct Server {
    raft: Raft,
    target: rpc::Target,
    secret: Option<ClusterSecret>,
    /// The listener serves mutual TLS: the hello's sender must be named by
    /// the client certificate.
    tls: bool,
    limits: rpc::PeerLimits,
}

impl Server {
    /// `raft`, `contact`, `secret`, `limits` and `tls` as for
    /// [`rpc::router`]; `info`: who this node is (its id and incarnation).
    pub fn new(
        raft: Raft,
        info: &rpc::NodeInfo,
        contact: Arc<LeaderContact>,
        secret: Option<ClusterSecret>,
        limits: rpc::PeerLimits,
        tls: bool,
    ) -> Self {
        Self {
            raft,
            target: rpc::Target {
                id: info.id.clone(),
                incarnation: info.incarnation,
                contact,
            },
            secret,
            tls,
            limits,
        }
    }

    /// Serve one accepted connection of the Raft listener: a peer stream
    /// if it starts with [`MAGIC`], else HTTP with `router`.
    pub async fn serve_connection(
        self: Arc<Self>,
        router: Router,
        mut stream: Stream,
        peer: SocketAddr,
        activity: Arc<Activity>,
        shutdown: CancellationToken,
    ) {
        let certs = stream.peer_certificates().map(PeerCertificates);
        let bound = self.limits.body_timeout;
        let mut head = [0u8; MAGIC.len()];
        let n = match tokio::time::timeout(bound, read_magic(&mut stream, &mut head)).await {
            Ok(Ok(n)) => n,
            _ => return,
        };
        if head == *MAGIC {
            if let Err(e) = self.serve_stream(stream, certs, activity, shutdown).await {
                tracing::debug!(%peer, error = %e, "peer stream ended");
            }
            return;
        }
        let stream = crate::net::serve::Rewind::new(Bytes::copy_from_slice(&head[..n]), stream);
        crate::net::serve::serve_http(
            stream,
            HttpConn {
                peer,
                certs,
                router,
                activity,
                shutdown,
                header_timeout: bound,
            },
        )
        .await;
    }

    /// Why `hello` may not use this stream; Ok: the sender TLS proved
    /// (None without TLS).
    fn admit(
        &self,
        hello: &Hello,
        certs: Option<&PeerCertificates>,
    ) -> Result<Option<NodeId>, String> {
        if let Some(s) = &self.secret
            && !s.matches(hello.secret.as_deref().map(str::as_bytes))
        {
            return Err(rpc::NO_SECRET.into());
        }
        let proven = if self.tls {
            if let Some(why) = rpc::sender_not_named(certs, Some(hello.from.as_str())) {
                return Err(why);
            }
            Some(hello.from.clone())
        } else {
            None
        };
        match self
            .target
            .misaddressed(Some(hello.to.as_str()), hello.incarnation)
        {
            Some(why) => Err(why),
            None => Ok(proven),
        }
    }

    async fn serve_stream(
        &self,
        stream: Stream,
        certs: Option<PeerCertificates>,
        activity: Arc<Activity>,
        shutdown: CancellationToken,
    ) -> io::Result<()> {
        let bound = self.limits.body_timeout;
        let (r, mut w) = tokio::io::split(stream);
        let mut r = BufReader::with_capacity(64 * 1024, r);
        let mut buf = Vec::new();
        within(bound, read_frame(&mut r, MAX_SMALL_RPC_BODY, &mut buf)).await?;
        let hello: Hello = decode(&buf)?;
        let admitted = self.admit(&hello, certs.as_ref());
        let welcome = match &admitted {
            Ok(_) => Welcome::Accepted,
            Err(why) => Welcome::Refused(why.clone()),
        };
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&frame(&welcome)?);
        within(bound, w.write_all(&out)).await?;
        let proven = match admitted {
            Ok(p) => p,
            Err(why) => return Err(io::Error::new(io::ErrorKind::PermissionDenied, why)),
        };
        loop {
            let len = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                len = r.read_u32_le() => len? as usize,
            };
            let _busy = activity.busy();
            let max = match hello.purpose {
                Purpose::Append => self.limits.max_append_bytes,
                Purpose::ReadIndex => MAX_SMALL_RPC_BODY,
            };
            within(bound, read_body(&mut r, len, max, &mut buf)).await?;
            let answer = match hello.purpose {
                Purpose::Append => {
                    let req: typ::AppendEntriesRequest = decode(&buf)?;
                    let claimed = rpc::voter(&req.vote);
                    if let Some(why) = rpc::impersonation(proven.as_ref(), claimed) {
                        let answer: Answer = Err(why.clone());
                        within(bound, w.write_all(&frame(&answer)?)).await?;
                        return Err(io::Error::new(io::ErrorKind::PermissionDenied, why));
                    }
                    let answer: Answer = rpc::append_entries(&self.raft, &self.target.contact, req)
                        .await
                        .map_err(|e| rpc::unavailable(&e));
                    frame(&answer)?
                }
                Purpose::ReadIndex => {
                    let () = decode(&buf)?;
                    let answer: ReadIndexAnswer = rpc::read_index_now(&self.raft)
                        .await
                        .map_err(|e| rpc::unavailable(&e));
                    frame(&answer)?
                }
            };
            within(bound, w.write_all(&answer)).await?;
        }
    }
}
