//! Provider discovery and selection: a [`Select`] service over a tower
//! [`Discover`](tower::discover::Discover) stream of heterogeneous providers.
//!
//! Each [`Provider`] is a service plus metadata (cost, capabilities — anything, through
//! [`ProviderMeta`]). `Select` keeps the pool's load tracking for each one (calls in
//! flight, peak-EWMA latency, failures as a palisade-core classifier judges them) and, for
//! every request:
//!
//! 1. keeps the providers that pass the [filter](SelectBuilder::filter);
//! 2. orders them by the [`Ranking`] (lower score first; [`Ranking::Best`],
//!    [`Ranking::Cheapest`], [`Ranking::Fastest`], [`Ranking::Balanced`] or your own),
//!    healthy ones before unhealthy ones (a provider is unhealthy after
//!    [`unhealthy_after`](SelectConfig::unhealthy_after) failures in a row, for
//!    [`down_for`](SelectConfig::down_for); then it is tried again);
//! 3. calls the first; on a classified failure it falls back to the next, up to
//!    [`max_attempts`](SelectConfig::max_attempts), and answers the last result.
//!
//! Providers are added and removed while requests run: a request keeps the providers it
//! ranked; new requests see the new set.
//!
//! Fallback here walks a ranking computed per request, so palisade-fallback's chain (a
//! fixed list built with the layer) is not used; the failure test is the same
//! palisade-core [`Classify`](palisade_core::classify::Classify) vocabulary.
//!
//! `Select<Discovery, K, S, Metadata, C>` keeps tower's `Discover` order (key, then
//! service) and puts the classifier last, against the crate-wide "`C` first, `K` last"
//! order, because only a trailing type parameter can have a default.
//!
//! # Example
//!
//! ```
//! use palisade_pool::provider::{Meta, Provider, Ranking, Select};
//! use tower::discover::Change;
//! use tower::{service_fn, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), palisade_core::BoxError> {
//! // Heterogeneous providers share one service type (box them: `BoxCloneSyncService`).
//! let provider = |name: &'static str, cost: f64, up: bool, capability: &'static str| {
//!     let svc = service_fn(move |q: String| async move {
//!         if up { Ok(format!("{name}: {q}")) } else { Err(std::io::Error::other("down")) }
//!     });
//!     Provider::new(svc, Meta::new(cost).capability(capability))
//! };
//! let providers = vec![
//!     Ok::<_, std::convert::Infallible>(Change::Insert("premium", provider("premium", 10.0, true, "chat"))),
//!     Ok(Change::Insert("budget", provider("budget", 1.0, false, "chat"))),
//!     Ok(Change::Insert("vision", provider("vision", 0.5, true, "vision"))),
//! ];
//! let mut select = Select::builder()
//!     .name("llm")
//!     .ranking(Ranking::Cheapest)
//!     .filter(|m: &Meta| m.has("chat"))
//!     .build(futures_util::stream::iter(providers))?;
//! // The cheapest provider lacks "chat"; the cheapest chat provider fails, so the call
//! // falls back to the next one.
//! let answer = select.ready().await?.call("hi".into()).await?;
//! assert_eq!(answer, "premium: hi");
//! # Ok(())
//! # }
//! ```

mod config;
mod meta;
mod select;

pub use self::config::{SelectBuilder, SelectConfig};
pub use self::meta::{Meta, Provider, ProviderMeta, ProviderSnapshot, Ranking};
pub use self::select::{Select, SelectFuture};
