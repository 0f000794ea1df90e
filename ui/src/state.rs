//! The UI's state as a pure reducer: backend results and events go in as [`Action`]s, the screen to
//! show comes out of [`UiState::screen`]. No browser needed, so it is tested natively.

use std::rc::Rc;
use tincan_ipc::{
    AppEvent, AppState, CallPhase, CallView, ConnectionState, EndReason, ErrorCode, HistoryEntry,
    IpcError, SavedCredentials, ServerInfo, Settings, Startup,
};
use tincan_proto::UserId;
use yew::Reducible;

/// The page chosen while signed in with no call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Page {
    #[default]
    Home,
    Settings,
}

/// What fills the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Loading,
    SignIn,
    Home,
    Settings,
    Incoming,
    Outgoing,
    InCall,
    CallEnded,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct UiState {
    pub loaded: bool,
    pub profile: String,
    pub server: Option<ServerInfo>,
    pub connection: Option<ConnectionState>,
    pub user: Option<UserId>,
    pub call: Option<CallView>,
    pub saved: SavedCredentials,
    pub history: Vec<HistoryEntry>,
    pub settings: Option<Settings>,
    pub page: Page,
    /// A command is in flight (buttons are disabled).
    pub busy: bool,
    /// The last error, shown until dismissed or replaced.
    pub error: Option<IpcError>,
    /// A notice that is not an error (kicked offline, missed calls, settings saved).
    pub notice: Option<String>,
    /// The ended call the user already left; the backend's state may still report it.
    pub dismissed: Option<tincan_proto::CallId>,
    /// The Settings form differs from the saved settings.
    pub settings_dirty: bool,
    /// Esc was pressed once with unsaved edits: the next Esc discards them.
    pub discard_armed: bool,
    /// Sign in at launch / start at login (desktop app only; `None` in a browser).
    pub startup: Option<Startup>,
}

/// Shown when Settings is left with edits that were not saved.
pub const DISCARDED: &str = "Unsaved changes discarded.";
/// Shown at the first Esc with unsaved edits.
pub const UNSAVED: &str = "You have unsaved changes: Save keeps them, Esc again discards them.";

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The answer to `get_state` (or `sign_in` / `sign_out` / `save_settings`).
    State(AppState),
    Event(AppEvent),
    History(Vec<HistoryEntry>),
    Settings(Settings),
    /// A call was placed.
    CallStarted(CallView),
    /// What is saved changed (credentials forgotten).
    Saved(SavedCredentials),
    Busy,
    /// A command finished without a result worth keeping.
    Done,
    Failed(IpcError),
    DismissError,
    /// Leave the "call ended" screen.
    DismissCall,
    ShowPage(Page),
    Notice(String),
    /// The Settings form was edited (`true`) or matches what is saved (`false`).
    SettingsDirty(bool),
    /// Esc on the Settings page: leaves it, or with unsaved edits first asks (a second Esc leaves).
    EscapeSettings,
    /// Back from Settings: unsaved edits are dropped, with a notice saying so.
    LeaveSettings,
    Startup(Startup),
    /// The user typed in the call field: an error about the previous ID is stale.
    CalleeEdited,
}

/// A title for the "call ended" screen.
pub fn ended_title(reason: Option<EndReason>) -> &'static str {
    match reason {
        Some(EndReason::Rejected) => "Declined",
        Some(EndReason::LineBusy) => "Busy",
        Some(EndReason::NoResponse) | Some(EndReason::Timeout) => "No answer",
        Some(EndReason::Offline) => "Offline",
        Some(EndReason::Cancelled) => "Cancelled",
        Some(EndReason::Hangup) => "Call ended",
        Some(EndReason::AnsweredElsewhere) => "Answered elsewhere",
        Some(EndReason::DeclinedElsewhere) => "Declined elsewhere",
        Some(EndReason::ConnectionLost) => "Connection lost",
        Some(EndReason::LoggedOut) => "Signed out",
        Some(EndReason::KickedOffline) => "Signed in elsewhere",
        Some(EndReason::Replaced) => "Connected again",
        None => "Call failed",
    }
}

impl UiState {
    pub fn screen(&self) -> Screen {
        if !self.loaded {
            return Screen::Loading;
        }
        if self.user.is_none() {
            // A call that ended as we were signed out is still shown, so the reason is seen.
            return match &self.call {
                Some(c) if c.phase == CallPhase::Ended => Screen::CallEnded,
                _ => Screen::SignIn,
            };
        }
        match self.call.as_ref().map(|c| c.phase) {
            Some(CallPhase::Incoming) => Screen::Incoming,
            Some(CallPhase::Dialing | CallPhase::Ringing) => Screen::Outgoing,
            Some(CallPhase::Answering | CallPhase::Connected) => Screen::InCall,
            Some(CallPhase::Ended) => Screen::CallEnded,
            None => match self.page {
                Page::Home => Screen::Home,
                Page::Settings => Screen::Settings,
            },
        }
    }

