//! A deterministic driver for [`ClientSession`]: scripted server frames and times, no sockets, no
//! sleeping. It plays the desktop or browser driver's part exactly (outputs drained after every
//! input, timeouts run at their deadlines) and records everything the machine asked for.

#![allow(dead_code)]

use tincan_ipc::session::{
    ClientSession, Command, CommandId, Config, LoginPlan, Millis, Output, PlanError, Reply,
};
use tincan_ipc::{AppEvent, CallPhase, CallView, ConnectionState, IpcError};
use tincan_proto::{
    CallId, CallType, ClientMessage, CloseReason, DeviceId, EndReason, MediaSignal, ServerMessage,
    SigToken, UserId, PROTOCOL_VERSION,
};

pub const URL: &str = "ws://127.0.0.1:7480/ws";

pub fn user(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

pub fn call_id(s: &str) -> CallId {
    CallId::new(s).unwrap()
}

pub fn login_frame(me: &str, sdk_app_id: u64, sig: &str) -> ClientMessage {
    ClientMessage::Login {
        version: PROTOCOL_VERSION,
        sdk_app_id,
        user_id: user(me),
        user_sig: SigToken(sig.to_owned()),
        device_id: DeviceId::new("test-device").unwrap(),
    }
}

pub fn plan(me: &str) -> LoginPlan {
    LoginPlan {
        url: URL.into(),
        login: login_frame(me, 1_400_000_001, "sig"),
    }
}

pub fn login_ok(me: &str) -> ServerMessage {
    ServerMessage::LoginOk {
        user_id: user(me),
        device_id: DeviceId::new("test-device").unwrap(),
        server_time_ms: 0,
        heartbeat_secs: 25,
        max_frame_bytes: 65_536,
        max_ring_secs: 120,
        ice_servers: Vec::new(),
        ice_servers_expire_at: None,
    }
}

pub fn ended(
    id: &str,
    reason: EndReason,
    by: Option<&str>,
    duration_ms: Option<u64>,
) -> ServerMessage {
    ServerMessage::CallEnded {
        call_id: call_id(id),
        reason,
        by: by.map(user),
        duration_ms,
    }
}

pub fn invited(id: &str, caller: &str) -> ServerMessage {
    ServerMessage::Invited {
        call_id: call_id(id),
        caller: user(caller),
        call_type: CallType::Audio,
        timeout_secs: 30,
    }
}

pub fn offer(sdp: &str) -> MediaSignal {
    MediaSignal::Offer {
        sdp: sdp.into(),
        ice_restart: false,
    }
}

/// One input and what came out of it.
pub struct H {
    pub s: ClientSession,
    pub now: Millis,
    next_id: CommandId,
    /// Outputs not yet looked at by the test.
    pub fresh: Vec<Output>,
    /// Everything, for invariant checks.
    pub all: Vec<Output>,
    /// Answer every `ping` with a `pong` at once, as a live server does (off: a connection that died
    /// silently).
    pub auto_pong: bool,
}

impl H {
    pub fn new() -> H {
        H::with(Config::default())
    }

    pub fn with(cfg: Config) -> H {
        H {
            s: ClientSession::new(cfg),
            now: 1_000_000,
            next_id: 1,
            fresh: Vec::new(),
            all: Vec::new(),
            auto_pong: true,
        }
    }

    fn drain(&mut self) {
        while let Some(o) = self.s.poll_output() {
            self.fresh.push(o.clone());
            self.all.push(o);
        }
    }

    pub fn cmd(&mut self, c: Command) -> CommandId {
        let id = self.next_id;
        self.next_id += 1;
        self.s.handle_command(self.now, id, c);
        self.drain();
        id
    }

    pub fn frame(&mut self, m: ServerMessage) {
        self.s.handle_frame(self.now, m);
        self.drain();
    }

    pub fn plan(&mut self, p: Result<LoginPlan, PlanError>) {
        self.s.handle_login_plan(self.now, p);
        self.drain();
    }

    pub fn connected(&mut self) {
        self.s.handle_connected(self.now);
        self.drain();
    }

    pub fn connect_failed(&mut self, e: IpcError, fatal: bool) {
        self.s.handle_connect_failed(self.now, e, fatal);
        self.drain();
    }

    pub fn disconnected(&mut self, close: Option<CloseReason>) {
        self.s
            .handle_disconnected(self.now, close, "connection reset");
        self.drain();
    }

    /// Lets `ms` pass, running every deadline on the way at its own time.
    pub fn advance(&mut self, ms: u64) {
        let target = self.now + ms;
        while let Some(t) = self.s.poll_timeout().filter(|t| *t <= target) {
            self.now = self.now.max(t);
            let before = self.fresh.len();
            self.s.handle_timeout(self.now);
            self.drain();
            let pinged = self.fresh[before..]
                .iter()
                .any(|o| matches!(o, Output::Send(ClientMessage::Ping { .. })));
            if pinged && self.auto_pong && self.s.is_online() {
                self.s
                    .handle_frame(self.now, ServerMessage::Pong { nonce: None });
                self.drain();
            }
        }
        self.now = target;
    }

    /// Takes the outputs since the last look.
    pub fn take(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.fresh)
    }

    /// The events among the fresh outputs (the rest is dropped).
    pub fn events(&mut self) -> Vec<AppEvent> {
        self.take()
            .into_iter()
            .filter_map(|o| match o {
                Output::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    /// The frames among the fresh outputs (the rest is kept).
    pub fn sent(&mut self) -> Vec<ClientMessage> {
        let (sent, rest): (Vec<_>, Vec<_>) = self
            .take()
            .into_iter()
            .partition(|o| matches!(o, Output::Send(_)));
        self.fresh = rest;
        sent.into_iter()
            .map(|o| match o {
                Output::Send(m) => m,
                _ => unreachable!(),
            })
            .collect()
    }

    pub fn reply(&self, id: CommandId) -> Option<Result<Reply, IpcError>> {
        self.all.iter().find_map(|o| match o {
            Output::Reply { id: i, result } if *i == id => Some(result.clone()),
            _ => None,
        })
    }

    pub fn ok(&self, id: CommandId) -> Reply {
        match self.reply(id) {
            Some(Ok(r)) => r,
            other => panic!("command {id}: expected success, got {other:?}"),
        }
    }

    pub fn err(&self, id: CommandId) -> IpcError {
        match self.reply(id) {
            Some(Err(e)) => e,
            other => panic!("command {id}: expected an error, got {other:?}"),
        }
    }

    /// Sign-in from the form through `login_ok`, checking each step the driver sees.
    pub fn sign_in(&mut self, me: &str) -> CommandId {
        let id = self.cmd(Command::SignIn);
        assert!(self.take().contains(&Output::PlanLogin));
        self.plan(Ok(plan(me)));
        assert_eq!(self.take(), vec![Output::Connect { url: URL.into() }]);
        self.connected();
        assert!(matches!(self.sent()[..], [ClientMessage::Login { .. }]));
        self.frame(login_ok(me));
        assert_eq!(self.ok(id), Reply::SignedIn(user(me)));
        self.take();
        id
    }

    pub fn start_call(&mut self, id: &str, callee: &str) -> CommandId {
        self.cmd(Command::StartCall {
            call_id: call_id(id),
            callee: user(callee),
            call_type: CallType::Audio,
            timeout_secs: 30,
        })
    }

    pub fn call(&self) -> Option<CallView> {
        self.s.snapshot().call
    }

    pub fn phase(&self) -> Option<CallPhase> {
        self.call().map(|c| c.phase)
    }

    pub fn connection(&self) -> ConnectionState {
        self.s.snapshot().connection
    }
}
