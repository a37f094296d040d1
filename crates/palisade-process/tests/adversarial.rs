//! Hostile cases beyond issue 15's own inputs: futures polled after completion, user values
//! whose `Drop` panics on palisade's tasks, and the tower contract of both services.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
#![cfg(target_os = "linux")]

mod support;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use palisade_process::codec::{Codec, Decoded, LengthPrefixed, ServeCodec};
use palisade_process::error::FrameError;
use palisade_process::{
    KillReason, MakeWorker, ProcessErrorKind, ProcessRequest, ProcessService, Termination, WorkerErrorKind,
};
use tokio::io::AsyncWriteExt;
use tower::{Service, ServiceExt};

use support::echo_worker;

/// A hang guard for calls on real child processes: generous, never a speed assertion.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// Polls `fut` once more, after it has completed.
async fn poll_again<F: Future + Unpin>(fut: &mut F) -> F::Output {
    std::future::poll_fn(|cx| Pin::new(&mut *fut).poll(cx)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_future_polled_after_completion_answers_an_error() {
    let mut svc = ProcessService::builder("/bin/true").build().unwrap();
    svc.ready().await.unwrap();
    let mut fut = svc.call(ProcessRequest::new());
    let out = tokio::time::timeout(HANG_GUARD, &mut fut).await.unwrap().unwrap();
    assert_eq!(out.termination(), Termination::Exited(0));
    let again = poll_again(&mut fut).await.unwrap_err();
    assert_eq!(again.kind(), ProcessErrorKind::NotReady);
    // A refused call's future, too.
    let mut refused = svc.call(ProcessRequest::new());
    assert_eq!(poll_again(&mut refused).await.unwrap_err().kind(), ProcessErrorKind::NotReady);
    assert_eq!(poll_again(&mut refused).await.unwrap_err().kind(), ProcessErrorKind::NotReady);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_future_polled_after_completion_answers_an_error() {
    let make = MakeWorker::builder(echo_worker()).arg("--binary").log_stderr(false).build().unwrap();
    let mut worker = make.spawn().unwrap();
    worker.ready().await.unwrap();
    let mut fut = worker.call(b"x".to_vec());
    assert_eq!(tokio::time::timeout(HANG_GUARD, &mut fut).await.unwrap().unwrap(), b"x");
    let again = poll_again(&mut fut).await.unwrap_err();
    assert_eq!(again.kind(), WorkerErrorKind::NotReady);
    // A call without `poll_ready`: an error, twice, no panic.
    let mut refused = worker.call(b"y".to_vec());
    assert_eq!(poll_again(&mut refused).await.unwrap_err().kind(), WorkerErrorKind::NotReady);
    assert_eq!(poll_again(&mut refused).await.unwrap_err().kind(), WorkerErrorKind::NotReady);
    assert_eq!(worker.shutdown().await, Termination::Exited(0));
}

/// An answer whose `Drop` panics when its body is `drop-boom`.
#[derive(Debug, PartialEq, Eq)]
struct Touchy(Vec<u8>);

impl Drop for Touchy {
    fn drop(&mut self) {
        assert!(self.0 != b"drop-boom" || std::thread::panicking(), "answer drop bug");
    }
}

/// Length-prefixed frames decoding into [`Touchy`] answers.
#[derive(Clone, Copy, Debug, Default)]
struct TouchyCodec;

impl Codec for TouchyCodec {
    type Request = Vec<u8>;
    type Response = Touchy;

    fn encode_request(&self, id: u64, request: &Vec<u8>, dst: &mut Vec<u8>) -> Result<(), FrameError> {
        Codec::encode_request(&LengthPrefixed, id, request, dst)
    }

    fn decode_response(
        &self,
        src: &[u8],
        max_frame_len: usize,
    ) -> Result<Option<Decoded<Result<Touchy, String>>>, FrameError> {
        Ok(LengthPrefixed.decode_response(src, max_frame_len)?.map(|d| Decoded {
            consumed: d.consumed,
            id: d.id,
            value: d.value.map(Touchy),
        }))
    }
}

/// An abandoned call's answer is dropped on the worker's supervisor task: a panic in its
/// `Drop` must not end the supervisor (every later request would hang).
#[tokio::test(flavor = "current_thread")]
async fn an_answer_that_panics_when_dropped_by_the_supervisor_breaks_nothing() {
    let make = MakeWorker::builder(echo_worker())
        .arg("--binary")
        .log_stderr(false)
        .max_in_flight(1)
        .codec(TouchyCodec)
        .build()
        .unwrap();
    let mut worker = make.spawn().unwrap();
    worker.ready().await.unwrap();
    // Abandoned before the supervisor (same thread) can run: its answer is dropped there.
    drop(worker.call(b"drop-boom".to_vec()));
    // The only slot comes back once the abandoned answer arrives, and the worker goes on.
    let answer = tokio::time::timeout(HANG_GUARD, async {
        worker.ready().await.unwrap();
        worker.call(b"fine".to_vec()).await
    })
    .await
    .expect("the worker's supervisor died")
    .unwrap();
    assert_eq!(answer, Touchy(b"fine".to_vec()));
    assert!(worker.is_alive());
    assert_eq!(tokio::time::timeout(HANG_GUARD, worker.shutdown()).await.unwrap(), Termination::Exited(0));
}

/// Tower contract: a reserved slot is released when the service is dropped, a clone starts
/// unreserved, and a dropped response future gives its slot back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_slots_are_reserved_by_poll_ready_and_released_by_drops() {
    let mut svc = ProcessService::builder("/bin/sleep").max_concurrency(1).build().unwrap();
    svc.ready().await.unwrap();
    assert_eq!(svc.available_slots(), 0);
    let mut clone = svc.clone();
    let mut ready = tokio_test::task::spawn(clone.ready());
    assert!(ready.poll().is_pending(), "the only slot is reserved by the original");
    drop(svc);
    assert!(ready.is_woken());
    assert!(ready.poll().is_ready());
    drop(ready);
    let fut = clone.call(ProcessRequest::new().arg("1000"));
    assert_eq!(clone.available_slots(), 0);
    drop(fut);
    assert_eq!(clone.available_slots(), 1);
}

/// A codec that lies about the bytes a frame used: none (`0`), or one more than given.
#[derive(Clone, Copy, Debug)]
struct LyingCodec {
    extra: bool,
}

impl LyingCodec {
    fn lie(self, available: usize) -> usize {
        if self.extra {
            available + 1
        } else {
            0
        }
    }
}

impl Codec for LyingCodec {
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    fn encode_request(&self, id: u64, request: &Vec<u8>, dst: &mut Vec<u8>) -> Result<(), FrameError> {
        Codec::encode_request(&LengthPrefixed, id, request, dst)
    }

    fn decode_response(
        &self,
        src: &[u8],
        max_frame_len: usize,
    ) -> Result<Option<Decoded<Result<Vec<u8>, String>>>, FrameError> {
        Ok(LengthPrefixed
            .decode_response(src, max_frame_len)?
            .map(|d| Decoded { consumed: self.lie(src.len()), ..d }))
    }
}

impl ServeCodec for LyingCodec {
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    fn decode_request(
        &self,
        src: &[u8],
        max_frame_len: usize,
    ) -> Result<Option<Decoded<Vec<u8>>>, FrameError> {
        Ok(LengthPrefixed
            .decode_request(src, max_frame_len)?
            .map(|d| Decoded { consumed: self.lie(src.len()), ..d }))
    }

    fn encode_response(
        &self,
        id: u64,
        response: Result<&Vec<u8>, &str>,
        dst: &mut Vec<u8>,
    ) -> Result<(), FrameError> {
        LengthPrefixed.encode_response(id, response, dst)
    }
}

/// A codec claiming a frame of 0 bytes (decoded forever) or of more bytes than were read
/// (slicing past the buffer on the supervisor's task) breaks that worker's protocol only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_codec_lying_about_consumed_bytes_breaks_that_worker_only() {
    for extra in [false, true] {
        let make = MakeWorker::builder(echo_worker())
            .arg("--binary")
            .log_stderr(false)
            .codec(LyingCodec { extra })
            .build()
            .unwrap();
        let worker = make.spawn().unwrap();
        let err = tokio::time::timeout(HANG_GUARD, worker.clone().oneshot(b"x".to_vec()))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), WorkerErrorKind::Malformed, "extra: {extra}: {err}");
        assert!(err.message().contains("the codec consumed"), "{err}");
        let ended = tokio::time::timeout(HANG_GUARD, worker.shutdown()).await.unwrap();
        assert_eq!(ended, Termination::Killed(KillReason::ProtocolError));
    }
}

