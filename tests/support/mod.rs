//! Shared helpers for the cross-crate integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod grpc;
pub mod http;
