//! The task around [`ClientSession`]: it waits on whichever comes first — a command, the login
//! plan being made, the connect under way, a frame, or the machine's next deadline — feeds it to
//! the machine, and carries out the outputs in order. It decides nothing itself.

use super::{lock_snapshot as lock, now_ms, BoxFuture, Connector, EventSink, LoginPlan, ReplyTx};
use crate::transport::{self, TlsOptions, Ws};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tincan_ipc::session::{self as machine, ClientSession, Command, Output, PlanError, Snapshot};
use tincan_ipc::AppEvent;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

type Connect = BoxFuture<'static, Result<Box<Ws>, transport::ConnectError>>;

/// The connection, or what is under way toward one.
pub(super) enum Conn {
    Idle,
    Planning(BoxFuture<'static, Result<LoginPlan, PlanError>>),
    Connecting(String, Connect),
    Open(Box<Ws>),
}

enum Wake {
    Command(Option<(Command, ReplyTx)>),
    Planned(Result<LoginPlan, PlanError>),
    Connected(String, Result<Box<Ws>, transport::ConnectError>),
    Frame(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Timer,
}

/// Waits on whatever the connection is doing (never, when idle).
async fn next_io(conn: &mut Conn) -> Wake {
    match conn {
        Conn::Idle => std::future::pending().await,
        Conn::Planning(f) => Wake::Planned(f.await),
        Conn::Connecting(url, f) => Wake::Connected(url.clone(), f.await),
        Conn::Open(ws) => Wake::Frame(ws.next().await),
    }
}

pub(super) struct Driver {
    pub(super) session: ClientSession,
    pub(super) connector: Arc<dyn Connector>,
    pub(super) sink: EventSink,
    pub(super) snapshot: Arc<Mutex<Snapshot>>,
    pub(super) replies: HashMap<u64, ReplyTx>,
    pub(super) next_id: u64,
    pub(super) conn: Conn,
    /// From the last plan, for its connect.
    pub(super) tls: TlsOptions,
    /// This task's generation in [`super::IssuedIce`].
    pub(super) ice_generation: u64,
}

impl Drop for Driver {
    /// The task stopped (signed out, aborted): the servers it was issued go with it.
    fn drop(&mut self) {
        super::IssuedIce::global().clear(self.ice_generation);
    }
}

impl Driver {
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<(Command, ReplyTx)>) {
        loop {
            self.pump().await;
            let sleep = self
                .session
                .poll_timeout()
                .map(|t| t.saturating_sub(now_ms()));
            let wake = tokio::select! {
                cmd = rx.recv() => Wake::Command(cmd),
                io = next_io(&mut self.conn) => io,
                _ = tokio::time::sleep(Duration::from_millis(sleep.unwrap_or(0))),
                    if sleep.is_some() => Wake::Timer,
            };
            let now = now_ms();
            match wake {
                Wake::Command(None) => return,
                Wake::Command(Some((cmd, reply))) => {
                    self.next_id += 1;
                    self.replies.insert(self.next_id, reply);
                    self.session.handle_command(now, self.next_id, cmd);
                }
                Wake::Planned(plan) => {
                    self.conn = Conn::Idle;
                    let plan = plan.map(|p| {
                        self.tls = p.tls;
                        machine::LoginPlan {
                            url: p.url,
                            login: p.login,
                        }
                    });
                    self.session.handle_login_plan(now, plan);
                }
                Wake::Connected(url, result) => match result {
                    Ok(ws) => {
                        self.conn = Conn::Open(ws);
                        self.session.handle_connected(now);
                    }
                    Err(e) => {
                        self.conn = Conn::Idle;
                        self.session
                            .handle_connect_failed(now, e.to_ipc(&url), e.is_fatal());
                    }
                },
                Wake::Frame(Some(Ok(Message::Text(t)))) => {
                    if let Err(e) = self.session.handle_text(now, t.as_str()) {
                        tracing::warn!(%e, "undecodable frame from the server");
                    }
                }
                Wake::Frame(Some(Ok(Message::Close(c)))) => {
                    let (code, why) = c
                        .map(|c| (Some(u16::from(c.code)), c.reason.to_string()))
                        .unwrap_or((None, String::new()));
                    self.dropped(&format!("closed by the server ({why})"));
                    let reason = machine::close_reason(code, &why);
                    self.session.handle_disconnected(now, reason, &why);
                }
                Wake::Frame(Some(Ok(_))) => {}
                Wake::Frame(Some(Err(e))) => self.lost(&e.to_string()),
                Wake::Frame(None) => self.lost("connection closed"),
                Wake::Timer => self.session.handle_timeout(now),
            }
        }
    }

    fn dropped(&mut self, why: &str) {
        if self.session.is_online() {
            tracing::warn!(%why, "signaling connection dropped");
        }
        self.conn = Conn::Idle;
    }

    fn lost(&mut self, why: &str) {
        self.dropped(why);
        self.session.handle_disconnected(now_ms(), None, why);
    }

    /// Carries out everything the machine asked for, in order.
    async fn pump(&mut self) {
        while let Some(out) = self.session.poll_output() {
            match out {
                Output::PlanLogin => {
                    let c = self.connector.clone();
                    self.conn = Conn::Planning(Box::pin(async move { c.plan().await }));
                }
                Output::Connect { url } => {
                    let (u, tls) = (url.clone(), self.tls.clone());
                    let connect = async move { transport::connect(&u, &tls).await.map(Box::new) };
                    self.conn = Conn::Connecting(url, Box::pin(connect));
                }
                Output::Send(frame) => {
                    if let Conn::Open(ws) = &mut self.conn {
                        if let Err(e) = ws.send(Message::text(frame.encode())).await {
                            self.lost(&e.to_string());
                        }
                    }
                }
                Output::Close => {
                    if let Conn::Open(mut ws) = std::mem::replace(&mut self.conn, Conn::Idle) {
                        let close = Ws::close(&mut ws, None);
                        let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
                    }
                }
                Output::Event(ev) => {
                    // State first, then the event: whoever reacts to it reads the new state.
                    *lock(&self.snapshot) = self.session.snapshot();
                    if let AppEvent::IceServers {
                        ice_servers,
                        expires_at,
                    } = &ev
                    {
                        super::IssuedIce::global().set(
                            self.ice_generation,
                            ice_servers.clone(),
                            *expires_at,
                        );
                    }
                    (self.sink)(ev);
                }
                Output::Reply { id, result } => {
                    *lock(&self.snapshot) = self.session.snapshot();
                    if let Some(tx) = self.replies.remove(&id) {
                        let _ = tx.send(result);
                    }
                }
            }
        }
        *lock(&self.snapshot) = self.session.snapshot();
    }
}
