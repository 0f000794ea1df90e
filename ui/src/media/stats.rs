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
