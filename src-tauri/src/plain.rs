//! Error messages in plain words at the IPC boundary. Errors carry a stable code (the UI branches on
//! it, never on the text) and a sentence for the user; some sentences are built around a detail
//! from deeper down (a server's reason, a decoder's complaint) and come out with brackets inside
//! brackets or words like "zlib". Here such details are taken out of the sentence and logged
//! instead. The code is never changed.

use tincan_ipc::IpcError;

/// Fragments that mean a detail is for a developer, not a user.
const TECHNICAL: &[&str] = &[
    "zlib",
    "base64",
    "json",
    "unix seconds",
    "d-bus",
    "dbus",
    "freedesktop",
    "--",
    "tls.",
    "os error",
];

fn technical(s: &str) -> bool {
    let lower = s.to_lowercase();
    s.contains('`') || TECHNICAL.iter().any(|t| lower.contains(t))
}

/// The message of `e` in plain words (see the module docs); the original goes to the log when it
/// changes.
pub fn plain(mut e: IpcError) -> IpcError {
    let words = plain_message(&e.message);
    if words != e.message {
        tracing::info!(code = ?e.code, original = %e.message, "error message shortened for the UI");
        e.message = words;
    }
    e
}

/// Removes every bracketed group that nests another one or holds a technical detail; flat, plain
/// asides such as "(a number above 0)" stay. Backticks go. Unbalanced brackets are left alone.
pub fn plain_message(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let chars: Vec<char> = msg.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '(' {
            // Find the matching close, noting the depth reached.
            let (mut depth, mut max, mut j) = (0usize, 0usize, i);
            while j < chars.len() {
                match chars[j] {
                    '(' => {
                        depth += 1;
                        max = max.max(depth);
                    }
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            if j < chars.len() {
                let group: String = chars[i..=j].iter().collect();
                if max > 1 || technical(&group) {
                    // Drop it and the space before it.
                    while out.ends_with(' ') {
                        out.pop();
                    }
                } else {
                    out.push_str(&group);
                }
                i = j + 1;
                continue;
            }
        }
        if chars[i] != '`' {
            out.push(chars[i]);
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tincan_ipc::ErrorCode;

    #[test]
    fn nested_and_technical_details_leave_the_sentence() {
        // What the session says for a server's BadSignature.
        let m = "The server did not accept your credentials (UserSig signature does not match \
                 (wrong secret key or a forged token)). Check the user ID, the SDKAppID and the \
                 secret key or UserSig.";
        assert_eq!(
            plain_message(m),
            "The server did not accept your credentials. Check the user ID, the SDKAppID and the \
             secret key or UserSig."
        );
        assert_eq!(
            plain_message(
                "That is not a valid UserSig (UserSig is malformed: not valid zlib data)."
            ),
            "That is not a valid UserSig."
        );
        assert_eq!(
            plain_message(
                "Run `gnome-keyring-daemon` (org.freedesktop.DBus.Error.ServiceUnknown)."
            ),
            "Run gnome-keyring-daemon."
        );
        // Plain asides and unbalanced text stay.
        for keep in [
            "Enter the SDKAppID (a number above 0).",
            "The server refused (this server serves SDKAppID 7, not 8).",
            "a (b",
        ] {
            assert_eq!(plain_message(keep), keep);
        }
    }

    #[test]
    fn the_code_never_changes() {
        let e = plain(IpcError::new(ErrorCode::UserSigInvalid, "x (y (z)) end."));
        assert_eq!(e.code, ErrorCode::UserSigInvalid);
        assert_eq!(e.message, "x end.");
    }
}
