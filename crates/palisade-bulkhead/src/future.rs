//! Response futures of the bulkhead services.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use palisade_core::BoxError;
use pin_project_lite::pin_project;

use crate::compartment::Permit;

pub use crate::adaptive::future::ResponseFuture as AdaptiveResponseFuture;
pub use crate::keyed::KeyedResponseFuture;

pin_project! {
    /// The response future of a [`Bulkhead`](crate::Bulkhead): holds the call's permit
    /// until the inner future finishes or this future is dropped.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
            permit: Option<Permit>,
        },
        Rejected {
            rejection: Option<BoxError>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(future: F, permit: Permit) -> Self {
        Self { kind: Kind::Called { future, permit: Some(permit) } }
    }

    pub(crate) fn rejected(rejection: BoxError) -> Self {
        Self { kind: Kind::Rejected { rejection: Some(rejection) } }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Called { permit, .. } => {
                if permit.is_some() {
                    "running"
                } else {
                    "done"
                }
            }
            Kind::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish()
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future, permit } => {
                let out = ready!(future.poll(cx));
                // Free the permit as soon as the call is over.
                drop(permit.take());
                Poll::Ready(out.map_err(Into::into))
            }
            KindProj::Rejected { rejection } => match rejection.take() {
                Some(r) => Poll::Ready(Err(r)),
                None => Poll::Pending,
            },
        }
    }
}
