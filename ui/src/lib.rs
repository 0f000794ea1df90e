//! tincan's user interface: Yew views over one typed backend interface ([`backend::Api`]) and a pure
//! state reducer ([`state`]) that is tested natively.

pub mod app;
pub mod backend;
pub mod browser;
pub mod ctx;
pub mod media;
pub mod state;
pub mod views;
