//! [`ChaosLayer`] and the state it shares with its services.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::BoxError;
use tower_layer::Layer;

use crate::config::ChaosBuilder;
use crate::handle::{ChaosHandle, Control};
use crate::service::Chaos;

pub(crate) type FaultFn<Req> = Box<dyn Fn(&Req) -> BoxError + Send + Sync>;
pub(crate) type OutcomeFn<Req, Res> = Box<dyn Fn(&Req) -> Res + Send + Sync>;
pub(crate) type LatencyFn<Req> = Box<dyn Fn(&Req) -> Duration + Send + Sync>;
pub(crate) type Predicate<Req> = Box<dyn Fn(&Req) -> bool + Send + Sync>;

/// What a layer and every service and clone it built share.
pub(crate) struct Shared<Req, Res> {
    pub(crate) control: Arc<Control>,
    pub(crate) fault: Option<FaultFn<Req>>,
    pub(crate) outcome: Option<OutcomeFn<Req, Res>>,
    pub(crate) latency: Option<LatencyFn<Req>>,
    pub(crate) predicate: Option<Predicate<Req>>,
}

/// Injects faults, substitute responses, latency and hangs at configured rates.
///
/// Built with [`ChaosLayer::builder`]; see the [crate docs](crate) for an example.
///
/// # Clone
///
/// The layer keeps its settings, generator and counters in an `Arc`: every service it builds,
/// and every clone of those, draws from the same generator and obeys the same
/// [`ChaosHandle`].
pub struct ChaosLayer<Req, Res> {
    shared: Arc<Shared<Req, Res>>,
}

impl<Req, Res> Clone for ChaosLayer<Req, Res> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

impl<Req, Res> fmt::Debug for ChaosLayer<Req, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosLayer").field("handle", &self.handle()).finish()
    }
}

impl<Req, Res> ChaosLayer<Req, Res> {
    /// A builder; see [`ChaosBuilder`].
    pub fn builder() -> ChaosBuilder<Req, Res> {
        ChaosBuilder::new()
    }

    pub(crate) fn from_shared(shared: Arc<Shared<Req, Res>>) -> Self {
        Self { shared }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared<Req, Res>> {
        &self.shared
    }

    /// A handle to switch injection, change rates, read counters and subscribe to events.
    pub fn handle(&self) -> ChaosHandle {
        ChaosHandle { control: self.shared.control.clone() }
    }
}

impl<S, Req, Res> Layer<S> for ChaosLayer<Req, Res> {
    type Service = Chaos<S, Req, Res>;

    fn layer(&self, inner: S) -> Self::Service {
        Chaos::new(inner, self)
    }
}
