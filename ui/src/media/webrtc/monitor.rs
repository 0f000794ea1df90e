//! Watching a live session: the peer's stream and first audio, the ICE state with its restart and
//! give-up timers, and the `getStats` numbers the UI and the tests read.

// The parent's state, helpers and imports: this is one engine, split for reading.
use super::*;
use crate::media::stats::Route;

impl WebRtcSession {
    pub(super) fn on_remote_stream(s: &Rc<RefCell<State>>, stream: &MediaStream) {
        let audio = {
            let mut st = s.borrow_mut();
            st.audio.set_src_object(Some(stream));
            // Web Audio reads the remote stream only while a media element plays it.
            st.peer_analyser = analyser_for(stream);
            st.audio.clone()
        };
        if let Ok(p) = audio.play() {
            wasm_bindgen_futures::spawn_local(async move {
                if let Err(e) = JsFuture::from(p).await {
                    web_sys::console::warn_2(&JsValue::from_str("tincan: playback refused"), &e);
                }
            });
        }
        let output = s.borrow().setup.output.clone();
        if output.is_some() {
            let audio = audio.clone();
            wasm_bindgen_futures::spawn_local(async move {
                let _ = set_sink(&audio, output.as_deref()).await;
            });
        }
        // Watch for the first audible remote sound.
        let weak = Rc::downgrade(s);
        let timer = Interval::new(5, move || {
            let Some(s) = weak.upgrade() else { return };
            let level = s.borrow().peer_analyser.as_ref().map(rms).unwrap_or(0.0);
            if level > 0.01 {
                let at = precise_now_ms();
                {
                    let mut st = s.borrow_mut();
                    if st.first_audio.is_some() {
                        return;
                    }
                    st.first_audio = Some(at);
                }
                Self::emit(&s, SessionEvent::FirstAudio(at));
                let t = s.borrow_mut().first_audio_timer.take();
                if let Some(t) = t {
                    // Dropped after this tick returns.
                    Timeout::new(0, move || drop(t)).forget();
                }
            }
        });
        s.borrow_mut().first_audio_timer = Some(timer);
    }

    pub(super) fn on_ice_state(s: &Rc<RefCell<State>>) {
        let state = s.borrow().pc.ice_connection_state();
        use web_sys::RtcIceConnectionState as I;
        match state {
            I::Connected | I::Completed => {
                let first = {
                    let mut st = s.borrow_mut();
                    st.restart_timer = None;
                    st.give_up_timer = None;
                    let first = !st.ever_connected;
                    st.ever_connected = true;
                    first
                };
                if first {
                    Self::emit(s, SessionEvent::Connected);
                }
            }
            I::Disconnected => {
                let weak = Rc::downgrade(s);
                s.borrow_mut().restart_timer = Some(Timeout::new(RESTART_AFTER_MS, move || {
                    if let Some(s) = weak.upgrade() {
                        if s.borrow().pc.ice_connection_state() != I::Connected {
                            WebRtcSession { s }.enqueue(Op::Restart);
                        }
                    }
                }));
                Self::arm_give_up(s);
            }
            I::Failed => {
                WebRtcSession { s: s.clone() }.enqueue(Op::Restart);
                Self::arm_give_up(s);
            }
            _ => {}
        }
    }

    pub(super) fn ice_up(s: &Rc<RefCell<State>>) -> bool {
        use web_sys::RtcIceConnectionState as I;
        matches!(
            s.borrow().pc.ice_connection_state(),
            I::Connected | I::Completed
        )
    }

    /// Ends the call unless media (re)connects within [`GIVE_UP_AFTER_MS`].
    pub(super) fn arm_give_up(s: &Rc<RefCell<State>>) {
        if s.borrow().give_up_timer.is_some() || Self::ice_up(s) {
            return;
        }
        let weak = Rc::downgrade(s);
        let t = Timeout::new(GIVE_UP_AFTER_MS, move || {
            let Some(s) = weak.upgrade() else { return };
            s.borrow_mut().give_up_timer = None;
            if Self::ice_up(&s) {
                return;
            }
            let ever = s.borrow().ever_connected;
            let e = if ever {
                MediaError::new(
                    MediaErrorCode::ConnectionLost,
                    "Connection lost: the audio connection dropped and could not be restored \
                     within 30 seconds.",
                )
            } else {
                MediaError::new(
                    MediaErrorCode::PeerUnreachable,
                    "The other side cannot be reached: no network path for the audio was found. \
                     If you are on different networks, add a TURN server in Settings.",
                )
            };
            Self::emit(&s, SessionEvent::Failed(e));
        });
        s.borrow_mut().give_up_timer = Some(t);
    }

