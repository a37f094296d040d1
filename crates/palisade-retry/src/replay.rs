//! How a request is sent again: [`Replay`].
//!
//! A retry needs the request a second time, but a service consumes its request. Before
//! sending an attempt that may be followed by another, the layer asks its [`Replay`] for a
//! copy; when there is none, that attempt is the last one (the failure is returned as is,
//! with the give-up reason `NotReplayable`).
//!
//! - [`CloneRequest`] (the default) requires `Req: Clone` and clones. `http::Request<B>` is
//!   `Clone` when its body is (`String`, `Bytes`, `http_body_util::Full<Bytes>`), and so are
//!   tonic's generated request messages.
//! - [`replay_fn`] takes a "clone or give up" hook `Fn(&Req) -> Option<Req>`, for requests
//!   that can sometimes be copied (e.g. a message whose payload may be a one-shot stream).
//! - With feature `http`, [`HttpReplay`](crate::http::HttpReplay) replays
//!   `http::Request<ReplayBody<B>>`: [`BufferBodyLayer`](crate::http::BufferBodyLayer) reads
//!   a streaming body ahead up to a size limit, so small bodies are replayed byte for byte
//!   and larger ones are sent once, never retried.
//!
//! # Example
//!
//! ```
//! use palisade_retry::replay::{replay_fn, Replay};
//!
//! enum Upload { Small(Vec<u8>), Stream(std::fs::File) }
//! let replay = replay_fn(|req: &Upload| match req {
//!     Upload::Small(bytes) => Some(Upload::Small(bytes.clone())),
//!     Upload::Stream(_) => None, // give up: send once
//! });
//! assert!(replay.replay(&Upload::Small(vec![1, 2])).is_some());
//! ```

use std::fmt;

/// Makes a copy of a request for the next attempt, or gives up.
pub trait Replay<Req> {
    /// A copy of `req` for the next attempt; `None` when it cannot be copied.
    fn replay(&self, req: &Req) -> Option<Req>;
}

/// Replays requests by cloning them (the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct CloneRequest;

impl<Req: Clone> Replay<Req> for CloneRequest {
    #[inline]
    fn replay(&self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// Replays requests with a "clone or give up" closure; see [`replay_fn`].
#[derive(Clone, Copy)]
pub struct ReplayFn<F> {
    f: F,
}

impl<F> fmt::Debug for ReplayFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayFn").finish_non_exhaustive()
    }
}

/// A [`Replay`] from a closure `Fn(&Req) -> Option<Req>`: `None` means "do not retry this
/// request".
pub fn replay_fn<F>(f: F) -> ReplayFn<F> {
    ReplayFn { f }
}

impl<F, Req> Replay<Req> for ReplayFn<F>
where
    F: Fn(&Req) -> Option<Req>,
{
    #[inline]
    fn replay(&self, req: &Req) -> Option<Req> {
        (self.f)(req)
    }
}
