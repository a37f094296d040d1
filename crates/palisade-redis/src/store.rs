//! The Redis GCRA as palisade-rate-limit's asynchronous store seam.

use std::future::Future;
use std::pin::Pin;

use palisade_rate_limit::async_store::{Admission, AsyncKeyedStore};

use crate::gcra::RedisRateLimiter;

/// [`RedisRateLimiter`] behind [`AsyncRateLimitLayer`](palisade_rate_limit::async_store::AsyncRateLimitLayer):
/// every request of the layer is one [`check_owned`](RedisRateLimiter::check_owned) (an
/// admission whose response future is dropped is refunded). The key is any `AsRef<str>`.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use palisade_rate_limit::async_store::AsyncRateLimitLayer;
/// use palisade_redis::{Quota, RedisBackend, RedisRateLimiter};
///
/// let backend = RedisBackend::builder("redis://127.0.0.1:6379/").build()?;
/// let limiter = RedisRateLimiter::builder("api", backend).tier(Quota::per(100, Duration::from_secs(1))).build()?;
/// let layer = AsyncRateLimitLayer::new("api", limiter, |req: &String| Some(req.clone()));
/// # let _ = layer; Ok(()) }
/// ```
impl<K: AsRef<str>> AsyncKeyedStore<K> for RedisRateLimiter {
    fn admit(&self, key: &K, cost: u32) -> Pin<Box<dyn Future<Output = Admission> + Send>> {
        let check = self.check_owned(key.as_ref().to_owned(), u64::from(cost));
        Box::pin(async move {
            match check.await {
                Ok(d) if d.allowed => Admission::Admitted,
                Ok(d) => Admission::Limited(d.retry_after),
                Err(e) => Admission::CostExceedsCapacity { capacity: e.capacity() },
            }
        })
    }
}
