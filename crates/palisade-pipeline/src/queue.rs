//! The bounded buffer between two stages: one producer, one consumer, items moved in batches
//! under one short lock (a stage moves every result that fits, the next stage takes as many
//! items as it has free slots), so the cost per item stays far below a channel send and
//! receive.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

struct State<T> {
    items: VecDeque<T>,
    capacity: usize,
    rx_waker: Option<Waker>,
    tx_waker: Option<Waker>,
    tx_closed: bool,
    rx_closed: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        palisade_core::sync::lock(&self.state)
    }
}

/// The producing end.
pub(crate) struct QueueTx<T> {
    shared: Arc<Shared<T>>,
}

/// The consuming end.
pub(crate) struct QueueRx<T> {
    shared: Arc<Shared<T>>,
}

/// The other end is gone.
#[derive(Debug)]
pub(crate) struct Closed;

/// A queue holding at most `capacity` items.
pub(crate) fn queue<T>(capacity: usize) -> (QueueTx<T>, QueueRx<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            capacity,
            rx_waker: None,
            tx_waker: None,
            tx_closed: false,
            rx_closed: false,
        }),
    });
    (QueueTx { shared: shared.clone() }, QueueRx { shared })
}

fn store(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

impl<T> QueueTx<T> {
    /// Moves items from the front of `from` while there is room; returns how many moved.
    /// When some are left (the queue is full), the task is woken once there is room.
    pub(crate) fn push_from(&mut self, from: &mut VecDeque<T>, cx: &Context<'_>) -> Result<usize, Closed> {
        let (moved, wake) = {
            let mut state = self.shared.lock();
            if state.rx_closed {
                return Err(Closed);
            }
            let room = state.capacity.saturating_sub(state.items.len());
            let moved = room.min(from.len());
            state.items.extend(from.drain(..moved));
            if !from.is_empty() {
                store(&mut state.tx_waker, cx);
            }
            (moved, if moved > 0 { state.rx_waker.take() } else { None })
        };
        if let Some(w) = wake {
            w.wake();
        }
        Ok(moved)
    }
}

impl<T> Drop for QueueTx<T> {
    fn drop(&mut self) {
        let wake = {
            let mut state = self.shared.lock();
            state.tx_closed = true;
            state.rx_waker.take()
        };
        if let Some(w) = wake {
            w.wake();
        }
    }
}

impl<T> QueueRx<T> {
    /// Moves up to `max` items to the back of `into`. `Ready(true)`: at least one moved;
    /// `Ready(false)`: the producer is gone and the queue is empty; `Pending`: empty for now.
    pub(crate) fn poll_pop_into(
        &mut self,
        into: &mut VecDeque<T>,
        max: usize,
        cx: &Context<'_>,
    ) -> Poll<bool> {
        let wake = {
            let mut state = self.shared.lock();
            if state.items.is_empty() {
                if state.tx_closed {
                    return Poll::Ready(false);
                }
                store(&mut state.rx_waker, cx);
                return Poll::Pending;
            }
            let n = max.min(state.items.len());
            into.extend(state.items.drain(..n));
            state.tx_waker.take()
        };
        if let Some(w) = wake {
            w.wake();
        }
        Poll::Ready(true)
    }

    /// Takes one item.
    pub(crate) fn poll_pop(&mut self, cx: &Context<'_>) -> Poll<Option<T>> {
        let (item, wake) = {
            let mut state = self.shared.lock();
            match state.items.pop_front() {
                Some(item) => (item, state.tx_waker.take()),
                None if state.tx_closed => return Poll::Ready(None),
                None => {
                    store(&mut state.rx_waker, cx);
                    return Poll::Pending;
                }
            }
        };
        if let Some(w) = wake {
            w.wake();
        }
        Poll::Ready(Some(item))
    }

    /// Items waiting.
    pub(crate) fn len(&self) -> usize {
        self.shared.lock().items.len()
    }
}

impl<T> Drop for QueueRx<T> {
    fn drop(&mut self) {
        let (items, wake) = {
            let mut state = self.shared.lock();
            state.rx_closed = true;
            (std::mem::take(&mut state.items), state.tx_waker.take())
        };
        // Drop the items outside the lock.
        drop(items);
        if let Some(w) = wake {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    #[derive(Default)]
    struct CountWake(AtomicUsize);

    impl Wake for CountWake {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn bounded_batches_and_wakeups() {
        let (mut tx, mut rx) = queue::<u32>(3);
        let tx_wakes = Arc::new(CountWake::default());
        let rx_wakes = Arc::new(CountWake::default());
        let tx_waker = Waker::from(tx_wakes.clone());
        let rx_waker = Waker::from(rx_wakes.clone());
        let tx_cx = Context::from_waker(&tx_waker);
        let rx_cx = Context::from_waker(&rx_waker);

        let mut out = VecDeque::new();
        assert!(rx.poll_pop_into(&mut out, 10, &rx_cx).is_pending());

        let mut pending: VecDeque<u32> = (0..5).collect();
        assert_eq!(tx.push_from(&mut pending, &tx_cx).unwrap(), 3);
        assert_eq!(pending, [3, 4]);
        assert_eq!(rx_wakes.0.load(Ordering::SeqCst), 1);
        assert_eq!(rx.len(), 3);

        assert_eq!(rx.poll_pop_into(&mut out, 2, &rx_cx), Poll::Ready(true));
        assert_eq!(out, [0, 1]);
        assert_eq!(tx_wakes.0.load(Ordering::SeqCst), 1);
        assert_eq!(tx.push_from(&mut pending, &tx_cx).unwrap(), 2);
        assert_eq!(rx.poll_pop(&rx_cx), Poll::Ready(Some(2)));
        drop(tx);
        assert_eq!(rx.poll_pop(&rx_cx), Poll::Ready(Some(3)));
        assert_eq!(rx.poll_pop(&rx_cx), Poll::Ready(Some(4)));
        assert_eq!(rx.poll_pop(&rx_cx), Poll::Ready(None));
        assert_eq!(rx.poll_pop_into(&mut out, 1, &rx_cx), Poll::Ready(false));
    }

    #[test]
    fn a_dropped_receiver_closes_and_drops_items() {
        let (mut tx, rx) = queue::<Arc<()>>(4);
        let item = Arc::new(());
        let mut pending: VecDeque<_> = [item.clone(), item.clone()].into_iter().collect();
        let waker = Waker::from(Arc::new(CountWake::default()));
        let cx = Context::from_waker(&waker);
        tx.push_from(&mut pending, &cx).unwrap();
        assert_eq!(Arc::strong_count(&item), 3);
        drop(rx);
        assert_eq!(Arc::strong_count(&item), 1);
        let mut more: VecDeque<_> = [item.clone()].into_iter().collect();
        assert!(tx.push_from(&mut more, &cx).is_err());
    }
}
