//! The incoming-call notification.
//!
//! [`RingNotice`] is the pure part: fed with every [`AppEvent`], it says when to show the ringing
//! notification and when to take it down again (answered, declined, cancelled, timed out, signed
//! out: whatever ends the ring), so a stale "bob is calling you" never stays on a desktop that keeps
//! notifications.
//!
//! Per platform:
//! - **Linux** (and what speaks the freedesktop protocol): [`linux`] talks to
//!   `org.freedesktop.Notifications` itself over zbus: Accept and Decline actions, the default
//!   action (clicking the notification) showing the call, hints `urgency` = 2 (critical) and
//!   `category` = `call.incoming`, no expiry (the ring's end closes it with `CloseNotification`).
//!   tauri-plugin-notification cannot set those hints nor close a notification it showed.
//! - **macOS / Windows**: tauri-plugin-notification (notify-rust / WinRT toast) with an action type:
//!   Accept and Decline buttons (macOS: in an "Options" menu) and a click showing the call
//!   (`crate::shell::plugin_notices`). It sets no urgency or category there and cannot remove a
//!   shown notification, so a toast may outlive the ring until the OS hides it; answering a stale
//!   one does nothing, since the call is checked first.

use tincan_ipc::{AppEvent, CallPhase, CallView, Direction};
use tincan_proto::{CallId, UserId};

/// What to do with the desktop's notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeAction {
    /// An incoming call started ringing here.
    Show { call_id: CallId, caller: UserId },
    /// The ring of this call is over: take its notification down.
    Close { call_id: CallId },
}

/// What the user chose on the notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Accept,
    Decline,
    /// The notification itself was clicked (the "default" action): show the call.
    Show,
}

impl Choice {
    /// The action keys this module sends with `Notify`.
    pub fn from_key(key: &str) -> Option<Self> {
        match key {
            "accept" => Some(Self::Accept),
            "decline" => Some(Self::Decline),
            "default" => Some(Self::Show),
            _ => None,
        }
    }
}

/// The notification's text.
pub fn summary() -> &'static str {
    "Incoming call"
}

pub fn body(caller: &UserId) -> String {
    format!("{caller} is calling you")
}

/// Which call's ring is on show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RingNotice {
    shown: Option<CallId>,
}

impl RingNotice {
    /// Applies an event; returns what to do (at most a close of the old ring and a new one).
    pub fn apply(&mut self, ev: &AppEvent) -> Vec<NoticeAction> {
        let ringing = match ev {
            AppEvent::Call { call } => ringing(call.as_ref()),
            // Signed out: nothing rings here any more.
            AppEvent::User { user: None } => None,
            _ => return Vec::new(),
        };
        let current = ringing.as_ref().map(|(id, _)| id);
        if current == self.shown.as_ref() {
            return Vec::new();
        }
        let mut out = Vec::new();
        if let Some(old) = self.shown.take() {
            out.push(NoticeAction::Close { call_id: old });
        }
        if let Some((call_id, caller)) = ringing {
            self.shown = Some(call_id.clone());
            out.push(NoticeAction::Show { call_id, caller });
        }
        out
    }

    /// The call whose ring is shown.
    pub fn shown(&self) -> Option<&CallId> {
        self.shown.as_ref()
    }
}

fn ringing(call: Option<&CallView>) -> Option<(CallId, UserId)> {
    call.filter(|c| c.direction == Direction::Incoming && c.phase == CallPhase::Incoming)
        .map(|c| (c.call_id.clone(), c.peer.clone()))
}

/// `org.freedesktop.Notifications` over zbus.
#[cfg(target_os = "linux")]
pub mod linux {
    use super::{body, summary, Choice, NoticeAction};
    use futures_util::StreamExt;
    use std::collections::HashMap;
    use std::sync::Arc;
    use tincan_proto::CallId;
    use zbus::zvariant::Value;

