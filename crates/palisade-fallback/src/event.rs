//! Events published by the fallback layer.

use std::sync::Arc;

use palisade_core::event::{Event, FieldValue};
use palisade_core::rejection::RejectionKind;
use tracing::Level;

/// Why a fallback was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FallbackReason {
    /// The inner service answered an error the classifier judged a failure.
    Error,
    /// The inner service answered a response the classifier judged a failure.
    FailedResponse,
    /// A palisade layer refused the call.
    Rejection(RejectionKind),
}

impl FallbackReason {
    /// A short stable name (`"error"`, `"failed_response"`, or the rejection kind).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::FailedResponse => "failed_response",
            Self::Rejection(kind) => kind.as_str(),
        }
    }
}

/// What happened inside a [`FallbackLayer`](crate::FallbackLayer).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum FallbackEvent {
    /// A fallback provider answered in place of the inner service.
    Used {
        /// The provider's name (`"fn"` for a closure, `"fallback"` for a single service, the
        /// given names for a chain).
        provider: Arc<str>,
        /// The provider's position in the chain (0 for the first).
        index: usize,
        /// Why the fallback started.
        reason: FallbackReason,
    },
    /// A fallback provider failed too; the next one is tried if there is one.
    ProviderFailed {
        /// The provider's name.
        provider: Arc<str>,
        /// The provider's position in the chain.
        index: usize,
        /// What went wrong (the error's message, or `"failed response"`).
        error: Arc<str>,
    },
    /// Every provider failed; the caller gets the last provider's answer.
    Exhausted {
        /// How many providers were tried.
        providers: usize,
        /// Why the fallback started.
        reason: FallbackReason,
    },
}

impl Event for FallbackEvent {
    /// `provider` and `index` (the provider used or failed), `reason` (what triggered the
    /// fallback), `error` (a provider's failure), `count` (providers tried, when exhausted).
    fn fields(&self, record: &mut dyn FnMut(&'static str, FieldValue)) {
        match self {
            Self::Used { provider, index, reason } => {
                record("provider", provider.into());
                record("index", (*index).into());
                record("reason", reason.as_str().into());
            }
            Self::ProviderFailed { provider, index, error } => {
                record("provider", provider.into());
                record("index", (*index).into());
                record("error", error.into());
            }
            Self::Exhausted { providers, reason } => {
                record("count", (*providers).into());
                record("reason", reason.as_str().into());
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Used { .. } => "fallback_used",
            Self::ProviderFailed { .. } => "provider_failed",
            Self::Exhausted { .. } => "fallback_exhausted",
        }
    }

    fn level(&self) -> Level {
        match self {
            Self::Used { .. } => Level::DEBUG,
            Self::ProviderFailed { .. } | Self::Exhausted { .. } => Level::WARN,
        }
    }
}
