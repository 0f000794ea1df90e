//! The fuzz targets' properties (`fuzz/checks.rs`, the very code cargo-fuzz runs) on the stable
//! toolchain, in the normal test suite: over every committed seed (`fuzz/seeds/<target>`) and every
//! input that once broke a property (`fuzz/regressions/<target>`, each named after what it found).
//! A crash from `scripts/fuzz.sh` is fixed by copying its input into `fuzz/regressions/<target>/`
//! and making this test pass.

#[path = "../../../fuzz/checks.rs"]
mod checks;

use std::path::PathBuf;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut out = Vec::new();
    for dir in ["seeds", "regressions"] {
        let dir = root.join(dir).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

fn replay(target: &str, check: fn(&[u8])) {
    let all = inputs(target);
    assert!(!all.is_empty(), "no seeds for {target}");
    for (path, data) in &all {
        if std::panic::catch_unwind(|| check(data)).is_err() {
            panic!("{target}: {} breaks its property", path.display());
        }
    }
}

#[test]
fn client_message_inputs() {
    replay("client_message", checks::client_message);
}

#[test]
fn usersig_inputs() {
    replay("usersig", checks::usersig);
}

#[test]
fn sdp_inputs() {
    replay("sdp", checks::sdp);
}

/// fuzz/regressions/usersig/gen-longer-than-verify-accepts: `gen` with a few KB of userbuf made a
/// token over `MAX_SIG_LEN`, which `verify` refuses. `try_gen` refuses it up front.
#[test]
fn try_gen_refuses_what_verify_would_refuse() {
    use tincan_proto::usersig::{Malformed, MAX_SIG_LEN};
    use tincan_proto::{SecretKey, UserId, UserSigError, UserSigKey};
    let key = UserSigKey::new(1, SecretKey::new("k".into()));
    let uid = UserId::new("u").unwrap();
    // Incompressible bytes (xorshift), so the token grows with the userbuf.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let buf: Vec<u8> = (0..3_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let long = key.gen(&uid, 0, 60, Some(&buf));
    assert!(long.len() > MAX_SIG_LEN);
    assert_eq!(key.verify(&long, "u", 0), Err(Malformed::TooLong.into()));
    assert_eq!(
        key.try_gen(&uid, 0, 60, Some(&buf)),
        Err(UserSigError::from(Malformed::TooLong))
    );
    let fits = key.try_gen(&uid, 0, 60, Some(&buf[..1_000])).unwrap();
    assert_eq!(
        key.verify(&fits, "u", 0).unwrap().userbuf.as_deref(),
        Some(&buf[..1_000])
    );
}
