#![allow(clippy::unwrap_used)]
//! Shared test helpers: logs captured from a scoped `tracing` subscriber.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing::Level;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` under a scoped fmt subscriber (never a global one) at `level` and returns what it
/// logged. The callsite interest cache is rebuilt after the subscriber is installed: a
/// callsite cached as "never" by another thread before it existed is recomputed.
pub(crate) fn capture_logs(level: Level, f: impl FnOnce()) -> String {
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        tracing::callsite::rebuild_interest_cache();
        f();
    });
    let out = buf.0.lock().unwrap().clone();
    String::from_utf8(out).unwrap()
}
