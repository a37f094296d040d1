#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
#![cfg(target_os = "linux")]

mod support;

use std::future::poll_fn;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use palisade_core::{Classify, Outcome};
use palisade_process::{
    ExitClassifier, KillReason, OutputLimitAction, ProcessErrorKind, ProcessEvent, ProcessRequest,
    ProcessService, Termination,
};
use tokio_test::{assert_pending, assert_ready, assert_ready_ok, task};
use tower::{Service, ServiceExt};

use support::{eventually, is_dead, is_reaped, live_in_groups, recorder, spawned_pids};

fn sh(script: &str) -> ProcessService {
    ProcessService::builder("/bin/sh").arg("-c").arg(script).build().unwrap()
}

#[tokio::test]
async fn stdin_round_trips_to_stdout() {
    let cat = ProcessService::builder("/bin/cat").build().unwrap();
    let out = cat.oneshot(ProcessRequest::new().stdin("hello\nworld")).await.unwrap();
    assert_eq!(out.termination(), Termination::Exited(0));
    assert!(out.success());
    assert_eq!(out.stdout(), b"hello\nworld");
    assert!(out.stderr().is_empty());
    assert!(!out.stdout_truncated());
}

#[tokio::test]
async fn stdin_is_null_without_bytes() {
    // cat reads /dev/null and exits at once instead of waiting on a pipe.
    let cat = ProcessService::builder("/bin/cat").timeout(Duration::from_secs(5)).build().unwrap();
    let out = cat.oneshot(ProcessRequest::new()).await.unwrap();
    assert!(out.success());
    assert!(out.stdout().is_empty());
}

#[tokio::test]
async fn stderr_is_captured() {
    let out = sh("echo oops >&2; exit 2").oneshot(ProcessRequest::new()).await.unwrap();
    assert_eq!(out.code(), Some(2));
    assert_eq!(out.stderr(), b"oops\n");
}

#[tokio::test]
async fn exit_codes_are_classified() {
    let classifier = ExitClassifier::new().retryable_codes([75]);

    let ok = sh("exit 0").oneshot(ProcessRequest::new()).await;
    assert_eq!(classifier.classify(&ok).outcome(), Outcome::Success);

    let temp = sh("exit 75").oneshot(ProcessRequest::new()).await;
    assert_eq!(temp.as_ref().unwrap().code(), Some(75));
    let verdict = classifier.classify(&temp);
    assert!(verdict.is_failure());
    assert!(verdict.is_retryable());

    let fatal = sh("exit 3").oneshot(ProcessRequest::new()).await;
    let verdict = classifier.classify(&fatal);
    assert!(verdict.is_failure());
    assert!(!verdict.is_retryable());

    let signaled = sh("kill -TERM $$").oneshot(ProcessRequest::new()).await.unwrap();
    assert_eq!(signaled.termination(), Termination::Signaled(15));
    assert!(classifier.classify_termination(signaled.termination()).is_failure());
    assert!(!classifier.classify_termination(signaled.termination()).is_retryable());

    let timed_out = classifier.classify_termination(Termination::Killed(KillReason::Timeout));
    assert!(timed_out.is_failure() && timed_out.is_retryable());
    assert!(!classifier
        .retry_timeouts(false)
        .classify_termination(Termination::Killed(KillReason::Timeout))
        .is_retryable());
}

