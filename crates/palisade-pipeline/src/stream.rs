//! [`PipelineStream`]: the results of [`process_stream`](crate::PipelineService::process_stream).

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::{FusedStream, Stream};
use tokio::task::JoinSet;

use crate::chain::{ChannelSource, Source};
use crate::error::StageError;
use crate::handle::{PipelineEvent, PipelineShared};

type Starter<T> = Box<dyn FnOnce(&mut JoinSet<()>) -> ChannelSource<T> + Send>;

/// The results of a stream run through a pipeline: each item's output or the
/// [`StageError`] of the stage it failed.
///
/// The stream owns every stage's task (they start on its first poll). Dropping it aborts
/// them all, which drops every item and call in flight.
pub struct PipelineStream<T> {
    start: Option<Starter<T>>,
    output: Option<ChannelSource<T>>,
    tasks: JoinSet<()>,
    fail_fast: bool,
    shared: Arc<PipelineShared>,
    done: bool,
}

impl<T> PipelineStream<T> {
    pub(crate) fn new(start: Starter<T>, fail_fast: bool, shared: Arc<PipelineShared>) -> Self {
        Self { start: Some(start), output: None, tasks: JoinSet::new(), fail_fast, shared, done: false }
    }

    /// How many stage tasks are still running (zero before the first poll and after the end).
    pub fn running_tasks(&self) -> usize {
        self.tasks.len()
    }
}

impl<T> fmt::Debug for PipelineStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineStream")
            .field("pipeline", &self.shared.name)
            .field("started", &self.start.is_none())
            .field("tasks", &self.tasks.len())
            .field("fail_fast", &self.fail_fast)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Stream for PipelineStream<T> {
    type Item = Result<T, StageError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(start) = this.start.take() {
            this.output = Some(start(&mut this.tasks));
        }
        if let Some(output) = &mut this.output {
            let msg = std::task::ready!(output.poll_one(cx));
            output.flush_stats();
            match msg {
                Some(Ok((_, item))) => return Poll::Ready(Some(Ok(item))),
                Some(Err(e)) => {
                    if this.fail_fast {
                        this.shared.bus.publish(PipelineEvent::StoppedOnError { stage: e.stage().into() });
                        this.output = None;
                        this.tasks.abort_all();
                        this.done = true;
                    }
                    return Poll::Ready(Some(Err(e)));
                }
                None => this.output = None,
            }
        }
        // Every stage finished: collect the tasks, resuming a stage's panic here.
        loop {
            match std::task::ready!(this.tasks.poll_join_next(cx)) {
                Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Some(_) => {}
                None => {
                    this.done = true;
                    return Poll::Ready(None);
                }
            }
        }
    }
}

impl<T: Send + 'static> FusedStream for PipelineStream<T> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}
