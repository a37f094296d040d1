//! A hostile reviewer's extra cases, one or more per kind of issues 14 and 15: budgets at
//! their extremes, server hints that are odd (dates in the past, huge, several, garbage),
//! hedging where every attempt fails or the server pushes back for ever, user callbacks
//! that panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::float_cmp,
    clippy::items_after_statements,
    clippy::unchecked_time_subtraction,
    missing_docs
)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::classify::{GrpcClassifier, HttpClassifier};
use palisade_core::BoxError;
use palisade_retry::hedge::HedgeLayer;
use palisade_retry::{Backoff, GiveUpReason, Jitter, RetryBudget, RetryEvent, RetryLayer};
use support::{ms, Events};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

type Log = Arc<Mutex<Vec<Instant>>>;
type Script = Vec<(Duration, u16, Vec<(&'static str, &'static str)>)>;

/// A service answering `(after, status, headers)` from a script (then 200 at once), logging
/// call instants and counting attempts dropped before they answered.
fn scripted(
    script: Script,
) -> (
    impl tower::Service<
            u32,
            Response = http::Response<()>,
            Error = BoxError,
            Future = impl std::future::Future<Output = Result<http::Response<()>, BoxError>> + Send,
        > + Clone,
    Log,
    Arc<AtomicUsize>,
) {
    let log: Log = Arc::default();
    let dropped = Arc::new(AtomicUsize::new(0));
    let calls = log.clone();
    let drops = dropped.clone();
    let script = Arc::new(Mutex::new(script.into_iter()));
    let svc = tower::service_fn(move |_req: u32| {
        calls.lock().unwrap().push(Instant::now());
        let (after, status, headers) = script.lock().unwrap().next().unwrap_or((Duration::ZERO, 200, vec![]));
        struct Guard(Arc<AtomicUsize>, bool);
        impl Drop for Guard {
            fn drop(&mut self) {
                if !self.1 {
                    self.0.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        let guard = Guard(drops.clone(), false);
        async move {
            let mut guard = guard;
            tokio::time::sleep(after).await;
            guard.1 = true;
            let mut res = http::Response::builder().status(status);
            for (k, v) in headers {
                res = res.header(k, v);
            }
            Ok::<_, BoxError>(res.body(()).unwrap())
        }
    });
    (svc, log, dropped)
}

fn offsets(log: &Log, start: Instant) -> Vec<Duration> {
    log.lock().unwrap().iter().map(|t| t.duration_since(start)).collect()
}

fn unavailable(
    after: Duration,
    pushback: &'static str,
) -> (Duration, u16, Vec<(&'static str, &'static str)>) {
    (after, 200, vec![("grpc-status", "14"), ("grpc-retry-pushback-ms", pushback)])
}

// === budgets at their extremes (issue 14.1, 15.8) ===

/// A ratio so small that one retry costs more than the fixed-point counters hold, with a
/// floor: the balance arithmetic must neither overflow (a panic in debug builds, a negative
/// balance in release) nor let the floor be walked around by saturating withdrawals.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_tiny_ratio_with_a_floor_neither_overflows_nor_overspends() {
    for ratio in [1e-300, 1e-12, 1e-9, 1e-6] {
        for (ttl, floor, expected) in [(1, 1, 1), (1, 10, 10), (10, 3, 30), (60, 7, 420)] {
            let b = RetryBudget::ratio(Duration::from_secs(ttl), floor, ratio).unwrap();
            for _ in 0..1000 {
                b.deposit();
            }
            let granted = (0..expected + 50).filter(|_| b.try_withdraw()).count();
            assert_eq!(granted, expected as usize, "ratio {ratio}, ttl {ttl}s, floor {floor}/s");
            assert!(b.remaining() >= 0.0);
        }
    }
}

/// The largest floor on the longest window: still no overflow, and it behaves as a large,
/// finite number of retries.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_huge_floor_never_overflows() {
    for ratio in [0.0, 1e-300, 0.2, 100.0] {
        let b = RetryBudget::ratio(Duration::from_secs(60), u32::MAX, ratio).unwrap();
        for _ in 0..10 {
            b.deposit();
        }
        assert!((0..1000).all(|_| b.try_withdraw()), "ratio {ratio}");
        assert!(b.remaining() > 1e9, "ratio {ratio}: {}", b.remaining());
    }
}

/// ttl at both ends: deposits live exactly `ttl` (to the slot), a floor refills after it.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn deposits_live_for_ttl_at_both_ends() {
    for ttl in [Duration::from_secs(1), Duration::from_secs(60)] {
        let b = RetryBudget::ratio(ttl, 0, 1.0).unwrap();
        b.deposit();
        tokio::time::advance(ttl - ttl / 10 - ms(1)).await;
        b.deposit();
        // Both deposits are younger than ttl.
        assert_eq!(b.remaining(), 2.0, "ttl {ttl:?}");
        tokio::time::advance(ttl / 10 + ms(2)).await;
        // The first has expired, the second has not.
        assert_eq!(b.remaining(), 1.0, "ttl {ttl:?}");
        tokio::time::advance(ttl).await;
        assert_eq!(b.remaining(), 0.0, "ttl {ttl:?}");
    }
}

