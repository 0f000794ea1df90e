//! The `tincan-server` binary: UserSig tools against the official vectors, and `serve`.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tincan-server");
// The "readme-default" vector from the official libraries.
const KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
const NODE_SIG: &str = "eJyrVgrxCdYrSy1SslIy0jNQ0gHzM1NS80oy0zLBwhWZiflZpXlQqeKU7MSCgswUJStDEwMogMiUZOamKlkZmqOKplYUZBaBxE1NTY3gosWZ6UpWSj5ljuYp*p7l5unBxXnF2WVhVU4uAf7Ozi5JpX7O5SbuHuUhzgZJmQXaTia2SrUAohcx8g__";
const PY_SIG: &str = "eJyrVgrxCdYrSy1SslJQMtIzUNJRAItkpqTmlWSmZUIkKjIT87NK82CSxSnZiQUFmSlAKUMTAyiAyqVWFGQWpYJkTE1NjRDiJZm5YFFzNPXFmekgG3zKHM1T9D3LzdODi-OKs8vCqpxcAvydnV2SSv2cy03cPcpDnA2SMgu0nUxslWoBHdYzUg__";
const NODE_JSON: &str = r#"{"TLS.ver":"2.0","TLS.identifier":"xiaojun","TLS.sdkappid":1400000000,"TLS.time":1700000000,"TLS.expire":15552000,"TLS.sig":"LvA7d/Iw7gSsnskvVzBDPOCCDbuNCw4GHwTC0bip+B4="}"#;

fn run(args: &[&str], key: Option<&str>, stdin: &str) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("TINCAN_SECRET_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(k) = key {
        cmd.env("TINCAN_SECRET_KEY", k);
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn gen_prints_the_official_token_content() {
    let (ok, out, err) = run(
        &[
            "usersig",
            "gen",
            "--sdkappid",
            "1400000000",
            "--user",
            "xiaojun",
            "--expire",
            "15552000",
            "--time",
            "1700000000",
        ],
        Some(KEY),
        "",
    );
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "the sig alone on one line");
    assert_eq!(
        tincan_proto::usersig::inflate(out.trim()).unwrap(),
        NODE_JSON
    );
}

#[test]
fn gen_with_userbuf_and_key_file() {
    let dir = std::env::temp_dir().join(format!("tincan-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("key");
    std::fs::write(&file, format!("{KEY}\n")).unwrap();
    let (ok, out, err) = run(
        &[
            "usersig",
            "gen",
            "--sdkappid",
            "1400000000",
            "--user",
            "xiaojun",
            "--expire",
            "15552000",
            "--time",
            "1700000000",
            "--userbuf-hex",
            "616263",
            "--secret-key-file",
            file.to_str().unwrap(),
        ],
        None,
        "",
    );
    assert!(ok, "{err}");
    let json = tincan_proto::usersig::inflate(out.trim()).unwrap();
    assert!(
        json.contains(
            r#""TLS.userbuf":"YWJj","TLS.sig":"QjT201xPkXk/aM1e+y0vakZb0K2iPrFue++0s5y6bFM=""#
        ),
        "{json}"
    );
}

#[test]
fn verify_accepts_official_sigs_and_explains_failures() {
    let args = [
        "usersig",
        "verify",
        "--sdkappid",
        "1400000000",
        "--user",
        "xiaojun",
        "--now",
        "1700000100",
    ];
    for sig in [NODE_SIG, PY_SIG] {
        let (ok, _, err) = run(&args, Some(KEY), &format!("{sig}\n"));
        assert!(ok, "{err}");
    }
    let (ok, _, err) = run(
        &[
            "usersig",
            "verify",
            "--sdkappid",
            "1400000000",
            "--user",
            "xiaojun",
            "--now",
            "1800000000",
        ],
        Some(KEY),
        NODE_SIG,
    );
    assert!(!ok);
    assert!(err.contains("expired"), "{err}");
    let (ok, _, err) = run(&args, Some("wrong-key"), NODE_SIG);
    assert!(!ok);
    assert!(err.contains("signature"), "{err}");
    let (ok, _, err) = run(
        &[
            "usersig",
            "verify",
            "--sdkappid",
            "1400000000",
            "--user",
            "someone",
            "--now",
            "1700000100",
        ],
        Some(KEY),
        NODE_SIG,
    );
    assert!(!ok);
    assert!(err.contains("someone"), "{err}");
    let (ok, _, err) = run(&args, Some(KEY), "garbage");
    assert!(!ok);
    assert!(err.contains("malformed"), "{err}");
}

#[test]
fn no_secret_says_how_to_give_one() {
    for args in [
        &[
            "usersig",
            "gen",
            "--sdkappid",
            "1",
            "--user",
            "a",
            "--expire",
            "60",
        ][..],
        &["serve", "--listen", "127.0.0.1:0", "--sdkappid", "1"][..],
    ] {
        let (ok, _, err) = run(args, None, "");
        assert!(!ok);
        assert!(
            err.contains("TINCAN_SECRET_KEY") && err.contains("--secret-key-file"),
            "{err}"
        );
    }
}

#[test]
fn serve_answers_healthz() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--sdkappid",
            "1400000000",
            "--memory-only",
        ])
        .env("TINCAN_SECRET_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        if let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut s = String::new();
            tcp.read_to_string(&mut s).unwrap();
            break s;
        }
        assert!(Instant::now() < deadline, "server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains(r#""status":"ok""#), "{body}");
}