    pub fn online(&self) -> bool {
        matches!(self.connection, Some(ConnectionState::Online))
    }

    fn apply_state(&mut self, s: AppState) {
        self.loaded = true;
        self.profile = s.profile;
        self.server = Some(s.server);
        self.connection = Some(s.connection);
        self.user = s.user;
        // Keep an ended call on screen until the user dismisses it; never bring back one they did.
        match (&self.call, s.call) {
            (Some(old), None) if old.phase == CallPhase::Ended => {}
            (Some(old), Some(new))
                if old.phase == CallPhase::Ended && new.call_id == old.call_id => {}
            (_, Some(new)) if self.is_dismissed(&new) => self.call = None,
            (_, new) => self.call = new,
        }
        self.saved = s.saved;
    }

    fn is_dismissed(&self, call: &CallView) -> bool {
        call.phase == CallPhase::Ended && self.dismissed.as_ref() == Some(&call.call_id)
    }

    pub fn reduce_mut(&mut self, action: Action) {
        match action {
            Action::State(s) => {
                self.busy = false;
                self.apply_state(s);
            }
            Action::Event(ev) => self.on_event(ev),
            Action::History(h) => self.history = h,
            Action::Settings(s) => self.settings = Some(s),
            Action::CallStarted(c) => {
                self.busy = false;
                self.error = None;
                // An event about this call may have arrived first; keep the later phase.
                let stale = matches!(&self.call, Some(old) if old.call_id == c.call_id);
                if !stale {
                    self.call = Some(c);
                }
            }
            Action::Saved(saved) => {
                self.busy = false;
                self.saved = saved;
            }
            Action::Busy => self.busy = true,
            Action::Done => self.busy = false,
            Action::Failed(e) => {
                self.busy = false;
                self.error = Some(e);
            }
            Action::DismissError => self.error = None,
            Action::DismissCall => {
                if let Some(c) = self.call.take_if(|c| c.phase == CallPhase::Ended) {
                    self.dismissed = Some(c.call_id);
                }
            }
            Action::ShowPage(p) => {
                self.page = p;
                self.notice = None;
                self.settings_dirty = false;
                self.discard_armed = false;
            }
            Action::Notice(n) => self.notice = Some(n),
            Action::SettingsDirty(d) => {
                if d && !self.settings_dirty {
                    // A "Settings saved" (or "unsaved") notice no longer describes the form.
                    self.notice = None;
                }
                self.settings_dirty = d;
                if !d {
                    self.discard_armed = false;
                }
            }
            Action::EscapeSettings => {
                if self.settings_dirty && !self.discard_armed {
                    self.discard_armed = true;
                    self.notice = Some(UNSAVED.into());
                } else {
                    self.reduce_mut(Action::LeaveSettings);
                }
            }
            Action::LeaveSettings => {
                let dropped = self.settings_dirty;
                self.reduce_mut(Action::ShowPage(Page::Home));
                if dropped {
                    self.notice = Some(DISCARDED.into());
                }
            }
            Action::Startup(s) => {
                // The answer to get_startup / set_startup (the latter runs as a busy command).
                self.busy = false;
                self.startup = Some(s);
            }
            Action::CalleeEdited => {
                let stale = self.error.as_ref().is_some_and(|e| {
                    matches!(
                        e.code,
                        ErrorCode::CallSelf
                            | ErrorCode::InvalidUserId
                            | ErrorCode::AlreadyInCall
                            | ErrorCode::ServerRefused
                    )
                });
                if stale {
                    self.error = None;
                }
            }
        }
    }