// === HTTP Retry-After at its edges (issue 14.2) ===

/// A `Retry-After` date in the past is a floor of zero: the backoff alone decides.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_retry_after_date_in_the_past_leaves_the_backoff() {
    let start = Instant::now();
    let (svc, log, _) = scripted(vec![
        (Duration::ZERO, 503, vec![("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")]),
        (Duration::ZERO, 503, vec![("retry-after", "0")]),
        (Duration::ZERO, 200, vec![]),
    ]);
    let layer = RetryLayer::builder()
        .budget(RetryBudget::unlimited())
        .jitter(Jitter::None)
        .classifier(HttpClassifier::new())
        .backoff(Backoff::fixed(ms(70)))
        .build()
        .unwrap();
    let res = layer.layer(svc).oneshot(1).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(offsets(&log, start), [ms(0), ms(70), ms(140)]);
}

/// A `Retry-After` too long to fit (digits beyond u64) saturates and gives up at once as
/// "hint too long"; garbage is ignored (the backoff decides).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_huge_or_garbage_retry_after() {
    let start = Instant::now();
    let events = Events::default();
    let (svc, log, _) =
        scripted(vec![(Duration::ZERO, 503, vec![("retry-after", "999999999999999999999999999999")])]);
    let layer = RetryLayer::builder()
        .budget(RetryBudget::unlimited())
        .jitter(Jitter::None)
        .classifier(HttpClassifier::new())
        .backoff(Backoff::fixed(ms(70)))
        .on_event(events.listener())
        .build()
        .unwrap();
    let res = layer.layer(svc).oneshot(1).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(offsets(&log, start), [ms(0)]);
    assert!(events.all().contains(&RetryEvent::GaveUp { attempts: 1, reason: GiveUpReason::HintTooLong }));

    let (svc, log, _) = scripted(vec![
        (Duration::ZERO, 503, vec![("retry-after", "soon")]),
        (Duration::ZERO, 503, vec![("retry-after", "-5")]),
    ]);
    let layer = RetryLayer::builder()
        .budget(RetryBudget::unlimited())
        .jitter(Jitter::None)
        .classifier(HttpClassifier::new())
        .backoff(Backoff::fixed(ms(70)))
        .build()
        .unwrap();
    let start = Instant::now();
    assert_eq!(layer.layer(svc).oneshot(1).await.unwrap().status(), 200);
    assert_eq!(offsets(&log, start), [ms(0), ms(70), ms(140)]);
}

// === gRPC pushback at its edges (issue 14.2) ===

