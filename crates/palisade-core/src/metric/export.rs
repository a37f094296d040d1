//! A cell's link to the `metrics` recorder, resolved when a recorder is there to take it.
//!
//! A cell does not keep the handle the recorder gave at build time if that recorder was the
//! no-op one (no recorder installed yet): it asks again at its next update, so a recorder
//! installed after the layers were built still receives their metrics. Once a real recorder
//! has given a handle, the cell keeps it: an update costs one atomic load more than a plain
//! `metrics` handle.
//!
//! "No recorder" is recognised by the recorder's size: the `metrics` crate's no-op recorder is
//! a zero-sized type. A zero-sized recorder of your own still receives everything, only
//! without the cached handle (the cell registers with it at each update).

use std::sync::OnceLock;

use metrics::{Key, Label, Recorder, SharedString, Unit};

use super::catalog;

/// The three kinds of `metrics` handle.
pub(super) trait Kind: Sized {
    fn register(recorder: &dyn Recorder, key: &Key) -> Self;
    fn describe(recorder: &dyn Recorder, metric: &'static str, help: SharedString);
}

static METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

impl Kind for metrics::Counter {
    fn register(recorder: &dyn Recorder, key: &Key) -> Self {
        recorder.register_counter(key, &METADATA)
    }
    fn describe(recorder: &dyn Recorder, metric: &'static str, help: SharedString) {
        recorder.describe_counter(metric.into(), None, help);
    }
}

impl Kind for metrics::Gauge {
    fn register(recorder: &dyn Recorder, key: &Key) -> Self {
        recorder.register_gauge(key, &METADATA)
    }
    fn describe(recorder: &dyn Recorder, metric: &'static str, help: SharedString) {
        recorder.describe_gauge(metric.into(), None, help);
    }
}

impl Kind for metrics::Histogram {
    fn register(recorder: &dyn Recorder, key: &Key) -> Self {
        recorder.register_histogram(key, &METADATA)
    }
    fn describe(recorder: &dyn Recorder, metric: &'static str, help: SharedString) {
        recorder.describe_histogram(metric.into(), Some(Unit::Seconds), help);
    }
}

/// One exported series: the metric's name, its labels and, once a recorder took it, the
/// recorder's handle.
pub(super) struct Export<H> {
    metric: &'static str,
    key: Key,
    description: Option<&'static str>,
    handle: OnceLock<H>,
}

/// What [`Export::resolve`] found.
pub(super) enum Resolved<'a, H> {
    /// A handle cached just now (or by a racing thread): the caller brings the export up to
    /// the cell's value.
    Fresh(&'a H),
    /// A handle for this one update (no recorder, or a zero-sized one).
    Once(H),
}

impl<H: Kind> Export<H> {
    pub(super) fn new(
        metric: &'static str,
        name: &str,
        label: Option<(&'static str, &'static str)>,
        description: Option<&'static str>,
    ) -> Self {
        let mut labels = vec![Label::new("name", name.to_owned())];
        if let Some((key, value)) = label {
            labels.push(Label::new(key, value));
        }
        let export =
            Self { metric, key: Key::from_parts(metric, labels), description, handle: OnceLock::new() };
        // Registered at once when a recorder is there (a scrape shows the series at zero).
        let _ = export.resolve();
        export
    }

    /// The cached handle, if a recorder took this series.
    #[inline]
    pub(super) fn get(&self) -> Option<&H> {
        self.handle.get()
    }

    /// Asks the current recorder (thread-local first, then global) for this series' handle,
    /// describes the metric to it, and caches the handle unless the recorder is zero-sized.
    #[cold]
    #[inline(never)]
    pub(super) fn resolve(&self) -> Resolved<'_, H> {
        metrics::with_recorder(|recorder| {
            if std::mem::size_of_val(recorder) == 0 {
                return Resolved::Once(H::register(recorder, &self.key));
            }
            let help = match self.description {
                Some(text) => SharedString::const_str(text),
                None => catalog::help(self.metric),
            };
            H::describe(recorder, self.metric, help);
            // Two threads may race here: both bring the export up to the cell's value, which
            // is idempotent (a counter's `absolute` keeps the larger value).
            Resolved::Fresh(self.handle.get_or_init(|| H::register(recorder, &self.key)))
        })
    }
}
