//! Issue 15 for child processes: a program runs by name, huge durations never panic, user
//! code that panics (handlers, codecs, listeners) fails only its own call, and every
//! builder and serde config either refuses extreme values or serves calls.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
#![cfg(all(target_os = "linux", feature = "json", feature = "serde"))]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use palisade_process::codec::{Codec, Decoded, LengthPrefixed, ServeCodec};
use palisade_process::error::FrameError;
use palisade_process::{
    KillReason, MakeWorker, MakeWorkerConfig, OutputLimitAction, ProcessConfig, ProcessEvent, ProcessRequest,
    ProcessService, Termination, WorkerErrorKind,
};
use proptest::prelude::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{Service, ServiceExt};

use support::echo_worker;

/// A hang guard for calls on real child processes: generous, never a speed assertion.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// A fresh directory for one test, under cargo's temporary directory for this target.
fn scratch(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("robustness-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes an executable script through a child shell, so that this process (whose other
/// threads fork children) never holds a writable descriptor of it: running it cannot fail
/// with "text file busy".
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    let status = std::process::Command::new("/bin/sh")
        .args(["-c", "printf '%s\\n' \"$2\" > \"$1\" && chmod 755 \"$1\"", "sh"])
        .arg(&path)
        .arg(body)
        .status()
        .unwrap();
    assert!(status.success());
    path
}

// === 6. a program runs by name ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_named_without_a_slash_is_found_in_the_search_path() {
    // The issue's `cargo`: on the search path, but not in /bin:/usr/bin (where a cleared
    // environment made the child's lookup fall back to).
    let bin = scratch("by-name");
    script(&bin, "palisade-probe", "#!/bin/sh\necho \"probe $*\"");
    let service = ProcessService::builder("palisade-probe").search_path(&bin).arg("a").build().unwrap();
    let output = tokio::time::timeout(HANG_GUARD, service.oneshot(ProcessRequest::new().arg("b")))
        .await
        .unwrap()
        .unwrap();
    assert!(output.success(), "{output:?}");
    assert_eq!(output.stdout(), b"probe a b\n");

    // The same through the serde config.
    let config: ProcessConfig = serde_json::from_value(json!({
        "program": "palisade-probe",
        "search_path": bin.to_str().unwrap(),
    }))
    .unwrap();
    let output = config.build().unwrap().oneshot(ProcessRequest::new()).await.unwrap();
    assert_eq!(output.stdout(), b"probe \n");
}

