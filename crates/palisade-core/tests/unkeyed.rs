#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! The "request without a key" warning reaches tracing once per layer instance.
//!
//! One test in this binary, under its own scoped subscriber (never a global one), with the
//! callsite interest cache rebuilt after installing it (see tests/event.rs).

use std::io::Write;
use std::sync::{Arc, Mutex};

use palisade_core::keyed::WarnOnce;

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

#[test]
fn the_unkeyed_warning_is_logged_once_per_instance() {
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        tracing::callsite::rebuild_interest_cache();
        let first = WarnOnce::new();
        let second = WarnOnce::default();
        for _ in 0..3 {
            first.warn_unkeyed("per-ip");
        }
        second.warn_unkeyed("per-user");
        second.warn_unkeyed("per-user");
    });
    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains("WARN") && lines[0].contains("palisade") && lines[0].contains("name=\"per-ip\""),
        "{out}"
    );
    assert!(lines[0].contains("no key"), "{out}");
    assert!(lines[1].contains("name=\"per-user\""), "{out}");
}