/// gRFC A6 / grpc-go: several pushback values, or one that is not an integer (or one too
/// large for an integer), mean "do not retry" and cost a token.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn odd_pushbacks_mean_do_not_retry_and_cost_a_token() {
    let several = (
        Duration::ZERO,
        200,
        vec![("grpc-status", "14"), ("grpc-retry-pushback-ms", "10"), ("grpc-retry-pushback-ms", "20")],
    );
    for case in [
        several,
        unavailable(Duration::ZERO, "ten"),
        unavailable(Duration::ZERO, "99999999999999999999"),
        unavailable(Duration::ZERO, "1.5"),
    ] {
        let (svc, log, _) = scripted(vec![case.clone()]);
        let budget = RetryBudget::token_bucket(10, 0.1).unwrap();
        let layer = RetryLayer::builder()
            .budget(budget.clone())
            .jitter(Jitter::None)
            .classifier(GrpcClassifier::new())
            .build()
            .unwrap();
        let res = layer.layer(svc).oneshot(1).await.unwrap();
        assert_eq!(res.headers()["grpc-status"], "14", "{case:?}");
        assert_eq!(log.lock().unwrap().len(), 1, "{case:?} not retried");
        assert_eq!(budget.remaining(), 9.0, "{case:?}");
    }
}

// === hedging at its edges (issue 14.2, 15.4) ===

/// Every attempt fails with a retryable status: each failure sends the next hedge at once,
/// and the last failure is returned when the attempts run out.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn hedging_where_every_attempt_fails() {
    let start = Instant::now();
    let events = Events::default();
    let (svc, log, dropped) = scripted(vec![
        (ms(10), 200, vec![("grpc-status", "14")]),
        (ms(10), 200, vec![("grpc-status", "14")]),
        (ms(10), 200, vec![("grpc-status", "14"), ("x-last", "1")]),
    ]);
    let layer = HedgeLayer::builder()
        .budget(RetryBudget::unlimited())
        .classifier(GrpcClassifier::new())
        .max_attempts(3)
        .delay(ms(100))
        .on_event(events.listener())
        .build()
        .unwrap();
    let res = layer.layer(svc).oneshot(1).await.unwrap();
    assert_eq!(res.headers()["x-last"], "1");
    assert_eq!(offsets(&log, start), [ms(0), ms(10), ms(20)]);
    assert_eq!(start.elapsed(), ms(30));
    assert_eq!(dropped.load(Ordering::SeqCst), 0);
    assert!(events
        .all()
        .contains(&RetryEvent::GaveUp { attempts: 3, reason: GiveUpReason::AttemptsExhausted }));
}

/// A server pushback longer than any sensible wait, when nothing else is in flight, must not
/// hold the caller for weeks (a hostile server pinning every hedged call): as the retry
/// layer does, a pushback above `max_retry_after` (30 s by default) stops new hedges, and
/// with nothing in flight the last failure is returned at once.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_huge_pushback_does_not_pin_a_hedged_call() {
    for pushback in ["2147483647", "9223372036854775807", "30001"] {
        let start = Instant::now();
        let events = Events::default();
        let (svc, log, _) = scripted(vec![unavailable(ms(10), pushback)]);
        let layer = HedgeLayer::builder()
            .budget(RetryBudget::unlimited())
            .classifier(GrpcClassifier::new())
            .max_attempts(3)
            .delay(ms(100))
            .on_event(events.listener())
            .build()
            .unwrap();
        let res = tokio::time::timeout(Duration::from_secs(3600), layer.layer(svc).oneshot(1))
            .await
            .unwrap_or_else(|_| panic!("pushback {pushback}: the hedged call was held an hour"))
            .unwrap();
        assert_eq!(res.headers()["grpc-status"], "14");
        assert_eq!(start.elapsed(), ms(10), "pushback {pushback}");
        assert_eq!(offsets(&log, start), [ms(0)]);
        assert!(
            events.all().contains(&RetryEvent::GaveUp { attempts: 1, reason: GiveUpReason::HintTooLong }),
            "{:?}",
            events.all()
        );
    }
    // Within the bound, the pushback is honoured exactly.
    let start = Instant::now();
    let (svc, log, _) = scripted(vec![unavailable(ms(10), "30000")]);
    let layer = HedgeLayer::builder()
        .budget(RetryBudget::unlimited())
        .classifier(GrpcClassifier::new())
        .max_attempts(2)
        .delay(ms(100))
        .build()
        .unwrap();
    assert_eq!(layer.layer(svc).oneshot(1).await.unwrap().status(), 200);
    assert_eq!(offsets(&log, start), [ms(0), ms(30_010)]);
}

