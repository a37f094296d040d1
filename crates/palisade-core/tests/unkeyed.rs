#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! The "request without a key" warning reaches tracing once per layer instance.
//!
//! One test in this binary, under its own scoped subscriber (never a global one), with the
//! callsite interest cache rebuilt after installing it (see tests/event.rs).

use palisade_core::keyed::WarnOnce;
use tracing::Level;

mod support;

#[test]
fn the_unkeyed_warning_is_logged_once_per_instance() {
    let out = support::capture_logs(Level::TRACE, || {
        let first = WarnOnce::new();
        let second = WarnOnce::default();
        for _ in 0..3 {
            first.warn_unkeyed("per-ip");
        }
        second.warn_unkeyed("per-user");
        second.warn_unkeyed("per-user");
    });
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains("WARN") && lines[0].contains("palisade") && lines[0].contains("name=\"per-ip\""),
        "{out}"
    );
    assert!(lines[0].contains("no key"), "{out}");
    assert!(lines[1].contains("name=\"per-user\""), "{out}");
}
