//! The lock-free parts, exposed for the loom model tests (`--cfg loom` only).
#![allow(missing_docs, missing_debug_implementations)]

use std::time::Duration;

use crate::window::SlidingCounter;

pub struct Window(SlidingCounter);

impl Window {
    pub fn new() -> Self {
        Self(SlidingCounter::new(Duration::from_secs(10)))
    }
    pub fn add_at(&self, epoch: u32, delta: i64) -> i64 {
        self.0.add_at(epoch, delta)
    }
    pub fn sum_at(&self, epoch: u32) -> i64 {
        self.0.sum_at(epoch)
    }
}

impl Default for Window {
    fn default() -> Self {
        Self::new()
    }
}
