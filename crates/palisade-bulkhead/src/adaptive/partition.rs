//! Partitions: which share of the limit a call draws from, and the bypass predicate.

use std::fmt;
use std::sync::Arc;

/// Picks a call's partition from its request.
///
/// Implemented by [`NoPartitions`] and by [`PartitionBy`] (from
/// [`AdaptiveLimitBuilder::partition_by`](super::AdaptiveLimitBuilder::partition_by)).
pub trait Partitioner<Req> {
    /// The index in `partitions` of the request's partition, or `None` (the call then only
    /// passes while the total is under the limit).
    fn select(&self, req: &Req, partitions: &[Arc<str>]) -> Option<usize>;

    /// Whether `req` skips the limit altogether (see
    /// [`AdaptiveLimitBuilder::bypass`](super::AdaptiveLimitBuilder::bypass)): no capacity taken, no sample, never shed.
    fn bypass(&self, req: &Req) -> bool {
        let _ = req;
        false
    }
}

/// A partitioner with a bypass predicate, from [`AdaptiveLimitBuilder::bypass`](super::AdaptiveLimitBuilder::bypass).
#[derive(Clone, Copy)]
pub struct Bypass<Partition, Predicate> {
    pub(super) inner: Partition,
    pub(super) predicate: Predicate,
}

impl<Partition, Predicate> fmt::Debug for Bypass<Partition, Predicate> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bypass").finish_non_exhaustive()
    }
}

impl<Req, Partition, Predicate> Partitioner<Req> for Bypass<Partition, Predicate>
where
    Partition: Partitioner<Req>,
    Predicate: Fn(&Req) -> bool,
{
    fn select(&self, req: &Req, partitions: &[Arc<str>]) -> Option<usize> {
        self.inner.select(req, partitions)
    }

    fn bypass(&self, req: &Req) -> bool {
        // Several predicates are or-ed, as concurrency-limits' `bypassLimitResolver`.
        self.inner.bypass(req) || (self.predicate)(req)
    }
}

/// No partitions: every call shares the whole limit.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPartitions;

impl<Req> Partitioner<Req> for NoPartitions {
    fn select(&self, _: &Req, _: &[Arc<str>]) -> Option<usize> {
        None
    }
}

/// Partitions by a function from the request to a partition name.
#[derive(Clone, Copy)]
pub struct PartitionBy<Select>(pub(super) Select);

impl<Select> fmt::Debug for PartitionBy<Select> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionBy").finish_non_exhaustive()
    }
}

impl<Req, Select, N> Partitioner<Req> for PartitionBy<Select>
where
    Select: Fn(&Req) -> N,
    N: AsRef<str>,
{
    fn select(&self, req: &Req, partitions: &[Arc<str>]) -> Option<usize> {
        let name = (self.0)(req);
        partitions.iter().position(|p| **p == *name.as_ref())
    }
}