#[test]
fn a_missing_program_fails_the_build_with_a_config_error() {
    let empty = scratch("empty");
    let err = ProcessService::builder("palisade-no-such-program").search_path(&empty).build().unwrap_err();
    assert_eq!(err.field(), "program");
    assert!(err.rule().contains("palisade-no-such-program"), "{err}");
    let err = MakeWorker::builder("palisade-no-such-program").search_path(&empty).build().unwrap_err();
    assert_eq!(err.field(), "program");
    let config: MakeWorkerConfig = serde_json::from_value(json!({
        "program": "palisade-no-such-program",
        "search_path": empty.to_str().unwrap(),
    }))
    .unwrap();
    assert_eq!(config.build().unwrap_err().field(), "program");
    // A file that is not executable is not a program.
    std::fs::write(empty.join("data"), b"not a program").unwrap();
    let err = ProcessService::builder("data").search_path(&empty).build().unwrap_err();
    assert_eq!(err.field(), "program");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_named_without_a_slash_is_found_in_the_search_path() {
    let worker_dir = echo_worker().parent().unwrap().to_owned();
    let make = MakeWorker::builder("echo_worker")
        .search_path(&worker_dir)
        .arg("--binary")
        .log_stderr(false)
        .build()
        .unwrap();
    let worker = make.spawn().unwrap();
    assert_eq!(worker.clone().oneshot(b"hi".to_vec()).await.unwrap(), b"hi");
    assert_eq!(worker.shutdown().await, Termination::Exited(0));
}

// === 1. huge durations saturate ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_shutdown_grace_never_panics() {
    // `Instant::now() + Duration::MAX` used to panic inside the supervisor task: the
    // shutdown then ended as `Killed(Cancelled)` instead of the worker's own exit.
    let make = MakeWorker::builder(echo_worker())
        .arg("--binary")
        .log_stderr(false)
        .shutdown_grace(Duration::MAX)
        .build()
        .unwrap();
    let worker = make.spawn().unwrap();
    assert_eq!(worker.clone().oneshot(b"x".to_vec()).await.unwrap(), b"x");
    let ended = tokio::time::timeout(HANG_GUARD, worker.shutdown()).await.unwrap();
    assert_eq!(ended, Termination::Exited(0));

    // A crash (stdout closes, then the exit is drained under the grace period).
    let worker = make.spawn().unwrap();
    let err = tokio::time::timeout(HANG_GUARD, worker.clone().oneshot(b"crash".to_vec()))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), WorkerErrorKind::Crashed);
    assert_eq!(err.termination(), Some(Termination::Exited(3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_process_timeout_never_panics() {
    for timeout in
        [Duration::MAX, Duration::from_secs(u64::MAX), Duration::from_secs(200_000_000_000_000 * 86_400)]
    {
        let service = ProcessService::builder("/bin/echo").arg("ok").timeout(timeout).build().unwrap();
        let output =
            tokio::time::timeout(HANG_GUARD, service.oneshot(ProcessRequest::new())).await.unwrap().unwrap();
        assert_eq!(output.stdout(), b"ok\n");
    }
    let config: ProcessConfig =
        serde_json::from_value(json!({"program": "/bin/echo", "timeout": "200000000000000d"})).unwrap();
    let output = config.build().unwrap().oneshot(ProcessRequest::new()).await.unwrap();
    assert!(output.success());
}

// === 3. user code that panics ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_panics_fails_its_request_only() {
    let json = MakeWorker::builder(echo_worker()).arg("--json").json::<Value, Value>().log_stderr(false);
    let worker = json.build().unwrap().spawn().unwrap();
    let err = worker.clone().oneshot(json!({"op": "panic"})).await.unwrap_err();
    assert_eq!(err.kind(), WorkerErrorKind::Remote);
    assert!(err.message().contains("the request handler panicked: asked to panic"), "{err}");
    assert!(worker.is_alive());
    assert_eq!(worker.clone().oneshot(json!({"op": "echo", "value": 7})).await.unwrap(), json!(7));
    assert_eq!(worker.shutdown().await, Termination::Exited(0));

    let binary = MakeWorker::builder(echo_worker()).arg("--binary").log_stderr(false);
    let worker = binary.build().unwrap().spawn().unwrap();
    let err = worker.clone().oneshot(b"panic".to_vec()).await.unwrap_err();
    assert_eq!(err.kind(), WorkerErrorKind::Remote);
    assert_eq!(worker.clone().oneshot(b"after".to_vec()).await.unwrap(), b"after");
    assert_eq!(worker.shutdown().await, Termination::Exited(0));
}

/// Frames one request for `serve` and reads the answers back, over in-memory pipes.
#[tokio::test(flavor = "current_thread")]
async fn serve_answers_a_panicking_handler_with_an_error_and_goes_on() {
    let (mut to_worker, worker_in) = tokio::io::duplex(64 * 1024);
    let (worker_out, mut from_worker) = tokio::io::duplex(64 * 1024);
    let served = tokio::spawn(palisade_process::worker::serve(
        LengthPrefixed,
        worker_in,
        worker_out,
        |req: Vec<u8>| {
            // Panics while making the future, or inside it.
            assert!(req != b"early", "early panic");
            async move {
                assert!(req != b"late", "late panic");
                Ok::<_, std::convert::Infallible>(req)
            }
        },
    ));
    let mut wire = Vec::new();
    for (id, body) in [(1u64, &b"early"[..]), (2, b"late"), (3, b"fine")] {
        Codec::encode_request(&LengthPrefixed, id, &body.to_vec(), &mut wire).unwrap();
    }
    to_worker.write_all(&wire).await.unwrap();
    drop(to_worker);
    let mut answers = Vec::new();
    from_worker.read_to_end(&mut answers).await.unwrap();
    served.await.unwrap().unwrap();

    let mut by_id = std::collections::BTreeMap::new();
    let mut rest = &answers[..];
    while let Some(Decoded { consumed, id, value }) = LengthPrefixed.decode_response(rest, 1 << 20).unwrap() {
        by_id.insert(id, value);
        rest = &rest[consumed..];
    }
    assert!(rest.is_empty());
    assert_eq!(by_id.len(), 3);
    assert_eq!(by_id[&1], Err("the request handler panicked: early panic".to_owned()));
    assert_eq!(by_id[&2], Err("the request handler panicked: late panic".to_owned()));
    assert_eq!(by_id[&3], Ok(b"fine".to_vec()));
}

/// Length-prefixed frames, but the codec panics on a request or an answer `boom`.
#[derive(Clone, Copy, Debug, Default)]
struct PanickyCodec;

impl Codec for PanickyCodec {
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    fn encode_request(&self, id: u64, request: &Vec<u8>, dst: &mut Vec<u8>) -> Result<(), FrameError> {
        assert!(request != b"encode-boom", "encoder bug");
        Codec::encode_request(&LengthPrefixed, id, request, dst)
    }

    fn decode_response(
        &self,
        src: &[u8],
        max_frame_len: usize,
    ) -> Result<Option<Decoded<Result<Vec<u8>, String>>>, FrameError> {
        let decoded = LengthPrefixed.decode_response(src, max_frame_len)?;
        if let Some(Decoded { value: Ok(body), .. }) = &decoded {
            assert!(body != b"boom", "decoder bug");
        }
        Ok(decoded)
    }
}

impl ServeCodec for PanickyCodec {
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    fn decode_request(
        &self,
        src: &[u8],
        max_frame_len: usize,
    ) -> Result<Option<Decoded<Vec<u8>>>, FrameError> {
        LengthPrefixed.decode_request(src, max_frame_len)
    }

    fn encode_response(
        &self,
        id: u64,
        response: Result<&Vec<u8>, &str>,
        dst: &mut Vec<u8>,
    ) -> Result<(), FrameError> {
        if let Ok(body) = response {
            assert!(body != b"boom", "encoder bug");
        }
        LengthPrefixed.encode_response(id, response, dst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codec_that_panics_on_an_answer_breaks_that_worker_only() {
    let make = MakeWorker::builder(echo_worker())
        .arg("--binary")
        .log_stderr(false)
        .codec(PanickyCodec)
        .build()
        .unwrap();
    let handle = make.handle();
    let worker = make.spawn().unwrap();
    let err = tokio::time::timeout(HANG_GUARD, worker.clone().oneshot(b"boom".to_vec()))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), WorkerErrorKind::Malformed);
    assert!(err.message().contains("the codec panicked: decoder bug"), "{err}");
    // The supervisor went on: it killed the broken worker and reported it.
    let ended = tokio::time::timeout(HANG_GUARD, worker.shutdown()).await.unwrap();
    assert_eq!(ended, Termination::Killed(KillReason::ProtocolError));
    let mut w = worker.clone();
    assert!(std::future::poll_fn(|cx| w.poll_ready(cx)).await.is_err());
    assert_eq!(handle.snapshot().crashed, 1);
    // The factory goes on.
    let fresh = make.spawn().unwrap();
    assert_eq!(fresh.clone().oneshot(b"fine".to_vec()).await.unwrap(), b"fine");
    assert_eq!(fresh.shutdown().await, Termination::Exited(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codec_that_panics_encoding_fails_that_call_only() {
    let make = MakeWorker::builder(echo_worker())
        .arg("--binary")
        .log_stderr(false)
        .codec(PanickyCodec)
        .build()
        .unwrap();
    let worker = make.spawn().unwrap();
    let err = worker.clone().oneshot(b"encode-boom".to_vec()).await.unwrap_err();
    assert_eq!(err.kind(), WorkerErrorKind::Encode);
    assert!(err.message().contains("the codec panicked: encoder bug"), "{err}");
    let panicked = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<palisade_core::panic::Panicked>())
        .expect("core's Panicked is the source");
    assert_eq!(
        (panicked.component(), panicked.site(), panicked.message()),
        ("codec", Some("encode_request"), "encoder bug")
    );
    assert!(worker.is_alive());
    assert_eq!(worker.clone().oneshot(b"next".to_vec()).await.unwrap(), b"next");
    assert_eq!(worker.shutdown().await, Termination::Exited(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_listener_misses_its_event_and_nothing_else() {
    let service = ProcessService::builder("/bin/echo")
        .arg("hi")
        .on_event(|e: &ProcessEvent| assert!(!matches!(e, ProcessEvent::Spawned { .. }), "listener bug"))
        .build()
        .unwrap();
    service.handle().on_event(|_: &ProcessEvent| panic!("listener bug"));
    let output = service.clone().oneshot(ProcessRequest::new()).await.unwrap();
    assert_eq!(output.stdout(), b"hi\n");
    assert_eq!(service.handle().snapshot().exited_success, 1);

    // The worker's supervisor publishes the exit: a listener panicking there used to end the
    // supervisor task, and the shutdown then reported `Killed(Cancelled)`.
    let make = MakeWorker::builder(echo_worker())
        .arg("--binary")
        .log_stderr(false)
        .on_event(|e: &ProcessEvent| assert!(!matches!(e, ProcessEvent::Exited { .. }), "listener bug"))
        .build()
        .unwrap();
    let worker = make.spawn().unwrap();
    assert_eq!(worker.clone().oneshot(b"x".to_vec()).await.unwrap(), b"x");
    assert_eq!(tokio::time::timeout(HANG_GUARD, worker.shutdown()).await.unwrap(), Termination::Exited(0));
}

// === 8. extreme configs: a ConfigError, or a service that serves ===

fn durations() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_secs(1)),
        Just(Duration::from_secs(30)),
        Just(Duration::from_secs(u64::MAX)),
        Just(Duration::MAX),
    ]
}

fn sizes() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(15),
        Just(16),
        Just(4096),
        Just(u32::MAX as usize),
        Just(u32::MAX as usize + 1),
        Just(tokio::sync::Semaphore::MAX_PERMITS),
        Just(tokio::sync::Semaphore::MAX_PERMITS + 1),
        Just(usize::MAX),
    ]
}

fn duration_text(d: Duration) -> String {
    format!("{}s{}ns", d.as_secs(), d.subsec_nanos())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

const PROCESS_FIELDS: &[&str] = &["timeout", "max_concurrency"];
const WORKER_FIELDS: &[&str] = &["max_in_flight", "max_frame_len", "shutdown_grace"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn process_configs_refuse_or_serve(
        timeout in proptest::option::of(durations()),
        max_stdout in sizes(),
        max_stderr in sizes(),
        max_concurrency in sizes(),
        kill in any::<bool>(),
        from_serde in any::<bool>(),
    ) {
        let action = if kill { OutputLimitAction::Kill } else { OutputLimitAction::Truncate };
        let built = if from_serde {
            let config: ProcessConfig = serde_json::from_value(json!({
                "program": "/bin/echo",
                "args": ["hello"],
                "timeout": timeout.map(duration_text),
                "max_stdout": max_stdout,
                "max_stderr": max_stderr,
                "max_concurrency": max_concurrency,
                "on_output_limit": if kill { "kill" } else { "truncate" },
            })).unwrap();
            config.build()
        } else {
            let b = ProcessService::builder("/bin/echo")
                .arg("hello")
                .max_stdout(max_stdout)
                .max_stderr(max_stderr)
                .max_concurrency(max_concurrency)
                .on_output_limit(action);
            match timeout { Some(t) => b.timeout(t), None => b.no_timeout() }.build()
        };
        match built {
            Err(e) => prop_assert!(PROCESS_FIELDS.contains(&e.field()), "{e}"),
            Ok(service) => runtime().block_on(async {
                let call = service.oneshot(ProcessRequest::new());
                let output = tokio::time::timeout(HANG_GUARD, call).await.expect("no hang").expect("served");
                if output.termination() != Termination::Killed(KillReason::Timeout) {
                    let expected: &[u8] = b"hello\n";
                    let kept = &expected[..expected.len().min(max_stdout)];
                    prop_assert_eq!(output.stdout(), kept);
                }
                Ok(())
            })?,
        }
    }

    #[test]
    fn worker_configs_refuse_or_serve(
        max_in_flight in sizes(),
        max_frame_len in sizes(),
        grace in durations(),
        from_serde in any::<bool>(),
    ) {
        let built = if from_serde {
            let config: MakeWorkerConfig = serde_json::from_value(json!({
                "program": echo_worker().to_str().unwrap(),
                "args": ["--binary"],
                "max_in_flight": max_in_flight,
                "max_frame_len": max_frame_len,
                "shutdown_grace": duration_text(grace),
                "log_stderr": false,
            })).unwrap();
            config.build()
        } else {
            MakeWorker::builder(echo_worker())
                .arg("--binary")
                .log_stderr(false)
                .max_in_flight(max_in_flight)
                .max_frame_len(max_frame_len)
                .shutdown_grace(grace)
                .build()
        };
        match built {
            Err(e) => prop_assert!(WORKER_FIELDS.contains(&e.field()), "{e}"),
            Ok(make) => runtime().block_on(async {
                let worker = make.spawn().expect("spawned");
                let answer = tokio::time::timeout(HANG_GUARD, worker.clone().oneshot(b"hi".to_vec()))
                    .await
                    .expect("no hang")
                    .expect("served");
                prop_assert_eq!(answer, b"hi".to_vec());
                let ended = tokio::time::timeout(HANG_GUARD, worker.shutdown()).await.expect("no hang");
                prop_assert!(
                    matches!(ended, Termination::Exited(0) | Termination::Killed(KillReason::ShutdownGrace)),
                    "{:?}", ended
                );
                Ok(())
            })?,
        }
    }
}
