//! What the tray shows, as a pure model: events go in, the status line, the ringing state and the
//! labels of the accept / decline items come out. `crate::shell` copies it onto the real tray icon.

use tincan_ipc::{AppEvent, CallPhase, CallView, ConnectionState, Direction};
use tincan_proto::{CallId, UserId};

/// The tray's state, fed with every [`AppEvent`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrayModel {
    user: Option<UserId>,
    connection: Option<ConnectionState>,
    ringing: Option<(CallId, UserId)>,
}

/// What to put on the tray.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrayView {
    /// The disabled status item ("Signed in as alice", "Offline, reconnecting…").
    pub status: String,
    pub tooltip: String,
    /// The ringing icon, and "Accept call from X" / "Decline" enabled.
    pub ringing: bool,
    pub accept_label: String,
}

/// The tray item's id for a profile: each profile (a process of its own) has its own, so hosts keep
/// them apart and tray-icon's files (`tray-icon-<id>-N.png`) never collide.
pub fn item_id(profile: &str) -> String {
    format!("tincan-{profile}")
}

/// The tray item's title (and the notification's app name).
pub fn title(profile: &str) -> String {
    if profile == "default" {
        "tincan".into()
    } else {
        format!("tincan — {profile}")
    }
}

impl TrayModel {
    /// Applies an event; returns whether the view may have changed.
    pub fn apply(&mut self, ev: &AppEvent) -> bool {
        match ev {
            AppEvent::User { user } => self.user = user.clone(),
            AppEvent::Connection { state } => self.connection = Some(state.clone()),
            AppEvent::Call { call } => self.ringing = ringing(call.as_ref()),
            _ => return false,
        }
        true
    }

    /// The incoming call the tray's accept / decline act on.
    pub fn ringing_call(&self) -> Option<&CallId> {
        self.ringing.as_ref().map(|(id, _)| id)
    }

    pub fn view(&self) -> TrayView {
        let status = match (&self.connection, &self.user) {
            (Some(ConnectionState::Online), Some(u)) => format!("Signed in as {u}"),
            (Some(ConnectionState::Reconnecting { .. }), _) => "Offline, reconnecting…".into(),
            (Some(ConnectionState::Connecting), _) => "Connecting…".into(),
            (None, Some(u)) => format!("Signed in as {u}"),
            _ => "Signed out".into(),
        };
        match &self.ringing {
            Some((_, caller)) => TrayView {
                status,
                tooltip: format!("{caller} is calling"),
                ringing: true,
                accept_label: format!("Accept call from {caller}"),
            },
            None => TrayView {
                tooltip: format!("tincan: {}", status.to_lowercase()),
                status,
                ringing: false,
                accept_label: "Accept call".into(),
            },
        }
    }
}

fn ringing(call: Option<&CallView>) -> Option<(CallId, UserId)> {
    call.filter(|c| c.direction == Direction::Incoming && c.phase == CallPhase::Incoming)
        .map(|c| (c.call_id.clone(), c.peer.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tincan_proto::CallType;

    fn call(direction: Direction, phase: CallPhase) -> CallView {
        CallView {
            call_id: CallId::new("c1").unwrap(),
            peer: UserId::new("bob").unwrap(),
            direction,
            call_type: CallType::Audio,
            phase,
            started_at_ms: 0,
            connected_at_ms: None,
            ended: None,
            timeout_secs: 30,
            muted: false,
            remote_muted: false,
            reconnecting: false,
            peer_reconnecting: false,
        }
    }

    #[test]
    fn status_follows_sign_in_and_connection() {
        let mut t = TrayModel::default();
        assert_eq!(t.view().status, "Signed out");
        t.apply(&AppEvent::Connection {
            state: ConnectionState::Online,
        });
        t.apply(&AppEvent::User {
            user: Some(UserId::new("alice").unwrap()),
        });
        assert_eq!(t.view().status, "Signed in as alice");
        t.apply(&AppEvent::Connection {
            state: ConnectionState::Reconnecting {
                attempt: 1,
                retry_in_ms: 500,
            },
        });
        assert_eq!(t.view().status, "Offline, reconnecting…");
        t.apply(&AppEvent::User { user: None });
        t.apply(&AppEvent::Connection {
            state: ConnectionState::SignedOut,
        });
        assert_eq!(t.view().status, "Signed out");
    }

    #[test]
    fn rings_only_for_an_incoming_call_that_rings() {
        let mut t = TrayModel::default();
        t.apply(&AppEvent::Call {
            call: Some(call(Direction::Outgoing, CallPhase::Ringing)),
        });
        assert!(!t.view().ringing);
        t.apply(&AppEvent::Call {
            call: Some(call(Direction::Incoming, CallPhase::Incoming)),
        });
        let v = t.view();
        assert!(v.ringing);
        assert_eq!(v.accept_label, "Accept call from bob");
        assert_eq!(v.tooltip, "bob is calling");
        assert_eq!(t.ringing_call().map(|c| c.as_str()), Some("c1"));
        // Answered: the tray stops ringing.
        t.apply(&AppEvent::Call {
            call: Some(call(Direction::Incoming, CallPhase::Answering)),
        });
        assert!(!t.view().ringing);
        assert_eq!(t.ringing_call(), None);
        // Other events change nothing.
        assert!(!t.apply(&AppEvent::History { entries: vec![] }));
    }
}
