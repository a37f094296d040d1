//! gRPC's `grpc-timeout` header.

use std::time::Duration;

/// Reads gRPC's `grpc-timeout` header (`"250m"`, `"5S"`, …: at most 8 digits and a unit
/// `H`, `M`, `S`, `m`, `u`, `n`, as the gRPC over HTTP/2 protocol defines it); `None` when
/// absent or malformed. Use it with [`TimeoutBuilder::per_request`](crate::TimeoutBuilder::per_request)
/// to give each call the budget its caller sent.
///
/// ```
/// use std::time::Duration;
/// use palisade_timeout::grpc_timeout;
///
/// let req = http::Request::builder().header("grpc-timeout", "250m").body(()).unwrap();
/// assert_eq!(grpc_timeout(&req), Some(Duration::from_millis(250)));
/// ```
pub fn grpc_timeout<B>(req: &http::Request<B>) -> Option<Duration> {
    let value = req.headers().get("grpc-timeout")?.as_bytes();
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b"H" => Duration::from_secs(n * 3600),
        b"M" => Duration::from_secs(n * 60),
        b"S" => Duration::from_secs(n),
        b"m" => Duration::from_millis(n),
        b"u" => Duration::from_micros(n),
        b"n" => Duration::from_nanos(n),
        _ => return None,
    })
}
