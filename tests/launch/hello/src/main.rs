//! A Tauri hello-world: the launch-time baseline of scripts/measure-launch.py.
fn main() {
    tauri::Builder::default()
        .run(tauri::generate_context!())
        .expect("the hello-world window");
}
