//! Connection quality in plain words from `getStats` numbers. Pure, so it is tested natively.

use super::{CallStats, Quality};

/// Good / fair / poor from round-trip time, jitter and loss; unknown numbers count as fine.
pub fn quality(s: &CallStats) -> Quality {
    let rtt = s.rtt_ms.unwrap_or(0.0);
    let jitter = s.jitter_ms.unwrap_or(0.0);
    let loss = s.loss_pct.unwrap_or(0.0);
    if rtt > 500.0 || jitter > 80.0 || loss > 8.0 {
        Quality::Poor
    } else if rtt > 250.0 || jitter > 30.0 || loss > 2.0 {
        Quality::Fair
    } else {
        Quality::Good
    }
}

/// "good · 12 ms round trip · 3 ms jitter · 0.0 % loss".
pub fn describe(s: &CallStats) -> String {
    let mut parts = vec![quality(s).label().to_owned()];
    if let Some(r) = s.rtt_ms {
        parts.push(format!("{r:.0} ms round trip"));
    }
    if let Some(j) = s.jitter_ms {
        parts.push(format!("{j:.0} ms jitter"));
    }
    if let Some(l) = s.loss_pct {
        parts.push(format!("{l:.1} % loss"));
    }
    parts.join(" · ")
}

/// How the audio travels: the selected ICE candidate pair, as both engines report it (getStats
/// `candidateType` / `protocol` / `relayProtocol`; the native engine's stats events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// `host`, `srflx`, `prflx` or `relay`.
    pub local: &'static str,
    pub remote: &'static str,
    /// The local candidate's transport: `udp` or `tcp`.
    pub protocol: &'static str,
    /// With a relayed local candidate: how the TURN server is reached (`udp`, `tcp`, `tls`).
    pub relay_protocol: Option<&'static str>,
}

fn known(value: &str, of: &[&'static str]) -> Option<&'static str> {
    let v = value.to_ascii_lowercase();
    of.iter().copied().find(|k| *k == v)
}

impl Route {
    /// From the engines' words; `None` if a type or the protocol is missing or unknown.
    pub fn parse(
        local: &str,
        remote: &str,
        protocol: &str,
        relay_protocol: Option<&str>,
    ) -> Option<Self> {
        const TYPES: &[&str] = &["host", "srflx", "prflx", "relay"];
        const PROTOCOLS: &[&str] = &["udp", "tcp", "tls"];
        let local = known(local, TYPES)?;
        Some(Self {
            local,
            remote: known(remote, TYPES)?,
            protocol: known(protocol, PROTOCOLS)?,
            relay_protocol: relay_protocol
                .and_then(|p| known(p, PROTOCOLS))
                .filter(|_| local == "relay"),
        })
    }

    /// Through a TURN server (ours or the other side's), not straight between the two machines.
    pub fn relayed(&self) -> bool {
        self.local == "relay" || self.remote == "relay"
    }

    /// `direct` or `relay` (the panel's `data-kind`, for tests).
    pub fn kind(&self) -> &'static str {
        if self.relayed() {
            "relay"
        } else {
            "direct"
        }
    }

    /// "Direct (UDP)", "Relayed (TURN/TCP)", "Relayed (the other side's TURN server)".
    pub fn describe(&self) -> String {
        if self.local == "relay" {
            let via = self.relay_protocol.unwrap_or(self.protocol);
            format!("Relayed (TURN/{})", via.to_ascii_uppercase())
        } else if self.remote == "relay" {
            "Relayed (the other side's TURN server)".into()
        } else {
            format!("Direct ({})", self.protocol.to_ascii_uppercase())
        }
    }
}

/// Loss over an interval from cumulative counters, percent.
pub fn loss_pct(prev: (u64, i64), now: (u64, i64)) -> Option<f64> {
    let received = now.0.saturating_sub(prev.0) as f64;
    let lost = (now.1 - prev.1).max(0) as f64;
    let total = received + lost;
    (total > 0.0).then(|| 100.0 * lost / total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_read_plainly() {
        let r = Route::parse("relay", "host", "udp", Some("tls")).unwrap();
        assert_eq!(
            (r.kind(), r.describe().as_str()),
            ("relay", "Relayed (TURN/TLS)")
        );
        let r = Route::parse("host", "srflx", "UDP", Some("udp")).unwrap();
        assert_eq!(r.relay_protocol, None);
        assert_eq!(
            (r.kind(), r.describe().as_str()),
            ("direct", "Direct (UDP)")
        );
        let r = Route::parse("prflx", "relay", "udp", None).unwrap();
        assert_eq!(r.describe(), "Relayed (the other side's TURN server)");
        assert!(Route::parse("relay", "host", "sctp", None).is_none());
        assert!(Route::parse("alien", "host", "udp", None).is_none());
    }

    #[test]
    fn words_follow_numbers() {
        let mut s = CallStats {
            rtt_ms: Some(20.0),
            jitter_ms: Some(2.0),
            loss_pct: Some(0.0),
            ..CallStats::default()
        };
        assert_eq!(quality(&s), Quality::Good);
        s.loss_pct = Some(3.0);
        assert_eq!(quality(&s), Quality::Fair);
        s.rtt_ms = Some(900.0);
        assert_eq!(quality(&s), Quality::Poor);
        assert!(describe(&s).starts_with("poor · 900 ms round trip"));
        assert_eq!(loss_pct((100, 0), (190, 10)), Some(10.0));
        assert_eq!(loss_pct((100, 0), (100, 0)), None);
    }
}
