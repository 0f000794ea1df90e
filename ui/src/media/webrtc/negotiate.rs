//! The ordered queue of negotiation steps: opening the microphone, offering, answering, and applying
//! the peer's signals after the SDP check (`tincan_proto::sdp`), one at a time.

// The parent's state, helpers and imports: this is one engine, split for reading.
use super::*;

impl WebRtcSession {
    pub(super) fn enqueue(&self, op: Op) {
        let start = {
            let mut st = self.s.borrow_mut();
            if st.stopped {
                return;
            }
            st.queue.push_back(op);
            !std::mem::replace(&mut st.running, true)
        };
        if start {
            let s = self.s.clone();
            wasm_bindgen_futures::spawn_local(async move {
                loop {
                    let op = {
                        let mut st = s.borrow_mut();
                        match st.queue.pop_front() {
                            Some(op) if !st.stopped => op,
                            _ => {
                                st.running = false;
                                break;
                            }
                        }
                    };
                    if let Err(e) = Self::run(&s, op).await {
                        Self::emit(&s, SessionEvent::Failed(e));
                    }
                }
            });
        }
    }

    pub(super) async fn run(s: &Rc<RefCell<State>>, op: Op) -> Result<(), MediaError> {
        match op {
            Op::OpenMic => {
                Self::open_mic(s).await?;
                Self::attach_track(s);
                // The caller offers as soon as it has its microphone.
                if s.borrow().setup.role == Role::Caller {
                    Self::offer(s, false).await?;
                }
            }
            Op::Accept => {
                s.borrow_mut().accepted = true;
                Self::open_mic(s).await?;
                if s.borrow().have_offer {
                    Self::attach_track(s);
                    Self::answer(s).await?;
                }
            }
            Op::Restart => {
                let caller = s.borrow().setup.role == Role::Caller;
                if caller && s.borrow().pc.remote_description().is_some() {
                    Self::offer(s, true).await?;
                }
            }
            Op::Remote(signal) => Self::on_signal(s, signal).await?,
        }
        Ok(())
    }

    pub(super) async fn open_mic(s: &Rc<RefCell<State>>) -> Result<(), MediaError> {
        if s.borrow().local.is_some() {
            return Ok(());
        }
        let (input, processing) = {
            let st = s.borrow();
            (st.setup.input.clone(), st.setup.processing)
        };
        let stream = match devices::open_microphone(input.as_deref(), processing).await {
            Ok(st) => st,
            // A saved device that is gone: fall back to the default one.
            Err(e) if e.code == MediaErrorCode::NoMicrophone && input.is_some() => {
                devices::open_microphone(None, processing).await?
            }
            Err(e) => return Err(e),
        };
        let mut st = s.borrow_mut();
        if st.stopped {
            // Hung up while the microphone was opening: release it at once.
            stop_stream(&stream);
            return Ok(());
        }
        let muted = st.muted;
        for t in stream.get_audio_tracks().iter() {
            let t: MediaStreamTrack = t.unchecked_into();
            t.set_enabled(!muted);
        }
        st.mic_analyser = analyser_for(&stream);
        st.local = Some(stream);
        Ok(())
    }

    pub(super) fn attach_track(s: &Rc<RefCell<State>>) {
        let mut st = s.borrow_mut();
        if st.sender.is_some() {
            return;
        }
        let Some(stream) = st.local.clone() else {
            return;
        };
        let Some(track) = stream
            .get_audio_tracks()
            .get(0)
            .dyn_into::<MediaStreamTrack>()
            .ok()
        else {
            return;
        };
        st.sender = Some(st.pc.add_track_0(&track, &stream));
    }

