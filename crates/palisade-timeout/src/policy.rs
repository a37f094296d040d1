//! How the timeout of one request is chosen: fixed, or per request.

use std::fmt;
use std::time::Duration;

/// Chooses the timeout of one request.
pub trait TimeoutPolicy<Req> {
    /// The timeout for `req`; `None` for none.
    fn timeout_for(&self, req: &Req) -> Option<Duration>;
}

/// The same timeout for every request (what [`TimeoutLayer::new`](crate::TimeoutLayer::new)
/// and [`TimeoutConfig::timeout`](crate::TimeoutConfig::timeout) give).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedTimeout(pub(crate) Duration);

impl FixedTimeout {
    /// The timeout.
    pub fn duration(&self) -> Duration {
        self.0
    }
}

impl<Req> TimeoutPolicy<Req> for FixedTimeout {
    #[inline]
    fn timeout_for(&self, _: &Req) -> Option<Duration> {
        Some(self.0)
    }
}

/// A timeout chosen per request by a function `Fn(&Req) -> Option<Duration>`; see
/// [`TimeoutBuilder::per_request`](crate::TimeoutBuilder::per_request).
#[derive(Clone, Copy)]
pub struct PerRequest<Choose>(pub(crate) Choose);

impl<Choose> fmt::Debug for PerRequest<Choose> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PerRequest").finish_non_exhaustive()
    }
}

impl<Choose, Req> TimeoutPolicy<Req> for PerRequest<Choose>
where
    Choose: Fn(&Req) -> Option<Duration>,
{
    #[inline]
    fn timeout_for(&self, req: &Req) -> Option<Duration> {
        (self.0)(req)
    }
}