    #[zbus::proxy(
        interface = "org.freedesktop.Notifications",
        default_service = "org.freedesktop.Notifications",
        default_path = "/org/freedesktop/Notifications"
    )]
    trait Notifications {
        #[allow(clippy::too_many_arguments)]
        fn notify(
            &self,
            app_name: &str,
            replaces_id: u32,
            app_icon: &str,
            summary: &str,
            body: &str,
            actions: &[&str],
            hints: HashMap<&str, Value<'_>>,
            expire_timeout: i32,
        ) -> zbus::Result<u32>;

        fn close_notification(&self, id: u32) -> zbus::Result<()>;

        #[zbus(signal)]
        fn action_invoked(&self, id: u32, action_key: String) -> zbus::Result<()>;

        #[zbus(signal)]
        fn notification_closed(&self, id: u32, reason: u32) -> zbus::Result<()>;
    }

    /// Called with the user's choice on a call's notification.
    pub type OnChoice = Arc<dyn Fn(CallId, Choice) + Send + Sync>;

    /// Runs the notifications of this app on a task of its own; [`NoticeAction`]s go in through the
    /// returned sender, in order. One connection sends the notifications and receives their
    /// signals, since some servers (dunst) send a notification's signals only to its sender.
    pub fn spawn(
        app_name: String,
        on_choice: OnChoice,
    ) -> tokio::sync::mpsc::UnboundedSender<NoticeAction> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tauri::async_runtime::spawn(async move {
            if let Err(e) = run(app_name, rx, on_choice).await {
                tracing::info!(error = %e, "no desktop notifications (org.freedesktop.Notifications)");
            }
        });
        tx
    }

    async fn run(
        app_name: String,
        mut rx: tokio::sync::mpsc::UnboundedReceiver<NoticeAction>,
        on_choice: OnChoice,
    ) -> zbus::Result<()> {
        let conn = zbus::Connection::session().await?;
        let proxy = NotificationsProxy::new(&conn).await?;
        let mut actions = proxy.receive_action_invoked().await?;
        let mut closed = proxy.receive_notification_closed().await?;
        // Server id -> the call it rings for, while the server shows it.
        let mut shown: HashMap<u32, CallId> = HashMap::new();
        loop {
            tokio::select! {
                action = rx.recv() => match action {
                    None => return Ok(()),
                    Some(NoticeAction::Show { call_id, caller }) => {
                        let mut hints = HashMap::new();
                        hints.insert("urgency", Value::U8(2));
                        hints.insert("category", Value::from("call.incoming"));
                        hints.insert("desktop-entry", Value::from("tincan"));
                        let text = body(&caller);
                        let sent = proxy
                            .notify(
                                &app_name,
                                0,
                                "call-start",
                                summary(),
                                &text,
                                &["default", "Show call", "accept", "Accept", "decline", "Decline"],
                                hints,
                                // Never expires by itself: the ring's end closes it.
                                0,
                            )
                            .await;
                        match sent {
                            Ok(id) => {
                                tracing::debug!(id, call = %call_id, "ringing notification shown");
                                shown.insert(id, call_id);
                            }
                            Err(e) => tracing::info!(error = %e, "no desktop notification"),
                        }
                    }
                    Some(NoticeAction::Close { call_id }) => {
                        let ids: Vec<u32> = shown
                            .iter()
                            .filter(|(_, c)| **c == call_id)
                            .map(|(id, _)| *id)
                            .collect();
                        for id in ids {
                            shown.remove(&id);
                            if let Err(e) = proxy.close_notification(id).await {
                                tracing::debug!(error = %e, id, "CloseNotification failed");
                            }
                        }
                    }
                },
                Some(sig) = actions.next() => {
                    let Ok(args) = sig.args() else { continue };
                    let (id, key) = (args.id, args.action_key);
                    if let (Some(call_id), Some(choice)) = (shown.get(&id), Choice::from_key(&key)) {
                        on_choice(call_id.clone(), choice);
                    }
                }
                Some(sig) = closed.next() => {
                    if let Ok(args) = sig.args() {
                        // Dismissed by the user (or closed by us): the tray keeps ringing.
                        shown.remove(&args.id);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tincan_ipc::CallEndInfo;
    use tincan_proto::{CallType, EndReason};

    fn call(id: &str, direction: Direction, phase: CallPhase) -> CallView {
        let mut c = tincan_ipc::call_view::incoming(
            CallId::new(id).unwrap(),
            UserId::new("bob").unwrap(),
            CallType::Audio,
            30,
            0,
        );
        c.direction = direction;
        c.phase = phase;
        c
    }

    fn ev(c: Option<CallView>) -> AppEvent {
        AppEvent::Call { call: c }
    }

    #[test]
    fn shows_once_and_closes_when_the_ring_ends() {
        let mut n = RingNotice::default();
        assert_eq!(
            n.apply(&ev(Some(call(
                "c1",
                Direction::Outgoing,
                CallPhase::Ringing
            )))),
            vec![]
        );
        let ring = ev(Some(call("c1", Direction::Incoming, CallPhase::Incoming)));
        assert_eq!(
            n.apply(&ring),
            vec![NoticeAction::Show {
                call_id: CallId::new("c1").unwrap(),
                caller: UserId::new("bob").unwrap()
            }]
        );
        // The same ring again (a repeat event) shows nothing new.
        assert_eq!(n.apply(&ring), vec![]);
        // Answered: closed at once.
        assert_eq!(
            n.apply(&ev(Some(call(
                "c1",
                Direction::Incoming,
                CallPhase::Answering
            )))),
            vec![NoticeAction::Close {
                call_id: CallId::new("c1").unwrap()
            }]
        );
        assert_eq!(n.shown(), None);
        assert_eq!(n.apply(&AppEvent::History { entries: vec![] }), vec![]);
    }

    #[test]
    fn every_end_of_a_ring_closes_it() {
        for end in [
            EndReason::Cancelled,
            EndReason::Timeout,
            EndReason::Rejected,
        ] {
            let mut n = RingNotice::default();
            n.apply(&ev(Some(call(
                "c1",
                Direction::Incoming,
                CallPhase::Incoming,
            ))));
            let mut ended = call("c1", Direction::Incoming, CallPhase::Ended);
            ended.ended = Some(CallEndInfo {
                reason: Some(end),
                message: String::new(),
            });
            assert_eq!(
                n.apply(&ev(Some(ended))),
                vec![NoticeAction::Close {
                    call_id: CallId::new("c1").unwrap()
                }],
                "{end:?}"
            );
        }
        // Signed out while ringing.
        let mut n = RingNotice::default();
        n.apply(&ev(Some(call(
            "c1",
            Direction::Incoming,
            CallPhase::Incoming,
        ))));
        assert_eq!(n.apply(&AppEvent::User { user: None }).len(), 1);
        // A second call replacing the first: the old one closes, the new one shows.
        let mut n = RingNotice::default();
        n.apply(&ev(Some(call(
            "c1",
            Direction::Incoming,
            CallPhase::Incoming,
        ))));
        let out = n.apply(&ev(Some(call(
            "c2",
            Direction::Incoming,
            CallPhase::Incoming,
        ))));
        assert_eq!(out.len(), 2);
        assert!(matches!(&out[0], NoticeAction::Close { call_id } if call_id.as_str() == "c1"));
        assert!(matches!(&out[1], NoticeAction::Show { call_id, .. } if call_id.as_str() == "c2"));
    }

    #[test]
    fn action_keys() {
        assert_eq!(Choice::from_key("accept"), Some(Choice::Accept));
        assert_eq!(Choice::from_key("decline"), Some(Choice::Decline));
        assert_eq!(Choice::from_key("default"), Some(Choice::Show));
        assert_eq!(Choice::from_key("other"), None);
    }
}
