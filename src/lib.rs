//! palisade: tower middleware for resilience and concurrency.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use palisade_core as core;
