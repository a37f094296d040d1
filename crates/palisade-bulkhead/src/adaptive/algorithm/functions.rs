//! The step functions concurrency-limits uses to scale Vegas' thresholds with the limit.

/// `max(1, floor(log10(limit)))` — concurrency-limits' `Log10RootIntFunction.create(0)`,
/// Vegas' default step (`log10(0)` counts as 1). Add a baseline yourself:
/// `log10_root(n) + baseline` is `create(baseline)`.
///
/// ```
/// use palisade_bulkhead::adaptive::functions::log10_root;
/// assert_eq!(log10_root(0), 1);
/// assert_eq!(log10_root(100), 2);
/// assert_eq!(log10_root(10_000), 4);
/// ```
pub fn log10_root(limit: usize) -> usize {
    if limit == 0 {
        1
    } else {
        (limit.ilog10() as usize).max(1)
    }
}

/// `max(1, floor(sqrt(limit)))` — concurrency-limits' `SquareRootFunction` (its
/// `create(baseline)` is `square_root(n).max(baseline)`).
///
/// ```
/// use palisade_bulkhead::adaptive::functions::square_root;
/// assert_eq!(square_root(0).max(4), 4);
/// assert_eq!(square_root(999).max(4), 31);
/// assert_eq!(square_root(2500).max(4), 50);
/// ```
pub fn square_root(limit: usize) -> usize {
    limit.isqrt().max(1)
}
