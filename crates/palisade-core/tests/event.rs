#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Events reach listeners (from the start and added later) and tracing.
//!
//! tracing's callsite interest cache is process-global: a callsite first hit by a thread with
//! no subscriber while no scoped dispatcher exists can cache "never" over a concurrent
//! `with_default` and lose that test's events (issue 15, kind 7). So every test of this binary
//! that publishes runs inside its own `tracing::subscriber::with_default` (a `NoSubscriber`
//! where it wants none), and the test that asserts on tracing output rebuilds the interest
//! cache after installing its subscriber. Never install a global subscriber here.

use std::sync::{Arc, Mutex};

use palisade_core::event::{Event, EventBus, FieldValue, Listener};
use palisade_core::metric::{Counter, Gauge, Histogram};
use tracing::subscriber::{with_default, NoSubscriber};
use tracing::Level;

mod support;

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

    fn fields(&self, record: &mut dyn FnMut(&'static str, FieldValue)) {
        if let Ev::Opened { failures } = self {
            record("failures", (*failures).into());
        }
    }
}

#[test]
fn listeners_receive_every_event_in_order() {
    with_default(NoSubscriber::default(), listeners_in_order);
}

fn listeners_in_order() {
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

#[test]
fn events_reach_tracing_with_structured_fields() {
    let out = support::capture_logs(Level::DEBUG, || {
        let bus: EventBus<Ev> = EventBus::new("circuit_breaker", "payments");
        assert!(bus.is_observed());
        bus.publish(Ev::Opened { failures: 3 });
        bus.publish(Ev::Rejected);
    });
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].contains("WARN"), "{out}");
    assert!(lines[0].contains("pattern=\"circuit_breaker\""), "{out}");
    assert!(lines[0].contains("name=payments"), "{out}");
    assert!(lines[0].contains("event=\"opened\""), "{out}");
    assert!(lines[0].contains("failures: 3"), "{out}");
    assert!(lines[0].contains("failures=3"), "the field of Event::fields: {out}");
    assert!(lines[1].contains("DEBUG") && lines[1].contains("event=\"rejected\""), "{out}");
}

/// A breaker-like transition, reporting the fields (18.4) and two that do not fit.
#[derive(Debug)]
struct Transition {
    from: &'static str,
    to: &'static str,
    failure_rate: f64,
    retry_after: std::time::Duration,
}

impl Event for Transition {
    fn kind(&self) -> &'static str {
        "state_transition"
    }

    fn level(&self) -> Level {
        Level::WARN
    }

    fn fields(&self, record: &mut dyn FnMut(&'static str, FieldValue)) {
        record("from", self.from.into());
        record("to", self.to.into());
        record("reason", "failure_rate".into());
        record("failure_rate", self.failure_rate.into());
        record("retry_after_ms", self.retry_after.into());
        record("key", String::from("tenant-7").into());
        // not a known name, and a known name with a value of the wrong type
        record("window", 10_u64.into());
        record("attempt", "first".into());
    }
}

/// One captured event's fields with their `tracing` types, as a JSON formatter sees them.
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
}

type Captured = Arc<Mutex<Vec<std::collections::BTreeMap<String, Json>>>>;

struct JsonLayer(Captured);

struct Visit<'a>(&'a mut std::collections::BTreeMap<String, Json>);

impl tracing::field::Visit for Visit<'_> {
    fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
        self.0.insert(f.name().to_owned(), Json::Str(v.to_owned()));
    }
    fn record_u64(&mut self, f: &tracing::field::Field, v: u64) {
        self.0.insert(f.name().to_owned(), Json::U64(v));
    }
    fn record_i64(&mut self, f: &tracing::field::Field, v: i64) {
        self.0.insert(f.name().to_owned(), Json::I64(v));
    }
    fn record_f64(&mut self, f: &tracing::field::Field, v: f64) {
        self.0.insert(f.name().to_owned(), Json::F64(v));
    }
    fn record_bool(&mut self, f: &tracing::field::Field, v: bool) {
        self.0.insert(f.name().to_owned(), Json::Bool(v));
    }
    fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
        self.0.insert(f.name().to_owned(), Json::Str(format!("{v:?}")));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for JsonLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = std::collections::BTreeMap::new();
        event.record(&mut Visit(&mut fields));
        self.0.lock().unwrap().push(fields);
    }
}

