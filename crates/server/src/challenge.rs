//! How the desktop app knows the server on its loopback port is its own embedded server before it
//! sends it anything (a UserSig, a call).
//!
//! Anything on the machine can listen on 127.0.0.1:7480 first. So on every connection to the
//! embedded server the app puts a fresh random nonce (32 bytes, hex) in the WebSocket upgrade
//! request's `Tincan-App-Challenge` header, and the server answers in the `101` response's
//! `Tincan-App-Proof` header with
//!
//! ```text
//! K     = HMAC-SHA256(key = the embedded server's secret key, "tincan/app-challenge/key/v1")
//! proof = hex(HMAC-SHA256(key = K, "tincan/app-challenge/proof/v1" 0x00 nonce 0x00 "<ip>:<port>"))
//! ```
//!
//! where `<ip>:<port>` is the server's own address on that connection (what the app dialled). The
//! app computes the same from the secret in its keyring and compares in constant time; only then
//! does it send its `login`. Nothing secret crosses the wire (the proof key is derived, and the
//! secret never leaves the keyring); a recorded proof is useless (the next connection has another
//! nonce); and an impostor that relays the challenge to a real embedded server listening elsewhere
//! gets a proof bound to that other address. A server answers only with
//! [`crate::ServerConfig::answer_app_challenge`] set (the app's embedded server): a shared server
//! has no reason to act as an HMAC oracle for its key, and the app never challenges one.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::SocketAddr;
use tincan_proto::SecretKey;

/// The request header carrying the app's nonce.
pub const CHALLENGE_HEADER: &str = "tincan-app-challenge";
/// The `101` response header carrying the server's proof.
pub const PROOF_HEADER: &str = "tincan-app-proof";
/// Nonce length, bytes (64 hex characters on the wire).
pub const NONCE_BYTES: usize = 32;

const KEY_LABEL: &[u8] = b"tincan/app-challenge/key/v1";
const PROOF_LABEL: &[u8] = b"tincan/app-challenge/proof/v1";

type HmacSha256 = Hmac<Sha256>;

/// Whether `nonce` has the form the app sends (64 hex digits); anything else gets no proof.
pub fn valid_nonce(nonce: &str) -> bool {
    nonce.len() == NONCE_BYTES * 2 && nonce.bytes().all(|b| b.is_ascii_hexdigit())
}

fn mac(secret: &SecretKey, nonce: &str, server: SocketAddr) -> HmacSha256 {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut k = HmacSha256::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    k.update(KEY_LABEL);
    let key = k.finalize().into_bytes();
    let mut m = HmacSha256::new_from_slice(&key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(PROOF_LABEL);
    m.update(&[0]);
    m.update(nonce.to_ascii_lowercase().as_bytes());
    m.update(&[0]);
    m.update(server.to_string().as_bytes());
    m
}

/// The proof for `nonce` from the server at `server` holding `secret`, hex.
pub fn proof(secret: &SecretKey, nonce: &str, server: SocketAddr) -> String {
    hex::encode(mac(secret, nonce, server).finalize().into_bytes())
}

/// Whether `proof` (hex) is right for `nonce` and `server` (constant-time comparison).
pub fn verify(secret: &SecretKey, nonce: &str, server: SocketAddr, proof: &str) -> bool {
    match hex::decode(proof.trim()) {
        Ok(bytes) => mac(secret, nonce, server).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_is_bound_to_key_nonce_and_address() {
        let key = SecretKey::new("k".repeat(64));
        let other = SecretKey::new("j".repeat(64));
        let n1 = "ab".repeat(32);
        let n2 = "cd".repeat(32);
        let a: SocketAddr = "127.0.0.1:7480".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:7481".parse().unwrap();
        let p = proof(&key, &n1, a);
        assert_eq!(p.len(), 64);
        assert!(verify(&key, &n1, a, &p));
        assert!(verify(&key, &n1.to_uppercase(), a, &p));
        assert!(!verify(&other, &n1, a, &p));
        assert!(!verify(&key, &n2, a, &p));
        assert!(!verify(&key, &n1, b, &p));
        assert!(!verify(&key, &n1, a, "zz"));
        assert!(!verify(&key, &n1, a, ""));
        assert!(valid_nonce(&n1));
        assert!(!valid_nonce("abc"));
        assert!(!valid_nonce(&"g".repeat(64)));
    }
}
