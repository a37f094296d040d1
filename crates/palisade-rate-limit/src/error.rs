//! Errors of the rate limit layer besides [`RateLimited`](palisade_core::rejection::RateLimited):
//! [`CostExceedsCapacity`] (from palisade-core, so the HTTP mapping answers it with 413).
//!
//! # Example
//!
//! ```
//! use palisade_rate_limit::error::CostExceedsCapacity;
//! use palisade_rate_limit::{Quota, RateLimitLayer};
//! use tower::{service_fn, Layer, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let layer = RateLimitLayer::builder()
//!     .quota(Quota::per_second(10).burst(5))
//!     .weight(|batch: &Vec<u8>| batch.len() as u32)
//!     .build()
//!     .unwrap();
//! let svc = layer.layer(service_fn(|b: Vec<u8>| async move { Ok::<_, std::convert::Infallible>(b.len()) }));
//! let err = svc.oneshot(vec![0; 6]).await.unwrap_err();
//! let too_big = err.downcast_ref::<CostExceedsCapacity>().unwrap();
//! assert_eq!((too_big.cost(), too_big.capacity()), (6, 5));
//! # }
//! ```

pub use palisade_core::rejection::CostExceedsCapacity;