/// Issue 18.4: events reach tracing as real typed fields a JSON log can be queried by, not
/// only the `details` Debug string (which stays).
#[test]
fn events_reach_tracing_as_typed_fields() {
    use tracing_subscriber::layer::SubscriberExt;

    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry().with(JsonLayer(captured.clone()));
    with_default(subscriber, || {
        tracing::callsite::rebuild_interest_cache();
        let bus: EventBus<Transition> = EventBus::new("circuit_breaker", "payments");
        bus.publish(Transition {
            from: "closed",
            to: "open",
            failure_rate: 0.75,
            retry_after: std::time::Duration::from_millis(1500),
        });
        let ev: EventBus<Ev> = EventBus::new("circuit_breaker", "payments");
        ev.publish(Ev::Rejected);
    });
    let captured = captured.lock().unwrap().clone();
    assert_eq!(captured.len(), 2, "{captured:?}");
    let f = &captured[0];
    let s = |v: &str| Json::Str(v.to_owned());
    assert_eq!(f.get("pattern"), Some(&s("circuit_breaker")), "{f:?}");
    assert_eq!(f.get("event"), Some(&s("state_transition")), "{f:?}");
    assert_eq!(f.get("from"), Some(&s("closed")), "{f:?}");
    assert_eq!(f.get("to"), Some(&s("open")), "{f:?}");
    assert_eq!(f.get("reason"), Some(&s("failure_rate")), "{f:?}");
    assert_eq!(f.get("key"), Some(&s("tenant-7")), "{f:?}");
    assert_eq!(f.get("failure_rate"), Some(&Json::F64(0.75)), "{f:?}");
    assert_eq!(f.get("retry_after_ms"), Some(&Json::U64(1500)), "{f:?}");
    assert_eq!(f.get("extra"), Some(&s("window=10 attempt=first")), "{f:?}");
    assert!(matches!(f.get("details"), Some(Json::Str(d)) if d.contains("failure_rate: 0.75")), "{f:?}");
    // fields the event did not report are absent, not empty
    assert_eq!(f.get("attempt"), None, "{f:?}");
    assert_eq!(f.get("delay_ms"), None, "{f:?}");
    // an event without fields: only the common ones
    let keys: Vec<&str> = captured[1].keys().map(String::as_str).collect();
    assert_eq!(keys, ["details", "event", "name", "pattern"], "{:?}", captured[1]);
}

