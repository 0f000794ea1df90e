//! Who a client is when the server sits behind a reverse proxy.
//!
//! `X-Forwarded-For` is a header anyone can send, so it is believed only when the TCP peer is one of
//! the configured proxies (`--trusted-proxy`). The address used is then the rightmost entry that is
//! not itself a trusted proxy: entries further left were written by the client or by proxies we
//! know nothing about, and could be anything.

use crate::admission::{Admission, ConnMeter, Guarded};
use axum::http::HeaderMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The TCP peer of a connection (axum `ConnectInfo`), the same for plain TCP and TLS listeners,
/// with the connection's accounting (see [`crate::admission`]).
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub conn: Option<Arc<ConnMeter>>,
}

/// Plain TCP with Nagle off (signaling frames are small and an offer waits for its answer), each
/// connection counted and timed from `accept` (see [`crate::admission`]).
#[derive(Debug)]
pub struct PlainListener {
    pub tcp: tokio::net::TcpListener,
    pub admission: Arc<Admission>,
}

impl axum::serve::Listener for PlainListener {
    type Io = Guarded<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.tcp.accept().await {
                Ok((tcp, peer)) => {
                    let local = tcp.local_addr().unwrap_or(peer);
                    let meter = match self.admission.admit_tcp(peer, local) {
                        Ok(m) => m,
                        Err(why) => {
                            self.admission.refuse_plain(tcp, why);
                            continue;
                        }
                    };
                    if let Err(err) = tcp.set_nodelay(true) {
                        tracing::debug!(%err, "cannot set TCP_NODELAY");
                    }
                    return (Guarded::new(tcp, meter), peer);
                }
                // Out of descriptors: refused at once with 503, one log line per interval.
                Err(err) => crate::fds::overload().on_accept_error(err, &self.tcp).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, PlainListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, PlainListener>) -> Self {
        Peer {
            addr: *stream.remote_addr(),
            conn: Some(stream.io().meter().clone()),
        }
    }
}

/// One `X-Forwarded-For` entry: an IP, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_entry(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    s.parse::<SocketAddr>().ok().map(|a| a.ip())
}

/// The client's address: the peer itself, unless the peer is a trusted proxy, in which case the
/// rightmost `X-Forwarded-For` entry that is not a trusted proxy (an entry that does not parse
/// stops the walk at the last address we could trust).
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| {
        trusted
            .iter()
            .any(|t| t.to_canonical() == ip.to_canonical())
    };
    let mut client = peer.ip().to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for entry in entries.iter().rev() {
        match parse_entry(entry) {
            Some(ip) => {
                client = ip.to_canonical();
                if !is_trusted(&client) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let stranger: SocketAddr = "192.0.2.9:5000".parse().unwrap();
        let h = headers(&["203.0.113.7"]);
        assert_eq!(client_ip(peer, &h, &[proxy]).to_string(), "203.0.113.7");
        // Not from the proxy: the header is ignored.
        assert_eq!(client_ip(stranger, &h, &[proxy]).to_string(), "192.0.2.9");
        // No proxy configured: ignored.
        assert_eq!(client_ip(peer, &h, &[]).to_string(), "127.0.0.1");
        // A spoofed entry on the left does not win over what the proxy appended.
        let h = headers(&["6.6.6.6, 203.0.113.7"]);
        assert_eq!(client_ip(peer, &h, &[proxy]).to_string(), "203.0.113.7");
        let h = headers(&["6.6.6.6", "203.0.113.7:4444"]);
        assert_eq!(client_ip(peer, &h, &[proxy]).to_string(), "203.0.113.7");
        // A chain of two trusted proxies.
        let inner: IpAddr = "10.1.1.1".parse().unwrap();
        let h = headers(&["203.0.113.7, 10.1.1.1"]);
        assert_eq!(
            client_ip(peer, &h, &[proxy, inner]).to_string(),
            "203.0.113.7"
        );
        // Garbage stops the walk at the last trusted hop.
        let h = headers(&["nonsense"]);
        assert_eq!(client_ip(peer, &h, &[proxy]).to_string(), "127.0.0.1");
        // IPv4-mapped IPv6 peers match an IPv4 proxy.
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        let h = headers(&["[2001:db8::1]:80"]);
        assert_eq!(client_ip(mapped, &h, &[proxy]).to_string(), "2001:db8::1");
    }
}
