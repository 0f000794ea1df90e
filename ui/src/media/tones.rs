//! Ringtone (incoming) and ringback (outgoing) made with Web Audio oscillators: no audio files.

use std::cell::RefCell;
use wasm_bindgen::JsValue;
use web_sys::{AudioContext, GainNode, OscillatorNode};

thread_local! {
    static CONTEXT: RefCell<Option<AudioContext>> = const { RefCell::new(None) };
}

/// The page's one AudioContext (made on first use, resumed when the browser suspended it).
pub fn audio_context() -> Option<AudioContext> {
    CONTEXT.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = AudioContext::new().ok();
        }
        if let Some(ctx) = c.as_ref() {
            if ctx.state() == web_sys::AudioContextState::Suspended {
                let _ = ctx.resume();
            }
        }
        c.clone()
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Incoming call: two alternating tones, 1 s on, 2 s off.
    Ringtone,
    /// Outgoing call ringing at the callee: 440 + 480 Hz, 2 s on, 4 s off.
    Ringback,
}

/// The tone playing now, if any.
#[derive(Default)]
pub struct Tones {
    playing: Option<(Tone, Vec<OscillatorNode>, GainNode)>,
}

impl Tones {
    pub fn current(&self) -> Option<Tone> {
        self.playing.as_ref().map(|p| p.0)
    }

    /// Plays `tone` (a no-op if it already plays).
    pub fn play(&mut self, tone: Tone) {
        if self.current() == Some(tone) {
            return;
        }
        self.stop();
        if let Err(e) = self.start(tone) {
            web_sys::console::warn_2(&JsValue::from_str("tincan: cannot play a tone"), &e);
        }
    }

    fn start(&mut self, tone: Tone) -> Result<(), JsValue> {
        let Some(ctx) = audio_context() else {
            return Ok(());
        };
        let gain = ctx.create_gain()?;
        gain.connect_with_audio_node(&ctx.destination())?;
        let (freqs, on, period, level): (&[f32], f64, f64, f32) = match tone {
            Tone::Ringtone => (&[480.0, 620.0], 1.0, 3.0, 0.12),
            Tone::Ringback => (&[440.0, 480.0], 2.0, 6.0, 0.08),
        };
        let t0 = ctx.current_time();
        let g = gain.gain();
        g.set_value_at_time(0.0, t0)?;
        // Ten minutes of cadence is longer than any ring timeout the server allows.
        let cycles = (600.0 / period) as u32;
        for i in 0..cycles {
            let start = t0 + f64::from(i) * period;
            g.set_value_at_time(level, start)?;
            g.set_value_at_time(0.0, start + on)?;
        }
        let mut oscs = Vec::new();
        for f in freqs {
            let o = ctx.create_oscillator()?;
            o.frequency().set_value(*f);
            o.connect_with_audio_node(&gain)?;
            o.start()?;
            oscs.push(o);
        }
        self.playing = Some((tone, oscs, gain));
        Ok(())
    }

    /// Stops whatever plays, at once.
    pub fn stop(&mut self) {
        if let Some((_, oscs, gain)) = self.playing.take() {
            for o in oscs {
                let _ = o.stop();
                let _ = o.disconnect();
            }
            let _ = gain.disconnect();
        }
    }
}
