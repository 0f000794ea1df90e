//! The native media engine (GStreamer `webrtcbin`, crate `tincan-media`) behind IPC, for webviews
//! without WebRTC — Debian's and Ubuntu's WebKitGTK have no `RTCPeerConnection`.
//!
//! The UI's media controller drives this exactly as it drives the browser engine: one session per
//! call, the peer's signals in, our signals out (as [`NativeMediaEvent::Signal`], which the UI sends
//! through the signaling connection like any other). Audio stays in the backend.

use crate::signaling::EventSink;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tincan_ipc::native_media::{
    NativeCallArgs, NativeDevice, NativeEngineInfo, NativeMediaErrorCode, NativeMediaEvent,
    NativeMuteArgs, NativeSignalArgs, NativeStartArgs, NativeSwitchArgs, NativeSwitchOutputArgs,
    MEASURE_OUTPUT, TEST_TONE_INPUT,
};
use tincan_ipc::{AppEvent, ErrorCode, IceServer, IpcError};
use tincan_media::{
    AudioInput, AudioOutput, EngineConfig, EngineEvent, IceConnectionState, IceSource, IceUrls,
    MediaError, MediaSession, Role,
};
use tincan_proto::sdp::{self, CandidateBudget, SdpError};
use tincan_proto::{CallId, MediaSignal};

/// Level events are sent to the UI at most this often.
const LEVEL_EVERY: Duration = Duration::from_millis(100);
/// Stats are polled this often while a call has media.
const STATS_EVERY: Duration = Duration::from_secs(1);

type Sink = Arc<dyn Fn(NativeMediaEvent) + Send + Sync>;

struct Active {
    call_id: CallId,
    setup: NativeStartArgs,
    /// A callee's session runs while its device rings, microphone closed, until it accepts.
    session: MediaSession,
    /// The SDP check's count of the peer's candidates (the per-call cap, as on the server).
    peer_signals: CandidateBudget,
}

/// One native media session at a time (a user is in one call at a time).
pub struct NativeMedia {
    sink: Sink,
    active: Arc<Mutex<Option<Active>>>,
    /// Reports microphones and speakers plugged in or out while the app runs, so the in-call menus
    /// list a headset plugged in mid-call; `None` until its thread has started it (see [`Self::new`]).
    device_watch: Arc<Mutex<Option<tincan_media::DeviceWatch>>>,
}

fn to_ipc(e: &MediaError) -> (NativeMediaErrorCode, String) {
    let code = match e {
        MediaError::MissingPlugins(_) => NativeMediaErrorCode::MissingPlugins,
        MediaError::NoMicrophone(_) => NativeMediaErrorCode::NoMicrophone,
        MediaError::PeerUnreachable => NativeMediaErrorCode::PeerUnreachable,
        MediaError::ConnectionLost => NativeMediaErrorCode::ConnectionLost,
        MediaError::NotVerified(_) => NativeMediaErrorCode::MediaNotVerified,
        MediaError::NoRelay => NativeMediaErrorCode::RelayUnavailable,
        MediaError::BadRemoteDescription(_) | MediaError::Negotiation(_) => {
            NativeMediaErrorCode::Negotiation
        }
        _ => NativeMediaErrorCode::Pipeline,
    };
    (code, e.to_string())
}

fn ipc_error(e: &MediaError) -> IpcError {
    let code = match e {
        MediaError::NoMicrophone(_) | MediaError::NoOutput(_) => ErrorCode::AudioDevice,
        // The UI checks this before it starts a session (`relay_unavailable` there); this is
        // the second guard.
        MediaError::NoRelay => ErrorCode::InvalidInput,
        _ => ErrorCode::Internal,
    };
    IpcError::new(code, e.to_string())
}

fn no_media() -> IpcError {
    IpcError::new(ErrorCode::InvalidInput, "no media for that call")
}

/// The servers of a call in webrtcbin's terms: the ones the signaling server issued first (its
/// STUN server wins webrtcbin's one slot, its TURN credentials are fresh), then the user's own
/// from Settings ([`tincan_media::ice`] has the URL rules: credentials percent-encoded, `turns:`
/// dialled as TURN over TCP, at most 8 relays).
fn ice_urls(issued: &[IceServer], configured: &[IceServer]) -> IceUrls {
    let mut out = IceUrls::default();
    for s in issued.iter().chain(configured) {
        out.push_server(&s.urls, s.username.as_deref(), s.credential.as_deref());
    }
    if !out.skipped.is_empty() {
        tracing::info!(skipped = ?out.skipped, "ICE servers the native engine does not use");
    }
    out
}

