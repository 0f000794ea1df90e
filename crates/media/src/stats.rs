//! Connection quality numbers, read from webrtcbin's `get-stats` reply.

/// Connection quality numbers from webrtcbin's stats.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CallStats {
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
        for (_, value) in reply.iter() {
            let Ok(stat) = value.get::<gst::Structure>() else {
                continue;
            };
            match stat.name().as_str() {
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
        out
    }
}
