//! Any text a client can send: `ClientMessage::decode` and the relay's fast path
//! (`wire::decode_signal`) never panic, and they agree. A frame the fast path takes must decode
//! on the typed path to the same `signal`; the frame relayed to the peer must read back as the
//! same `ServerMessage::Signal`; a decoded message survives encode → decode unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tincan_proto::{wire, ClientMessage, ServerMessage, UserId};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let typed = ClientMessage::decode(text);
    if let Err(e) = &typed {
        // Every refusal maps to a code the server can send.
        let _ = e.code();
    }
    if let Ok(m) = &typed {
        let again = ClientMessage::decode(&m.encode());
        assert_eq!(again.as_ref(), Ok(m), "encode/decode changed {text:?}");
    }
    if let Some(inbound) = wire::decode_signal(text) {
        match &typed {
            Ok(ClientMessage::Signal { call_id, signal }) => {
                assert_eq!(call_id, &inbound.call_id, "fast path read another call_id");
                assert_eq!(signal, &inbound.signal, "fast path read another signal");
            }
            other => panic!("fast path took {text:?}, the typed path says {other:?}"),
        }
        let from = UserId::new("fuzz").expect("valid id");
        let frame = wire::inbound_frame(&inbound.call_id, &from, &inbound);
        match ServerMessage::decode(&frame) {
            Ok(ServerMessage::Signal {
                call_id,
                from: f,
                signal,
            }) => {
                assert_eq!(call_id, inbound.call_id);
                assert_eq!(f, from);
                assert_eq!(signal, inbound.signal, "relayed frame {frame:?}");
            }
            other => panic!("relayed frame {frame:?} reads as {other:?}"),
        }
    }
});