/// A huge pushback on one hedge while another attempt is in flight: no new hedge, the
/// attempt in flight still answers.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_huge_pushback_keeps_the_attempt_in_flight() {
    let start = Instant::now();
    let (svc, log, dropped) =
        scripted(vec![(ms(1000), 200, vec![("grpc-status", "0")]), unavailable(ms(10), "2147483647")]);
    let layer = HedgeLayer::builder()
        .budget(RetryBudget::unlimited())
        .classifier(GrpcClassifier::new())
        .max_attempts(3)
        .delay(ms(100))
        .build()
        .unwrap();
    let res = layer.layer(svc).oneshot(1).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "0");
    assert_eq!(start.elapsed(), ms(1000));
    assert_eq!(offsets(&log, start), [ms(0), ms(100)]);
    assert_eq!(dropped.load(Ordering::SeqCst), 0);
}

// === user callbacks that panic (issue 15.3) ===

/// A listener that panics on every event neither fails the call nor stops the retries.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_listener_changes_nothing() {
    let start = Instant::now();
    let (svc, log, _) = scripted(vec![(Duration::ZERO, 503, vec![]), (Duration::ZERO, 503, vec![])]);
    let layer = RetryLayer::builder()
        .budget(RetryBudget::unlimited())
        .jitter(Jitter::None)
        .classifier(HttpClassifier::new())
        .backoff(Backoff::fixed(ms(5)))
        .on_event(|_: &RetryEvent| panic!("listener"))
        .build()
        .unwrap();
    let handle = layer.handle();
    handle.on_event(|_: &RetryEvent| panic!("late listener"));
    assert_eq!(layer.layer(svc).oneshot(1).await.unwrap().status(), 200);
    assert_eq!(offsets(&log, start), [ms(0), ms(5), ms(10)]);
    assert_eq!(handle.snapshot().retries, 2);

    let (svc, _, _) = scripted(vec![(ms(500), 200, vec![]), (ms(1), 200, vec![])]);
    let hedge = HedgeLayer::builder()
        .budget(RetryBudget::unlimited())
        .delay(ms(10))
        .on_event(|_: &RetryEvent| panic!("listener"))
        .build()
        .unwrap();
    let start = Instant::now();
    assert_eq!(hedge.layer(svc).oneshot(1).await.unwrap().status(), 200);
    assert_eq!(start.elapsed(), ms(11));
}

/// Issue 14.1's kind (deposits credited where they do not count) after a long idle spell:
/// the window's slots carried 24-bit epochs, and a slot last written more than half the epoch
/// range ago (~9.7 days with a 1 s ttl) looked "later" than the current epoch, so new
/// deposits joined that stale slot — which the sum ignores — for up to ~9.7 more days: a
/// client with no floor got no retries at all after ten quiet days.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn deposits_count_after_an_idle_spell_of_days() {
    for idle_days in [1u64, 10, 15, 30] {
        let b = RetryBudget::ratio(Duration::from_secs(1), 0, 0.5).unwrap();
        // Traffic in every slot of the window.
        for _ in 0..10 {
            b.deposit();
            tokio::time::advance(ms(100)).await;
        }
        tokio::time::advance(Duration::from_secs(86_400 * idle_days)).await;
        assert_eq!(b.remaining(), 0.0, "{idle_days} days: old deposits expired");
        for _ in 0..10 {
            b.deposit();
            b.deposit();
            assert!(b.try_withdraw(), "{idle_days} days idle: two fresh deposits pay for a retry");
            tokio::time::advance(ms(100)).await;
        }
    }
}

