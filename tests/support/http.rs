//! A local hyper server whose answers follow a script, and a hyper-util client.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Status codes to answer in order (then 200), with the number of calls seen, per server.
#[derive(Clone, Default)]
pub struct StatusScript {
    statuses: Arc<Mutex<VecDeque<u16>>>,
    calls: Arc<AtomicUsize>,
}

impl StatusScript {
    pub fn new(statuses: impl IntoIterator<Item = u16>) -> Self {
        Self { statuses: Arc::new(Mutex::new(statuses.into_iter().collect())), calls: Arc::default() }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn next(&self) -> u16 {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.statuses.lock().unwrap().pop_front().unwrap_or(200)
    }
}

/// Serves the script on a loopback port until the returned task is dropped/aborted.
pub async fn serve(script: StatusScript) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let script = script.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
                    let status = script.next();
                    async move {
                        let mut res = hyper::Response::new(Full::new(Bytes::from_static(b"payload")));
                        *res.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(res)
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    (addr, task)
}

/// A hyper-util client (HTTP/1, keep-alive) sending `Full<Bytes>` bodies.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}
