//! One event's fields sorted into the typed slots of the `tracing` callsite.

use std::borrow::Cow;

use super::{Event, FieldValue};

/// One event's fields, sorted into the typed slots of the `tracing` callsite.
#[derive(Default)]
pub(super) struct Fields {
    pub(super) from: Option<Cow<'static, str>>,
    pub(super) to: Option<Cow<'static, str>>,
    pub(super) reason: Option<Cow<'static, str>>,
    pub(super) key: Option<Cow<'static, str>>,
    pub(super) outcome: Option<Cow<'static, str>>,
    pub(super) error: Option<Cow<'static, str>>,
    pub(super) stage: Option<Cow<'static, str>>,
    pub(super) tier: Option<Cow<'static, str>>,
    pub(super) partition: Option<Cow<'static, str>>,
    pub(super) provider: Option<Cow<'static, str>>,
    pub(super) failure_rate: Option<f64>,
    pub(super) slow_call_rate: Option<f64>,
    pub(super) retry_after_ms: Option<u64>,
    pub(super) wait_ms: Option<u64>,
    pub(super) delay_ms: Option<u64>,
    pub(super) elapsed_ms: Option<u64>,
    pub(super) attempt: Option<u64>,
    pub(super) failures: Option<u64>,
    pub(super) successes: Option<u64>,
    pub(super) limit: Option<u64>,
    pub(super) in_flight: Option<u64>,
    pub(super) count: Option<u64>,
    pub(super) pid: Option<u64>,
    pub(super) member: Option<u64>,
    pub(super) from_limit: Option<u64>,
    pub(super) to_limit: Option<u64>,
    pub(super) slow: Option<bool>,
    pub(super) extra: Option<String>,
}

impl Fields {
    pub(super) fn of(event: &dyn Event) -> Self {
        let mut f = Self::default();
        event.fields(&mut |name, value| f.put(name, value));
        f
    }

    fn put(&mut self, name: &'static str, value: FieldValue) {
        fn text(v: FieldValue) -> Cow<'static, str> {
            match v {
                FieldValue::Str(s) => s,
                other => Cow::Owned(other.to_string()),
            }
        }
        fn uint(v: &FieldValue) -> Option<u64> {
            match *v {
                FieldValue::U64(n) => Some(n),
                FieldValue::I64(n) => u64::try_from(n).ok(),
                _ => None,
            }
        }
        fn float(v: &FieldValue) -> Option<f64> {
            match *v {
                FieldValue::F64(x) => Some(x),
                #[allow(clippy::cast_precision_loss)] // a rate given as a whole number
                FieldValue::U64(n) => Some(n as f64),
                #[allow(clippy::cast_precision_loss)]
                FieldValue::I64(n) => Some(n as f64),
                _ => None,
            }
        }
        let slot_str = match name {
            "from" => Some(&mut self.from),
            "to" => Some(&mut self.to),
            "reason" => Some(&mut self.reason),
            "key" => Some(&mut self.key),
            "outcome" => Some(&mut self.outcome),
            "error" => Some(&mut self.error),
            "stage" => Some(&mut self.stage),
            "tier" => Some(&mut self.tier),
            "partition" => Some(&mut self.partition),
            "provider" => Some(&mut self.provider),
            _ => None,
        };
        if let Some(slot) = slot_str {
            *slot = Some(text(value));
            return;
        }
        let slot_float = match name {
            "failure_rate" => Some(&mut self.failure_rate),
            "slow_call_rate" => Some(&mut self.slow_call_rate),
            _ => None,
        };
        if let Some(slot) = slot_float {
            if let Some(x) = float(&value) {
                *slot = Some(x);
                return;
            }
        }
        let slot_uint = match name {
            "retry_after_ms" => Some(&mut self.retry_after_ms),
            "wait_ms" => Some(&mut self.wait_ms),
            "delay_ms" => Some(&mut self.delay_ms),
            "elapsed_ms" => Some(&mut self.elapsed_ms),
            "attempt" => Some(&mut self.attempt),
            "failures" => Some(&mut self.failures),
            "successes" => Some(&mut self.successes),
            "limit" => Some(&mut self.limit),
            "in_flight" => Some(&mut self.in_flight),
            "count" => Some(&mut self.count),
            "pid" => Some(&mut self.pid),
            "member" => Some(&mut self.member),
            "from_limit" => Some(&mut self.from_limit),
            "to_limit" => Some(&mut self.to_limit),
            _ => None,
        };
        if let Some(slot) = slot_uint {
            if let Some(n) = uint(&value) {
                *slot = Some(n);
                return;
            }
        }
        if let ("slow", FieldValue::Bool(b)) = (name, &value) {
            self.slow = Some(*b);
            return;
        }
        let extra = self.extra.get_or_insert_with(String::new);
        if !extra.is_empty() {
            extra.push(' ');
        }
        extra.push_str(name);
        extra.push('=');
        extra.push_str(&value.to_string());
    }
}
