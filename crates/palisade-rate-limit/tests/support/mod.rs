#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::Ready;
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::rejection::RateLimited;
use palisade_core::BoxError;
use tower::Service;

/// An inner service answering its request at once.
#[derive(Clone, Debug, Default)]
pub struct Echo;

impl<T> Service<T> for Echo {
    type Response = T;
    type Error = Infallible;
    type Future = Ready<Result<T, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: T) -> Self::Future {
        std::future::ready(Ok(req))
    }
}

/// The `retry_after` of a `RateLimited` error, panicking on anything else.
pub fn retry_after(err: &BoxError) -> Duration {
    err.downcast_ref::<RateLimited>()
        .unwrap_or_else(|| panic!("expected RateLimited, got {err}"))
        .retry_after()
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub async fn advance(d: Duration) {
    tokio::time::advance(d).await;
}
