//! The SMTP server kit every herald listener is built from (submission,
//! bounce intake, test sink), so each protection exists once.
//!
//! - `reply`: [`Reply`] values and their one writer;
//! - `command`: one command line (length limit, control bytes refused);
//! - `dot`: the DATA reader, ending only at `<CRLF>.<CRLF>`;
//! - `session`: the loop with deadlines and shutdown, driving a listener's
//!   own verbs through the [`Verbs`] trait (Stalwart's `Session<T>` model);
//! - `gate`: connection limits, in total and per client address;
//! - `counters`: refusals, for `/metrics`.

pub mod command;
pub mod counters;
pub mod dot;
pub mod gate;
pub mod reply;
pub mod session;

pub use counters::{Counters, Refusal};
pub use gate::{Gate, Pass};
pub use reply::Reply;
pub use session::{End, Rules, Step, Verbs, Wire, serve};

use tokio::sync::watch;

/// Resolves once the shutdown flag is set (or its sender is gone).
pub async fn stopping(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|&stop| stop).await.map(|_| ());
}