    fn on_event(&mut self, ev: AppEvent) {
        match ev {
            AppEvent::Connection { state } => self.connection = Some(state),
            AppEvent::User { user } => {
                if user.is_none() {
                    self.page = Page::Home;
                }
                self.user = user;
            }
            AppEvent::Server { server } => self.server = Some(server),
            AppEvent::Call { call } => {
                match (&self.call, call) {
                    // A newer call replaces an ended one; an event for an older call never
                    // replaces a newer one.
                    (_, Some(new)) if self.is_dismissed(&new) => {}
                    (_, Some(new)) => self.call = Some(new),
                    (Some(old), None) if old.phase == CallPhase::Ended => {}
                    (_, None) => self.call = None,
                }
            }
            AppEvent::Incoming { .. } | AppEvent::RemoteSignal { .. } => {}
            AppEvent::KickedOffline { message, .. } => self.notice = Some(message),
            AppEvent::MissedCalls { calls } => {
                if !calls.is_empty() {
                    let who: Vec<String> = calls.iter().map(|c| c.caller.to_string()).collect();
                    self.notice = Some(format!(
                        "While you were away you missed {} call{} from {}.",
                        calls.len(),
                        if calls.len() == 1 { "" } else { "s" },
                        who.join(", ")
                    ));
                }
            }
            AppEvent::History { entries } => self.history = entries,
            AppEvent::Error { error } => self.error = Some(error),
            // Routed to the native media session by the media controller, not UI state.
            AppEvent::NativeMedia { .. } => {}
            // The server-issued STUN / TURN servers: the media controller keeps them.
            AppEvent::IceServers { .. } => {}
        }
    }
}

impl Reducible for UiState {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut next = (*self).clone();
        next.reduce_mut(action);
        Rc::new(next)
    }
}

