#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Review wave 4b: a `PriorityMerge` input that panics is ended and its panic propagated
//! once; the merge goes on with the other inputs for a caller that catches the panic.
//! Before, the panicking input stayed in the merge and was polled again at every poll, so
//! the merge was dead (it panicked for ever, or met a stream polled after its panic).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::{stream, FutureExt, Stream, StreamExt};
use palisade_core::panic::payload_message;
use palisade_pipeline::priority::{priority_merge, PriorityMerge};
use tokio_test::task;

/// Yields `first`, then panics with `"boom"` at every later poll; counts its polls.
fn exploding(first: &'static str, polls: Arc<AtomicUsize>) -> impl Stream<Item = &'static str> + Send {
    stream::poll_fn(move |_| {
        if polls.fetch_add(1, Ordering::SeqCst) == 0 {
            Poll::Ready(Some(first))
        } else {
            panic!("boom")
        }
    })
}

/// Polls `merged` once with a no-op waker, catching a panic.
fn poll_caught<T>(merged: &mut PriorityMerge<T>) -> Result<Poll<Option<T>>, String> {
    let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
    catch_unwind(AssertUnwindSafe(|| merged.poll_next_unpin(&mut cx)))
        .map_err(|payload| payload_message(&*payload).to_owned())
}

/// The given input: a high-priority input panics after its first item. The panic reaches
/// the caller once; the input is gone (never polled again) and later polls serve the
/// other inputs to the end.
#[tokio::test(flavor = "current_thread")]
async fn a_panicking_input_is_ended_and_its_panic_propagated_once() {
    let polls = Arc::new(AtomicUsize::new(0));
    let (mut merged, handle) = priority_merge();
    handle.add(exploding("high-1", polls.clone()), 9);
    handle.add(stream::iter(["low-1", "low-2"]), 1);
    drop(handle);

    assert_eq!(merged.next().await, Some("high-1"));
    let caught = AssertUnwindSafe(merged.next()).catch_unwind().await;
    assert_eq!(payload_message(&*caught.unwrap_err()), "boom");
    assert_eq!(merged.inputs(), 1, "the panicking input was removed");

    // Later polls: the other input to its end, no second panic.
    let mut rest = Vec::new();
    loop {
        match AssertUnwindSafe(merged.next()).catch_unwind().await {
            Ok(Some(item)) => rest.push(item),
            Ok(None) => break,
            Err(payload) => panic!("a second panic: {}", payload_message(&*payload)),
        }
    }
    assert_eq!(rest, ["low-1", "low-2"]);
    assert_eq!(polls.load(Ordering::SeqCst), 2, "never polled after its panic");
}

/// Own case, with `std::panic::catch_unwind` around `poll_next`: peers of the same
/// priority go on, and a merge whose handle is alive stays open (pending, not ended) and
/// serves an input added after the panic.
#[test]
fn after_a_panic_peers_and_later_inputs_are_served() {
    let polls = Arc::new(AtomicUsize::new(0));
    let (mut merged, handle) = priority_merge();
    handle.add(exploding("a-1", polls.clone()), 5);
    handle.add(stream::iter(["b-1", "b-2"]), 5);

    // Round robin within priority 5: a, b, then a panics.
    assert_eq!(poll_caught(&mut merged), Ok(Poll::Ready(Some("a-1"))));
    assert_eq!(poll_caught(&mut merged), Ok(Poll::Ready(Some("b-1"))));
    assert_eq!(poll_caught(&mut merged), Err("boom".to_owned()));
    assert_eq!(poll_caught(&mut merged), Ok(Poll::Ready(Some("b-2"))));
    // Every input ended, the handle is alive: open and waiting.
    assert_eq!(poll_caught(&mut merged), Ok(Poll::Pending));
    assert_eq!(merged.inputs(), 0);

    handle.add(stream::iter(["c-1"]), 1);
    assert_eq!(poll_caught(&mut merged), Ok(Poll::Ready(Some("c-1"))));
    drop(handle);
    assert_eq!(poll_caught(&mut merged), Ok(Poll::Ready(None)));
    assert_eq!(polls.load(Ordering::SeqCst), 2);
}

/// Own case: an input that panics on its very first poll, while the merge waits on a
/// pending peer, is removed; the waiting consumer is still woken by the peer.
#[tokio::test(flavor = "current_thread")]
async fn a_panic_on_the_first_poll_leaves_the_merge_waiting_on_its_peers() {
    let (merged, handle) = priority_merge::<u32>();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
    handle.add(tokio_stream_from(rx), 1);
    handle.add(stream::poll_fn(|_| -> Poll<Option<u32>> { panic!("first poll") }), 9);
    drop(handle);

    let mut merged = task::spawn(merged);
    let caught = catch_unwind(AssertUnwindSafe(|| merged.poll_next()));
    assert_eq!(payload_message(&*caught.unwrap_err()), "first poll");
    assert!(merged.poll_next().is_pending());
    tx.send(7).unwrap();
    assert!(merged.is_woken());
    assert_eq!(merged.poll_next(), Poll::Ready(Some(7)));
    drop(tx);
    assert_eq!(merged.poll_next(), Poll::Ready(None));
}

/// An unbounded receiver as a stream (without tokio-stream).
fn tokio_stream_from(mut rx: tokio::sync::mpsc::UnboundedReceiver<u32>) -> impl Stream<Item = u32> + Send {
    stream::poll_fn(move |cx| rx.poll_recv(cx))
}
