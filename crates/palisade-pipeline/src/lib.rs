//! Typed pipelines of tower services: chained stages with backpressure, stream processing,
//! fan-out/fan-in and batches.
//!
//! This crate is part of [palisade](https://docs.rs/palisade); its minimum supported Rust
//! version is 1.85.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod batch;
pub mod chain;
mod config;
pub mod error;
pub mod fan;
mod handle;
pub mod merge;
mod output;
mod queue;
mod service;
pub mod stage;
mod stream;
mod worker;

pub use crate::batch::{Batch, BatchBuilder, Progress};
pub use crate::config::PipelineBuilder;
pub use crate::error::{DeadLetter, FanOutError, StageError};
pub use crate::fan::FanOut;
pub use crate::handle::{PipelineEvent, PipelineHandle, PipelineSnapshot, StageSnapshot};
pub use crate::output::{FilterMode, Filtered, NoFilter, Order, Processed, WithFilter};
pub use crate::service::{PipelineService, ResponseFuture};
pub use crate::stream::PipelineStream;
