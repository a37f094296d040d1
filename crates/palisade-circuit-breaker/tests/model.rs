#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Drives a breaker with random calls and pauses and checks it, step by step, against a
//! small reference model of the state machine.

mod support;

use std::collections::VecDeque;
use std::time::Duration;

use palisade_circuit_breaker::{CircuitBreakerLayer, CircuitState};
use palisade_core::classify::{classify_fn, Classification};
use palisade_core::BoxError;
use proptest::prelude::*;
use support::rejection;
use tower::{Layer, ServiceExt};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Success,
    Failure,
    Ignored,
    Slow,
    Pause(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::Success),
        4 => Just(Step::Failure),
        1 => Just(Step::Ignored),
        1 => Just(Step::Slow),
        2 => (1u64..4000).prop_map(Step::Pause),
    ]
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Consecutive(u32),
    Rate {
        window: usize,
        minimum: usize,
        rate: f64,
    },
    /// `failures` within `within_ms` (a multiple of 10 ms: ten buckets of whole ms).
    Count {
        failures: u32,
        within_ms: u64,
    },
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        (1u32..5).prop_map(Mode::Consecutive),
        (1usize..8, 1usize..8, prop::sample::select(vec![0.25, 0.5, 0.75, 1.0]))
            .prop_map(|(window, minimum, rate)| Mode::Rate { window, minimum, rate }),
        (1u32..5, 1u64..500).prop_map(|(failures, tens)| Mode::Count { failures, within_ms: tens * 10 }),
    ]
}

#[derive(Clone, Copy, Debug)]
struct Config {
    mode: Mode,
    wait_ms: u64,
    multiplier: f64,
    max_wait_ms: u64,
    trials: u16,
    slow_rate: Option<f64>,
}

fn config() -> impl Strategy<Value = Config> {
    (
        mode(),
        100u64..3000,
        prop::sample::select(vec![1.0, 2.0]),
        1u64..4,
        1u16..4,
        prop::option::of(prop::sample::select(vec![0.5, 1.0])),
    )
        .prop_map(|(mode, wait_ms, multiplier, max_factor, trials, slow_rate)| Config {
            mode,
            wait_ms,
            multiplier,
            max_wait_ms: wait_ms * max_factor,
            trials,
            slow_rate,
        })
}

const SLOW_THRESHOLD: Duration = Duration::from_millis(500);
const SLOW_CALL: Duration = Duration::from_millis(600);

/// One recorded call: when it ended, failed, slow.
#[derive(Clone, Copy, Debug)]
struct Rec {
    at_ms: u64,
    failure: bool,
    slow: bool,
}

/// The reference: what the breaker should do, written as plainly as possible.
#[derive(Debug)]
struct Model {
    cfg: Config,
    state: CircuitState,
    now_ms: u64,
    open_until_ms: u64,
    level: u32,
    consecutive: u32,
    window: VecDeque<Rec>,
    trial_successes: u16,
}

impl Model {
    fn new(cfg: Config) -> Self {
        Self {
            cfg,
            state: CircuitState::Closed,
            now_ms: 0,
            open_until_ms: 0,
            level: 0,
            consecutive: 0,
            window: VecDeque::new(),
            trial_successes: 0,
        }
    }

    /// The calls in the window now.
    fn in_window(&self) -> Vec<Rec> {
        match self.cfg.mode {
            Mode::Count { within_ms, .. } => {
                let bucket = within_ms / 10;
                self.window.iter().copied().filter(|r| self.now_ms / bucket - r.at_ms / bucket < 10).collect()
            }
            Mode::Rate { window, .. } => self.window.iter().rev().take(window).copied().collect(),
            // Consecutive mode with slow calls uses the default window of 100.
            Mode::Consecutive(_) => self.window.iter().rev().take(100).copied().collect(),
        }
    }

    fn minimum(&self) -> usize {
        match self.cfg.mode {
            Mode::Rate { window, minimum, .. } => minimum.min(window),
            Mode::Consecutive(_) | Mode::Count { .. } => 100,
        }
    }

    fn open(&mut self) {
        let mut wait = self.cfg.wait_ms as f64 * self.cfg.multiplier.powi(self.level as i32);
        if wait > self.cfg.max_wait_ms as f64 {
            wait = self.cfg.max_wait_ms as f64;
        }
        self.level += 1;
        self.state = CircuitState::Open;
        self.open_until_ms = self.now_ms + wait as u64;
    }

    fn close(&mut self) {
        self.state = CircuitState::Closed;
        self.level = 0;
        self.consecutive = 0;
        self.window.clear();
    }