/// The window's epochs wrapped after 2^24 − 1 slots (19.4 days with a 1 s ttl): a slot left
/// idle for exactly that long was read as current, and deposits that old paid for retries.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn deposits_from_one_epoch_wrap_ago_are_expired() {
    let b = RetryBudget::ratio(Duration::from_secs(1), 0, 0.5).unwrap();
    for _ in 0..10 {
        b.deposit();
    }
    // 2^24 − 1 slots of 100 ms.
    tokio::time::advance(ms(100) * ((1 << 24) - 1)).await;
    assert_eq!(b.remaining(), 0.0);
    assert!(!b.try_withdraw());
}

/// A server pushback stands until it has elapsed: a later non-fatal failure of another
/// attempt, without a pushback of its own, does not shortcut it (A6's "sent immediately"
/// shortcut is for the hedging delay, not for the server's explicit wait; grpc-java keeps
/// the pushback's schedule). Primary fails at 400 ms; the hedge sent at 100 ms fails at
/// 150 ms with a pushback of 1 s: the third attempt goes out at 1150 ms, not at 400 ms.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_pushback_is_not_shortcut_by_a_later_failure() {
    let start = Instant::now();
    let (svc, log, _) = scripted(vec![
        (ms(400), 200, vec![("grpc-status", "14")]),
        unavailable(ms(50), "1000"),
        (ms(10), 200, vec![("grpc-status", "0")]),
    ]);
    let layer = HedgeLayer::builder()
        .budget(RetryBudget::unlimited())
        .classifier(GrpcClassifier::new())
        .max_attempts(3)
        .delay(ms(100))
        .build()
        .unwrap();
    let res = layer.layer(svc).oneshot(1).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "0");
    assert_eq!(offsets(&log, start), [ms(0), ms(100), ms(1150)]);
    // Without a pushback pending, the shortcut applies: the next attempt at once.
    let start = Instant::now();
    let (svc, log, _) = scripted(vec![
        (ms(400), 200, vec![("grpc-status", "14")]),
        (ms(50), 200, vec![("grpc-status", "14")]),
        (ms(10), 200, vec![("grpc-status", "0")]),
    ]);
    let layer = HedgeLayer::builder()
        .budget(RetryBudget::unlimited())
        .classifier(GrpcClassifier::new())
        .max_attempts(3)
        .delay(ms(1000))
        .build()
        .unwrap();
    layer.layer(svc).oneshot(1).await.unwrap();
    assert_eq!(offsets(&log, start), [ms(0), ms(400), ms(450)]);
}

// === tower contract (issue 14/15 standards) ===

/// A hedge that the budget refuses must not keep the inner capacity it reserved for it:
/// over `ConcurrencyLimit(2)` with a budget that allows no hedge, a call whose primary hangs
/// held the second permit for as long as the primary ran, halving the capacity for nothing.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_refused_hedge_gives_back_the_capacity_it_reserved() {
    use support::{Scripted, Step};
    use tokio_test::{assert_pending, assert_ready_ok, task};
    use tower::Service;
    let svc = Scripted::new([Step::Hang]);
    let limited = tower::limit::ConcurrencyLimit::new(svc.clone(), 2);
    let layer = HedgeLayer::builder()
        .budget(RetryBudget::ratio(Duration::from_secs(1), 0, 0.0).unwrap())
        .max_attempts(2)
        .delay(ms(10))
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut hedged = layer.layer(limited.clone());
    let mut call = task::spawn(async move {
        hedged.ready().await.unwrap();
        hedged.call(1).await
    });
    assert_pending!(call.poll());
    tokio::time::advance(ms(20)).await;
    assert_pending!(call.poll());
    assert_eq!(handle.snapshot().budget_exhausted, 1, "the hedge was refused by the budget");
    assert_eq!(svc.calls(), 1);
    // Another caller gets the second permit while the primary still runs.
    let mut other = limited.clone();
    let mut ready = task::spawn(std::future::poll_fn(move |cx| other.poll_ready(cx)));
    assert_ready_ok!(ready.poll());
}

