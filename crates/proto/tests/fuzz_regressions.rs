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
            if p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
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
