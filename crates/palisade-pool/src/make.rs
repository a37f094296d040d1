//! [`make_fn`]: a `MakeService` from a closure, to make a pool's members — palisade-core's
//! [`make_fn`](palisade_core::make_fn), written once for the pool, supervised pipeline
//! stages and pollers.
//!
//! ```
//! use palisade_pool::make_fn;
//! let make = make_fn(|| async { Ok::<_, std::io::Error>(tower::service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x + 1) })) });
//! # let _ = make;
//! ```

pub use palisade_core::make_fn::{make_fn, MakeFn};
