//! ICE servers for each signed-in session: the list in `login_ok`, then an `ice_servers` frame
//! with fresh TURN credentials at 3/4 of their lifetime, for as long as the session stays.
//!
//! The refresh is a switchboard deadline like a ring timeout (the server's tick feeds the time
//! in; no timer lives here), so the schedule is tested exactly and one place decides what a
//! session is told. A session that leaves is not looked up in the schedule: its entry is
//! dropped when it comes due (at most 3/4 of a TTL later; session IDs are never reused), which
//! costs nothing on the sign-out path. Without TURN configured nothing is scheduled at all.

use super::{Action, SessionId, Switchboard};
use crate::ice::IssuedIceServers;
use crate::ids::UserId;
use crate::message::ServerMessage;

impl Switchboard {
    /// The ICE servers for a session signing in now, scheduling its first refresh when they
    /// carry TURN credentials.
    pub(super) fn issue_ice(
        &mut self,
        sid: SessionId,
        user: &UserId,
        now_ms: u64,
    ) -> IssuedIceServers {
        let ice = &self.config.ice;
        if ice.is_empty() {
            return IssuedIceServers::default();
        }
        let issued = ice.issue(user, now_ms / 1000);
        if issued.expires_at.is_some() {
            let due = now_ms.saturating_add(ice.refresh_after_ms());
            self.ice_refresh.insert((due, sid));
        }
        issued
    }

    /// Sends fresh credentials to every session whose refresh is due, and schedules the next.
    pub(super) fn tick_ice(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        while let Some(&(due, sid)) = self.ice_refresh.first() {
            if due > now_ms {
                break;
            }
            self.ice_refresh.pop_first();
            let Some(party) = self.sessions.get(&sid) else {
                continue; // signed out since: dropped here.
            };
            let issued = self.config.ice.issue(&party.user, now_ms / 1000);
            let Some(expires_at) = issued.expires_at else {
                continue;
            };
            out.push(Action::Send(
                sid,
                ServerMessage::IceServers {
                    ice_servers: issued.ice_servers,
                    expires_at,
                },
            ));
            let next = now_ms.saturating_add(self.config.ice.refresh_after_ms());
            self.ice_refresh.insert((next, sid));
        }
    }

    /// Refreshes scheduled (live sessions and not yet dropped leavers); for tests and metrics.
    pub fn ice_refreshes_pending(&self) -> usize {
        self.ice_refresh.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Action, Config, Switchboard};
    use crate::call::Party;
    use crate::ice::{turn_password, IceConfig, IceServer};
    use crate::ids::{DeviceId, UserId};
    use crate::message::ServerMessage;
    use crate::sensitive::SecretKey;

    const T0: u64 = 1_767_222_000_000;

    fn board(ttl: u32) -> Switchboard {
        Switchboard::new(Config {
            ice: IceConfig {
                stun_urls: vec!["stun:stun.example.org".into()],
                turn_urls: vec!["turn:turn.example.org:3478?transport=udp".into()],
                turn_secret: Some(SecretKey::new("s3cret".into())),
                turn_ttl_secs: ttl,
            },
            ..Config::default()
        })
    }

    fn party(u: &str) -> Party {
        Party::new(UserId::new(u).unwrap(), DeviceId::new("d1").unwrap())
    }

    fn sent(out: &[Action]) -> Vec<(u64, &ServerMessage)> {
        out.iter()
            .filter_map(|a| match a {
                Action::Send(s, m) => Some((*s, m)),
                _ => None,
            })
            .collect()
    }

    fn turn_of(list: &[IceServer]) -> &IceServer {
        list.iter().find(|s| s.is_turn()).expect("a TURN entry")
    }