/// Issue 11: `-abc` is a valid user ID, not a bundle of short options; both `gen` and `verify` take
/// it (clap `allow_hyphen_values`), and the sig is for that ID.
#[test]
fn user_ids_that_begin_with_a_hyphen_are_taken() {
    for user in ["-abc", "-", "--x"] {
        let (ok, out, err) = run(
            &[
                "usersig",
                "gen",
                "--sdkappid",
                "1400000000",
                "--user",
                user,
                "--expire",
                "600",
            ],
            Some(KEY),
            "",
        );
        assert!(ok, "gen --user {user}: {err}");
        let claims = tincan_proto::usersig::inspect(out.trim()).unwrap();
        assert_eq!(claims.identifier, user);
        let (ok, _, err) = run(
            &[
                "usersig",
                "verify",
                "--sdkappid",
                "1400000000",
                "--user",
                user,
            ],
            Some(KEY),
            out.trim(),
        );
        assert!(ok, "verify --user {user}: {err}");
    }
}

/// Found by fuzzing (fuzz/regressions/usersig): a large userbuf made `usersig gen` print a sig
/// longer than any server accepts. It now refuses, and a userbuf that fits still works.
#[test]
fn gen_refuses_a_sig_too_large_to_verify() {
    // Incompressible bytes (xorshift): the token grows with them.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let hex: String = (0..3000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{:02x}", x as u8)
        })
        .collect();
    let big = hex.clone();
    let (ok, out, err) = run(
        &[
            "usersig",
            "gen",
            "--sdkappid",
            "1",
            "--user",
            "u",
            "--expire",
            "60",
            "--userbuf-hex",
            &big,
        ],
        Some(KEY),
        "",
    );
    assert!(!ok, "{out}");
    assert!(
        err.contains("cannot make this UserSig") && err.contains("--userbuf-hex"),
        "{err}"
    );
    let small = hex[..1000].to_string();
    let (ok, sig, err) = run(
        &[
            "usersig",
            "gen",
            "--sdkappid",
            "1",
            "--user",
            "u",
            "--expire",
            "60",
            "--userbuf-hex",
            &small,
        ],
        Some(KEY),
        "",
    );
    assert!(ok, "{err}");
    let (ok, _, err) = run(
        &["usersig", "verify", "--sdkappid", "1", "--user", "u"],
        Some(KEY),
        &sig,
    );
    assert!(ok, "{err}");
}
