#!/usr/bin/env python3
"""The tray and the incoming-call notification as a real Linux desktop sees them (issue 16).

This test is the desktop's side of both D-Bus protocols, on the session bus it runs on (its own
`dbus-run-session`, from scripts/test-desktop.sh):
  - an `org.kde.StatusNotifierWatcher` with a registered StatusNotifierHost (what KDE, XFCE and
    GNOME's AppIndicator extension run), which reads each item's properties and its
    `com.canonical.dbusmenu` menu and clicks its items;
  - an `org.freedesktop.Notifications` server (what GNOME Shell, KDE, dunst run), which records
    `Notify` / `CloseNotification` and invokes a notification's actions (ActionInvoked).
The app is the real production binary under Xvfb, with a real tincan-server on loopback; the callers
are plain WebSocket clients of that server. Alice's window is driven through WebDriver only to sign
in; a second profile runs beside it. Every point of issue 16 is one `check(...)`.

Needs: dbus-next and python-xlib (target/e2e-venv, installed by scripts/test-desktop.sh), DISPLAY.
"""

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import e2e_desktop as e  # noqa: E402  (helpers: server, peers, WebDriver launch)

from dbus_next import Message, MessageType, Variant  # noqa: E402
from dbus_next.aio import MessageBus  # noqa: E402
from dbus_next.constants import PropertyAccess  # noqa: E402
from dbus_next.service import ServiceInterface, dbus_property, method, signal  # noqa: E402
from Xlib import X  # noqa: E402
from Xlib import display as xdisplay  # noqa: E402

LOG = e.SHOTS.parent
CHECKS = []


