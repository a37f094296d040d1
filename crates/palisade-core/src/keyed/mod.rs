//! Keyed layers: one state per key derived from the request (client IP, API key, host), with
//! an exact bound on the number of keys, and [`Unkeyed`] for requests without a key.
//!
//! Keyed breakers, limiters and bulkheads keep one state per key. Keys are chosen by
//! whoever sends requests, so the state must never grow with them: a keyed layer holds at
//! most `max_keys` keys, exactly (default 100,000).
//!
//! # When a key is forgotten
//!
//! Forgetting a key resets its state, so a limit could be walked around by making the layer
//! forget keys. A key is therefore dropped only when forgetting it is indistinguishable from
//! a fresh key — a token bucket whose theoretical arrival time has passed, a bulkhead
//! compartment with no permit held or queued, a closed breaker with nothing recorded — **and**
//! no request in flight or waiting holds its state.
//!
//! Keys are dropped only when a new key arrives and all `max_keys` places are taken — never
//! while there is room, so a working set that fits is never touched. Which forgettable keys
//! go does not matter: they are indistinguishable from fresh ones.
//!
//! # Overflow policy
//!
//! When a new key arrives and every place holds a key that may not be forgotten, the *new*
//! key is refused with the typed rejection [`KeySetFull`](crate::rejection::KeySetFull)
//! (HTTP 503); no state is ever silently reset. The keys already held keep being served.
//!
//! Looking for forgettable keys costs a scan of the keys. To keep memory *and* time bounded
//! under a flood of hostile keys, a full layer scans again only after enough refused new keys
//! to pay for it (one scan per `len / 16` new keys) or after 100 ms (tokio time), so a flood
//! costs amortised O(1) per request; the price is that a key which became forgettable just
//! after a scan may wait up to that long before its place is reused.
//!
//! Memory is bounded by `max_keys` times the size of a key and its state. A key is stored
//! as the key function returns it, so derive a small key from what a client controls (an
//! IP address, a tenant id, a hash of an API key — not a whole header value, which a
//! client can make tens of kilobytes long).
//!
//! Lookups of existing keys take a shard's read lock; keys are split into shards so threads
//! rarely meet. Within a shard keys are hashed with std's randomly keyed SipHash, so an
//! attacker cannot make them collide; the shard is picked by a cheap unkeyed hash (keys aimed
//! at one shard only make that shard's lock busier: the bound on keys and the eviction rule
//! are the whole layer's, not a shard's).
//!
//! # Requests without a key
//!
//! A key function returns `Option<K>`; for `None` the layer does what its
//! `.when_unkeyed(Unkeyed::…)` says ([`Unkeyed::Reject`] with
//! [`KeyMissing`](crate::rejection::KeyMissing) by default, [`Unkeyed::PassThrough`], or
//! [`Unkeyed::Shared`]) and logs a warning (target `palisade`) the first time.

mod map;
mod unkeyed;

#[doc(hidden)]
pub use map::{Forget, Full, KeyedMap};
pub use unkeyed::Unkeyed;
#[doc(hidden)]
pub use unkeyed::WarnOnce;
