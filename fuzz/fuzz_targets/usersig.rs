//! Any UserSig a client can present: decoding and verifying never panic, refuse everything not
//! signed with the key, and a sig the key made for any identifier / time / lifetime / userbuf
//! verifies to exactly those claims.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tincan_proto::{usersig, SecretKey, UserId, UserSigKey};

const SDK_APP_ID: u64 = 1_400_000_001;

fn key() -> UserSigKey {
    UserSigKey::new(
        SDK_APP_ID,
        SecretKey::new("5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e".into()),
    )
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    for (i, x) in b.iter_mut().enumerate() {
        *x = data.get(at + i).copied().unwrap_or(0);
    }
    u64::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    let key = key();
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = usersig::inflate(token);
        if let Ok(claims) = usersig::inspect(token) {
            let _ = claims.expires_at();
            if let Ok(c) = key.verify(token, &claims.identifier, claims.time) {
                assert_eq!(c, claims);
            }
        }
        let _ = key.verify(token, "alice", 1_700_000_000);
        let _ = key.verify(token, token, u64::MAX);
    }
    // Round trip: the first 17 bytes choose time, lifetime and whether there is a userbuf; the
    // rest is split into identifier and userbuf.
    if data.len() >= 17 {
        let (time, expire, with_buf) = (u64_at(data, 0), u64_at(data, 8), data[16] & 1 == 1);
        let rest = &data[17..];
        let cut = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        let Ok(identifier) = std::str::from_utf8(&rest[..cut]) else {
            return;
        };
        let Ok(uid) = UserId::new(identifier) else {
            return;
        };
        let userbuf = with_buf.then(|| rest.get(cut + 1..).unwrap_or_default());
        let sig = key.gen(&uid, time, expire, userbuf);
        let claims = key
            .verify(&sig, identifier, time)
            .unwrap_or_else(|e| panic!("own sig for {identifier:?} refused: {e}"));
        assert_eq!(claims.identifier, identifier);
        assert_eq!((claims.time, claims.expire), (time, expire));
        assert_eq!(claims.userbuf.as_deref(), userbuf);
        let other = UserSigKey::new(SDK_APP_ID, SecretKey::new("another key".into()));
        assert!(other.verify(&sig, identifier, time).is_err());
    }
});