#[tokio::test]
async fn spawn_errors_are_typed() {
    let missing = ProcessService::builder("/nonexistent/program").build().unwrap();
    let err = missing.oneshot(ProcessRequest::new()).await.unwrap_err();
    assert_eq!(err.kind(), ProcessErrorKind::NotFound);
    assert_eq!(err.program(), "/nonexistent/program");
    let boxed: Result<palisade_process::ProcessOutput, tower::BoxError> = Err(err.into());
    assert!(!ExitClassifier::new().classify(&boxed).is_retryable());

    // Not executable (mode 0644), even for root.
    let path = std::env::temp_dir().join(format!("palisade-noexec-{}", std::process::id()));
    std::fs::write(&path, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let denied = ProcessService::builder(&path).build().unwrap();
    let err = denied.oneshot(ProcessRequest::new()).await.unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(err.kind(), ProcessErrorKind::PermissionDenied);
}

#[tokio::test]
async fn shell_metacharacters_are_literal() {
    let nasty = "; touch /tmp/palisade-pwned $(id) `id` | cat > /dev/null & echo $HOME * ' \" \\";
    let echo = ProcessService::builder("/bin/echo").arg("-n").build().unwrap();
    let out = echo.oneshot(ProcessRequest::new().arg(nasty)).await.unwrap();
    assert_eq!(out.stdout(), nasty.as_bytes());
    assert!(!std::path::Path::new("/tmp/palisade-pwned").exists());
}

#[tokio::test]
async fn environment_is_cleared_and_allow_listed() {
    let env = ProcessService::builder("/usr/bin/env").build().unwrap();
    let out = env.oneshot(ProcessRequest::new()).await.unwrap();
    assert!(out.stdout().is_empty(), "inherited: {}", String::from_utf8_lossy(out.stdout()));

    let env = ProcessService::builder("/usr/bin/env").env_allow("PATH").env("FIXED", "1").build().unwrap();
    let out = env.oneshot(ProcessRequest::new().env("PER_CALL", "a b")).await.unwrap();
    let text = String::from_utf8(out.into_stdout()).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0] == "FIXED=1" && lines[1] == "PATH=".to_owned() + &std::env::var("PATH").unwrap());
    assert_eq!(lines[2], "PER_CALL=a b");
}

#[tokio::test]
async fn bad_requests_are_errors() {
    let env = ProcessService::builder("/usr/bin/env").build().unwrap();
    let err = env.clone().oneshot(ProcessRequest::new().env("A=B", "x")).await.unwrap_err();
    assert_eq!(err.kind(), ProcessErrorKind::InvalidRequest);
    let err = env.oneshot(ProcessRequest::new().arg("a\0b")).await.unwrap_err();
    assert_eq!(err.kind(), ProcessErrorKind::InvalidRequest);
}

#[tokio::test]
async fn builder_rejects_bad_settings() {
    assert_eq!(ProcessService::builder("").build().unwrap_err().field(), "program");
    assert_eq!(ProcessService::builder("x").timeout(Duration::ZERO).build().unwrap_err().field(), "timeout");
    assert_eq!(
        ProcessService::builder("x").max_concurrency(0).build().unwrap_err().field(),
        "max_concurrency"
    );
    assert_eq!(ProcessService::builder("x").env("", "v").build().unwrap_err().field(), "env");
    assert_eq!(ProcessService::builder("x").env_allow("A=B").build().unwrap_err().field(), "env_allow");
}

#[tokio::test]
async fn working_directory_is_set() {
    let pwd = ProcessService::builder("/bin/pwd").current_dir("/tmp").build().unwrap();
    assert_eq!(pwd.oneshot(ProcessRequest::new()).await.unwrap().stdout(), b"/tmp\n");
}

#[tokio::test]
async fn output_over_the_cap_is_truncated_and_flagged() {
    let cat = ProcessService::builder("/bin/cat").max_stdout(1000).build().unwrap();
    let input = vec![b'x'; 200_000];
    let out = cat.oneshot(ProcessRequest::new().stdin(input)).await.unwrap();
    assert!(out.success(), "cat kept running to the end: {:?}", out.termination());
    assert_eq!(out.stdout().len(), 1000);
    assert!(out.stdout_truncated());
    assert!(!out.stderr_truncated());
}

#[tokio::test]
async fn output_over_the_cap_kills_when_asked() {
    let (events, listener) = recorder();
    let yes = ProcessService::builder("/bin/sh")
        .args(["-c", "while :; do echo yyyyyyyyyyyyyyyyyyyy; done"])
        .max_stdout(4096)
        .on_output_limit(OutputLimitAction::Kill)
        .on_event(listener)
        .build()
        .unwrap();
    let handle = yes.handle();
    let out = yes.oneshot(ProcessRequest::new()).await.unwrap();
    assert_eq!(out.termination(), Termination::Killed(KillReason::OutputLimit));
    assert_eq!(out.stdout().len(), 4096);
    assert!(out.stdout_truncated());
    assert_eq!(handle.snapshot().killed_output_limit, 1);
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, ProcessEvent::Killed { reason: KillReason::OutputLimit, .. })));
    assert!(is_dead(out.pid()));
}

