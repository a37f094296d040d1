//! Reloading a policies file: what changed, what was applied through the handles, and what
//! needs a rebuild ([`ReloadReport`]).

use serde::Serialize;
use serde_json::Value;

use palisade_core::ConfigError;

use super::config::PolicyConfig;
use super::policy::PolicyLayer;
use crate::bulkhead::adaptive::{AdaptiveLimitHandle, AlgorithmConfig};

/// What a [`Registry::reload`](super::Registry::reload) did.
///
/// Fields are full paths (`policies.api.bulkhead.max_concurrent`), leaves of the settings
/// that differ between what runs and the new file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadReport {
    /// Changes applied at run time through the layers' handles: every service already built
    /// obeys them now.
    pub applied: Vec<String>,
    /// Changes not applied: the layers keep their old settings until the registry is
    /// rebuilt (and the next reload reports them again).
    pub needs_rebuild: Vec<NotApplied>,
}

impl ReloadReport {
    /// `true` when the new file asked for nothing that still waits for a rebuild.
    pub fn is_complete(&self) -> bool {
        self.needs_rebuild.is_empty()
    }
}

/// A change a reload could not apply, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NotApplied {
    /// The full path of the setting (or section, or policy).
    pub field: String,
    /// Why it waits for a rebuild.
    pub reason: String,
}

const NO_SETTER: &str = "the layer cannot change this setting at run time: rebuild the registry";

/// The leaves that differ between two serialised configs, as paths under `prefix`.
fn diff(prefix: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let path = format!("{prefix}.{key}");
                diff(&path, a.get(key).unwrap_or(&Value::Null), b.get(key).unwrap_or(&Value::Null), out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(&format!("{prefix}[{i}]"), x, y, out);
            }
        }
        (a, b) if a != b => out.push(prefix.to_owned()),
        _ => {}
    }
}

/// The changed leaves of a section, relative to it (`max_concurrent`, `quota.limit`).
fn changed<T: Serialize>(old: &T, new: &T) -> Vec<String> {
    let (Ok(a), Ok(b)) = (serde_json::to_value(old), serde_json::to_value(new)) else {
        // Every palisade config serialises to JSON; if one ever does not, report it whole.
        return vec![String::new()];
    };
    let mut out = Vec::new();
    diff("", &a, &b, &mut out);
    out.into_iter().map(|p| p.trim_start_matches('.').to_owned()).collect()
}

/// The first segment of a relative path: `quota` of `quota.limit`, `tiers[0]` of
/// `tiers[0].quota.limit`.
fn group(path: &str) -> &str {
    path.split('.').next().unwrap_or(path)
}

/// Collects what one policy's reload did into `report`, updating `running` for what was
/// applied.
pub(crate) struct Reloader<'a> {
    pub(crate) prefix: String,
    pub(crate) report: &'a mut ReloadReport,
}

