//! Fan-in with priorities: several input streams merged into one, higher priority first,
//! with inputs added and removed while the merge runs.
//!
//! [`priority_merge`] returns the merged stream and a [`MergeHandle`]. Each poll takes the
//! next item from the highest-priority input that has one ready (inputs of the same
//! priority take turns, round robin, so a busy one cannot starve its peers), so a busy
//! high-priority input is served before lower ones — strict
//! priority, as a priority queue does; give a low-priority input a higher priority if it
//! must not wait. An input that ends is removed; [`MergeHandle::remove`] removes one early
//! (dropping it). The merged stream ends once it has no input left and every handle is
//! dropped.
//!
//! # Panics
//!
//! An input stream is user code polled inside [`PriorityMerge::poll_next`]. If one panics,
//! the merge removes it (it is ended, as an input stream that panics ends a pipeline's
//! input, and dropped) and then lets the panic go on to the caller, once. So does an input
//! whose `Drop` panics when a handle removes it, after every command queued with the
//! removal took effect. The items are
//! `T`, not results, so there is no error to put in the panic's place; a caller that
//! catches the panic (`catch_unwind`) and polls again gets the other inputs' items, and
//! the panicking input is never polled again.
//!
//! # Example
//!
//! ```
//! use futures_util::{stream, StreamExt};
//! use palisade_pipeline::priority::priority_merge;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let (merged, handle) = priority_merge();
//! handle.add(stream::iter(["bulk-1", "bulk-2"]), 1);
//! let urgent = handle.add(stream::iter(["urgent-1", "urgent-2"]), 9);
//! drop(handle);
//! let out: Vec<_> = merged.collect().await;
//! assert_eq!(out, ["urgent-1", "urgent-2", "bulk-1", "bulk-2"]);
//! # let _ = urgent;
//! # }
//! ```

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use futures_core::Stream;
use palisade_core::panic::catch;
use palisade_core::sync::lock;

type BoxStream<T> = Pin<Box<dyn Stream<Item = T> + Send>>;

/// Identifies an input of a [`PriorityMerge`], to [remove](MergeHandle::remove) it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InputId(u64);

enum Command<T> {
    Add(u64, u8, BoxStream<T>),
    Remove(u64),
}

struct Commands<T> {
    queue: Vec<Command<T>>,
    next_id: u64,
    waker: Option<Waker>,
    /// Live handles: the merge ends only when none is left.
    handles: usize,
}

struct Input<T> {
    id: u64,
    priority: u8,
    stream: BoxStream<T>,
}

/// Creates a priority merge and the handle that feeds it; see the [module docs](self).
pub fn priority_merge<T>() -> (PriorityMerge<T>, MergeHandle<T>) {
    let commands = Arc::new(Mutex::new(Commands { queue: Vec::new(), next_id: 0, waker: None, handles: 1 }));
    (PriorityMerge { inputs: Vec::new(), commands: commands.clone() }, MergeHandle { commands })
}

/// Adds and removes inputs of a [`PriorityMerge`] while it runs.
///
/// # Clone
///
/// Clones feed the same merge; the merge ends only after every clone is dropped.
pub struct MergeHandle<T> {
    commands: Arc<Mutex<Commands<T>>>,
}

impl<T> Clone for MergeHandle<T> {
    fn clone(&self) -> Self {
        lock(&self.commands).handles += 1;
        Self { commands: self.commands.clone() }
    }
}

impl<T> fmt::Debug for MergeHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MergeHandle").finish_non_exhaustive()
    }
}

impl<T> Drop for MergeHandle<T> {
    fn drop(&mut self) {
        // The merge may be waiting only for handles to go away.
        let mut c = lock(&self.commands);
        c.handles = c.handles.saturating_sub(1);
        if let Some(w) = c.waker.take() {
            w.wake();
        }
    }
}

impl<T> MergeHandle<T> {
    fn send(&self, command: Command<T>) {
        let mut c = lock(&self.commands);
        c.queue.push(command);
        if let Some(w) = c.waker.take() {
            w.wake();
        }
    }

    /// Adds `input` with `priority` (higher first); returns its id.
    pub fn add<S>(&self, input: S, priority: u8) -> InputId
    where
        S: Stream<Item = T> + Send + 'static,
    {
        let id = {
            let mut c = lock(&self.commands);
            c.next_id += 1;
            c.next_id
        };
        self.send(Command::Add(id, priority, Box::pin(input)));
        InputId(id)
    }

    /// Removes an input (items it already gave are kept); unknown ids are ignored.
    pub fn remove(&self, id: InputId) {
        self.send(Command::Remove(id.0));
    }
}

/// The merged stream of [`priority_merge`].
pub struct PriorityMerge<T> {
    /// Sorted by priority, highest first; stable for ties.
    inputs: Vec<Input<T>>,
    commands: Arc<Mutex<Commands<T>>>,
}

impl<T> fmt::Debug for PriorityMerge<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PriorityMerge").field("inputs", &self.inputs.len()).finish_non_exhaustive()
    }
}

impl<T> PriorityMerge<T> {
    /// Inputs currently merged (changes sent by handles count once the stream is polled).
    pub fn inputs(&self) -> usize {
        self.inputs.len()
    }
}

impl<T> Stream for PriorityMerge<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        // Inputs removed by handles, dropped after the lock: a stream's `Drop` is user code
        // and may panic, which must not throw away the commands queued after its removal.
        let mut removed = Vec::new();
        let handles_left = {
            let mut c = lock(&this.commands);
            for command in c.queue.drain(..) {
                match command {
                    Command::Add(id, priority, stream) => {
                        let at = this
                            .inputs
                            .iter()
                            .position(|i| i.priority < priority)
                            .unwrap_or(this.inputs.len());
                        this.inputs.insert(at, Input { id, priority, stream });
                    }
                    Command::Remove(id) => {
                        if let Some(at) = this.inputs.iter().position(|i| i.id == id) {
                            removed.push(this.inputs.remove(at));
                        }
                    }
                }
            }
            c.waker = Some(cx.waker().clone());
            c.handles > 0
        };
        // As for a panicking input: every removal is done, then the first panic goes on to
        // the caller, once.
        let mut first_panic = None;
        for input in removed {
            if let Err(payload) = catch(move || drop(input)) {
                first_panic.get_or_insert(payload);
            }
        }
        if let Some(payload) = first_panic {
            std::panic::resume_unwind(payload);
        }
        let mut i = 0;
        while i < this.inputs.len() {
            let polled = match catch(|| this.inputs[i].stream.as_mut().poll_next(cx)) {
                Ok(polled) => polled,
                // A panicking input is ended first, so the merge stays usable for a
                // caller that catches the panic; then the panic goes on, once.
                Err(payload) => {
                    let input = this.inputs.remove(i);
                    // Its `Drop` is user code too: the first panic is the one to report.
                    let _ = catch(move || drop(input));
                    std::panic::resume_unwind(payload)
                }
            };
            match polled {
                Poll::Ready(Some(item)) => {
                    // Round robin within a priority: the input that just yielded goes
                    // behind its peers of the same priority, so a busy one cannot starve
                    // them.
                    let priority = this.inputs[i].priority;
                    let end = this.inputs[i..]
                        .iter()
                        .position(|x| x.priority != priority)
                        .map_or(this.inputs.len(), |n| i + n);
                    this.inputs[i..end].rotate_left(1);
                    return Poll::Ready(Some(item));
                }
                Poll::Ready(None) => {
                    this.inputs.remove(i);
                }
                Poll::Pending => i += 1,
            }
        }
        if this.inputs.is_empty() && !handles_left {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}
