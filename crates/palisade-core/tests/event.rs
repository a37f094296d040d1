#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Events reach listeners (from the start and added later) and tracing.

use std::io::Write;
use std::sync::{Arc, Mutex};

use palisade_core::event::{Event, EventBus, Listener};
use palisade_core::metric::{Counter, Gauge, Histogram};
use tracing::Level;

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Opened { failures: u32 },
    Rejected,
}

impl Event for Ev {
    fn kind(&self) -> &'static str {
        match self {
            Ev::Opened { .. } => "opened",
            Ev::Rejected => "rejected",
        }
    }

    fn level(&self) -> Level {
        match self {
            Ev::Opened { .. } => Level::WARN,
            Ev::Rejected => Level::DEBUG,
        }
    }
}

#[test]
fn listeners_receive_every_event_in_order() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s1 = seen.clone();
    let first: Listener<Ev> = Arc::new(move |e: &Ev| s1.lock().unwrap().push(("builder", e.clone())));
    let bus = EventBus::with_listeners("circuit_breaker", "db", vec![first]);
    bus.publish(Ev::Opened { failures: 5 });
    let s2 = seen.clone();
    bus.subscribe(move |e: &Ev| s2.lock().unwrap().push(("handle", e.clone())));
    bus.publish(Ev::Rejected);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![("builder", Ev::Opened { failures: 5 }), ("builder", Ev::Rejected), ("handle", Ev::Rejected),]
    );
    assert_eq!(bus.name().as_ref(), "db");
    assert_eq!(bus.pattern(), "circuit_breaker");
}

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
fn events_reach_tracing_with_structured_fields() {
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let bus: EventBus<Ev> = EventBus::new("circuit_breaker", "payments");
        assert!(bus.is_observed());
        bus.publish(Ev::Opened { failures: 3 });
        bus.publish(Ev::Rejected);
    });
    let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].contains("WARN"), "{out}");
    assert!(lines[0].contains("pattern=\"circuit_breaker\""), "{out}");
    assert!(lines[0].contains("name=payments"), "{out}");
    assert!(lines[0].contains("event=\"opened\""), "{out}");
    assert!(lines[0].contains("failures: 3"), "{out}");
    assert!(lines[1].contains("DEBUG") && lines[1].contains("event=\"rejected\""), "{out}");
}

#[test]
fn no_listener_no_subscriber_is_unobserved() {
    let bus: EventBus<Ev> = EventBus::new("retry", "x");
    assert!(!bus.is_observed());
    bus.publish(Ev::Rejected);
}

#[test]
fn counters_gauges_histograms() {
    let c = Counter::new("palisade_test_calls_total", "t");
    c.increment();
    c.add(4);
    assert_eq!(c.get(), 5);
    let g = Gauge::new("palisade_test_in_flight", "t");
    assert_eq!(g.add(3), 3);
    assert_eq!(g.add(-1), 2);
    g.set(7);
    assert_eq!(g.get(), 7);
    let h = Histogram::new("palisade_test_latency_seconds", "t");
    assert_eq!(h.mean(), std::time::Duration::ZERO);
    h.record(std::time::Duration::from_millis(10));
    h.record(std::time::Duration::from_millis(30));
    assert_eq!(h.count(), 2);
    assert_eq!(h.mean(), std::time::Duration::from_millis(20));
    assert_eq!(h.max(), std::time::Duration::from_millis(30));
}
