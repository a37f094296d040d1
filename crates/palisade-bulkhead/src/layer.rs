use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::builder::{common, BulkheadBuilder};
use crate::compartment::{Common, Compartment};
use crate::config::BulkheadConfig;
use crate::handle::BulkheadHandle;
use crate::service::Bulkhead;

/// Applies a [`Bulkhead`] to services: at most `max_concurrent` calls at once, a bounded FIFO
/// wait queue with a time limit, [`BulkheadFull`](palisade_core::rejection::BulkheadFull)
/// when a call cannot get a permit.
///
/// # Clone
///
/// The permits live in an `Arc` created when the layer is built: every service this layer
/// value (or a clone of it) wraps, and every clone of those services, draws from the same
/// pool. To give two routes separate pools, build two layers. To make services built in
/// different places share one pool, pass the [`handle`](Self::handle) around and call
/// [`BulkheadHandle::layer`] or [`BulkheadLayer::from_handle`].
#[derive(Clone)]
pub struct BulkheadLayer {
    compartment: Arc<Compartment>,
}

impl fmt::Debug for BulkheadLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadLayer").field("compartment", &self.compartment).finish()
    }
}

impl BulkheadLayer {
    /// A bulkhead of `max_concurrent` permits with every other setting at its default
    /// ([`BulkheadConfig`]): a call that finds every permit taken is refused at once with
    /// [`BulkheadFull`](crate::error::BulkheadFull), as tower's `ConcurrencyLimitLayer::new`
    /// is the common case of its limit.
    ///
    /// `0` builds a closed bulkhead, the run-time drain switch of
    /// [`BulkheadHandle::set_max_concurrent`]: it admits nothing until raised through the
    /// handle (Resilience4j's builder accepts `maxConcurrentCalls` 0 too). A number above
    /// `tokio::sync::Semaphore::MAX_PERMITS` (`usize::MAX >> 3`) is brought down to it.
    ///
    /// ```
    /// use palisade_bulkhead::BulkheadLayer;
    ///
    /// let layer = BulkheadLayer::new(32);
    /// assert_eq!(layer.handle().max_concurrent(), 32);
    ///
    /// let drained = BulkheadLayer::new(0);
    /// drained.handle().set_max_concurrent(4).unwrap(); // open it later
    /// ```
    pub fn new(max_concurrent: usize) -> Self {
        let config = BulkheadConfig {
            max_concurrent: max_concurrent.min(tokio::sync::Semaphore::MAX_PERMITS),
            ..BulkheadConfig::default()
        };
        Self::from_common(common(&config, Vec::new()))
    }

    /// Starts building a bulkhead.
    pub fn builder() -> BulkheadBuilder {
        BulkheadBuilder::default()
    }

    pub(crate) fn from_common(common: Arc<Common>) -> Self {
        Self { compartment: Arc::new(Compartment::new(common)) }
    }

    /// A layer drawing from the pool behind `handle`.
    pub fn from_handle(handle: &BulkheadHandle) -> Self {
        Self { compartment: handle.compartment.clone() }
    }

    /// The handle to this layer's pool: snapshot, events, more layers on the same pool.
    pub fn handle(&self) -> BulkheadHandle {
        BulkheadHandle { compartment: self.compartment.clone() }
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = Bulkhead<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead::with_compartment(inner, self.compartment.clone())
    }
}