    pub(super) async fn poll_stats(s: Rc<RefCell<State>>) {
        let pc = s.borrow().pc.clone();
        let Ok(report) = JsFuture::from(pc.get_stats()).await else {
            return;
        };
        let mut stats = CallStats::default();
        let mut lost: i64 = 0;
        let mut selected_pair: Option<String> = None;
        let mut pairs: Vec<(String, JsValue)> = Vec::new();
        let mut candidates: Vec<(String, JsValue)> = Vec::new();
        let values: Vec<JsValue> = {
            let out = js_sys::Array::new();
            let cb = Closure::<dyn FnMut(JsValue)>::new({
                let out = out.clone();
                move |v: JsValue| {
                    out.push(&v);
                }
            });
            let for_each = js_sys::Reflect::get(&report, &JsValue::from_str("forEach"))
                .ok()
                .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
            if let Some(f) = for_each {
                let _ = f.call1(&report, cb.as_ref());
            }
            out.iter().collect()
        };
        for v in &values {
            match get_str(v, "type").as_deref() {
                Some("inbound-rtp") if get_str(v, "kind").as_deref() == Some("audio") => {
                    stats.packets_received += get_num(v, "packetsReceived").unwrap_or(0.0) as u64;
                    stats.bytes_received += get_num(v, "bytesReceived").unwrap_or(0.0) as u64;
                    lost += get_num(v, "packetsLost").unwrap_or(0.0) as i64;
                    if let Some(j) = get_num(v, "jitter") {
                        stats.jitter_ms = Some(j * 1000.0);
                    }
                }
                Some("outbound-rtp") if get_str(v, "kind").as_deref() == Some("audio") => {
                    stats.packets_sent += get_num(v, "packetsSent").unwrap_or(0.0) as u64;
                }
                Some("transport") => selected_pair = get_str(v, "selectedCandidatePairId"),
                Some("candidate-pair") => {
                    if let Some(id) = get_str(v, "id") {
                        pairs.push((id, v.clone()));
                    }
                }
                Some("local-candidate" | "remote-candidate") => {
                    if let Some(id) = get_str(v, "id") {
                        candidates.push((id, v.clone()));
                    }
                }
                _ => {}
            }
        }
        let flag = |p: &JsValue, k: &str| {
            js_sys::Reflect::get(p, &JsValue::from_str(k))
                .ok()
                .and_then(|n| n.as_bool())
                .unwrap_or(false)
        };
        let pair = pairs
            .iter()
            .find(|(id, _)| Some(id) == selected_pair.as_ref())
            // Firefox has no transport stats; it marks the pair in use `selected`.
            .or_else(|| pairs.iter().find(|(_, p)| flag(p, "selected")))
            .or_else(|| {
                pairs.iter().find(|(_, p)| {
                    get_str(p, "state").as_deref() == Some("succeeded")
                        && js_sys::Reflect::get(p, &JsValue::from_str("nominated"))
                            .ok()
                            .and_then(|n| n.as_bool())
                            .unwrap_or(false)
                })
            });
        if let Some((_, p)) = pair {
            stats.rtt_ms = get_num(p, "currentRoundTripTime").map(|r| r * 1000.0);
            let candidate = |key: &str| {
                let id = get_str(p, key)?;
                candidates
                    .iter()
                    .find(|(c, _)| *c == id)
                    .map(|(_, c)| c.clone())
            };
            if let (Some(local), Some(remote)) = (
                candidate("localCandidateId"),
                candidate("remoteCandidateId"),
            ) {
                stats.route = Route::parse(
                    &get_str(&local, "candidateType").unwrap_or_default(),
                    &get_str(&remote, "candidateType").unwrap_or_default(),
                    &get_str(&local, "protocol").unwrap_or_default(),
                    get_str(&local, "relayProtocol").as_deref(),
                );
            }
        }
        let mut st = s.borrow_mut();
        let now = (stats.packets_received, lost);
        stats.loss_pct = st.last_counts.and_then(|prev| loss_pct(prev, now));
        st.last_counts = Some(now);
        st.stats = stats;
    }
}