    /// The first frame sent, which must be a `login_ok`: its session, ICE servers and their expiry.
    fn login_ok_ice(out: &[Action]) -> (u64, &[IceServer], Option<u64>) {
        match sent(out).first().map(|(sid, m)| (*sid, *m)) {
            Some((
                sid,
                ServerMessage::LoginOk {
                    ice_servers,
                    ice_servers_expire_at,
                    ..
                },
            )) => (sid, ice_servers, *ice_servers_expire_at),
            _ => panic!("{out:?}"),
        }
    }

    #[test]
    fn login_ok_carries_credentials_and_refreshes_come_at_three_quarters() {
        let mut sb = board(4);
        let mut out = Vec::new();
        sb.login(1, party("alice"), T0, &mut out).unwrap();
        let (sid, ice_servers, ice_servers_expire_at) = login_ok_ice(&out);
        assert_eq!(sid, 1);
        let expiry = T0 / 1000 + 4;
        assert_eq!(ice_servers_expire_at, Some(expiry));
        assert_eq!(
            ice_servers[0],
            IceServer::stun(vec!["stun:stun.example.org".into()])
        );
        let turn = turn_of(ice_servers);
        let user = format!("{expiry}:alice");
        assert_eq!(turn.username.as_deref(), Some(user.as_str()));
        assert_eq!(
            turn.credential.as_deref(),
            Some(turn_password(b"s3cret", &user).as_str())
        );
        assert_eq!(sb.next_deadline(), Some(T0 + 3000));

        out.clear();
        sb.tick(T0 + 2999, &mut out);
        assert!(out.is_empty(), "{out:?}");
        sb.tick(T0 + 3000, &mut out);
        let [(
            1,
            ServerMessage::IceServers {
                ice_servers,
                expires_at,
            },
        )] = sent(&out)[..]
        else {
            panic!("{out:?}")
        };
        assert_eq!(*expires_at, (T0 + 3000) / 1000 + 4);
        assert!(*expires_at > expiry);
        let user = format!("{expires_at}:alice");
        assert_eq!(
            turn_of(ice_servers).username.as_deref(),
            Some(user.as_str())
        );
        assert_eq!(sb.next_deadline(), Some(T0 + 6000));

        // Each session keeps its own schedule.
        out.clear();
        sb.login(2, party("bob"), T0 + 4000, &mut out).unwrap();
        out.clear();
        sb.tick(T0 + 6000, &mut out);
        assert_eq!(sent(&out).iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1]);
        out.clear();
        sb.tick(T0 + 7000, &mut out);
        assert_eq!(sent(&out).iter().map(|(s, _)| *s).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn a_session_that_left_gets_nothing_and_its_entry_goes() {
        let mut sb = board(4);
        let mut out = Vec::new();
        sb.login(1, party("alice"), T0, &mut out).unwrap();
        sb.disconnect(1, T0 + 1000, &mut out);
        out.clear();
        sb.tick(T0 + 3000, &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(sb.ice_refreshes_pending(), 0);
        assert_eq!(sb.next_deadline(), None);
    }

    #[test]
    fn nothing_configured_means_nothing_sent_or_scheduled() {
        let mut sb = Switchboard::new(Config::default());
        let mut out = Vec::new();
        sb.login(1, party("alice"), T0, &mut out).unwrap();
        let (_, ice_servers, ice_servers_expire_at) = login_ok_ice(&out);
        assert!(ice_servers.is_empty() && ice_servers_expire_at.is_none());
        assert!(!sent(&out)[0].1.encode().contains("ice_servers"));
        assert_eq!(sb.next_deadline(), None);

        // STUN only: listed, never refreshed.
        let mut sb = Switchboard::new(Config {
            ice: IceConfig {
                stun_urls: vec!["stun:stun.example.org".into()],
                ..IceConfig::default()
            },
            ..Config::default()
        });
        out.clear();
        sb.login(1, party("alice"), T0, &mut out).unwrap();
        let (_, ice_servers, ice_servers_expire_at) = login_ok_ice(&out);
        assert_eq!(ice_servers.len(), 1);
        assert!(ice_servers_expire_at.is_none());
        assert_eq!(sb.next_deadline(), None);
    }
}
