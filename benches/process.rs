//! Child processes: spawn-per-request through `ProcessService` against a bare
//! `tokio::process::Command`, and a persistent `WorkerProcess` against spawn-per-request on
//! small payloads.
//!
//! The worker is this bench binary itself, started with `PALISADE_BENCH_WORKER=1`, serving
//! length-prefixed echo frames with `palisade_process::worker::serve_stdio`.
//!
//! ```text
//! cargo bench --no-default-features --features process --bench process -- --warm-up-time 1 --measurement-time 3
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Stdio;
use std::time::Duration;

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use palisade_process::codec::LengthPrefixed;
use palisade_process::{MakeWorker, ProcessRequest, ProcessService};
use tokio::io::AsyncWriteExt;
use tower::{Service, ServiceExt};

const WORKER_ENV: &str = "PALISADE_BENCH_WORKER";
const PAYLOAD: &[u8] = b"ping 0123456789abcdef";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn process(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("process");
    group.sample_size(20);
    group.throughput(Throughput::Elements(1));

    // --- spawn per request: /bin/true, output captured ---
    group.bench_function(BenchmarkId::new("spawn /bin/true", "bare tokio Command"), |b| {
        b.to_async(&rt).iter(|| async {
            let out = tokio::process::Command::new("/bin/true")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .output()
                .await
                .unwrap();
            assert!(out.status.success());
        });
    });
    // The same settings palisade applies: empty environment, own process group.
    group.bench_function(
        BenchmarkId::new("spawn /bin/true", "bare tokio Command, env cleared + pgroup"),
        |b| {
            b.to_async(&rt).iter(|| async {
                let out = tokio::process::Command::new("/bin/true")
                    .env_clear()
                    .process_group(0)
                    .kill_on_drop(true)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .output()
                    .await
                    .unwrap();
                assert!(out.status.success());
            });
        },
    );
    let svc = ProcessService::builder("/bin/true").build().unwrap();
    group.bench_function(BenchmarkId::new("spawn /bin/true", "palisade ProcessService"), |b| {
        b.to_async(&rt).iter(|| {
            let mut svc = svc.clone();
            async move {
                let out = svc.ready().await.unwrap().call(ProcessRequest::new()).await.unwrap();
                assert!(out.success());
            }
        });
    });

    // --- small payload: spawn /bin/cat per request vs one persistent worker ---
    group.bench_function(BenchmarkId::new("small payload", "bare tokio Command /bin/cat"), |b| {
        b.to_async(&rt).iter(|| async {
            let mut child = tokio::process::Command::new("/bin/cat")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(PAYLOAD).await.unwrap();
            drop(stdin);
            let out = child.wait_with_output().await.unwrap();
            assert_eq!(out.stdout, PAYLOAD);
        });
    });
    let cat = ProcessService::builder("/bin/cat").build().unwrap();
    group.bench_function(BenchmarkId::new("small payload", "palisade ProcessService /bin/cat"), |b| {
        b.to_async(&rt).iter(|| {
            let mut cat = cat.clone();
            async move {
                let out =
                    cat.ready().await.unwrap().call(ProcessRequest::new().stdin(PAYLOAD)).await.unwrap();
                assert_eq!(out.stdout(), PAYLOAD);
            }
        });
    });

    let exe = std::env::current_exe().unwrap();
    let worker = rt.block_on(async {
        MakeWorker::builder(&exe).env(WORKER_ENV, "1").max_in_flight(256).build().unwrap().spawn().unwrap()
    });
    group.bench_function(BenchmarkId::new("small payload", "palisade WorkerProcess sequential"), |b| {
        b.to_async(&rt).iter(|| {
            let mut worker = worker.clone();
            async move {
                let answer = worker.ready().await.unwrap().call(PAYLOAD.to_vec()).await.unwrap();
                assert_eq!(answer, PAYLOAD);
            }
        });
    });
    group.throughput(Throughput::Elements(64));
    group.bench_function(BenchmarkId::new("small payload x64", "palisade WorkerProcess 64 in flight"), |b| {
        b.to_async(&rt).iter(|| {
            let worker = worker.clone();
            async move {
                let mut calls = tokio::task::JoinSet::new();
                for _ in 0..64 {
                    let worker = worker.clone();
                    calls.spawn(async move { worker.oneshot(PAYLOAD.to_vec()).await.unwrap() });
                }
                while let Some(answer) = calls.join_next().await {
                    assert_eq!(answer.unwrap(), PAYLOAD);
                }
            }
        });
    });
    group.finish();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), worker.shutdown()).await.unwrap();
    });
}

fn serve_as_worker() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        palisade_process::worker::serve_stdio(LengthPrefixed, |req: Vec<u8>| async move {
            Ok::<_, std::convert::Infallible>(req)
        })
        .await
        .unwrap();
    });
}

criterion_group!(benches, process);

fn main() {
    if std::env::var_os(WORKER_ENV).is_some() {
        serve_as_worker();
        return;
    }
    benches();
    criterion::Criterion::default().configure_from_args().final_summary();
}
