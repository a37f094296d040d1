//! The response futures: [`ResponseFuture`] (retry: one attempt at a time, with backoff) and
//! [`HedgeFuture`] (hedge: several attempts in flight).

mod decide;
mod retry;

pub use self::retry::ResponseFuture;
pub use crate::hedge::HedgeFuture;
