#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Review wave 4c: a `PriorityMerge` input whose `Drop` panics when a handle removes it
//! (user code, as its `poll_next` is) must not take the commands queued with it down.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{stream, Stream, StreamExt};
use palisade_core::panic::payload_message;
use palisade_pipeline::priority::{priority_merge, PriorityMerge};

/// Never yields; panics with `"drop"` when dropped.
struct PanicsOnDrop;

impl Stream for PanicsOnDrop {
    type Item = u32;

    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<u32>> {
        Poll::Pending
    }
}

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        assert!(std::thread::panicking(), "drop");
    }
}

/// Polls `merged` once with a no-op waker, catching a panic.
fn poll_caught<T>(merged: &mut PriorityMerge<T>) -> Result<Poll<Option<T>>, String> {
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    catch_unwind(AssertUnwindSafe(|| merged.poll_next_unpin(&mut cx)))
        .map_err(|payload| payload_message(&*payload).to_owned())
}

/// A handle removes an input whose `Drop` panics and, before the merge is polled, adds
/// another input and removes a third. The panic reaches the caller once (as for a
/// panicking `poll_next`); every command queued with the removal still takes effect: the
/// input added is served to its end, the one removed is gone, the merge ends when the
/// handle is dropped. Before, the removal dropped the input inside the merge's command
/// lock while draining the queue: the panic threw away the rest of the queue, so the
/// added input was lost (its items never came) and the removed one stayed.
#[test]
fn a_removed_input_whose_drop_panics_loses_no_command() {
    let (mut merged, handle) = priority_merge::<u32>();
    let bad = handle.add(PanicsOnDrop, 1);
    let gone = handle.add(stream::iter([7, 8, 9]).chain(stream::pending()), 2);
    assert_eq!(poll_caught(&mut merged), Ok(Poll::Ready(Some(7))));
    assert_eq!(merged.inputs(), 2);
    handle.remove(bad);
    handle.add(stream::iter([1, 2]), 3);
    handle.remove(gone);
    assert_eq!(poll_caught(&mut merged), Err("drop".to_owned()), "the Drop's panic, once");
    assert_eq!(merged.inputs(), 1, "only the input added is left");
    assert_eq!(poll_caught(&mut merged), Ok(Poll::Ready(Some(1))));
    assert_eq!(poll_caught(&mut merged), Ok(Poll::Ready(Some(2))));
    assert_eq!(poll_caught(&mut merged), Ok(Poll::Pending));
    drop(handle);
    assert_eq!(poll_caught(&mut merged), Ok(Poll::Ready(None)));
}
