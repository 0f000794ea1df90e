//! Property test of the TURN credential refresh (issue 14): random sign-ins (replacements and,
//! with `--single-session`, kicks), drops, logouts and time passing, with the switchboard's
//! deadlines run exactly when due, as the server's ticker does.
//!
//! Invariants:
//! - every signed-in session hears `ice_servers` exactly 3/4 of the TTL after its `login_ok` and
//!   after each refresh, never earlier, never twice, never late;
//! - a session that is gone (dropped, logged out, kicked, replaced) never hears one;
//! - each credential is for the session's own user, expires one TTL after it was minted, later
//!   than the one before, and has the password coturn computes.

use proptest::prelude::*;
use std::collections::HashMap;
use tincan_proto::ice::{turn_password, IceConfig};
use tincan_proto::switchboard::{Action, Config, SessionId, Switchboard};
use tincan_proto::{ClientMessage, DeviceId, IceServer, Party, SecretKey, ServerMessage, UserId};

const USERS: [&str; 3] = ["alice", "bob", "carol"];
const TTL: u32 = 4;
const REFRESH_MS: u64 = 3000;
const SECRET: &str = "prop-secret";

#[derive(Debug, Clone)]
enum Op {
    Login(u8, u8),
    Disconnect(u8),
    Logout(u8),
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..3, 0u8..2).prop_map(|(u, d)| Op::Login(u, d)),
        any::<u8>().prop_map(Op::Disconnect),
        any::<u8>().prop_map(Op::Logout),
        (0u16..5000).prop_map(Op::Advance),
    ]
}

struct Sim {
    board: Switchboard,
    now: u64,
    /// Signed-in sessions: their user and when they were last issued credentials.
    live: HashMap<SessionId, (String, u64, u64)>,
    order: Vec<SessionId>,
}

impl Sim {
    fn pick(&self, i: u8) -> Option<SessionId> {
        let live: Vec<SessionId> = self
            .order
            .iter()
            .copied()
            .filter(|s| self.live.contains_key(s))
            .collect();
        (!live.is_empty()).then(|| live[i as usize % live.len()])
    }

    /// Checks what the switchboard asked for, and forgets sessions it closed.
    fn check(&mut self, out: &mut Vec<Action>) -> Result<(), TestCaseError> {
        for a in out.drain(..) {
            match a {
                Action::Send(
                    sid,
                    ServerMessage::LoginOk {
                        ice_servers,
                        ice_servers_expire_at,
                        ..
                    },
                ) => {
                    let p = self
                        .board
                        .party(sid)
                        .expect("login_ok to a signed-in session");
                    let user = p.user.as_str().to_owned();
                    let expiry = ice_servers_expire_at.expect("TURN is configured");
                    check_list(&ice_servers, &user, expiry, self.now)?;
                    self.live.insert(sid, (user, self.now, expiry));
                }
                Action::Send(
                    sid,
                    ServerMessage::IceServers {
                        ice_servers,
                        expires_at,
                    },
                ) => {
                    let Some((user, last, prev)) = self.live.get(&sid).cloned() else {
                        return Err(TestCaseError::fail(format!(
                            "ice_servers to session {sid}, which is gone"
                        )));
                    };
                    prop_assert!(self.board.party(sid).is_some());
                    prop_assert_eq!(self.now, last + REFRESH_MS, "refresh not at 3/4 TTL");
                    prop_assert!(
                        expires_at > prev,
                        "expiry {} not after {}",
                        expires_at,
                        prev
                    );
                    check_list(&ice_servers, &user, expires_at, self.now)?;
                    self.live.insert(sid, (user, self.now, expires_at));
                }
                Action::Close(sid, _) => {
                    self.live.remove(&sid);
                }
                _ => {}
            }
        }
        // Whoever the switchboard no longer knows is gone (a drop tells nobody).
        let board = &self.board;
        self.live.retain(|sid, _| board.party(*sid).is_some());
        // Nobody is overdue.
        for (sid, (_, last, _)) in &self.live {
            prop_assert!(
                last + REFRESH_MS > self.now,
                "session {} overdue: issued {} now {}",
                sid,
                last,
                self.now
            );
        }
        prop_assert!(self.board.ice_refreshes_pending() >= self.live.len());
        Ok(())
    }
}

fn check_list(
    list: &[IceServer],
    user: &str,
    expiry: u64,
    now_ms: u64,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(expiry, now_ms / 1000 + u64::from(TTL));
    let turn = list.iter().find(|s| s.is_turn()).expect("a TURN entry");
    let username = format!("{expiry}:{user}");
    prop_assert_eq!(turn.username.as_deref(), Some(username.as_str()));
    let password = turn_password(SECRET.as_bytes(), &username);
    prop_assert_eq!(turn.credential.as_deref(), Some(password.as_str()));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_session_is_refreshed_on_time_and_only_while_signed_in(
        ops in prop::collection::vec(op(), 0..60),
        single in any::<bool>(),
    ) {
        let config = Config {
            single_session: single,
            ice: IceConfig {
                stun_urls: vec!["stun:127.0.0.1".into()],
                turn_urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
                turn_secret: Some(SecretKey::new(SECRET.into())),
                turn_ttl_secs: TTL,
            },
            ..Config::default()
        };
        let mut sim = Sim {
            board: Switchboard::new(config),
            now: 1_767_222_000_123,
            live: HashMap::new(),
            order: Vec::new(),
        };
        let mut out = Vec::new();
        let mut next_sid = 1;
        for op in ops {
            match op {
                Op::Login(u, d) => {
                    let sid = next_sid;
                    next_sid += 1;
                    let party = Party::new(
                        UserId::new(USERS[u as usize]).unwrap(),
                        DeviceId::new(format!("d{d}")).unwrap(),
                    );
                    let _ = sim.board.login(sid, party, sim.now, &mut out);
                    sim.order.push(sid);
                }
                Op::Disconnect(i) => if let Some(sid) = sim.pick(i) {
                    sim.board.disconnect(sid, sim.now, &mut out);
                },
                Op::Logout(i) => if let Some(sid) = sim.pick(i) {
                    sim.board.handle(sid, ClientMessage::Logout, sim.now, &mut out);
                },
                Op::Advance(ms) => {
                    // Run every deadline at its own time, as the server's ticker would.
                    let target = sim.now + u64::from(ms);
                    while let Some(t) = sim.board.next_deadline().filter(|t| *t <= target) {
                        sim.now = sim.now.max(t);
                        sim.board.tick(sim.now, &mut out);
                        sim.check(&mut out)?;
                    }
                    sim.now = target;
                }
            }
            sim.check(&mut out)?;
            prop_assert!(sim.board.check_invariants().is_ok());
        }
    }
}