/// On the worker's side, the same lie ends `serve` with an error instead of spinning or
/// panicking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_codec_lying_about_consumed_bytes() {
    for extra in [false, true] {
        let (mut to_worker, worker_in) = tokio::io::duplex(64 * 1024);
        let (worker_out, _from_worker) = tokio::io::duplex(64 * 1024);
        let served = tokio::spawn(palisade_process::worker::serve(
            LyingCodec { extra },
            worker_in,
            worker_out,
            |req: Vec<u8>| async move { Ok::<_, std::convert::Infallible>(req) },
        ));
        let mut wire = Vec::new();
        Codec::encode_request(&LengthPrefixed, 1, &b"x".to_vec(), &mut wire).unwrap();
        to_worker.write_all(&wire).await.unwrap();
        let err = tokio::time::timeout(HANG_GUARD, served).await.unwrap().unwrap().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "extra: {extra}: {err}");
    }
}

/// Frames over-claiming their length, decoding into [`Touchy`] answers: the refused answer
/// is dropped on the supervisor's task.
#[derive(Clone, Copy, Debug, Default)]
struct LyingTouchyCodec;

impl Codec for LyingTouchyCodec {
    type Request = Vec<u8>;
    type Response = Touchy;

    fn encode_request(&self, id: u64, request: &Vec<u8>, dst: &mut Vec<u8>) -> Result<(), FrameError> {
        Codec::encode_request(&LengthPrefixed, id, request, dst)
    }

