//! Connection quality numbers and the route the audio takes, read from webrtcbin's `get-stats`
//! reply.

use crate::ice::Transport;

/// Connection quality numbers from webrtcbin's stats.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CallStats {
    /// The selected candidate pair, once ICE picked one.
    pub route: Option<Route>,
    /// Round-trip time reported by the peer's receiver reports, ms.
    pub rtt_ms: Option<f64>,
    /// Inbound jitter, ms.
    pub jitter_ms: Option<f64>,
    pub packets_received: u64,
    pub packets_lost: i64,
    pub packets_sent: u64,
}

impl CallStats {
    /// Inbound loss in percent.
    pub fn loss_pct(&self) -> f64 {
        let total = self.packets_received as f64 + self.packets_lost.max(0) as f64;
        if total == 0.0 {
            0.0
        } else {
            100.0 * self.packets_lost.max(0) as f64 / total
        }
    }

    pub(crate) fn read(reply: &gst::StructureRef) -> Self {
        let mut out = CallStats::default();
        let mut candidates = Vec::new();
        let mut pairs = Vec::new();
        for (_, value) in reply.iter() {
            let Ok(stat) = value.get::<gst::Structure>() else {
                continue;
            };
            tracing::trace!(%stat, "webrtcbin stat");
            match stat.name().as_str() {
                // GStreamer 1.22 names these two the wrong way round (a "remote-candidate"
                // carries the local id and fields): they are matched by id only.
                "local-candidate" | "remote-candidate" => candidates.push(stat),
                "candidate-pair" | "ice-candidate-pair" => pairs.push(stat),
                "inbound-rtp" => {
                    out.packets_received += stat.get::<u64>("packets-received").unwrap_or(0);
                    out.packets_lost += stat.get::<i64>("packets-lost").unwrap_or(0);
                    if let Ok(j) = stat.get::<f64>("jitter") {
                        out.jitter_ms = Some(j * 1000.0);
                    }
                }
                "outbound-rtp" => {
                    out.packets_sent += stat.get::<u64>("packets-sent").unwrap_or(0);
                }
                "remote-inbound-rtp" => {
                    if let Ok(rtt) = stat.get::<f64>("round-trip-time") {
                        out.rtt_ms = Some(rtt * 1000.0);
                    }
                }
                _ => {}
            }
        }
        out.route = pairs.iter().find_map(|p| Route::read(p, &candidates));
        out
    }
}

/// An ICE candidate's type (RFC 8445 §5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateType {
    Host,
    Srflx,
    Prflx,
    Relay,
}

impl CandidateType {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "host" => Self::Host,
            "srflx" | "server-reflexive" => Self::Srflx,
            "prflx" | "peer-reflexive" => Self::Prflx,
            "relay" | "relayed" => Self::Relay,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Srflx => "srflx",
            Self::Prflx => "prflx",
            Self::Relay => "relay",
        }
    }
}

/// How the call's audio travels: the selected candidate pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub local: CandidateType,
    pub remote: CandidateType,
    /// The local candidate's transport towards the peer (`udp` / `tcp`; a relayed candidate's is
    /// the relay's allocation, always UDP).
    pub protocol: Transport,
    /// With a relayed local candidate: how this engine reaches its TURN server (see
    /// [`relay_transport_of`]).
    pub relay_protocol: Option<Transport>,
}

impl Route {
    /// Through a TURN server (ours or the peer's), not straight between the two machines.
    pub fn relayed(&self) -> bool {
        self.local == CandidateType::Relay || self.remote == CandidateType::Relay
    }

    fn read(pair: &gst::Structure, candidates: &[gst::Structure]) -> Option<Self> {
        let find = |field: &str| {
            let id = pair.get::<String>(field).ok()?;
            candidates
                .iter()
                .find(|c| c.get::<String>("id").ok().as_deref() == Some(id.as_str()))
        };
        let (local, remote) = (find("local-candidate-id")?, find("remote-candidate-id")?);
        let kind = |c: &gst::Structure| {
            c.get::<String>("candidate-type")
                .ok()
                .and_then(|t| CandidateType::parse(&t))
        };
        let protocol = match local.get::<String>("protocol").ok()?.as_str() {
            "tcp" => Transport::Tcp,
            _ => Transport::Udp,
        };
        let local_type = kind(local)?;
        let relay_protocol = (local_type == CandidateType::Relay)
            .then(|| local.get::<u32>("priority").ok())
            .flatten()
            .map(relay_transport_of);
        Some(Self {
            local: local_type,
            remote: kind(remote)?,
            protocol,
            relay_protocol,
        })
    }
}

/// How libnice reaches the TURN server of a relayed candidate, from the candidate's priority.
/// webrtcbin 1.22's stats take `relay-protocol` from its single `turn-server` property, not from
/// the relay the candidate came from (so with `add-turn-server` it reads "none"), and libnice
/// 0.1.21 gives a relay over UDP a type preference of 30 and one over TCP (or its "TLS", which is
/// TCP) 20 — the top byte of an RFC 8445 priority.
pub fn relay_transport_of(priority: u32) -> Transport {
    if priority >> 24 >= 30 {
        Transport::Udp
    } else {
        Transport::Tcp
    }
}