/// gRFC A6 / grpc-go (`successfulRPC` only when the call ended with no error): only an OK
/// status gives `token_ratio` back. NOT_FOUND and the other "caller's fault" codes count as
/// successes for the service's health, but they refilled the bucket as if they were OK.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn only_an_ok_status_gives_a_token_back() {
    let grpc = |code: &'static str| (Duration::ZERO, 200, vec![("grpc-status", code)]);
    let budget = RetryBudget::token_bucket(10, 0.1).unwrap();
    let layer = RetryLayer::builder()
        .budget(budget.clone())
        .max_attempts(1)
        .classifier(GrpcClassifier::new())
        .build()
        .unwrap();
    let run = |code| {
        let (svc, _, _) = scripted(vec![grpc(code)]);
        layer.layer(svc).oneshot(1)
    };
    for _ in 0..3 {
        run("14").await.unwrap();
    }
    assert_eq!(budget.remaining(), 7.0);
    for code in ["5", "3", "6", "7", "16", "9", "11", "12"] {
        run(code).await.unwrap();
        assert_eq!(budget.remaining(), 7.0, "grpc-status {code} is not OK: no token back");
    }
    run("0").await.unwrap();
    assert!((budget.remaining() - 7.1).abs() < 1e-9, "{}", budget.remaining());
    // The same through a hedge layer.
    let hedge =
        HedgeLayer::builder().budget(budget.clone()).classifier(GrpcClassifier::new()).build().unwrap();
    let (svc, _, _) = scripted(vec![grpc("5")]);
    hedge.layer(svc).oneshot(1).await.unwrap();
    assert!((budget.remaining() - 7.1).abs() < 1e-9, "{}", budget.remaining());
}

/// A hedge is paid for before the inner service is polled ready; when the call ends before
/// the service is ready (the hedge never sent), the payment goes back to the budget. It
/// was kept: over a saturated backend every slow call spent a retry it never made, and
/// starved the retries of every other call sharing the budget.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_hedge_never_sent_gives_its_payment_back() {
    use support::{Scripted, Step};
    use tower::Service;
    let svc = Scripted::new([Step::Ok(1, ms(50))]);
    // Floor only: 10 retries in the window, no ratio.
    let budget = RetryBudget::ratio(Duration::from_secs(10), 1, 0.0).unwrap();
    assert_eq!(budget.remaining(), 10.0);
    let layer = HedgeLayer::builder().budget(budget.clone()).max_attempts(2).delay(ms(10)).build().unwrap();
    let handle = layer.handle();
    // One permit: the primary holds it, the hedge waits for it until the primary answers.
    let mut hedged = layer.layer(tower::limit::ConcurrencyLimit::new(svc.clone(), 1));
    hedged.ready().await.unwrap();
    assert_eq!(hedged.call(1).await.unwrap(), 1);
    assert_eq!((svc.calls(), handle.snapshot().hedges), (1, 0), "no hedge was sent");
    assert_eq!(budget.remaining(), 10.0, "the unsent hedge's payment went back");
    // Dropping the call while its hedge waits gives the payment back too.
    let svc = Scripted::new([Step::Hang]);
    let mut hedged = layer.layer(tower::limit::ConcurrencyLimit::new(svc.clone(), 1));
    hedged.ready().await.unwrap();
    let mut call = tokio_test::task::spawn(hedged.call(1));
    tokio_test::assert_pending!(call.poll());
    tokio::time::advance(ms(20)).await;
    tokio_test::assert_pending!(call.poll());
    assert_eq!(budget.remaining(), 9.0, "paid while it waits");
    drop(call);
    assert_eq!(budget.remaining(), 10.0);
}