#[tokio::test]
async fn timeout_kills_the_child_and_its_grandchild() {
    let (events, listener) = recorder();
    let svc = ProcessService::builder("/bin/sh")
        .args(["-c", "sleep 5 & echo $!; sleep 5"])
        .timeout(Duration::from_millis(150))
        .on_event(listener)
        .build()
        .unwrap();
    let handle = svc.handle();
    let out = svc.oneshot(ProcessRequest::new()).await.unwrap();
    assert!(out.timed_out());
    assert_eq!(out.termination(), Termination::Killed(KillReason::Timeout));
    let grandchild: u32 = String::from_utf8_lossy(out.stdout()).trim().parse().expect("grandchild pid");
    assert!(is_reaped(out.pid()), "the child was reaped");
    assert!(
        eventually(Duration::from_secs(2), || is_dead(grandchild)).await,
        "grandchild {grandchild} still running"
    );
    // The group was sent SIGKILL; its other members die when the kernel gets to them (under
    // load, not always before the grandchild above): wait, bounded, instead of asserting at once.
    assert!(eventually(Duration::from_secs(2), || live_in_groups(&[out.pid()]).is_empty()).await);
    let snap = handle.snapshot();
    assert_eq!((snap.spawned, snap.killed_timeout, snap.running), (1, 1, 0));
    let kinds: Vec<&str> = events.lock().unwrap().iter().map(palisade_core::event::Event::kind).collect();
    assert_eq!(kinds, ["spawned", "killed"]);
}

#[tokio::test]
async fn stragglers_are_killed_when_the_child_exits() {
    // The background sleep keeps stdout open; without the group kill the call would last
    // until the timeout.
    let svc = ProcessService::builder("/bin/sh")
        .args(["-c", "sleep 5 & echo $!"])
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let out = svc.oneshot(ProcessRequest::new()).await.unwrap();
    assert_eq!(out.termination(), Termination::Exited(0));
    let grandchild: u32 = String::from_utf8_lossy(out.stdout()).trim().parse().unwrap();
    assert!(eventually(Duration::from_secs(2), || is_dead(grandchild)).await);
}

#[tokio::test]
async fn without_straggler_kills_a_grandchild_holding_stdout_lasts_until_the_timeout() {
    let svc = ProcessService::builder("/bin/sh")
        .args(["-c", "sleep 5 & echo $!"])
        .timeout(Duration::from_millis(150))
        .kill_stragglers(false)
        .build()
        .unwrap();
    let out = svc.oneshot(ProcessRequest::new()).await.unwrap();
    // The shell exited at once, but the pipe stayed open: the group is killed at the timeout.
    assert_eq!(out.termination(), Termination::Killed(KillReason::Timeout));
    let grandchild: u32 = String::from_utf8_lossy(out.stdout()).trim().parse().unwrap();
    assert!(eventually(Duration::from_secs(2), || is_dead(grandchild)).await);
}

#[tokio::test]
async fn dropping_the_future_kills_and_reaps() {
    let (events, listener) = recorder();
    let notify = std::sync::Arc::new(tokio::sync::Notify::new());
    let spawned = notify.clone();
    let mut svc = ProcessService::builder("/bin/sh")
        .args(["-c", "sleep 5 & sleep 5"])
        .on_event(move |e| {
            listener(e);
            if matches!(e, ProcessEvent::Spawned { .. }) {
                spawned.notify_one();
            }
        })
        .build()
        .unwrap();
    let handle = svc.handle();
    let mut call = svc.ready().await.unwrap().call(ProcessRequest::new());
    tokio::select! {
        _ = &mut call => panic!("the sleep finished"),
        () = notify.notified() => {}
    }
    // Wait (bounded) until the shell has started its background sleep: the group then holds
    // two processes, so the drop below must kill a grandchild too.
    let pid = spawned_pids(&events)[0];
    assert!(eventually(Duration::from_secs(5), || live_in_groups(&[pid]).len() >= 2).await, "no grandchild");
    drop(call);

    assert!(eventually(Duration::from_secs(2), || is_reaped(pid)).await, "child {pid} not reaped");
    assert!(eventually(Duration::from_secs(2), || live_in_groups(&[pid]).is_empty()).await);
    let snap = handle.snapshot();
    assert_eq!((snap.killed_cancelled, snap.running), (1, 0));
    assert_eq!(svc.available_slots(), palisade_process::DEFAULT_MAX_CONCURRENCY);
}

