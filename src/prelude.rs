//! The names most stacks need: `use palisade::prelude::*;`.

pub use crate::ServiceBuilderExt;
pub use palisade_core::classify::{Classification, Classify, ClassifyExt, DefaultClassifier, Outcome};
#[cfg(feature = "grpc")]
pub use palisade_core::classify::GrpcClassifier;
#[cfg(feature = "http")]
pub use palisade_core::classify::HttpClassifier;
pub use palisade_core::rejection::{find_rejection, Rejection, RejectionKind};
#[cfg(feature = "grpc")]
pub use palisade_core::respond::GrpcRejectionLayer;
#[cfg(feature = "http")]
pub use palisade_core::respond::HttpRejectionLayer;
pub use palisade_core::{BoxError, ConfigError};
