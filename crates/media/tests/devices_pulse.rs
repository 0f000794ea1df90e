//! The device list and the hot-plug watch against a real PulseAudio (Debian's `pulseaudio`), started
//! here as this user on a socket in a temp dir of its own, with virtual devices: a null sink (a
//! speaker), a sine source (a microphone). Loading another null sink / sine source with `pactl` is
//! what plugging in a headset looks like to the app.
//!
//! The whole process talks to that server (`PULSE_SERVER`), so these tests are one test function.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tincan_media::{list_devices, watch_devices, AudioDevice, DeviceKind};

/// A PulseAudio daemon of this test's own; killed and its directory removed on drop.
struct Pulse {
    child: Child,
    dir: PathBuf,
    server: String,
}

impl Pulse {
    /// `None` (the test says why) where Debian's `pulseaudio` is not installed.
    fn start() -> Option<Pulse> {
        if Command::new("pulseaudio")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            eprintln!("SKIP: no `pulseaudio` (apt-get install pulseaudio pulseaudio-utils; scripts/setup.sh does)");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("tincan-pulse-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("run")).unwrap();
        let sock = dir.join("pulse.sock");
        let child = Command::new("pulseaudio")
            .args([
                "-n",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--use-pid-file=no",
                "--realtime=no",
                "--high-priority=no",
                "--log-target=stderr",
                "-L",
                &format!(
                    "module-native-protocol-unix socket={} auth-anonymous=1",
                    sock.display()
                ),
                "-L",
                "module-null-sink sink_name=spk1 sink_properties=device.description=Speaker-One",
                "-L",
                "module-sine-source source_name=mic1 frequency=660",
            ])
            .env("HOME", &dir)
            .env("XDG_RUNTIME_DIR", dir.join("run"))
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pulseaudio starts");
        let server = format!("unix:{}", sock.display());
        let p = Pulse { child, dir, server };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !p.pactl(&["info"]) {
            assert!(Instant::now() < deadline, "pulseaudio did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(p)
    }

    fn pactl(&self, args: &[&str]) -> bool {
        Command::new("pactl")
            .args(args)
            .env("PULSE_SERVER", &self.server)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(self.dir());
    }
}

fn has(list: &[AudioDevice], id: &str, kind: DeviceKind) -> bool {
    list.iter().any(|d| d.id == id && d.kind == kind)
}

#[test]
fn pulse_devices_are_listed_and_hot_plug_is_reported() {
    let Some(pulse) = Pulse::start() else {
        return;
    };
    // Only this process (and its pactl children) talk to this server; set before GStreamer starts.
    std::env::set_var("PULSE_SERVER", &pulse.server);

    let list = list_devices().expect("device list");
    eprintln!("devices: {list:?}");
    assert!(has(&list, "spk1", DeviceKind::Output), "{list:?}");
    assert!(has(&list, "mic1", DeviceKind::Input), "{list:?}");
    let spk = list.iter().find(|d| d.id == "spk1").unwrap();
    assert_eq!(spk.name, "Speaker-One", "the description, for people");
    assert!(
        !list.iter().any(|d| d.id.ends_with(".monitor")),
        "a speaker's monitor is not a microphone: {list:?}"
    );

    let (tx, rx) = mpsc::channel();
    let watch = watch_devices(move |c| {
        let _ = tx.send(c.devices);
    })
    .expect("watch");
    // The watch's monitor takes its first look before the change below.
    std::thread::sleep(Duration::from_millis(500));
    // The app lists devices while the watch runs (the menus ask): a list's own monitor, started and
    // stopped, must not stop the watch's (GStreamer shares one device provider between monitors).
    assert_eq!(list_devices().expect("device list").len(), list.len());

    let plugged = Instant::now();
    assert!(pulse.pactl(&[
        "load-module",
        "module-null-sink",
        "sink_name=spk2",
        "sink_properties=device.description=Headphones-Two",
    ]));
    let next = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("a sink plugged in is reported");
    eprintln!(
        "reported {} ms after the sink was loaded: {next:?}",
        plugged.elapsed().as_millis()
    );
    assert!(has(&next, "spk2", DeviceKind::Output), "{next:?}");
    assert!(has(&next, "spk1", DeviceKind::Output), "{next:?}");
    // What the menus list from now on.
    let listed = list_devices().expect("device list");
    assert!(has(&listed, "spk2", DeviceKind::Output), "{listed:?}");

    assert!(pulse.pactl(&[
        "load-module",
        "module-sine-source",
        "source_name=mic2",
        "frequency=880",
    ]));
    let next = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("a source plugged in is reported");
    assert!(has(&next, "mic2", DeviceKind::Input), "{next:?}");

    // Unplugged: gone from the list.
    assert!(pulse.pactl(&["unload-module", "module-sine-source"]));
    let next = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("a source unplugged is reported");
    assert!(!has(&next, "mic2", DeviceKind::Input), "{next:?}");
    drop(watch);
}