#[test]
fn no_listener_no_subscriber_is_unobserved() {
    with_default(NoSubscriber::default(), || {
        let bus: EventBus<Ev> = EventBus::new("retry", "x");
        assert!(!bus.is_observed());
        bus.publish(Ev::Rejected);
        bus.subscribe(|_: &Ev| {});
        assert!(bus.is_observed(), "a listener observes");
    });
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

/// The `metrics` export, through a recorder local to this thread
/// (`metrics::with_local_recorder`): no global recorder, so no other test can see or change
/// what this one records.
#[cfg(feature = "metrics")]
#[allow(clippy::float_cmp)] // sums of small integers, exact in f64
mod export {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use metrics::{Counter as MCounter, CounterFn, Gauge as MGauge, GaugeFn, Histogram as MHistogram};
    use metrics::{HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit};
    use palisade_core::metric::{Counter, Gauge, Histogram, StateGauge};

    /// What the cells exported, by `metric{name=…}`.
    #[derive(Default)]
    struct Recorded {
        /// Every sample (a gauge's decrement as a negative number).
        samples: Mutex<BTreeMap<String, Vec<f64>>>,
        /// The exported value of each gauge, as a recorder keeps it (increments add up,
        /// `set` replaces).
        gauges: Mutex<BTreeMap<String, f64>>,
        /// Every describe call: (metric, unit, help).
        descriptions: Mutex<Vec<(String, Option<Unit>, String)>>,
    }

    struct Cell {
        key: String,
        all: Arc<Recorded>,
    }

    impl Cell {
        fn push(&self, v: f64) {
            self.all.samples.lock().unwrap().entry(self.key.clone()).or_default().push(v);
        }
        fn gauge(&self, f: impl FnOnce(f64) -> f64) {
            let mut gauges = self.all.gauges.lock().unwrap();
            let g = gauges.entry(self.key.clone()).or_default();
            *g = f(*g);
        }
    }

    impl CounterFn for Cell {
        fn increment(&self, n: u64) {
            self.push(n as f64);
        }
        fn absolute(&self, n: u64) {
            self.push(n as f64);
        }
    }

    impl GaugeFn for Cell {
        fn increment(&self, v: f64) {
            self.push(v);
            self.gauge(|g| g + v);
        }
        fn decrement(&self, v: f64) {
            self.push(-v);
            self.gauge(|g| g - v);
        }
        fn set(&self, v: f64) {
            self.push(v);
            self.gauge(|_| v);
        }
    }

    impl HistogramFn for Cell {
        fn record(&self, v: f64) {
            self.push(v);
        }
    }

    #[derive(Default)]
    struct LocalRecorder(Arc<Recorded>);

    impl LocalRecorder {
        fn cell(&self, key: &Key) -> Arc<Cell> {
            let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
            Arc::new(Cell { key: format!("{}{{{}}}", key.name(), labels.join(",")), all: self.0.clone() })
        }
        fn samples(&self, key: &str) -> Vec<f64> {
            self.0.samples.lock().unwrap().get(key).cloned().unwrap_or_default()
        }
        fn gauge(&self, key: &str) -> Option<f64> {
            self.0.gauges.lock().unwrap().get(key).copied()
        }
        fn describe(&self, key: &KeyName, unit: Option<Unit>, help: &SharedString) {
            self.0.descriptions.lock().unwrap().push((key.as_str().to_owned(), unit, help.to_string()));
        }
    }

    impl Recorder for LocalRecorder {
        fn describe_counter(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
            self.describe(&key, unit, &help);
        }
        fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
            self.describe(&key, unit, &help);
        }
        fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
            self.describe(&key, unit, &help);
        }
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> MCounter {
            MCounter::from_arc(self.cell(key))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> MGauge {
            MGauge::from_arc(self.cell(key))
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> MHistogram {
            MHistogram::from_arc(self.cell(key))
        }
    }

    #[test]
    fn cells_export_to_the_recorder_installed_when_they_are_built() {
        let recorder = LocalRecorder::default();
        let (c, g, h) = metrics::with_local_recorder(&recorder, || {
            (
                Counter::new("palisade_test_calls_total", "db"),
                Gauge::new("palisade_test_in_flight", "db"),
                Histogram::new("palisade_test_latency_seconds", "db"),
            )
        });
        // Recording happens outside the closure: the handles were bound at construction.
        c.add(3);
        c.increment();
        g.add(2);
        g.add(-1);
        assert_eq!(recorder.gauge("palisade_test_in_flight{name=db}"), Some(1.0));
        g.set(7);
        g.add(1);
        h.record(Duration::from_millis(250));
        assert_eq!(recorder.samples("palisade_test_calls_total{name=db}"), vec![3.0, 1.0]);
        // add exports its delta, set the absolute value
        assert_eq!(recorder.samples("palisade_test_in_flight{name=db}"), vec![2.0, -1.0, 7.0, 1.0]);
        assert_eq!(recorder.gauge("palisade_test_in_flight{name=db}"), Some(8.0));
        assert_eq!(g.get(), 8);
        assert_eq!(recorder.samples("palisade_test_latency_seconds{name=db}"), vec![0.25]);
    }

    /// Issue 18.4: `Gauge::add` used to export `set(new value)` after its `fetch_add`, so two
    /// threads' sets could land in the other order and leave the export stale. Deltas commute:
    /// after any interleaving of adds the exported value is the cell's.
    #[test]
    fn concurrent_gauge_adds_leave_the_export_equal_to_the_cell() {
        let recorder = LocalRecorder::default();
        let g = Arc::new(metrics::with_local_recorder(&recorder, || {
            Gauge::new("palisade_test_in_flight", "race")
        }));
        let threads: Vec<_> = (0..4_i64)
            .map(|t| {
                let g = g.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000_i64 {
                        g.add(1 + (i + t) % 3);
                        g.add(-((i + t) % 3));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(g.get(), 8_000);
        assert_eq!(recorder.gauge("palisade_test_in_flight{name=race}"), Some(8_000.0));
        // Every export was a delta (no absolute value that could land out of order).
        let samples = recorder.samples("palisade_test_in_flight{name=race}");
        assert_eq!(samples.len(), 16_000);
        assert_eq!(samples.iter().sum::<f64>(), 8_000.0);
    }

    #[test]
    fn registering_a_cell_describes_its_metric() {
        let recorder = LocalRecorder::default();
        metrics::with_local_recorder(&recorder, || {
            Counter::new("palisade_bulkhead_waited_total", "db");
            Gauge::with_description("palisade_bulkhead_in_flight", "db", "Calls holding a permit.");
            Histogram::new("palisade_bulkhead_wait_seconds", "db");
            Histogram::with_description(
                "palisade_retry_delay_seconds",
                "db",
                "Backoff slept before a retry.",
            );
        });
        let got = recorder.0.descriptions.lock().unwrap().clone();
        assert_eq!(
            got,
            vec![
                (
                    "palisade_bulkhead_waited_total".to_owned(),
                    None,
                    "Calls that waited for a bulkhead permit.".to_owned()
                ),
                ("palisade_bulkhead_in_flight".to_owned(), None, "Calls holding a permit.".to_owned()),
                (
                    "palisade_bulkhead_wait_seconds".to_owned(),
                    Some(Unit::Seconds),
                    "Time calls waited for a bulkhead permit.".to_owned()
                ),
                (
                    "palisade_retry_delay_seconds".to_owned(),
                    Some(Unit::Seconds),
                    "Backoff slept before a retry.".to_owned()
                ),
            ]
        );
    }

    /// Issue 18.4: a recorder installed after the layers were built still receives their
    /// metrics. The cells are built with no recorder (this binary installs no global one and
    /// this thread has no local one yet); their first update under a recorder registers them,
    /// describes the metric and brings the export up to the cell's value.
    #[test]
    fn a_recorder_installed_after_the_cells_were_built_receives_them() {
        let c = Counter::new("palisade_bulkhead_waited_total", "late");
        let g = Gauge::new("palisade_bulkhead_queued", "late");
        let h = Histogram::new("palisade_bulkhead_wait_seconds", "late");
        c.add(2);
        g.add(3);
        let recorder = LocalRecorder::default();
        metrics::with_local_recorder(&recorder, || {
            c.increment();
            g.add(1);
            h.record(Duration::from_millis(500));
        });
        // Caught up: the counter's absolute value, the gauge's value, then the sample.
        assert_eq!(recorder.samples("palisade_bulkhead_waited_total{name=late}"), vec![3.0]);
        assert_eq!(recorder.gauge("palisade_bulkhead_queued{name=late}"), Some(4.0));
        assert_eq!(recorder.samples("palisade_bulkhead_wait_seconds{name=late}"), vec![0.5]);
        let described: Vec<String> =
            recorder.0.descriptions.lock().unwrap().iter().map(|(name, _, _)| name.clone()).collect();
        assert_eq!(
            described,
            ["palisade_bulkhead_waited_total", "palisade_bulkhead_queued", "palisade_bulkhead_wait_seconds"]
        );
        // Bound from now on: outside the closure the updates still reach that recorder.
        c.increment();
        g.add(-4);
        assert_eq!(recorder.samples("palisade_bulkhead_waited_total{name=late}"), vec![3.0, 1.0]);
        assert_eq!(recorder.gauge("palisade_bulkhead_queued{name=late}"), Some(0.0));
        assert_eq!(c.get(), 4);
    }

    /// A labelled cell is one series of its metric; a state gauge is one series per state,
    /// 1 for the current one and 0 for the others.
    #[test]
    fn labelled_cells_and_state_gauges() {
        let recorder = LocalRecorder::default();
        let (full, timed_out, state) = metrics::with_local_recorder(&recorder, || {
            (
                Counter::labeled("palisade_bulkhead_rejected_total", "db", ("reason", "queue_full")),
                Counter::labeled("palisade_bulkhead_rejected_total", "db", ("reason", "wait_timed_out")),
                StateGauge::new(
                    "palisade_circuit_breaker_state",
                    "db",
                    "state",
                    &["closed", "open", "half_open"],
                    0,
                ),
            )
        });
        full.increment();
        timed_out.add(2);
        state.set(1);
        assert_eq!(
            recorder.samples("palisade_bulkhead_rejected_total{name=db,reason=queue_full}"),
            vec![1.0]
        );
        assert_eq!(
            recorder.samples("palisade_bulkhead_rejected_total{name=db,reason=wait_timed_out}"),
            vec![2.0]
        );
        assert_eq!(recorder.gauge("palisade_circuit_breaker_state{name=db,state=closed}"), Some(0.0));
        assert_eq!(recorder.gauge("palisade_circuit_breaker_state{name=db,state=open}"), Some(1.0));
        assert_eq!(recorder.gauge("palisade_circuit_breaker_state{name=db,state=half_open}"), Some(0.0));
        assert_eq!(state.get(), 1);
        state.set(2);
        assert_eq!(recorder.gauge("palisade_circuit_breaker_state{name=db,state=open}"), Some(0.0));
        assert_eq!(recorder.gauge("palisade_circuit_breaker_state{name=db,state=half_open}"), Some(1.0));
    }
}
