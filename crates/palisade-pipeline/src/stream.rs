//! [`PipelineStream`]: the results of [`process_stream`](crate::PipelineService::process_stream).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::{FusedStream, Stream};
use tokio::task::JoinSet;

use crate::chain::{ChannelSource, Source};
use crate::error::StageError;
use crate::event::PipelineEvent;
use crate::handle::PipelineShared;
use crate::output::Execution;

type StageTask = Pin<Box<dyn Future<Output = ()> + Send>>;
type Starter<T> = Box<dyn FnOnce(&mut Runner) -> ChannelSource<T> + Send>;

/// Owns a stream's stage workers: tokio tasks, or futures polled by the stream itself.
#[derive(Debug)]
pub(crate) enum Runner {
    /// One task per stage.
    Tasks(JoinSet<()>),
    /// Polled inside the output stream.
    Inline(Vec<InlineTask>),
}

/// A stage worker run inside the output stream.
pub(crate) struct InlineTask(StageTask);

impl fmt::Debug for InlineTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InlineTask")
    }
}

impl Runner {
    pub(crate) fn spawn<F>(&mut self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match self {
            Self::Tasks(set) => {
                set.spawn(fut);
            }
            Self::Inline(list) => list.push(InlineTask(Box::pin(fut))),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Tasks(set) => set.len(),
            Self::Inline(list) => list.len(),
        }
    }

    fn stop(&mut self) {
        match self {
            Self::Tasks(set) => set.abort_all(),
            Self::Inline(list) => list.clear(),
        }
    }

    /// Polls inline workers (earliest stage first), dropping the finished ones.
    fn poll_inline(&mut self, cx: &mut Context<'_>) {
        if let Self::Inline(list) = self {
            list.retain_mut(|task| task.0.as_mut().poll(cx).is_pending());
        }
    }
}

/// The results of a stream run through a pipeline: each item's output or the
/// [`StageError`] of the stage it failed.
///
/// The stream owns every stage (they start on its first poll): their tasks, or with
/// [`Execution::Inline`] the stages themselves. Dropping it stops them all, which drops every
/// item and call in flight.
pub struct PipelineStream<T> {
    start: Option<Starter<T>>,
    output: Option<ChannelSource<T>>,
    runner: Runner,
    fail_fast: bool,
    shared: Arc<PipelineShared>,
    done: bool,
}

impl<T> PipelineStream<T> {
    pub(crate) fn new(
        start: Starter<T>,
        execution: Execution,
        fail_fast: bool,
        shared: Arc<PipelineShared>,
    ) -> Self {
        let runner = match execution {
            Execution::Tasks => Runner::Tasks(JoinSet::new()),
            Execution::Inline => Runner::Inline(Vec::new()),
        };
        Self { start: Some(start), output: None, runner, fail_fast, shared, done: false }
    }

    /// How many stages are still running (zero before the first poll and after the end).
    pub fn running_tasks(&self) -> usize {
        self.runner.len()
    }
}

impl<T> fmt::Debug for PipelineStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineStream")
            .field("pipeline", &self.shared.name)
            .field("started", &self.start.is_none())
            .field("running", &self.runner.len())
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
            this.output = Some(start(&mut this.runner));
        }
        let mut stages_polled = false;
        while let Some(output) = &mut this.output {
            let msg = match output.poll_one(cx) {
                Poll::Ready(msg) => msg,
                // Inline stages run when the consumer has nothing left to take.
                Poll::Pending if !stages_polled && matches!(this.runner, Runner::Inline(_)) => {
                    this.runner.poll_inline(cx);
                    stages_polled = true;
                    continue;
                }
                Poll::Pending => return Poll::Pending,
            };
            output.flush_stats();
            match msg {
                Some(Ok((_, item))) => return Poll::Ready(Some(Ok(item))),
                Some(Err(e)) => {
                    if this.fail_fast {
                        this.shared.bus.publish(PipelineEvent::StoppedOnError { stage: e.stage().into() });
                        this.output = None;
                        this.runner.stop();
                        this.done = true;
                    }
                    return Poll::Ready(Some(Err(e)));
                }
                None => this.output = None,
            }
        }
        // Every stage finished: collect the tasks, resuming a stage's panic here.
        match &mut this.runner {
            Runner::Inline(list) => list.clear(),
            Runner::Tasks(set) => loop {
                match std::task::ready!(set.poll_join_next(cx)) {
                    Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Some(_) => {}
                    None => break,
                }
            },
        }
        this.done = true;
        Poll::Ready(None)
    }
}

impl<T: Send + 'static> FusedStream for PipelineStream<T> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}
