//! The reference vectors from the official TLSSigAPIv2 libraries (Node and Python).
//!
//! Deflate output differs between zlib builds, so we compare the inflated JSON byte for byte and the
//! HMAC, and we verify the official tokens themselves.

use base64::Engine as _;
use serde::Deserialize;
use tincan_proto::usersig::{self, private_map_key_userbuf, Room};
use tincan_proto::{SecretKey, UserId, UserSigKey};

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Official {
    sig: String,
    decompressed_json: String,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    sdkappid: u64,
    key: String,
    identifier: String,
    time: u64,
    expire: u64,
    content_to_sign: String,
    tls_sig_hmac_sha256_b64: String,
    userbuf_hex: Option<String>,
    roomid: Option<u32>,
    #[serde(rename = "privilegeMap")]
    privilege_map: Option<u32>,
    node_official: Official,
    python_official: Option<Official>,
}

fn vectors() -> Vec<Vector> {
    let text = include_str!("data/usersig-vectors.json");
    serde_json::from_str::<File>(text).unwrap().vectors
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn generated_tokens_match_the_node_library() {
    let vs = vectors();
    assert!(vs.len() >= 4);
    for v in vs {
        let key = UserSigKey::new(v.sdkappid, SecretKey::new(v.key.clone()));
        let userbuf = v.userbuf_hex.as_deref().map(hex);
        let ub64 = userbuf
            .as_deref()
            .map(|b| base64::engine::general_purpose::STANDARD.encode(b));
        assert_eq!(
            usersig::content_to_sign(&v.identifier, v.sdkappid, v.time, v.expire, ub64.as_deref()),
            v.content_to_sign,
            "{}",
            v.name
        );
        assert_eq!(
            key.hmac_b64(&v.identifier, v.time, v.expire, ub64.as_deref()),
            v.tls_sig_hmac_sha256_b64,
            "{}",
            v.name
        );
        let id = UserId::new(v.identifier.clone()).unwrap();
        let token = key.gen(&id, v.time, v.expire, userbuf.as_deref());
        assert_eq!(
            usersig::inflate(&token).unwrap(),
            v.node_official.decompressed_json,
            "{}: inflated JSON",
            v.name
        );
        // And it verifies, like the official ones.
        key.verify(&token, &v.identifier, v.time).unwrap();
    }
}

#[test]
fn official_tokens_verify() {
    for v in vectors() {
        let key = UserSigKey::new(v.sdkappid, SecretKey::new(v.key.clone()));
        let mut officials = vec![&v.node_official];
        officials.extend(v.python_official.as_ref());
        for o in officials {
            assert_eq!(
                usersig::inflate(&o.sig).unwrap(),
                o.decompressed_json,
                "{}",
                v.name
            );
            let claims = key
                .verify(&o.sig, &v.identifier, v.time + 1)
                .unwrap_or_else(|e| panic!("{}: {e}", v.name));
            assert_eq!(claims.expires_at(), v.time + v.expire);
            assert_eq!(claims.userbuf, v.userbuf_hex.as_deref().map(hex));
            let later = v.time + v.expire + 1;
            assert!(matches!(
                key.verify(&o.sig, &v.identifier, later),
                Err(tincan_proto::UserSigError::Expired { .. })
            ));
        }
    }
}

#[test]
fn private_map_key_userbuf_matches() {
    for v in vectors() {
        let (Some(room), Some(privs), Some(want)) = (v.roomid, v.privilege_map, &v.userbuf_hex)
        else {
            continue;
        };
        let buf = private_map_key_userbuf(
            &v.identifier,
            v.sdkappid as u32,
            &Room::Numeric(room),
            (v.time + v.expire) as u32,
            privs,
        );
        assert_eq!(buf, hex(want), "{}", v.name);
    }
}

#[test]
fn string_room_userbuf_layout() {
    let buf = private_map_key_userbuf("ab", 7, &Room::Named("r1".into()), 9, 255);
    assert_eq!(
        buf,
        [
            &[1u8, 0, 2, b'a', b'b'][..],
            &7u32.to_be_bytes(),
            &0u32.to_be_bytes(),
            &9u32.to_be_bytes(),
            &255u32.to_be_bytes(),
            &0u32.to_be_bytes(),
            &[0, 2, b'r', b'1'],
        ]
        .concat()
    );
}