#[tokio::test]
async fn events_and_snapshot_report_exits() {
    let (events, listener) = recorder();
    let svc = ProcessService::builder("/bin/true").name("truth").on_event(listener).build().unwrap();
    let handle = svc.handle();
    assert_eq!(handle.name(), "truth");
    svc.clone().oneshot(ProcessRequest::new()).await.unwrap();
    svc.oneshot(ProcessRequest::new()).await.unwrap();
    let snap = handle.snapshot();
    assert_eq!((snap.spawned, snap.exited_success, snap.exited_failure, snap.running), (2, 2, 0, 0));
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 4);
    assert!(matches!(events[1], ProcessEvent::Exited { code: Some(0), signal: None, .. }));
}

// === the tower five: child slots ===

fn limited(n: usize) -> ProcessService {
    ProcessService::builder("/bin/sh").args(["-c", "sleep 5"]).max_concurrency(n).build().unwrap()
}

#[tokio::test]
async fn poll_ready_reserves_a_slot_without_calling() {
    let mut a = limited(1);
    let mut b = a.clone();
    assert_ready_ok!(task::spawn(poll_fn(|cx| a.poll_ready(cx))).poll());
    assert_eq!(a.available_slots(), 0);
    let mut waiting = task::spawn(poll_fn(|cx| b.poll_ready(cx)));
    assert_pending!(waiting.poll());
    // Ready again is still the same slot.
    assert_ready_ok!(task::spawn(poll_fn(|cx| a.poll_ready(cx))).poll());
    assert_pending!(waiting.poll());
}

#[tokio::test]
async fn dropping_a_ready_service_frees_its_slot() {
    let mut a = limited(1);
    let mut b = a.clone();
    assert_ready_ok!(task::spawn(poll_fn(|cx| a.poll_ready(cx))).poll());
    let mut waiting = task::spawn(poll_fn(|cx| b.poll_ready(cx)));
    assert_pending!(waiting.poll());
    drop(a);
    assert!(waiting.is_woken());
    assert_ready_ok!(waiting.poll());
}

#[tokio::test]
async fn dropping_the_response_future_frees_its_slot() {
    let mut a = limited(1);
    let mut b = a.clone();
    assert_ready_ok!(task::spawn(poll_fn(|cx| a.poll_ready(cx))).poll());
    let mut call = task::spawn(a.call(ProcessRequest::new()));
    assert_pending!(call.poll());
    let mut waiting = task::spawn(poll_fn(|cx| b.poll_ready(cx)));
    assert_pending!(waiting.poll());
    drop(call);
    assert!(waiting.is_woken());
    assert_ready_ok!(waiting.poll());
}

#[tokio::test]
async fn an_error_frees_its_slot() {
    let mut a = ProcessService::builder("/nonexistent").max_concurrency(1).build().unwrap();
    let mut b = a.clone();
    assert_ready_ok!(task::spawn(poll_fn(|cx| a.poll_ready(cx))).poll());
    let mut waiting = task::spawn(poll_fn(|cx| b.poll_ready(cx)));
    assert_pending!(waiting.poll());
    let err = a.call(ProcessRequest::new()).await.unwrap_err();
    assert_eq!(err.kind(), ProcessErrorKind::NotFound);
    assert!(waiting.is_woken());
    assert_ready_ok!(waiting.poll());
}