    /// `Err(retry_after_ms)` if rejected; else records the call (which lasts `elapsed_ms`).
    fn call(&mut self, step: Step, elapsed_ms: u64) -> Result<(), u64> {
        if self.state == CircuitState::Open {
            if self.now_ms < self.open_until_ms {
                return Err(self.open_until_ms - self.now_ms);
            }
            self.state = CircuitState::HalfOpen;
            self.trial_successes = 0;
        }
        self.now_ms += elapsed_ms;
        if step == Step::Ignored {
            return Ok(());
        }
        let failure = step == Step::Failure;
        let slow = self.cfg.slow_rate.is_some() && elapsed_ms > SLOW_THRESHOLD.as_millis() as u64;
        if self.state == CircuitState::HalfOpen {
            if failure || slow {
                self.open();
            } else {
                self.trial_successes += 1;
                if self.trial_successes >= self.cfg.trials {
                    self.close();
                }
            }
            return Ok(());
        }
        // Closed.
        let mut trip = false;
        if let Mode::Consecutive(n) = self.cfg.mode {
            self.consecutive = if failure { self.consecutive + 1 } else { 0 };
            trip |= self.consecutive >= n;
        }
        let has_window = !matches!(self.cfg.mode, Mode::Consecutive(_)) || self.cfg.slow_rate.is_some();
        if has_window {
            self.window.push_back(Rec { at_ms: self.now_ms, failure, slow });
            let recs = self.in_window();
            let calls = recs.len();
            let failures = recs.iter().filter(|r| r.failure).count();
            let slows = recs.iter().filter(|r| r.slow).count();
            if let Mode::Count { failures: n, .. } = self.cfg.mode {
                trip |= failures >= n as usize;
            }
            if calls >= self.minimum() {
                if let Mode::Rate { rate, .. } = self.cfg.mode {
                    trip |= failures as f64 / calls as f64 >= rate;
                }
                if let Some(r) = self.cfg.slow_rate {
                    trip |= slows as f64 / calls as f64 >= r;
                }
            }
        }
        if trip {
            self.open();
        }
        Ok(())
    }
}

type Classifier = palisade_core::classify::ClassifyFn<fn(&Result<(), &'static str>) -> Classification>;

fn classify(r: &Result<(), &'static str>) -> Classification {
    match r {
        Ok(()) => Classification::success(),
        Err("ignore") => Classification::ignored(),
        Err(_) => Classification::retryable_failure(),
    }
}

fn build(cfg: &Config) -> CircuitBreakerLayer<Classifier> {
    let mut b =
        CircuitBreakerLayer::builder().half_open_trials(u32::from(cfg.trials)).exponential_wait_in_open(
            Duration::from_millis(cfg.wait_ms),
            cfg.multiplier,
            Duration::from_millis(cfg.max_wait_ms),
        );
    b = match cfg.mode {
        Mode::Consecutive(n) => b.consecutive_failures(n),
        Mode::Rate { window, minimum, rate } => {
            b.failure_rate(rate).count_window(window as u32).minimum_calls(minimum as u32)
        }
        Mode::Count { failures, within_ms } => b.failure_count(failures, Duration::from_millis(within_ms)),
    };
    if let Some(r) = cfg.slow_rate {
        b = b.slow_calls(SLOW_THRESHOLD, r);
    }
    b.classifier(classify_fn(classify as fn(&Result<(), &'static str>) -> Classification)).build().unwrap()
}

fn run(cfg: Config, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    rt.block_on(async move {
        let layer = build(&cfg);
        let handle = layer.handle();
        let svc = layer.layer(tower::service_fn(|step: Step| async move {
            match step {
                Step::Failure => Err("boom"),
                Step::Ignored => Err("ignore"),
                Step::Slow => {
                    tokio::time::sleep(SLOW_CALL).await;
                    Ok(())
                }
                Step::Success | Step::Pause(_) => Ok(()),
            }
        }));
        let mut model = Model::new(cfg);
        // Counters every call adds to: (successes, failures, ignored, rejected).
        let mut counted = (0u64, 0u64, 0u64, 0u64);
        for (i, s) in steps.into_iter().enumerate() {
            let elapsed = match s {
                Step::Pause(ms) => {
                    tokio::time::advance(Duration::from_millis(ms)).await;
                    model.now_ms += ms;
                    continue;
                }
                Step::Slow => SLOW_CALL.as_millis() as u64,
                _ => 0,
            };
            let expected = model.call(s, elapsed);
            let got: Result<(), BoxError> = svc.clone().oneshot(s).await;
            if let Err(retry_ms) = expected {
                let open = rejection(&got);
                prop_assert!(open.is_some(), "step {i}: expected a rejection, got {got:?}");
                prop_assert_eq!(open.unwrap().retry_after(), Duration::from_millis(retry_ms), "step {}", i);
            } else {
                prop_assert!(rejection(&got).is_none(), "step {i}: unexpected rejection");
                prop_assert_eq!(got.is_err(), matches!(s, Step::Failure | Step::Ignored), "step {}", i);
            }
            prop_assert_eq!(handle.state(), model.state, "step {}: {:?}", i, s);
            match (expected.is_err(), s) {
                (true, _) => counted.3 += 1,
                (false, Step::Failure) => counted.1 += 1,
                (false, Step::Ignored) => counted.2 += 1,
                (false, _) => counted.0 += 1,
            }
            let snap = handle.snapshot();
            prop_assert_eq!(
                (snap.successes, snap.failures, snap.ignored, snap.rejected),
                counted,
                "step {}",
                i
            );
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn breaker_follows_the_reference_model(cfg in config(), steps in prop::collection::vec(step(), 1..120)) {
        run(cfg, steps)?;
    }
}
