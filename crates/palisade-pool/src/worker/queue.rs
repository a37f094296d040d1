//! The worker's queue of accepted requests: FIFO, or by priority (highest first, FIFO
//! within a priority).

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, VecDeque};
use std::task::Context;

use super::{drop_guarded, Message};

pub(super) struct Ranked<Req, Res> {
    priority: u8,
    seq: u64,
    message: Message<Req, Res>,
}

impl<Req, Res> PartialEq for Ranked<Req, Res> {
    fn eq(&self, other: &Self) -> bool {
        self.priority == other.priority && self.seq == other.seq
    }
}

impl<Req, Res> Eq for Ranked<Req, Res> {}

impl<Req, Res> PartialOrd for Ranked<Req, Res> {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl<Req, Res> Ord for Ranked<Req, Res> {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        // Highest priority first, then the earliest arrival.
        self.priority.cmp(&other.priority).then_with(|| other.seq.cmp(&self.seq))
    }
}

pub(super) enum Queue<Req, Res> {
    Fifo(VecDeque<Message<Req, Res>>),
    Priority { heap: BinaryHeap<Ranked<Req, Res>>, seq: u64 },
}

impl<Req, Res> Queue<Req, Res> {
    pub(super) fn push(&mut self, message: Message<Req, Res>) {
        if message.priority != 0 {
            if let Self::Fifo(q) = self {
                // A ranked request (a batch with a priority) turns the FIFO into a priority
                // queue; the requests already waiting keep their order (priority 0, by seq).
                let waiting = std::mem::take(q);
                let mut heap = BinaryHeap::with_capacity(waiting.len() + 1);
                let mut seq = 0;
                for m in waiting {
                    seq += 1;
                    heap.push(Ranked { priority: m.priority, seq, message: m });
                }
                *self = Self::Priority { heap, seq };
            }
        }
        match self {
            Self::Fifo(q) => q.push_back(message),
            Self::Priority { heap, seq } => {
                *seq += 1;
                heap.push(Ranked { priority: message.priority, seq: *seq, message });
            }
        }
    }

    pub(super) fn pop(&mut self) -> Option<Message<Req, Res>> {
        match self {
            Self::Fifo(q) => q.pop_front(),
            Self::Priority { heap, .. } => heap.pop().map(|r| r.message),
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Self::Fifo(q) => q.len(),
            Self::Priority { heap, .. } => heap.len(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops messages whose caller went away (registering to hear about the others). A
    /// request whose `Drop` panics is contained (logged under the pool's `name`).
    pub(super) fn prune_cancelled(&mut self, cx: &mut Context<'_>, name: &str) -> usize {
        let before = self.len();
        let mut keep = |m: &mut Message<Req, Res>| m.reply.poll_closed(cx).is_pending();
        match self {
            Self::Fifo(q) => {
                for mut m in std::mem::take(q) {
                    if keep(&mut m) {
                        q.push_back(m);
                    } else {
                        drop_guarded(m, name, "a cancelled request");
                    }
                }
            }
            Self::Priority { heap, .. } => {
                let mut kept = Vec::with_capacity(heap.len());
                for mut r in std::mem::take(heap).into_vec() {
                    if keep(&mut r.message) {
                        kept.push(r);
                    } else {
                        drop_guarded(r, name, "a cancelled request");
                    }
                }
                *heap = BinaryHeap::from(kept);
            }
        }
        before - self.len()
    }
}