impl Reloader<'_> {
    fn path(&self, section: &str, leaf: &str) -> String {
        if leaf.is_empty() {
            format!("{}.{section}", self.prefix)
        } else {
            format!("{}.{section}.{leaf}", self.prefix)
        }
    }

    fn applied(&mut self, section: &str, leaves: &[&String]) {
        for leaf in leaves {
            let path = self.path(section, leaf);
            self.report.applied.push(path);
        }
    }

    fn refused(&mut self, section: &str, leaves: &[&String], reason: &str) {
        for leaf in leaves {
            let field = self.path(section, leaf);
            self.report.needs_rebuild.push(NotApplied { field, reason: reason.to_owned() });
        }
    }

    /// Applies what the handles can change, section by section.
    pub(crate) fn policy<Req, Res>(
        &mut self,
        layer: &PolicyLayer<Req, Res>,
        running: &mut PolicyConfig,
        new: &PolicyConfig,
    ) {
        macro_rules! presence {
            ($field:ident) => {
                match (&running.$field, &new.$field) {
                    (Some(_), None) => {
                        self.refused(
                            stringify!($field),
                            &[&String::new()],
                            "section removed: rebuild the registry",
                        );
                        None
                    }
                    (None, Some(_)) => {
                        self.refused(
                            stringify!($field),
                            &[&String::new()],
                            "section added: rebuild the registry",
                        );
                        None
                    }
                    (Some(old), Some(new)) if old != new => Some((changed(old, new), new.clone())),
                    _ => None,
                }
            };
        }
        // Sections with no run-time setter: every change waits for a rebuild.
        macro_rules! fixed {
            ($field:ident) => {
                if let Some((leaves, _)) = presence!($field) {
                    let leaves: Vec<&String> = leaves.iter().collect();
                    self.refused(stringify!($field), &leaves, NO_SETTER);
                }
            };
        }
        fixed!(timeout);
        fixed!(retry);
        fixed!(circuit_breaker);
        fixed!(attempt_timeout);

        if let (Some((leaves, new)), Some(l), Some(run)) =
            (presence!(bulkhead), &layer.bulkhead, running.bulkhead.as_mut())
        {
            let handle = l.handle();
            for (group, leaves) in grouped(&leaves) {
                let result = match group {
                    "max_concurrent" => handle.set_max_concurrent(new.max_concurrent).map(|()| {
                        run.max_concurrent = new.max_concurrent;
                    }),
                    "when_full" => {
                        handle.set_when_full(new.when_full);
                        run.when_full = new.when_full;
                        Ok(())
                    }
                    "max_queue" => {
                        handle.set_max_queue(new.max_queue);
                        run.max_queue = new.max_queue;
                        Ok(())
                    }
                    _ => {
                        self.refused("bulkhead", &leaves, NO_SETTER);
                        continue;
                    }
                };
                self.outcome("bulkhead", &leaves, result);
            }
        }

        if let (Some((leaves, new)), Some(l), Some(run)) =
            (presence!(adaptive_limit), &layer.adaptive_limit, running.adaptive_limit.as_mut())
        {
            let handle = l.handle();
            for (group, leaves) in grouped(&leaves) {
                if group != "algorithm" {
                    self.refused("adaptive_limit", &leaves, NO_SETTER);
                    continue;
                }
                match (limits(&run.algorithm), limits(&new.algorithm)) {
                    (Some(old), Some(to)) if same_algorithm(&leaves) => {
                        let result = apply_limits(&handle, old, to);
                        if result.is_ok() {
                            run.algorithm = new.algorithm.clone();
                        }
                        self.outcome("adaptive_limit", &leaves, result);
                    }
                    _ => self.refused(
                        "adaptive_limit",
                        &leaves,
                        "only an algorithm's initial_limit, min_limit and max_limit change at run time: rebuild the registry",
                    ),
                }
            }
        }

        if let (Some((leaves, new)), Some(l), Some(run)) =
            (presence!(rate_limit), &layer.rate_limit, running.rate_limit.as_mut())
        {
            let handle = l.handle();
            let unique = |name: &str| handle.tiers().filter(|t| t.name() == name).count() == 1;
            for (group, leaves) in grouped(&leaves) {
                // The config's own quota is the first tier: "global", or "per_key" when keyed.
                let own = handle.tiers().next().map(|t| t.name().to_owned()).unwrap_or_default();
                let result = if group == "quota" {
                    match (&run.quota, &new.quota) {
                        (Some(_), Some(quota)) if unique(&own) => {
                            handle.set_quota(&own, *quota).map(|()| run.quota = Some(*quota))
                        }
                        _ => {
                            self.refused("rate_limit", &leaves, "the quota was added, removed or shares its tier's name: rebuild the registry");
                            continue;
                        }
                    }
                } else if let Some(i) = tier_index(group) {
                    let (Some(old), Some(tier)) = (run.tiers.get(i), new.tiers.get(i)) else {
                        continue;
                    };
                    let name = tier.name.clone().unwrap_or_else(|| "global".to_owned());
                    let only_quota = leaves.iter().all(|p| p.starts_with(&format!("tiers[{i}].quota")));
                    if only_quota && old.name == tier.name && old.algorithm == tier.algorithm && unique(&name)
                    {
                        let quota = tier.quota;
                        handle.set_quota(&name, quota).map(|()| run.tiers[i] = tier.clone())
                    } else {
                        self.refused("rate_limit", &leaves, "only a tier's quota changes at run time (its name must be unique): rebuild the registry");
                        continue;
                    }
                } else {
                    self.refused("rate_limit", &leaves, NO_SETTER);
                    continue;
                };
                self.outcome("rate_limit", &leaves, result);
            }
        }

        if let (Some((leaves, new)), Some(l), Some(run)) =
            (presence!(chaos), &layer.chaos, running.chaos.as_mut())
        {
            let handle = l.handle();
            for (group, leaves) in grouped(&leaves) {
                let result = match group {
                    "enabled" => {
                        handle.set_enabled(new.enabled);
                        run.enabled = new.enabled;
                        Ok(())
                    }
                    "fault_rate" => {
                        handle.set_fault_rate(new.fault_rate).map(|()| run.fault_rate = new.fault_rate)
                    }
                    "outcome_rate" => handle
                        .set_outcome_rate(new.outcome_rate)
                        .map(|()| run.outcome_rate = new.outcome_rate),
                    "latency_rate" => handle
                        .set_latency_rate(new.latency_rate)
                        .map(|()| run.latency_rate = new.latency_rate),
                    "hang_rate" => {
                        handle.set_hang_rate(new.hang_rate).map(|()| run.hang_rate = new.hang_rate)
                    }
                    "latency" if new.latency.is_some() => {
                        let latency = new.latency.unwrap_or_default();
                        handle.set_latency(latency).map(|()| run.latency = new.latency)
                    }
                    _ => {
                        self.refused("chaos", &leaves, NO_SETTER);
                        continue;
                    }
                };
                self.outcome("chaos", &leaves, result);
            }
        }
    }

    fn outcome(&mut self, section: &str, leaves: &[&String], result: Result<(), ConfigError>) {
        match result {
            Ok(()) => self.applied(section, leaves),
            Err(e) => self.refused(section, leaves, &format!("the handle refused it: {e}")),
        }
    }
}