    fn decode_response(
        &self,
        src: &[u8],
        max_frame_len: usize,
    ) -> Result<Option<Decoded<Result<Touchy, String>>>, FrameError> {
        Ok(LengthPrefixed.decode_response(src, max_frame_len)?.map(|d| Decoded {
            consumed: src.len() + 1,
            id: d.id,
            value: d.value.map(Touchy),
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_answer_that_panics_when_dropped_breaks_that_worker_only() {
    let make = MakeWorker::builder(echo_worker())
        .arg("--binary")
        .log_stderr(false)
        .codec(LyingTouchyCodec)
        .build()
        .unwrap();
    let worker = make.spawn().unwrap();
    let err = tokio::time::timeout(HANG_GUARD, worker.clone().oneshot(b"drop-boom".to_vec()))
        .await
        .expect("the worker's supervisor died")
        .unwrap_err();
    assert_eq!(err.kind(), WorkerErrorKind::Malformed, "{err}");
    assert!(err.message().contains("answer drop bug"), "{err}");
    let ended = tokio::time::timeout(HANG_GUARD, worker.shutdown()).await.unwrap();
    assert_eq!(ended, Termination::Killed(KillReason::ProtocolError));
}

/// Tower contract for workers: a reserved in-flight slot is released when the service
/// holding it is dropped (while a clone keeps the worker alive), and a clone starts
/// unreserved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_slots_are_reserved_by_poll_ready_and_released_by_a_dropped_service() {
    let make = MakeWorker::builder(echo_worker()).arg("--binary").log_stderr(false).max_in_flight(1);
    let mut worker = make.build().unwrap().spawn().unwrap();
    worker.ready().await.unwrap();
    let mut clone = worker.clone();
    let mut ready = tokio_test::task::spawn(clone.ready());
    assert!(ready.poll().is_pending(), "the only slot is reserved by the original");
    drop(worker);
    assert!(ready.is_woken());
    assert!(ready.poll().is_ready());
    drop(ready);
    let answer = tokio::time::timeout(HANG_GUARD, clone.call(b"z".to_vec())).await.unwrap().unwrap();
    assert_eq!(answer, b"z");
    assert_eq!(tokio::time::timeout(HANG_GUARD, clone.shutdown()).await.unwrap(), Termination::Exited(0));
}

/// Length-prefixed frames, but `delimiter` (a codec method like any other) panics.
#[derive(Clone, Copy, Debug, Default)]
struct PanickyDelimiter;

impl Codec for PanickyDelimiter {
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    fn delimiter(&self) -> Option<u8> {
        panic!("delimiter bug")
    }

    fn encode_request(&self, id: u64, request: &Vec<u8>, dst: &mut Vec<u8>) -> Result<(), FrameError> {
        Codec::encode_request(&LengthPrefixed, id, request, dst)
    }

    fn decode_response(
        &self,
        src: &[u8],
        max_frame_len: usize,
    ) -> Result<Option<Decoded<Result<Vec<u8>, String>>>, FrameError> {
        LengthPrefixed.decode_response(src, max_frame_len)
    }
}

impl ServeCodec for PanickyDelimiter {
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    fn delimiter(&self) -> Option<u8> {
        panic!("delimiter bug")
    }

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
        LengthPrefixed.encode_response(id, response, dst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_delimiter_is_a_protocol_error_on_both_sides() {
    let make = MakeWorker::builder(echo_worker())
        .arg("--binary")
        .log_stderr(false)
        .codec(PanickyDelimiter)
        .build()
        .unwrap();
    let worker = make.spawn().unwrap();
    let err = tokio::time::timeout(HANG_GUARD, worker.clone().oneshot(b"x".to_vec()))
        .await
        .expect("the worker's supervisor died")
        .unwrap_err();
    assert_eq!(err.kind(), WorkerErrorKind::Malformed, "{err}");
    assert!(err.message().contains("delimiter bug"), "{err}");

    let (mut to_worker, worker_in) = tokio::io::duplex(64 * 1024);
    let (worker_out, _from_worker) = tokio::io::duplex(64 * 1024);
    let served = tokio::spawn(palisade_process::worker::serve(
        PanickyDelimiter,
        worker_in,
        worker_out,
        |req: Vec<u8>| async move { Ok::<_, std::convert::Infallible>(req) },
    ));
    let mut wire = Vec::new();
    Codec::encode_request(&LengthPrefixed, 1, &b"x".to_vec(), &mut wire).unwrap();
    to_worker.write_all(&wire).await.unwrap();
    let err = tokio::time::timeout(HANG_GUARD, served).await.unwrap().expect("serve panicked").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
}
