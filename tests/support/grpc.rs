//! A hand-written tonic Greeter service (no protoc, no build script): prost messages, a server
//! whose answers follow a script, and a client call over any `GrpcService`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::uri::PathAndQuery;
use tonic::body::Body;
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use tower::Service;

#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    #[prost(string, tag = "1")]
    pub name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    #[prost(string, tag = "1")]
    pub message: String,
}

/// One scripted answer: a status code (with an optional pushback) or a greeting.
#[derive(Clone, Debug)]
pub enum Answer {
    Ok,
    Fail(Code, Option<&'static str>),
}

/// The server's script and how many calls reached it.
#[derive(Clone, Default)]
pub struct Script {
    answers: Arc<Mutex<VecDeque<Answer>>>,
    pub calls: Arc<AtomicUsize>,
}

impl Script {
    pub fn new(answers: impl IntoIterator<Item = Answer>) -> Self {
        Self { answers: Arc::new(Mutex::new(answers.into_iter().collect())), calls: Arc::default() }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn next(&self) -> Answer {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.answers.lock().unwrap().pop_front().unwrap_or(Answer::Ok)
    }
}

#[derive(Clone)]
pub struct GreeterServer {
    pub script: Script,
}

impl tonic::server::NamedService for GreeterServer {
    const NAME: &'static str = "palisade.test.Greeter";
}

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

struct SayHello(Script);

impl tonic::server::UnaryService<HelloRequest> for SayHello {
    type Response = HelloReply;
    type Future = BoxFut<Result<tonic::Response<HelloReply>, Status>>;

    fn call(&mut self, request: tonic::Request<HelloRequest>) -> Self::Future {
        let answer = self.0.next();
        Box::pin(async move {
            match answer {
                Answer::Ok => Ok(tonic::Response::new(HelloReply {
                    message: format!("hello {}", request.into_inner().name),
                })),
                Answer::Fail(code, pushback) => {
                    let mut status = Status::new(code, "scripted failure");
                    if let Some(ms) = pushback {
                        status.metadata_mut().insert("grpc-retry-pushback-ms", ms.parse().unwrap());
                    }
                    Err(status)
                }
            }
        })
    }
}

impl Service<http::Request<Body>> for GreeterServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFut<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let script = self.script.clone();
        Box::pin(async move {
            if req.uri().path() == "/palisade.test.Greeter/SayHello" {
                let mut grpc = tonic::server::Grpc::new(ProstCodec::<HelloReply, HelloRequest>::default());
                Ok(grpc.unary(SayHello(script), req).await)
            } else {
                Ok(Status::unimplemented("no such method").into_http())
            }
        })
    }
}

/// Starts the Greeter on a loopback port; the server stops when the returned handle drops.
pub async fn serve(script: Script) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream_shim(listener);
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(GreeterServer { script })
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    (addr, task)
}

fn tokio_stream_shim(
    listener: tokio::net::TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |l| async move {
        let conn = l.accept().await.map(|(s, _)| s);
        Some((conn, l))
    })
}

/// Calls `SayHello` over any gRPC client service (a `Channel` behind palisade layers).
pub async fn say_hello<T>(svc: T, name: &str) -> Result<String, Status>
where
    T: tonic::client::GrpcService<Body>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<palisade::BoxError>,
    T::Error: Into<palisade::BoxError>,
{
    let mut grpc = tonic::client::Grpc::new(svc);
    grpc.ready().await.map_err(|e| Status::unavailable(e.into().to_string()))?;
    let path = PathAndQuery::from_static("/palisade.test.Greeter/SayHello");
    let res: tonic::Response<HelloReply> = grpc
        .unary(tonic::Request::new(HelloRequest { name: name.to_owned() }), path, ProstCodec::default())
        .await?;
    Ok(res.into_inner().message)
}
