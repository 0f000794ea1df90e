//! This window's view of its one call: the pure state machine lives in `tincan_ipc::call_view`, shared
//! with the browser client, so the desktop and the browser follow one set of rules.

pub use tincan_ipc::call_view::*;