/// `m:ss` (or `h:mm:ss`) for a call timer.
pub fn format_duration(ms: u64) -> String {
    let s = ms / 1000;
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tincan_ipc::{CallEndInfo, CallType, Direction, ErrorCode};
    use tincan_proto::CallId;

    fn signed_in() -> UiState {
        let mut s = UiState::default();
        s.reduce_mut(Action::State(AppState {
            profile: "default".into(),
            server: ServerInfo::Embedded {
                url: "ws://127.0.0.1:7480/ws".into(),
                hosting: true,
            },
            connection: ConnectionState::Online,
            user: Some(UserId::new("alice").unwrap()),
            call: None,
            saved: SavedCredentials::default(),
        }));
        s
    }

    fn call(phase: CallPhase, direction: Direction) -> CallView {
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
    fn loading_then_sign_in_then_home() {
        let mut s = UiState::default();
        assert_eq!(s.screen(), Screen::Loading);
        let mut st = signed_in();
        assert_eq!(st.screen(), Screen::Home);
        st.reduce_mut(Action::Event(AppEvent::User { user: None }));
        assert_eq!(st.screen(), Screen::SignIn);
        s.loaded = true;
        assert_eq!(s.screen(), Screen::SignIn);
    }

    #[test]
    fn outgoing_call_rings_and_is_declined_until_dismissed() {
        let mut s = signed_in();
        s.reduce_mut(Action::Busy);
        s.reduce_mut(Action::CallStarted(call(
            CallPhase::Dialing,
            Direction::Outgoing,
        )));
        assert!(!s.busy);
        assert_eq!(s.screen(), Screen::Outgoing);
        s.reduce_mut(Action::Event(AppEvent::Call {
            call: Some(call(CallPhase::Ringing, Direction::Outgoing)),
        }));
        assert_eq!(s.screen(), Screen::Outgoing);
        let mut ended = call(CallPhase::Ended, Direction::Outgoing);
        ended.ended = Some(CallEndInfo {
            reason: Some(EndReason::Rejected),
            message: "The call was declined.".into(),
        });
        s.reduce_mut(Action::Event(AppEvent::Call { call: Some(ended) }));
        assert_eq!(s.screen(), Screen::CallEnded);
        // A later get_state without the call does not hide the outcome.
        let mut again = signed_in();
        again.call = s.call.clone();
        assert_eq!(again.screen(), Screen::CallEnded);
        let ended = s.call.clone();
        s.reduce_mut(Action::DismissCall);
        assert_eq!(s.screen(), Screen::Home);
        // The backend still reports the ended call (e.g. in the answer to save_settings): it
        // stays dismissed, whether it comes as a state or as an event.
        s.reduce_mut(Action::State(AppState {
            profile: "default".into(),
            server: ServerInfo::Embedded {
                url: "ws://127.0.0.1:7480/ws".into(),
                hosting: true,
            },
            connection: ConnectionState::Online,
            user: Some(UserId::new("alice").unwrap()),
            call: ended.clone(),
            saved: SavedCredentials::default(),
        }));
        assert_eq!(s.screen(), Screen::Home);
        s.reduce_mut(Action::Event(AppEvent::Call { call: ended }));
        assert_eq!(s.screen(), Screen::Home);
        // A new call still shows.
        let mut next = call(CallPhase::Incoming, Direction::Incoming);
        next.call_id = CallId::new("c2").unwrap();
        s.reduce_mut(Action::Event(AppEvent::Call { call: Some(next) }));
        assert_eq!(s.screen(), Screen::Incoming);
    }

    #[test]
    fn late_start_result_does_not_undo_ringing() {
        let mut s = signed_in();
        s.reduce_mut(Action::Event(AppEvent::Call {
            call: Some(call(CallPhase::Ringing, Direction::Outgoing)),
        }));
        s.reduce_mut(Action::CallStarted(call(
            CallPhase::Dialing,
            Direction::Outgoing,
        )));
        assert_eq!(s.call.as_ref().unwrap().phase, CallPhase::Ringing);
    }

    #[test]
    fn incoming_then_connected() {
        let mut s = signed_in();
        s.reduce_mut(Action::Event(AppEvent::Call {
            call: Some(call(CallPhase::Incoming, Direction::Incoming)),
        }));
        assert_eq!(s.screen(), Screen::Incoming);
        s.reduce_mut(Action::Event(AppEvent::Call {
            call: Some(call(CallPhase::Connected, Direction::Incoming)),
        }));
        assert_eq!(s.screen(), Screen::InCall);
    }

    #[test]
    fn errors_show_and_dismiss() {
        let mut s = signed_in();
        s.reduce_mut(Action::Busy);
        s.reduce_mut(Action::Failed(IpcError::new(ErrorCode::CallSelf, "no")));
        assert!(!s.busy);
        assert_eq!(s.error.as_ref().unwrap().code, ErrorCode::CallSelf);
        s.reduce_mut(Action::DismissError);
        assert!(s.error.is_none());
    }

    #[test]
    fn esc_with_unsaved_settings_asks_then_discards_with_a_notice() {
        let mut s = signed_in();
        s.reduce_mut(Action::ShowPage(Page::Settings));
        // Nothing edited: Esc leaves at once, silently.
        s.reduce_mut(Action::EscapeSettings);
        assert_eq!(s.screen(), Screen::Home);
        assert_eq!(s.notice, None);
        s.reduce_mut(Action::ShowPage(Page::Settings));
        s.reduce_mut(Action::SettingsDirty(true));
        s.reduce_mut(Action::EscapeSettings);
        assert_eq!(s.screen(), Screen::Settings, "the first Esc only asks");
        assert_eq!(s.notice.as_deref(), Some(UNSAVED));
        s.reduce_mut(Action::EscapeSettings);
        assert_eq!(s.screen(), Screen::Home);
        assert_eq!(s.notice.as_deref(), Some(DISCARDED));
        // Back with edits says so too; editing back to the saved values makes it silent again.
        s.reduce_mut(Action::ShowPage(Page::Settings));
        s.reduce_mut(Action::SettingsDirty(true));
        s.reduce_mut(Action::LeaveSettings);
        assert_eq!(s.notice.as_deref(), Some(DISCARDED));
        s.reduce_mut(Action::ShowPage(Page::Settings));
        s.reduce_mut(Action::SettingsDirty(true));
        s.reduce_mut(Action::SettingsDirty(false));
        s.reduce_mut(Action::EscapeSettings);
        assert_eq!((s.screen(), s.notice.clone()), (Screen::Home, None));
    }

    #[test]
    fn editing_the_callee_clears_a_stale_call_error_only() {
        let mut s = signed_in();
        s.reduce_mut(Action::Failed(IpcError::new(ErrorCode::CallSelf, "no")));
        s.reduce_mut(Action::CalleeEdited);
        assert!(s.error.is_none());
        s.reduce_mut(Action::Failed(IpcError::new(ErrorCode::Storage, "disk")));
        s.reduce_mut(Action::CalleeEdited);
        assert!(s.error.is_some(), "an error about something else stays");
    }

    #[test]
    fn a_startup_answer_ends_the_busy_command() {
        let mut s = signed_in();
        s.reduce_mut(Action::Busy);
        s.reduce_mut(Action::Startup(Startup {
            sign_in_automatically: true,
            start_at_login: false,
            start_at_login_asked: true,
        }));
        assert!(
            !s.busy,
            "Call and Sign out stay disabled after answering the start-at-login question"
        );
    }

    #[test]
    fn settings_page_and_titles() {
        let mut s = signed_in();
        s.reduce_mut(Action::ShowPage(Page::Settings));
        assert_eq!(s.screen(), Screen::Settings);
        assert_eq!(ended_title(Some(EndReason::Rejected)), "Declined");
        assert_eq!(format_duration(65_000), "1:05");
        assert_eq!(format_duration(3_725_000), "1:02:05");
    }
}