fn level_pct(db: f64) -> u8 {
    (10f64.powf(db / 20.0) * 100.0).clamp(0.0, 100.0).round() as u8
}

impl NativeMedia {
    /// Events go to the window as [`AppEvent::NativeMedia`], device plug-ins and -outs as
    /// [`NativeMediaEvent::DevicesChanged`]. The device watch starts on a thread of its own (it
    /// initializes GStreamer and connects to the sound server), so the window does not wait for it.
    pub fn new(events: EventSink) -> Self {
        let me = Self::with_sink(Arc::new(move |event| {
            events(AppEvent::NativeMedia { event })
        }));
        let (slot, sink) = (Arc::downgrade(&me.device_watch), me.sink.clone());
        let spawned = std::thread::Builder::new()
            .name("tincan-media-devices-start".into())
            .spawn(move || {
                let watch =
                    tincan_media::watch_devices(move |_| sink(NativeMediaEvent::DevicesChanged));
                match (watch, slot.upgrade()) {
                    (Ok(w), Some(slot)) => {
                        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(w);
                    }
                    (Ok(_), None) => {}
                    (Err(e), _) => tracing::warn!(%e, "no audio device watch"),
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(%e, "no device watch thread");
        }
        me
    }

    /// With any sink (tests); no device watch.
    pub fn with_sink(sink: Sink) -> Self {
        Self {
            sink,
            active: Arc::new(Mutex::new(None)),
            device_watch: Arc::new(Mutex::new(None)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Active>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Can the engine run here? Names the missing GStreamer packages if not.
    pub fn info() -> NativeEngineInfo {
        match tincan_media::check_plugins() {
            Ok(()) => NativeEngineInfo {
                available: true,
                missing: Vec::new(),
            },
            Err(MediaError::MissingPlugins(m)) => NativeEngineInfo {
                available: false,
                missing: m
                    .iter()
                    .map(|p| format!("{} ({})", p.element, p.package))
                    .collect(),
            },
            Err(e) => NativeEngineInfo {
                available: false,
                missing: vec![e.to_string()],
            },
        }
    }

    pub fn devices() -> Result<Vec<NativeDevice>, IpcError> {
        let list = tincan_media::list_devices().map_err(|e| ipc_error(&e))?;
        let mut out: Vec<NativeDevice> = list
            .into_iter()
            .map(|d| NativeDevice {
                id: d.id,
                label: d.name,
                input: d.kind == tincan_media::DeviceKind::Input,
            })
            .collect();
        // Always offered, so a call can be tried on a machine with no sound hardware.
        out.push(NativeDevice {
            id: TEST_TONE_INPUT.into(),
            label: "Test tone (440 Hz, no microphone)".into(),
            input: true,
        });
        out.push(NativeDevice {
            id: MEASURE_OUTPUT.into(),
            label: "Silent (measure only, no speakers)".into(),
            input: false,
        });
        Ok(out)
    }

    fn config(setup: &NativeStartArgs) -> EngineConfig {
        // Asked again at every ICE restart: the latest issued credentials, not the first ones.
        let configured = setup.ice_servers.clone();
        let ice_source = IceSource(Arc::new(move || {
            ice_urls(&crate::signaling::issued_ice_servers(), &configured)
        }));
        // "tone:HZ" is a test source (no microphone needed); any other ID is a Pulse device.
        let input = match setup.input.as_deref() {
            None => AudioInput::Default,
            Some(id) => match id.strip_prefix("tone:").and_then(|hz| hz.parse().ok()) {
                Some(hz) => AudioInput::Tone { hz },
                None => AudioInput::Pulse(id.to_owned()),
            },
        };
        EngineConfig {
            input,
            output: Self::output(setup.output.as_deref()),
            echo_cancellation: setup.echo_cancellation,
            ice_source: Some(ice_source),
            relay_only: setup.relay_only,
            ..EngineConfig::default()
        }
    }

    /// "measure" is the measuring output (no speakers needed); any other ID is a Pulse device.
    fn output(id: Option<&str>) -> AudioOutput {
        match id {
            None => AudioOutput::Default,
            Some(MEASURE_OUTPUT) => AudioOutput::Measure,
            Some(id) => AudioOutput::Pulse(id.to_owned()),
        }
    }

    fn launch(&self, setup: &NativeStartArgs, role: Role) -> Result<MediaSession, MediaError> {
        let sink = self.sink.clone();
        let call_id = setup.call_id.clone();
        // Levels are merged and sent ten times a second at most.
        let start = Instant::now();
        let long_ago = start.checked_sub(LEVEL_EVERY).unwrap_or(start);
        // (levels last sent, mic %, peer %, peak last sent)
        let levels = Mutex::new((long_ago, 0u8, 0u8, long_ago));
        let session = MediaSession::start(&Self::config(setup), role, move |ev| {
            let call_id = call_id.clone();
            let out = match ev {
                EngineEvent::Signal(signal) => Some(NativeMediaEvent::Signal { call_id, signal }),
                // libnice often goes from checking straight to completed.
                EngineEvent::IceState(
                    IceConnectionState::Connected | IceConnectionState::Completed,
                ) => Some(NativeMediaEvent::Connected { call_id }),
                // A failed or dropped connection is the engine's to restart; it reports
                // ConnectionLost / PeerUnreachable if that does not bring the audio back.
                EngineEvent::IceState(_) => None,
                EngineEvent::IceRestart { restarts } => {
                    Some(NativeMediaEvent::IceRestart { call_id, restarts })
                }
                EngineEvent::RemoteAudioStarted => Some(NativeMediaEvent::FirstAudio { call_id }),
                EngineEvent::LocalLevel(db) | EngineEvent::RemoteLevel(db) => {
                    let local = matches!(ev, EngineEvent::LocalLevel(_));
                    let mut l = levels.lock().unwrap_or_else(|e| e.into_inner());
                    if local {
                        l.1 = level_pct(db);
                    } else {
                        l.2 = level_pct(db);
                    }
                    (l.0.elapsed() >= LEVEL_EVERY).then(|| {
                        l.0 = Instant::now();
                        NativeMediaEvent::Levels {
                            call_id,
                            mic_pct: l.1,
                            peer_pct: l.2,
                        }
                    })
                }
                EngineEvent::Stats(s) => Some(NativeMediaEvent::Stats {
                    call_id,
                    rtt_ms: s.rtt_ms.map(|v| v.round() as u32),
                    jitter_ms: s.jitter_ms.map(|v| v.round() as u32),
                    loss_permille: (s.loss_pct() * 10.0).round() as u32,
                    packets_received: s.packets_received,
                    packets_sent: s.packets_sent,
                    local_candidate_type: s.route.map(|r| r.local.as_str().to_owned()),
                    remote_candidate_type: s.route.map(|r| r.remote.as_str().to_owned()),
                    protocol: s.route.map(|r| r.protocol.as_str().to_owned()),
                    relay_protocol: s
                        .route
                        .and_then(|r| r.relay_protocol)
                        .map(|t| t.as_str().to_owned()),
                }),
                EngineEvent::RemotePeak { hz, db } => {
                    let mut l = levels.lock().unwrap_or_else(|e| e.into_inner());
                    (db > -60.0 && l.3.elapsed() >= LEVEL_EVERY).then(|| {
                        l.3 = Instant::now();
                        NativeMediaEvent::PeerPeak {
                            call_id,
                            hz: hz.round() as u32,
                        }
                    })
                }
                EngineEvent::Error(e) => {
                    let (code, message) = to_ipc(&e);
                    Some(NativeMediaEvent::Failed {
                        call_id,
                        code,
                        message,
                    })
                }
            };
            if let Some(out) = out {
                sink(out);
            }
        })?;
        self.spawn_stats_poller(setup.call_id.clone());
        Ok(session)
    }

    /// Asks the engine for stats once a second while this call's session lives.
    fn spawn_stats_poller(&self, call_id: CallId) {
        let active = Arc::downgrade(&self.active);
        let spawned = std::thread::Builder::new()
            .name("tincan-media-stats".into())
            .spawn(move || loop {
                std::thread::sleep(STATS_EVERY);
                let Some(active) = active.upgrade() else {
                    return;
                };
                let guard = active.lock().unwrap_or_else(|e| e.into_inner());
                match guard.as_ref() {
                    Some(a) if a.call_id == call_id => a.session.request_stats(),
                    _ => return,
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(%e, "no stats thread");
        }
    }

    /// Starts a call's media. The caller's session opens the microphone and offers at once; the
    /// callee's is built while the device rings (microphone closed) and takes the offer as it
    /// comes, so accepting only opens the microphone and answers.
    pub fn start(&self, setup: NativeStartArgs) -> Result<(), IpcError> {
        let mut active = self.lock();
        if let Some(old) = active.take() {
            old.session.stop();
        }
        let role = if setup.caller {
            Role::Offerer
        } else {
            Role::Answerer
        };
        let session = self.launch(&setup, role).map_err(|e| ipc_error(&e))?;
        *active = Some(Active {
            call_id: setup.call_id.clone(),
            setup,
            session,
            peer_signals: CandidateBudget::default(),
        });
        Ok(())
    }

    fn with_call<T>(
        &self,
        call_id: &CallId,
        f: impl FnOnce(&mut Active) -> Result<T, MediaError>,
    ) -> Result<T, IpcError> {
        let mut guard = self.lock();
        let a = guard
            .as_mut()
            .filter(|a| a.call_id == *call_id)
            .ok_or_else(no_media)?;
        f(a).map_err(|e| ipc_error(&e))
    }

    /// The callee accepted: open the microphone and answer the offer.
    pub fn accept(&self, args: NativeCallArgs) -> Result<(), IpcError> {
        self.with_call(&args.call_id, |a| a.session.accept())
    }

    /// A signal from the peer, checked before GStreamer sees it (`tincan_proto::sdp`, the check
    /// the server runs too). A refused offer or answer is applied not at all and fails the session
    /// with `sdp_rejected`, like any other failure (an event, so the UI ends the call once); a
    /// refused candidate is skipped and logged, and the call goes on.
    pub fn signal(&self, args: NativeSignalArgs) -> Result<(), IpcError> {
        let refused = self.with_call(&args.call_id, |a| {
            match a.peer_signals.admit(&args.signal, &sdp::Limits::default()) {
                Ok(()) => a.session.apply_remote(&args.signal).map(|()| None),
                Err(e) => Ok(Some(e)),
            }
        })?;
        if let Some(e) = refused {
            self.refuse(args.call_id, &args.signal, &e);
        }
        Ok(())
    }

    fn refuse(&self, call_id: CallId, signal: &MediaSignal, e: &SdpError) {
        tracing::warn!(code = e.code(), %e, "the peer's signal failed the SDP check; nothing applied");
        if matches!(
            signal,
            MediaSignal::Offer { .. } | MediaSignal::Answer { .. }
        ) {
            (self.sink)(NativeMediaEvent::Failed {
                call_id,
                code: NativeMediaErrorCode::SdpRejected,
                message: format!(
                    "The other side's audio setup was refused ({}): {e}.",
                    e.code()
                ),
            });
        }
    }

    pub fn mute(&self, args: NativeMuteArgs) {
        let _ = self.with_call(&args.call_id, |a| {
            a.session.set_muted(args.muted);
            Ok(())
        });
    }

    pub fn switch_input(&self, args: NativeSwitchArgs) -> Result<(), IpcError> {
        self.with_call(&args.call_id, |a| {
            a.setup.input = args.input;
            let input = Self::config(&a.setup).input;
            a.session.switch_input(&input)
        })
    }

    /// Chooses the speaker mid-call; if the new one cannot be opened, the current one keeps
    /// playing and the error names the device.
    pub fn switch_output(&self, args: NativeSwitchOutputArgs) -> Result<(), IpcError> {
        self.with_call(&args.call_id, |a| {
            a.session
                .switch_output(&Self::output(args.output.as_deref()))?;
            a.setup.output = args.output;
            Ok(())
        })
    }

    /// Ends the call's media and releases the microphone at once.
    pub fn stop(&self, args: NativeCallArgs) {
        let mut guard = self.lock();
        if guard.as_ref().is_some_and(|a| a.call_id == args.call_id) {
            if let Some(a) = guard.take() {
                a.session.stop();
            }
        }
    }
}

/// The Tauri commands (registered in `shell`).
pub mod commands {
    use super::*;
    type Res<T> = Result<T, IpcError>;

    #[tauri::command]
    pub fn native_media_info() -> NativeEngineInfo {
        NativeMedia::info()
    }

    #[tauri::command]
    pub fn native_media_devices() -> Res<Vec<NativeDevice>> {
        NativeMedia::devices()
    }

    #[tauri::command]
    pub fn native_media_start(m: tauri::State<'_, NativeMedia>, args: NativeStartArgs) -> Res<()> {
        m.start(args)
    }

    #[tauri::command]
    pub fn native_media_accept(m: tauri::State<'_, NativeMedia>, args: NativeCallArgs) -> Res<()> {
        m.accept(args)
    }

    #[tauri::command]
    pub fn native_media_signal(
        m: tauri::State<'_, NativeMedia>,
        args: NativeSignalArgs,
    ) -> Res<()> {
        m.signal(args)
    }

    #[tauri::command]
    pub fn native_media_mute(m: tauri::State<'_, NativeMedia>, args: NativeMuteArgs) {
        m.mute(args)
    }

    #[tauri::command]
    pub fn native_media_switch_input(
        m: tauri::State<'_, NativeMedia>,
        args: NativeSwitchArgs,
    ) -> Res<()> {
        m.switch_input(args)
    }

    #[tauri::command]
    pub fn native_media_switch_output(
        m: tauri::State<'_, NativeMedia>,
        args: NativeSwitchOutputArgs,
    ) -> Res<()> {
        m.switch_output(args)
    }

    #[tauri::command]
    pub fn native_media_stop(m: tauri::State<'_, NativeMedia>, args: NativeCallArgs) {
        m.stop(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn setup(call: &CallId, caller: bool, tone: u32) -> NativeStartArgs {
        NativeStartArgs {
            call_id: call.clone(),
            caller,
            ice_servers: Vec::new(),
            relay_only: false,
            input: Some(format!("tone:{tone}")),
            output: Some("measure".into()),
            echo_cancellation: false,
        }
    }

    /// The issued servers come first (their STUN server wins webrtcbin's one slot), the user's
    /// after; a REST credential is escaped for webrtcbin.
    #[test]
    fn ice_urls_merge_issued_before_configured() {
        let issued = [
            IceServer {
                urls: vec!["stun:stun.server.example:3478".into()],
                username: None,
                credential: None,
            },
            IceServer {
                urls: vec![
                    "turn:turn.server.example:3478?transport=udp".into(),
                    "turns:turn.server.example:443?transport=tcp".into(),
                ],
                username: Some("1767225600:alice".into()),
                credential: Some("a+b/c=".into()),
            },
        ];
        let configured = [IceServer {
            urls: vec![
                "stun:stun.mine.example".into(),
                "turn:turn.mine.example?transport=tcp".into(),
            ],
            username: Some("u".into()),
            credential: Some("p".into()),
        }];
        let got = ice_urls(&issued, &configured);
        assert_eq!(got.stun.as_deref(), Some("stun://stun.server.example:3478"));
        let turn: Vec<&str> = got.turn.iter().map(|t| t.url.as_str()).collect();
        assert_eq!(
            turn,
            vec![
                "turn://1767225600%3Aalice:a%2Bb%2Fc%3D@turn.server.example:3478?transport=udp",
                "turn://1767225600%3Aalice:a%2Bb%2Fc%3D@turn.server.example:443?transport=tcp",
                "turn://u:p@turn.mine.example:3478?transport=tcp",
            ]
        );
        assert_eq!(level_pct(0.0), 100);
        assert_eq!(level_pct(-200.0), 0);
    }

    /// Relay-only with no TURN server anywhere: refused at once with its own code, nothing sent.
    #[test]
    fn relay_only_without_turn_is_refused_with_a_code() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let call = CallId::new("c-relay").unwrap();
        let m = NativeMedia::with_sink(Arc::new(|e| panic!("nothing may be sent: {e:?}")));
        let mut args = setup(&call, true, 440);
        args.relay_only = true;
        let err = m.start(args).unwrap_err();
        assert!(err.message.contains("relay-only"), "{err:?}");
        assert_eq!(
            to_ipc(&MediaError::NoRelay).0,
            NativeMediaErrorCode::RelayUnavailable
        );
    }

    /// The app runs one media session at a time; so do these tests (several GStreamer calls at
    /// once in one process hung now and then, as the media crate's tests found).
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    /// A peer's offer that fails the SDP check never reaches GStreamer: the session fails with
    /// `sdp_rejected`; a malformed candidate is skipped.
    #[test]
    fn a_refused_offer_is_not_applied() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let call = CallId::new("c1").unwrap();
        let (tx, rx) = mpsc::channel::<NativeMediaEvent>();
        let b = NativeMedia::with_sink(Arc::new(move |e| {
            let _ = tx.send(e);
        }));
        b.start(setup(&call, false, 1000)).unwrap();
        let offer = include_str!("../../crates/proto/tests/data/sdp/firefox-153-offer.sdp");
        let mut hundred = offer.to_owned();
        for _ in 0..100 {
            hundred.push_str("m=audio 9 UDP/TLS/RTP/SAVPF 109\r\na=rtpmap:109 opus/48000/2\r\n");
        }
        let signal = |signal| NativeSignalArgs {
            call_id: call.clone(),
            signal,
        };
        b.signal(signal(MediaSignal::Candidate {
            candidate: "candidate:1 1 udp 1 192.0.2.1 99999 typ host".into(),
            sdp_mid: None,
            sdp_m_line_index: None,
        }))
        .unwrap();
        b.signal(signal(MediaSignal::Offer {
            sdp: hundred,
            ice_restart: false,
        }))
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < deadline, "no failure reported");
            if let Ok(NativeMediaEvent::Failed { code, message, .. }) =
                rx.recv_timeout(Duration::from_secs(1))
            {
                assert_eq!(code, NativeMediaErrorCode::SdpRejected, "{message}");
                assert!(message.contains("sdp_media_lines"), "{message}");
                break;
            }
        }
        // Accepting now has no offer to answer: nothing goes to the peer.
        let _ = b.accept(NativeCallArgs {
            call_id: call.clone(),
        });
        let quiet_until = Instant::now() + Duration::from_millis(1500);
        while let Some(left) = quiet_until.checked_duration_since(Instant::now()) {
            if let Ok(NativeMediaEvent::Signal { signal, .. }) = rx.recv_timeout(left) {
                panic!("the callee answered a refused offer: {signal:?}");
            }
        }
        b.stop(NativeCallArgs { call_id: call });
    }

    /// Two sessions wired as the UI wires them: the ringing callee takes the caller's early offer
    /// and answers when it accepts, then audio flows both ways and levels, stats and first-audio
    /// events arrive.
    #[test]
    fn a_callee_answers_the_held_offer_on_accept() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let call = CallId::new("c1").unwrap();
        let (tx, rx) = mpsc::channel::<(char, NativeMediaEvent)>();
        let ta = tx.clone();
        let a = NativeMedia::with_sink(Arc::new(move |e| {
            let _ = ta.send(('a', e));
        }));
        let b = NativeMedia::with_sink(Arc::new(move |e| {
            let _ = tx.send(('b', e));
        }));
        a.start(setup(&call, true, 440)).unwrap();
        b.start(setup(&call, false, 1000)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut accepted = false;
        let (mut first_a, mut first_b, mut stats_b) = (false, false, false);
        let mut peer_level_a = 0;
        while !(first_a && first_b && stats_b && peer_level_a > 5) {
            assert!(Instant::now() < deadline, "media did not flow");
            let Ok((who, ev)) = rx.recv_timeout(Duration::from_secs(1)) else {
                continue;
            };
            match ev {
                NativeMediaEvent::Signal { signal, .. } => {
                    let target = if who == 'a' { &b } else { &a };
                    target
                        .signal(NativeSignalArgs {
                            call_id: call.clone(),
                            signal,
                        })
                        .unwrap();
                    // The callee rings a moment, holding the offer, then accepts.
                    if who == 'a' && !accepted {
                        accepted = true;
                        b.accept(NativeCallArgs {
                            call_id: call.clone(),
                        })
                        .unwrap();
                    }
                }
                NativeMediaEvent::FirstAudio { .. } if who == 'a' => first_a = true,
                NativeMediaEvent::FirstAudio { .. } => first_b = true,
                NativeMediaEvent::Stats {
                    packets_received, ..
                } if who == 'b' && packets_received > 0 => stats_b = true,
                NativeMediaEvent::Levels { peer_pct, .. } if who == 'a' => peer_level_a = peer_pct,
                NativeMediaEvent::Failed { message, .. } => panic!("{who}: {message}"),
                _ => {}
            }
        }
        // The speaker switches mid-call; one that cannot open is refused with a stable code and
        // the call goes on.
        a.switch_output(NativeSwitchOutputArgs {
            call_id: call.clone(),
            output: Some(MEASURE_OUTPUT.into()),
        })
        .unwrap();
        let err = a
            .switch_output(NativeSwitchOutputArgs {
                call_id: call.clone(),
                output: Some("tincan-no-such-speaker".into()),
            })
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::AudioDevice, "{err:?}");
        let other = CallId::new("not-this-call").unwrap();
        let err = a.accept(NativeCallArgs { call_id: other }).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidInput);
        a.stop(NativeCallArgs {
            call_id: call.clone(),
        });
        b.stop(NativeCallArgs { call_id: call });
        assert!(a.lock().is_none() && b.lock().is_none());
    }
}