#[tokio::test]
async fn waiters_are_woken_in_order() {
    let mut a = limited(1);
    let (mut b, mut c) = (a.clone(), a.clone());
    assert_ready_ok!(task::spawn(poll_fn(|cx| a.poll_ready(cx))).poll());
    let mut first = task::spawn(poll_fn(|cx| b.poll_ready(cx)));
    let mut second = task::spawn(poll_fn(|cx| c.poll_ready(cx)));
    assert_pending!(first.poll());
    assert_pending!(second.poll());
    drop(a);
    assert!(first.is_woken());
    assert_pending!(second.poll());
    assert_ready_ok!(first.poll());
    drop(first);
    drop(b);
    assert!(second.is_woken());
    assert_ready_ok!(second.poll());
}

#[tokio::test]
async fn call_without_poll_ready_is_an_error() {
    let mut svc = limited(1);
    let err = svc.call(ProcessRequest::new()).await.unwrap_err();
    assert_eq!(err.kind(), ProcessErrorKind::NotReady);
    let _ = assert_ready!(task::spawn(poll_fn(|cx| svc.poll_ready(cx))).poll());
}

#[cfg(feature = "serde")]
#[tokio::test]
async fn config_from_serde() {
    let config: palisade_process::ProcessConfig = serde_json::from_str(
        r#"{"program": "/bin/cat", "timeout": "2s", "max_stdout": 3, "on_output_limit": "truncate"}"#,
    )
    .unwrap();
    let out = config.build().unwrap().oneshot(ProcessRequest::new().stdin("hello")).await.unwrap();
    assert_eq!(out.stdout(), b"hel");
    assert!(out.stdout_truncated());
    let bad: palisade_process::ProcessConfig =
        serde_json::from_str(r#"{"program": "/bin/cat", "max_concurrency": 0}"#).unwrap();
    assert_eq!(bad.build().unwrap_err().field(), "max_concurrency");
}

#[cfg(feature = "serde")]
#[test]
fn configs_round_trip_and_refuse_unknown_fields() {
    use palisade_process::{MakeWorkerConfig, ProcessConfig};
    let text = r#"{"program": "/bin/cat", "name": "cat", "args": ["-u"], "env": {"B": "2", "A": "1"},
        "env_allow": ["LANG"], "inherit_env": true, "current_dir": "/tmp", "search_path": "/bin",
        "timeout": null, "max_stdout": 3, "max_stderr": 4, "on_output_limit": "kill",
        "max_concurrency": 5, "kill_stragglers": false}"#;
    let config: ProcessConfig = serde_json::from_str(text).unwrap();
    assert_eq!(config.command.program, "/bin/cat");
    assert_eq!(config.command.env, [("A".into(), "1".into()), ("B".into(), "2".into())]);
    assert_eq!((config.timeout, config.max_stdout, config.max_concurrency), (None, 3, 5));
    let again: ProcessConfig = serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
    assert_eq!(again, config);
    // Defaults are `Default`'s; a field of neither part is refused.
    let defaults: ProcessConfig = serde_json::from_str(r#"{"program": "/bin/cat"}"#).unwrap();
    assert_eq!(defaults, ProcessConfig { command: defaults.command.clone(), ..ProcessConfig::default() });
    assert_eq!(defaults.timeout, Some(Duration::from_secs(30)));
    assert!(serde_json::from_str::<ProcessConfig>(r#"{"program": "/bin/cat", "max_in_flight": 1}"#).is_err());
    assert!(serde_json::from_str::<ProcessConfig>(r#"{"program": "/bin/cat", "agrs": []}"#).is_err());
    // No program: refused by `validate`, naming the field.
    let none: ProcessConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(none.validate().unwrap_err().field(), "program");

    let worker: MakeWorkerConfig =
        serde_json::from_str(r#"{"program": "w", "max_frame_len": 64, "shutdown_grace": "1m 30s"}"#).unwrap();
    assert_eq!(worker.shutdown_grace, Duration::from_secs(90));
    let again: MakeWorkerConfig = serde_json::from_str(&serde_json::to_string(&worker).unwrap()).unwrap();
    assert_eq!(again, worker);
    assert!(serde_json::from_str::<MakeWorkerConfig>(r#"{"program": "w", "timeout": "1s"}"#).is_err());
}
