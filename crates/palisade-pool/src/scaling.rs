//! Pluggable scaling policies for [`Pool`](crate::Pool).
//!
//! The pool's worker asks its [`ScalingPolicy`] whether to add a member (on every turn it
//! could add one: below `max_size`, nothing being made) and whether to retire one (at each
//! housekeeping round, when above `min_size` and a member is idle). What the policy cannot
//! override: members are made up to `min_size` and to replace evicted ones, a pool with no
//! member makes one for a waiting request, and an operator's
//! [`scale_to`](crate::PoolHandle::scale_to) wins until it is reached.
//!
//! [`UtilisationPolicy`] is the default, configured by the builder's
//! `scale_up_utilisation`, `scale_up_queue` and `scale_down` settings.
//!
//! # Example: a policy that scales on queue length only
//!
//! ```
//! use std::time::Duration;
//! use palisade_pool::scaling::{PoolLoad, ScalingPolicy};
//! use palisade_pool::{make_fn, Pool, ScaleDownReason, ScaleUpReason};
//!
//! struct QueueLength;
//!
//! impl ScalingPolicy for QueueLength {
//!     fn scale_up(&mut self, load: &PoolLoad) -> Option<ScaleUpReason> {
//!         (load.queued >= 4).then_some(ScaleUpReason::Queue)
//!     }
//!     fn scale_down(&mut self, load: &PoolLoad) -> Option<ScaleDownReason> {
//!         (load.queued == 0 && load.in_flight == 0).then_some(ScaleDownReason::Policy)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), palisade_core::BoxError> {
//! let make = make_fn(|| async {
//!     Ok::<_, std::io::Error>(tower::service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }))
//! });
//! let pool = Pool::builder().max_size(8).scaling_policy(QueueLength).build(make)?;
//! assert_eq!(pool.submit_batch(0..3).await.len(), 3);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::event::{ScaleDownReason, ScaleUpReason};

/// The pool's load at one moment, as a [`ScalingPolicy`] sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct PoolLoad {
    /// Live members.
    pub members: usize,
    /// Members with no call in flight.
    pub idle_members: usize,
    /// Calls in flight on live members.
    pub in_flight: usize,
    /// `members × member_concurrency`.
    pub capacity: usize,
    /// Requests waiting for a member.
    pub queued: usize,
    /// The pool's `min_size`.
    pub min_size: usize,
    /// The pool's `max_size`.
    pub max_size: usize,
    /// Now (tokio's clock).
    pub now: Instant,
}

impl PoolLoad {
    /// `in_flight / capacity` (1 when there is no capacity and requests wait, 0 when none
    /// do).
    pub fn utilisation(&self) -> f64 {
        if self.capacity == 0 {
            return if self.queued == 0 { 0.0 } else { 1.0 };
        }
        self.in_flight as f64 / self.capacity as f64
    }
}

/// Decides when a [`Pool`](crate::Pool) grows and shrinks; see the
/// [module docs](self). Runs on the pool's worker task: keep it quick. A panic in it is
/// contained (taken as "no change").
pub trait ScalingPolicy: Send + 'static {
    /// Whether to make one more member now (called only below `max_size`).
    fn scale_up(&mut self, load: &PoolLoad) -> Option<ScaleUpReason>;

    /// Whether to retire one idle member now (called at each housekeeping round, so that a
    /// policy can track how long a condition lasted; the answer is acted on only above
    /// `min_size` and when a member is idle — the longest idle one is retired).
    fn scale_down(&mut self, load: &PoolLoad) -> Option<ScaleDownReason>;
}

/// The default policy: grow when utilisation reaches `scale_up_utilisation` or
/// `scale_up_queue` requests wait; shrink by one member after utilisation stayed below
/// `scale_down_utilisation` (with nothing queued) for `scale_down_after`, then again after
/// another such period.
#[derive(Clone, Copy)]
pub struct UtilisationPolicy {
    scale_up_utilisation: f64,
    scale_up_queue: usize,
    scale_down_utilisation: f64,
    scale_down_after: Duration,
    low_since: Option<Instant>,
}

impl fmt::Debug for UtilisationPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UtilisationPolicy")
            .field("scale_up_utilisation", &self.scale_up_utilisation)
            .field("scale_up_queue", &self.scale_up_queue)
            .field("scale_down_utilisation", &self.scale_down_utilisation)
            .field("scale_down_after", &self.scale_down_after)
            .finish_non_exhaustive()
    }
}

impl UtilisationPolicy {
    /// The policy with these thresholds (the builder validates its own settings; values
    /// given here are used as they are: a ratio above 1 never triggers, `scale_up_queue`
    /// 0 turns queue-triggered growth off).
    pub fn new(
        scale_up_utilisation: f64,
        scale_up_queue: usize,
        scale_down_utilisation: f64,
        scale_down_after: Duration,
    ) -> Self {
        Self {
            scale_up_utilisation,
            scale_up_queue,
            scale_down_utilisation,
            scale_down_after,
            low_since: None,
        }
    }
}

impl ScalingPolicy for UtilisationPolicy {
    fn scale_up(&mut self, load: &PoolLoad) -> Option<ScaleUpReason> {
        if self.scale_up_queue > 0 && load.queued >= self.scale_up_queue {
            Some(ScaleUpReason::Queue)
        } else if load.members > 0 && load.utilisation() >= self.scale_up_utilisation {
            Some(ScaleUpReason::Utilisation)
        } else {
            None
        }
    }

    fn scale_down(&mut self, load: &PoolLoad) -> Option<ScaleDownReason> {
        if load.utilisation() < self.scale_down_utilisation && load.queued == 0 {
            let since = *self.low_since.get_or_insert(load.now);
            if load.now.saturating_duration_since(since) >= self.scale_down_after
                && load.members > load.min_size
                && load.idle_members > 0
            {
                self.low_since = Some(load.now);
                return Some(ScaleDownReason::LowUtilisation);
            }
        } else {
            self.low_since = None;
        }
        None
    }
}
