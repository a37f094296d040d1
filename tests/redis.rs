//! Facade test: the `redis` feature re-exports palisade-redis.
#![cfg(feature = "redis")]

#[test]
fn facade_reexports_palisade_redis() {
    let _ = palisade::redis::server::INSTALL_HINT;
}
