fn main() {
    yew::Renderer::<tincan_ui::app::App>::new().render();
}
