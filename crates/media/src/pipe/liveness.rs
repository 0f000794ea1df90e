//! What the pipeline's callbacks share with the pipe and the session's supervisor.

use super::*;

/// What the session's supervisor reads to judge the connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Observation {
    pub ice: IceConnectionState,
    /// How long ICE has been in `ice`.
    pub ice_for: Duration,
    /// The offer / answer exchange is complete on this pipe.
    pub negotiated: bool,
    /// Since the last RTP packet from the peer; `None` before the first.
    pub rx_age: Option<Duration>,
    /// This pipe's DTLS handshake failed inside GStreamer (see [`watch_bus`]).
    pub dtls_failed: bool,
}

/// What the pipeline's callbacks (on GStreamer's threads) share with the pipe: connection state for
/// the supervisor, the fingerprint our SDP must carry, and the peer's verification. Atomics and
/// short locks only, never the session's lock.
pub(super) struct Liveness {
    /// This pipe's own certificate's fingerprint, written into our SDP (see [`with_fingerprint`]).
    pub(super) fingerprint: Arc<str>,
    pub(super) epoch: Instant,
    pub(super) ice: Mutex<(IceConnectionState, Instant)>,
    /// Milliseconds after `epoch` (plus one) of the last RTP packet from the peer; 0 before any.
    pub(super) last_rx: AtomicU64,
    pub(super) negotiated: AtomicBool,
    /// The fingerprints of the peer's description, noted before webrtcbin is given it (so before
    /// any handshake can start).
    pub(super) expected: Mutex<Option<Expected>>,
    /// The peer's DTLS certificate matched them: only then does audio pass, either way.
    pub(super) verified: AtomicBool,
    /// It did not (sticky): nothing passes on this pipe again, and the call ends.
    pub(super) refused: AtomicBool,
    /// The DTLS handshake failed inside GStreamer ("Fatal SSL error").
    pub(super) dtls_failed: AtomicBool,
}

impl Liveness {
    pub(super) fn new(fingerprint: Arc<str>) -> Self {
        let now = Instant::now();
        Self {
            fingerprint,
            epoch: now,
            ice: Mutex::new((IceConnectionState::New, now)),
            last_rx: AtomicU64::new(0),
            negotiated: AtomicBool::new(false),
            expected: Mutex::new(None),
            verified: AtomicBool::new(false),
            refused: AtomicBool::new(false),
            dtls_failed: AtomicBool::new(false),
        }
    }

    pub(super) fn verified(&self) -> bool {
        self.verified.load(Ordering::Acquire) && !self.refused.load(Ordering::Acquire)
    }

    /// Judges the peer's certificate as the handshake reports it (see [`crate::dtls`]): a match
    /// opens the gates; a mismatch, or a finished handshake without a certificate, closes them
    /// for good and ends the call with [`MediaError::NotVerified`].
    pub(super) fn judge(&self, peer_pem: Option<String>, handshake_done: bool, emit: &Emit) {
        if self.refused.load(Ordering::Acquire) {
            return;
        }
        if peer_pem.is_none() && !handshake_done {
            return; // nothing to judge yet
        }
        let expected = lock(&self.expected).clone().unwrap_or_default();
        match verify::check(peer_pem.as_deref(), &expected) {
            Ok(()) => {
                if !self.verified.swap(true, Ordering::AcqRel) {
                    debug!("the peer's DTLS certificate matches its fingerprint");
                }
            }
            Err(refusal) => {
                self.verified.store(false, Ordering::Release);
                if !self.refused.swap(true, Ordering::AcqRel) {
                    warn!(%refusal, "the peer's DTLS certificate is refused; no audio passes");
                    emit(EngineEvent::Error(MediaError::NotVerified(
                        refusal.to_string(),
                    )));
                }
            }
        }
    }

    pub(super) fn mark_rx(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64 + 1;
        self.last_rx.store(ms, Ordering::Relaxed);
    }
}