def log(msg):
    print(f"[tray {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def check(point, ok, detail=""):
    """One assertion per point of issue 16, listed at the end."""
    CHECKS.append(point)
    if not ok:
        raise AssertionError(f"FAILED: {point}: {detail}")
    log(f"ok: {point}")


def wait(what, cond, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# ---- the desktop's D-Bus side ------------------------------------------------------------------

class Watcher(ServiceInterface):
    """org.kde.StatusNotifierWatcher, with this test as its one registered host."""

    def __init__(self):
        super().__init__("org.kde.StatusNotifierWatcher")
        self.items = []  # (sender, service string as registered)

    @method()
    def RegisterStatusNotifierItem(self, service: "s"):  # noqa: F821
        # The sender is not passed to dbus-next methods; the bus tells us with NameOwner below.
        self.items.append(service)
        self.StatusNotifierItemRegistered(service)

    @method()
    def RegisterStatusNotifierHost(self, service: "s"):  # noqa: F821
        pass

    @dbus_property(access=PropertyAccess.READ)
    def RegisteredStatusNotifierItems(self) -> "as":  # noqa: F821
        return list(self.items)

    @dbus_property(access=PropertyAccess.READ)
    def IsStatusNotifierHostRegistered(self) -> "b":  # noqa: F821
        return True

    @dbus_property(access=PropertyAccess.READ)
    def ProtocolVersion(self) -> "i":  # noqa: F821
        return 0

    @signal()
    def StatusNotifierItemRegistered(self, service) -> "s":  # noqa: F821
        return service

    @signal()
    def StatusNotifierItemUnregistered(self, service) -> "s":  # noqa: F821
        return service

    @signal()
    def StatusNotifierHostRegistered(self):
        pass


class Notifications(ServiceInterface):
    """org.freedesktop.Notifications: records what apps ask for."""

    def __init__(self):
        super().__init__("org.freedesktop.Notifications")
        self.next_id = 100
        self.notes = {}  # id -> dict
        self.closed = []  # ids the app closed with CloseNotification

    @method()
    def GetCapabilities(self) -> "as":  # noqa: F821
        return ["actions", "body", "persistence"]

    @method()
    def GetServerInformation(self) -> "ssss":  # noqa: F821
        return ["tincan-e2e", "tincan", "1", "1.2"]

    @method()
    def Notify(self, app_name: "s", replaces_id: "u", app_icon: "s", summary: "s",  # noqa: F821
               body: "s", actions: "as", hints: "a{sv}", expire_timeout: "i") -> "u":  # noqa: F821
        nid = replaces_id or self.next_id
        self.next_id += 1
        self.notes[nid] = {
            "app_name": app_name, "summary": summary, "body": body, "actions": list(actions),
            "hints": {k: v.value for k, v in hints.items()}, "expire_timeout": expire_timeout,
            "at": time.time(),
        }
        return nid

    @method()
    def CloseNotification(self, nid: "u"):  # noqa: F821
        self.closed.append(nid)
        self.NotificationClosed(nid, 3)

    @signal()
    def ActionInvoked(self, nid, key) -> "us":  # noqa: F821
        return [nid, key]

    @signal()
    def NotificationClosed(self, nid, reason) -> "uu":  # noqa: F821
        return [nid, reason]


class Desktop:
    """The D-Bus side, on an asyncio loop of its own thread; the test calls it synchronously."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.signals = []  # (sender, path, member)
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.run(self._start())

    def run(self, coro, timeout=20):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self):
        self.bus = await MessageBus().connect()
        self.watcher = Watcher()
        self.notifications = Notifications()
        self.bus.export("/StatusNotifierWatcher", self.watcher)
        self.bus.export("/org/freedesktop/Notifications", self.notifications)
        await self.bus.request_name("org.kde.StatusNotifierWatcher")
        await self.bus.request_name("org.freedesktop.Notifications")
        await self.bus.request_name(f"org.kde.StatusNotifierHost-{os.getpid()}")
        await self._call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                         "AddMatch", "s", ["type='signal',interface='org.kde.StatusNotifierItem'"])

        def on_message(msg):
            if msg.message_type == MessageType.SIGNAL and msg.interface == "org.kde.StatusNotifierItem":
                self.signals.append((msg.sender, msg.path, msg.member))
        self.bus.add_message_handler(on_message)

    async def _call(self, dest, path, iface, member, sig="", body=()):
        reply = await self.bus.call(Message(destination=dest, path=path, interface=iface,
                                            member=member, signature=sig, body=list(body)))
        if reply.message_type == MessageType.ERROR:
            raise RuntimeError(f"{member}: {reply.error_name}: {reply.body}")
        return reply.body

    def call(self, *a):
        return self.run(self._call(*a))

    def owner(self, name):
        return self.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                         "GetNameOwner", "s", [name])[0]

    # items
    def item(self, service):
        """(bus name, object path) of a registered item (a service name or an object path)."""
        if service.startswith("/"):
            raise AssertionError(f"item registered by path only: {service}")
        return service, "/StatusNotifierItem"

    def props(self, service):
        name, path = self.item(service)
        body = self.call(name, path, "org.freedesktop.DBus.Properties", "GetAll", "s",
                         ["org.kde.StatusNotifierItem"])
        return {k: v.value for k, v in body[0].items()}

    def menu(self, service):
        name, _ = self.item(service)
        path = self.props(service)["Menu"]
        self.call(name, path, "com.canonical.dbusmenu", "AboutToShow", "i", [0])
        _rev, layout = self.call(name, path, "com.canonical.dbusmenu", "GetLayout", "iias",
                                 [0, -1, []])
        items = []

        def walk(node):
            nid, props, children = node
            p = {k: v.value for k, v in props.items()}
            if p.get("type") != "separator" and "label" in p:
                items.append({"id": nid, "label": p["label"], "enabled": p.get("enabled", True)})
            for c in children:
                walk(c.value)
        walk(layout)
        return items

    def click(self, service, label):
        name, _ = self.item(service)
        path = self.props(service)["Menu"]
        items = self.menu(service)
        match = [i for i in items if i["label"] == label]
        if not match:
            raise AssertionError(f"no menu item {label!r} in {items}")
        self.call(name, path, "com.canonical.dbusmenu", "Event", "isvu",
                  [match[0]["id"], "clicked", Variant("i", 0), int(time.time())])

    def invoke(self, nid, key):
        async def emit():
            self.notifications.ActionInvoked(nid, key)
        self.run(emit())

    def icon_signals(self, service):
        owner = self.owner(self.item(service)[0])
        return sum(1 for s in self.signals if s[0] == owner and s[2] == "NewIcon")


# ---- the X side: who has the input focus ------------------------------------------------------

class Focus:
    """Without a window manager, a window that raises itself (gtk_window_present) takes the X input
    focus; the test gives it to the root window before each ring and checks it is still there."""

    def __init__(self):
        self.d = xdisplay.Display()
        self.root = self.d.screen().root

    def reset(self):
        self.d.set_input_focus(self.root, X.RevertToPointerRoot, X.CurrentTime)
        self.d.sync()

    def on_root(self):
        f = self.d.get_input_focus().focus
        return f in (X.PointerRoot, X.NONE) or (hasattr(f, "id") and f.id == self.root.id)

    def title(self):
        """The title of the top-level window that has the focus ("" for none)."""
        w = self.d.get_input_focus().focus
        net_name = self.d.intern_atom("_NET_WM_NAME")
        utf8 = self.d.intern_atom("UTF8_STRING")
        while hasattr(w, "query_tree"):
            prop = w.get_full_property(net_name, utf8)
            if prop and prop.value:
                v = prop.value
                return v.decode(errors="replace") if isinstance(v, bytes) else str(v)
            parent = w.query_tree().parent
            if not parent or parent.id == self.root.id:
                break
            w = parent
        return ""

    def window(self, title):
        """The top-level window with this title."""
        net_name = self.d.intern_atom("_NET_WM_NAME")
        utf8 = self.d.intern_atom("UTF8_STRING")
        for w in self.root.query_tree().children:
            prop = w.get_full_property(net_name, utf8)
            if prop and prop.value:
                v = prop.value
                if (v.decode(errors="replace") if isinstance(v, bytes) else str(v)) == title:
                    return w
        return None

    def viewable(self, title):
        w = self.window(title)
        return w is not None and w.get_attributes().map_state == X.IsViewable

    def close(self, title):
        """What a window manager does when the user clicks the window's close button."""
        from Xlib.protocol import event as xevent
        w = self.window(title)
        protocols = self.d.intern_atom("WM_PROTOCOLS")
        delete = self.d.intern_atom("WM_DELETE_WINDOW")
        w.send_event(xevent.ClientMessage(window=w, client_type=protocols,
                                          data=(32, [delete, X.CurrentTime, 0, 0, 0])))
        self.d.sync()

    def describe(self):
        f = self.d.get_input_focus().focus
        if hasattr(f, "id"):
            return f"window 0x{f.id:x} {self.title()!r}"
        return repr(f)


# ---- the test ---------------------------------------------------------------------------------

def fill_sign_in(app, user):
    """The "SDKAppID + secret key" form, each field typed until it holds its value (the view may
    re-render a field while it is typed into)."""
    from selenium.webdriver.support.ui import Select
    app.find("#sign-in-view")
    Select(app.find("#mode")).select_by_value("secret_key")
    for css, value in (("#user-id", user), ("#sdk-app-id", str(e.SDK)), ("#secret-key", e.KEY)):
        for _ in range(5):
            field = app.find(css)
            field.clear()
            field.send_keys(value)
            time.sleep(0.2)
            if app.find(css).get_attribute("value") == value:
                break
        else:
            raise AssertionError(f"{css} does not keep {value!r}")


REAL_HOST = ("status-notifier-watcher", "gtk-sni-tray-standalone", "dunst", "import")


def drawn_by_real_host(desk, focus, url, peers, procs):
    """Screenshots of the tray item, its menu and the ringing notification as real Debian hosts draw
    them (haskell-status-notifier-item-utils' watcher, haskell-gtk-sni-tray-utils' standalone tray,
    dunst; scripts/setup.sh installs them). The test's own watcher and notification server step
    aside; the app's item registers again with the new watcher by itself."""
    import shutil
    missing = [t for t in REAL_HOST if not shutil.which(t)]
    if missing:
        log(f"no screenshots with a real tray host: missing {missing}")
        return
    desk.run(desk.bus.release_name("org.kde.StatusNotifierWatcher"))
    desk.run(desk.bus.release_name("org.freedesktop.Notifications"))
    logf = open(LOG / "tray-hosts.log", "w")
    # This watcher takes its name before it exports its object, so the app's first registration may
    # be refused (UnknownObject); the app registers again by itself (src-tauri/src/sni.rs).
    procs.append(subprocess.Popen(["status-notifier-watcher"], stdout=logf, stderr=logf))
    time.sleep(0.5)
    procs.append(subprocess.Popen(["gtk-sni-tray-standalone", "--top", "--beginning", "--size", "48"], stdout=logf, stderr=logf))
    procs.append(subprocess.Popen(["dunst"], stdout=logf, stderr=logf))

    def registered():
        try:
            v = desk.call("org.kde.StatusNotifierWatcher", "/StatusNotifierWatcher",
                          "org.freedesktop.DBus.Properties", "Get", "ss",
                          ["org.kde.StatusNotifierWatcher", "RegisteredStatusNotifierItems"])[0]
            return [x for x in v.value if "StatusNotifierItem" in x]
        except RuntimeError as err:
            log(f"watcher: {err}")
            return []
    try:
        wait("the app's item registered with the real watcher", registered, timeout=15)
    except AssertionError:
        log(f"watcher owner {desk.owner('org.kde.StatusNotifierWatcher')}, items {registered()}")
        raise
    check("the item registers again with a watcher that starts later", True, registered())
    time.sleep(1.5)

    def shot(name):
        path = e.SHOTS / f"{name}.png"
        subprocess.run(["import", "-window", "root", str(path)], check=True, timeout=30)
        log(f"screenshot {path}")

    peer = e.Peer(url, "hana")
    peers.append(peer)
    call_id = str(uuid.uuid4())
    peer.send({"type": "invite", "call_id": call_id, "callee": "alice", "call_type": "audio",
               "timeout_secs": 60})
    peer.expect("ringing")
    time.sleep(2)
    shot("31-tray-ringing-notification")
    # Right-click the first icon of the tray bar (top left): the host opens the item's dbusmenu.
    from Xlib.ext import xtest
    x, y = 24, 24
    focus.d.screen().root.warp_pointer(x, y)
    focus.d.sync()
    xtest.fake_input(focus.d, X.ButtonPress, 3)
    xtest.fake_input(focus.d, X.ButtonRelease, 3)
    focus.d.sync()
    time.sleep(1.5)
    shot("32-tray-menu-ringing")
    xtest.fake_input(focus.d, X.KeyPress, focus.d.keysym_to_keycode(0xff1b))  # Escape
    xtest.fake_input(focus.d, X.KeyRelease, focus.d.keysym_to_keycode(0xff1b))
    focus.d.sync()
    peer.send({"type": "cancel", "call_id": call_id})
    peer.expect("call_ended")


def main():
    for p in (e.APP, e.SERVER):
        if not p.exists():
            sys.exit(f"missing {p}: build it first (scripts/test-desktop.sh does)")
    e.SHOTS.mkdir(parents=True, exist_ok=True)
    runtime = Path(os.environ["XDG_RUNTIME_DIR"])
    desk = Desktop()
    focus = Focus()
    procs, driver, peers = [], None, []
    try:
        port = e.free_port()
        url = f"ws://127.0.0.1:{port}/ws"
        procs.append(subprocess.Popen(
            [str(e.SERVER), "serve", "--listen", f"127.0.0.1:{port}", "--sdkappid", str(e.SDK),
             "--memory-only"],
            env=dict(os.environ, TINCAN_SECRET_KEY=e.KEY), stdout=subprocess.DEVNULL,
            stderr=open(LOG / "tray-server.log", "w")))
        e.wait_port(port)
        env = dict(os.environ, TINCAN_EMBEDDED_PORT=str(e.free_port()))
        for k in ("TINCAN_IPC_AUDIT", "TINCAN_SECRET_KEY", "TINCAN_SERVER"):
            env.pop(k, None)
        audit = LOG / "tray-ipc-audit.jsonl"
        audit.unlink(missing_ok=True)
        e.seed_settings("tray-a")
        e.seed_settings("tray-b")
        driver, drv = e.launch(["--server", url, "--profile", "tray-a"],
                               dict(env, TINCAN_IPC_AUDIT=str(audit)), "tray-app-a.log")
        procs.append(drv)
        # The second profile: a process of its own, beside the first.
        second = subprocess.Popen([str(e.APP), "--server", url, "--profile", "tray-b"], env=env,
                                  stdout=subprocess.DEVNULL,
                                  stderr=open(LOG / "tray-app-b.log", "w"))
        procs.append(second)
        app = e.App(driver)
        fill_sign_in(app, "alice")
        app.find("#sign-in").click()
        app.find("#home-view")
        app.wait_text("#connection", "Online")
        log("alice signed in (profile tray-a); profile tray-b runs beside it")

        # Both items registered with the watcher; which is which by their Id.
        wait("two tray items", lambda: len(desk.watcher.items) >= 2)
        by_id = {}
        for svc in desk.watcher.items:
            by_id[desk.props(svc)["Id"]] = svc
        a, b = by_id.get("tincan-tray-a"), by_id.get("tincan-tray-b")
        check("each profile has a tray item id of its own",
              a is not None and b is not None and a != b, f"items {by_id}")
        pa, pb = desk.props(a), desk.props(b)
        check("Title names the app and profile",
              pa["Title"] == "tincan — tray-a" and pb["Title"] == "tincan — tray-b",
              f"{pa['Title']!r} {pb['Title']!r}")

        def icon_ok(p):
            pix = p.get("IconPixmap") or []
            named = p.get("IconName") or ""
            return (pix and pix[0][0] > 0 and len(pix[0][2]) == pix[0][0] * pix[0][1] * 4) or \
                (named and Path(named).exists())
        shared = list((runtime / "tray-icon").glob("*.png")) if (runtime / "tray-icon").exists() else []
        check("two profiles keep distinct icons (pixmaps on the bus, no shared icon files)",
              icon_ok(pa) and icon_ok(pb) and not shared, f"files {shared}")

        tip = wait("the signed-in tooltip",
                   lambda: desk.props(a)["ToolTip"] if "signed in as alice" in
                   desk.props(a)["ToolTip"][2].lower() else None)
        check("ToolTip says who is signed in", "signed in as alice" in tip[2].lower(), tip)
        check("Status is Active while nothing rings", desk.props(a)["Status"] == "Active")
        menu = [i["label"] for i in desk.menu(a)]
        check("the tray menu has Show, the status, Accept, Decline and Quit",
              menu[:1] == ["Show tincan"] and "Signed in as alice" in menu and "Decline" in menu
              and "Quit tincan" in menu, menu)
        time.sleep(0.5)
        icons_before = desk.icon_signals(a)

        def ring(caller, timeout_secs=60):
            """`caller` rings alice; returns (peer, call id, notification id, notification)."""
            focus.reset()
            n_before = set(desk.notifications.notes)
            peer = e.Peer(url, caller)
            peers.append(peer)
            call_id = str(uuid.uuid4())
            peer.send({"type": "invite", "call_id": call_id, "callee": "alice",
                       "call_type": "audio", "timeout_secs": timeout_secs})
            peer.expect("ringing")
            nid = wait(f"Notify for {caller}", lambda: next(
                (i for i in desk.notifications.notes if i not in n_before), None))
            note = desk.notifications.notes[nid]
            wait(f"the tray ringing for {caller}", lambda: desk.props(a)["Status"] == "NeedsAttention")
            time.sleep(0.5)  # time enough for a window to raise itself, if it were going to
            return peer, call_id, nid, note

        # Ring 1: accepted from the tray menu.
        peer, call_id, nid, note = ring("bob")
        check("Notify carries the caller's name",
              note["summary"] == "Incoming call" and "bob is calling you" in note["body"], note)
        acts = note["actions"]
        check("Notify has Accept, Decline and a default action",
              "accept" in acts[::2] and "decline" in acts[::2] and "default" in acts[::2], acts)
        check("Notify hints urgency critical (2)", note["hints"].get("urgency") == 2, note["hints"])
        check("Notify hints category call.incoming",
              note["hints"].get("category") == "call.incoming", note["hints"])
        check("the ring notification does not expire by itself (closed when the ring ends)",
              note["expire_timeout"] == 0, note["expire_timeout"])
        p = desk.props(a)
        check("ToolTip says who is calling", "bob is calling" in p["ToolTip"][2], p["ToolTip"])
        check("Status NeedsAttention while ringing", p["Status"] == "NeedsAttention", p["Status"])
        check("the other profile's item does not ring", desk.props(b)["Status"] == "Active")
        check("the ring did not focus the window (notification + tray instead)", focus.on_root(),
              focus.describe())
        menu = {i["label"]: i for i in desk.menu(a)}
        check("the tray offers 'Accept call from bob' while it rings",
              menu.get("Accept call from bob", {}).get("enabled") is True, menu)
        desk.click(a, "Accept call from bob")
        got = peer.expect("accepted")
        check("Accept in the tray menu accepts the call", got["call_id"] == call_id, got)
        wait("CloseNotification after accept", lambda: nid in desk.notifications.closed)
        check("the notification is closed when the call is answered", True)
        wait("the tray back to Active", lambda: desk.props(a)["Status"] == "Active")
        check("Status back to Active after the ring", True)
        try:  # the signals may trail the property read above
            wait("NewIcon signals", lambda: desk.icon_signals(a) - icons_before >= 2, timeout=3)
        except AssertionError:
            pass
        time.sleep(0.5)
        icons_after = desk.icon_signals(a)
        check("the icon is rewritten only when it changes (ring on, ring off)",
              icons_after - icons_before == 2, f"{icons_after - icons_before} NewIcon signals")

        # While alice is in that call, carol calls: the app does not ring (busy), so it shows no
        # notification, no attention, and starts no media session for her; bob's call has one.
        notes_before = set(desk.notifications.notes)
        carol = e.Peer(url, "carol")
        peers.append(carol)
        busy_id = str(uuid.uuid4())
        carol.send({"type": "invite", "call_id": busy_id, "callee": "alice", "call_type": "audio",
                    "timeout_secs": 30})
        got = carol.expect("call_ended")
        time.sleep(1)
        check("a call it will not ring (busy) is turned away", got.get("reason") == "line_busy", got)
        check("no notification and no attention for a call it will not ring",
              set(desk.notifications.notes) == notes_before and desk.props(a)["Status"] == "Active")

        def audited(kind, cid):
            """The app's events of `kind` about call `cid` (the native engine's events of a media
            session carry its call id; a call view is what the UI starts a session for)."""
            hits = []
            for line in audit.read_text().splitlines():
                ev = json.loads(line)
                v = ev.get("value") or {}
                if ev.get("what") != "event" or v.get("kind") != kind:
                    continue
                inner = v.get("event" if kind == "native_media" else "call") or {}
                if inner.get("call_id") == cid:
                    hits.append(v)
            return hits
        wait("the media session of the call alice answered", lambda: audited("native_media", call_id))
        check("no call view and no media session for a caller it will not ring",
              not audited("native_media", busy_id) and not audited("call", busy_id),
              audited("native_media", busy_id)[:2] + audited("call", busy_id)[:2])
        peer.send({"type": "hangup", "call_id": call_id})
        peer.expect("call_ended")
        time.sleep(1)

        # Ring 2: declined through the notification's Decline action.
        peer, call_id, nid, _ = ring("carol")
        check("the ring did not focus the window (second ring)", focus.on_root(), focus.describe())
        desk.invoke(nid, "decline")
        got = peer.expect("call_ended")
        check("the notification's Decline declines the call", got.get("reason") == "rejected", got)
        wait("CloseNotification after decline", lambda: nid in desk.notifications.closed)
        check("the notification is closed when the call is declined", True)
        time.sleep(1)

        # Ring 3: declined from the tray menu.
        peer, call_id, nid, _ = ring("dave")
        desk.click(a, "Decline")
        got = peer.expect("call_ended")
        check("Decline in the tray menu declines the call", got.get("reason") == "rejected", got)
        wait("CloseNotification after a tray decline", lambda: nid in desk.notifications.closed)
        time.sleep(1)

        # Ring 4: accepted through the notification's Accept action.
        peer, call_id, nid, _ = ring("erin")
        desk.invoke(nid, "accept")
        got = peer.expect("accepted")
        check("the notification's Accept accepts the call", got["call_id"] == call_id, got)
        wait("CloseNotification after a notification accept", lambda: nid in desk.notifications.closed)
        peer.send({"type": "hangup", "call_id": call_id})
        peer.expect("call_ended")
        time.sleep(1)

        # Ring 5: the default action shows the call (the window) and the call keeps ringing; then
        # the caller cancels.
        peer, call_id, nid, _ = ring("frank")
        desk.invoke(nid, "default")
        wait("the window shown by the default action", lambda: not focus.on_root(), timeout=10)
        check("the default action shows the call's window", focus.title() == "tincan — tray-a",
              focus.describe())
        app.wait_text("#peer", "frank")
        check("the default action leaves the call ringing",
              nid not in desk.notifications.closed and desk.props(a)["Status"] == "NeedsAttention")
        peer.send({"type": "cancel", "call_id": call_id})
        peer.expect("call_ended")
        wait("CloseNotification after cancel", lambda: nid in desk.notifications.closed)
        check("the notification is closed when the caller cancels", True)
        time.sleep(1)

        # Ring 6: nobody answers; the ring times out.
        peer, call_id, nid, _ = ring("gina", timeout_secs=3)
        got = peer.expect("call_ended")
        wait("CloseNotification after the ring timed out", lambda: nid in desk.notifications.closed,
             timeout=10)
        check("the notification is closed when the ring times out", True, got)

        # Issue 13: launching a profile that is already running shows and focuses its window.
        focus.reset()
        r = subprocess.run([str(e.APP), "--server", url, "--profile", "tray-a"], env=env,
                           timeout=60, capture_output=True, text=True)
        check("launching a running profile again exits 0", r.returncode == 0,
              f"rc {r.returncode}: {r.stderr[-400:]}")
        wait("the window focused by the second launch", lambda: not focus.on_root(), timeout=10)
        check("a second launch shows and focuses the running window",
              focus.title() == "tincan — tray-a", focus.describe())

        check("the two profiles' items are still distinct and both have icons",
              icon_ok(desk.props(a)) and icon_ok(desk.props(b)))

        # With a tray, closing the window hides it and the app keeps running; "Show tincan" brings
        # it back; "Quit tincan" ends the app.
        title_a = "tincan — tray-a"
        check("alice's window is on screen", focus.viewable(title_a))
        focus.close(title_a)
        wait("the window hidden by its close button", lambda: not focus.viewable(title_a), timeout=10)
        time.sleep(0.5)
        check("closing the window hides it to the tray (the item stays)",
              desk.props(a)["Id"] == "tincan-tray-a" and not focus.viewable(title_a))
        # A ring while the window is hidden leaves it hidden: the tray and the notification ring.
        peer, call_id, nid, _ = ring("ivan")
        check("a ring does not show a hidden window", not focus.viewable(title_a))
        peer.send({"type": "cancel", "call_id": call_id})
        peer.expect("call_ended")
        wait("CloseNotification after cancel", lambda: nid in desk.notifications.closed)
        focus.reset()
        desk.click(a, "Show tincan")
        wait("the window back from the tray", lambda: focus.viewable(title_a), timeout=10)
        check("'Show tincan' shows the window again", focus.title() == title_a, focus.describe())
        desk.click(b, "Quit tincan")
        try:
            second.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        check("'Quit tincan' ends the app", second.poll() is not None)
        drawn_by_real_host(desk, focus, url, peers, procs)
        log(f"PASS ({len(CHECKS)} checks)")
    finally:
        for p in peers:
            try:
                p.ws.close()
            except Exception:  # noqa: BLE001 - already gone
                pass
        e.stop(driver, procs)


if __name__ == "__main__":
    main()