/// An adaptive algorithm's `(initial_limit, min_limit, max_limit)`.
type Limits = (Option<usize>, Option<usize>, Option<usize>);

fn limits(algorithm: &AlgorithmConfig) -> Option<Limits> {
    match algorithm {
        AlgorithmConfig::Aimd(c) => Some((c.initial_limit, c.min_limit, c.max_limit)),
        AlgorithmConfig::Vegas(c) => Some((c.initial_limit, c.min_limit, c.max_limit)),
        AlgorithmConfig::Gradient2(c) => Some((c.initial_limit, c.min_limit, c.max_limit)),
        _ => None,
    }
}

/// Every changed leaf is a limit of the same algorithm (`algorithm.vegas.max_limit`).
fn same_algorithm(leaves: &[&String]) -> bool {
    leaves.iter().all(|leaf| {
        let mut parts = leaf.split('.');
        let (Some("algorithm"), Some(_), Some(field), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        matches!(field, "initial_limit" | "min_limit" | "max_limit")
    })
}

/// New bounds through `set_bounds`, a new initial limit through `set_limit`. A limit taken
/// out of the file (back to the algorithm's default) is not applied: the default is the
/// algorithm's, not the registry's to guess.
fn apply_limits(handle: &AdaptiveLimitHandle, old: Limits, new: Limits) -> Result<(), ConfigError> {
    let unset =
        |field: &'static str| ConfigError::new(field, "taken out of the file: rebuild to get the default");
    if (old.1, old.2) != (new.1, new.2) {
        let (cur_min, cur_max) =
            handle.bounds().ok_or_else(|| ConfigError::new("algorithm", "has no bounds"))?;
        let min = match (old.1, new.1) {
            (Some(_), None) => return Err(unset("min_limit")),
            (_, n) => n.unwrap_or(cur_min),
        };
        let max = match (old.2, new.2) {
            (Some(_), None) => return Err(unset("max_limit")),
            (_, n) => n.unwrap_or(cur_max),
        };
        handle.set_bounds(min, max)?;
    }
    if old.0 != new.0 {
        handle.set_limit(new.0.ok_or_else(|| unset("initial_limit"))?)?;
    }
    Ok(())
}

/// `Some(i)` for `tiers[i]`.
fn tier_index(group: &str) -> Option<usize> {
    group.strip_prefix("tiers[")?.strip_suffix(']')?.parse().ok()
}

/// Leaves grouped by their first segment, in order.
fn grouped(leaves: &[String]) -> Vec<(&str, Vec<&String>)> {
    let mut groups: Vec<(&str, Vec<&String>)> = Vec::new();
    for leaf in leaves {
        let g = group(leaf);
        match groups.iter_mut().find(|(name, _)| *name == g) {
            Some((_, list)) => list.push(leaf),
            None => groups.push((g, vec![leaf])),
        }
    }
    groups
}
