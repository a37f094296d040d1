//! [`ChaosLayer`] and the state it shares with its services.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::BoxError;
use tower_layer::Layer;

use crate::builder::ChaosBuilder;
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
    /// A layer that answers the share `fault_rate` of calls with an
    /// [`InjectedFault`](crate::InjectedFault) and passes the others, with the defaults
    /// (name `"chaos"`, enabled, seeded from entropy); it cannot fail. A rate outside
    /// `0.0..=1.0` is brought to the nearest end of it, and NaN to 0 (nothing injected).
    ///
    /// ```
    /// use palisade_chaos::{ChaosLayer, InjectedFault};
    /// use palisade_core::BoxError;
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # tokio_test::block_on(async {
    /// let svc = ChaosLayer::new(1.0).layer(service_fn(|x: u32| async move { Ok::<_, BoxError>(x) }));
    /// assert!(svc.oneshot(1).await.unwrap_err().is::<InjectedFault>());
    /// # });
    /// ```
    pub fn new(fault_rate: f64) -> Self {
        let rate = if fault_rate.is_nan() { 0.0 } else { fault_rate.clamp(0.0, 1.0) };
        ChaosBuilder::default().fault_rate(rate).build_unchecked()
    }

    /// A builder with [`ChaosConfig`](crate::ChaosConfig)'s defaults; see [`ChaosBuilder`].
    pub fn builder() -> ChaosBuilder<Req, Res> {
        ChaosBuilder::default()
    }

    pub(crate) fn from_shared(shared: Arc<Shared<Req, Res>>) -> Self {
        Self { shared }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared<Req, Res>> {
        &self.shared
    }

    /// A handle to switch injection, change rates, read counters and register listeners.
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