    pub(super) async fn offer(s: &Rc<RefCell<State>>, ice_restart: bool) -> Result<(), MediaError> {
        let pc = s.borrow().pc.clone();
        let opts = web_sys::RtcOfferOptions::new();
        opts.set_ice_restart(ice_restart);
        let offer = JsFuture::from(pc.create_offer_with_rtc_offer_options(&opts))
            .await
            .map_err(|e| negotiation("createOffer", &e))?;
        let sdp = get_str(&offer, "sdp")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| negotiation("createOffer", &JsValue::from_str("no SDP")))?;
        let desc = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
        desc.set_sdp(&sdp);
        JsFuture::from(pc.set_local_description(&desc))
            .await
            .map_err(|e| negotiation("setLocalDescription", &e))?;
        Self::emit(
            s,
            SessionEvent::Signal(MediaSignal::Offer { sdp, ice_restart }),
        );
        if ice_restart {
            s.borrow_mut().restarts += 1;
        }
        Ok(())
    }

    pub(super) async fn answer(s: &Rc<RefCell<State>>) -> Result<(), MediaError> {
        let pc = s.borrow().pc.clone();
        let answer = JsFuture::from(pc.create_answer())
            .await
            .map_err(|e| negotiation("createAnswer", &e))?;
        let sdp = get_str(&answer, "sdp")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| negotiation("createAnswer", &JsValue::from_str("no SDP")))?;
        let desc = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
        desc.set_sdp(&sdp);
        JsFuture::from(pc.set_local_description(&desc))
            .await
            .map_err(|e| negotiation("setLocalDescription", &e))?;
        s.borrow_mut().answered = true;
        Self::emit(s, SessionEvent::Signal(MediaSignal::Answer { sdp }));
        Self::arm_give_up(s);
        Ok(())
    }

    pub(super) async fn set_remote(
        s: &Rc<RefCell<State>>,
        kind: RtcSdpType,
        sdp: &str,
    ) -> Result<(), MediaError> {
        let pc = s.borrow().pc.clone();
        let desc = RtcSessionDescriptionInit::new(kind);
        desc.set_sdp(sdp);
        JsFuture::from(pc.set_remote_description(&desc))
            .await
            .map_err(|e| negotiation("setRemoteDescription", &e))?;
        let pending = std::mem::take(&mut s.borrow_mut().pending_candidates);
        for c in pending {
            add_candidate(&pc, &c).await;
        }
        Ok(())
    }

    pub(super) async fn on_signal(
        s: &Rc<RefCell<State>>,
        signal: MediaSignal,
    ) -> Result<(), MediaError> {
        let role = s.borrow().setup.role;
        // The SDP check (the server's too) before the browser sees anything: a refused offer or
        // answer is not applied and fails the session; a refused candidate is skipped.
        let checked = s
            .borrow_mut()
            .peer_signals
            .admit(&signal, &sdp::Limits::default());
        if let Err(e) = checked {
            return refused(&signal, &e);
        }
        match signal {
            MediaSignal::Offer { sdp, .. } if role == Role::Callee => {
                Self::set_remote(s, RtcSdpType::Offer, &sdp).await?;
                let (accepted, answered) = {
                    let mut st = s.borrow_mut();
                    st.have_offer = true;
                    (st.accepted, st.answered)
                };
                // A first offer is answered on accept; an ICE-restart offer at once.
                if accepted || answered {
                    Self::attach_track(s);
                    Self::answer(s).await?;
                }
            }
            MediaSignal::Answer { sdp } if role == Role::Caller => {
                Self::set_remote(s, RtcSdpType::Answer, &sdp).await?;
                Self::arm_give_up(s);
            }
            MediaSignal::Candidate {
                candidate,
                sdp_mid,
                sdp_m_line_index,
            } => {
                let init = RtcIceCandidateInit::new(&candidate);
                init.set_sdp_mid(sdp_mid.as_deref());
                init.set_sdp_m_line_index(sdp_m_line_index);
                let pc = s.borrow().pc.clone();
                if pc.remote_description().is_some() {
                    add_candidate(&pc, &init).await;
                } else {
                    s.borrow_mut().pending_candidates.push(init);
                }
            }
            // Offers to the caller and answers to the callee do not happen in this protocol's
            // 1:1 calls; mute is shown by the call view.
            _ => {}
        }
        Ok(())
    }
}

/// A peer's signal that failed the SDP check: an offer or answer is the session's failure, with a
/// stable code; a candidate is only logged.
fn refused(signal: &MediaSignal, e: &SdpError) -> Result<(), MediaError> {
    let text = format!(
        "The other side's audio setup was refused ({}): {e}.",
        e.code()
    );
    match signal {
        MediaSignal::Offer { .. } | MediaSignal::Answer { .. } => {
            Err(MediaError::new(MediaErrorCode::SdpRejected, text))
        }
        _ => {
            web_sys::console::warn_1(&JsValue::from_str(&format!(
                "tincan: candidate skipped: {text}"
            )));
            Ok(())
        }
    }
}

async fn add_candidate(pc: &RtcPeerConnection, c: &RtcIceCandidateInit) {
    // A candidate the browser cannot use (e.g. an mDNS name it cannot resolve) is not fatal.
    if let Err(e) =
        JsFuture::from(pc.add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(c))).await
    {
        web_sys::console::debug_2(&JsValue::from_str("tincan: candidate skipped"), &e);
    }
}
