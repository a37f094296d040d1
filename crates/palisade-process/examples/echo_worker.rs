//! A tiny worker program for `WorkerProcess`, built on `palisade_process::worker::serve_stdio`.
//!
//! `echo_worker --json` speaks newline-delimited JSON; requests are objects with an `op`:
//!
//! - `{"op":"echo","value":V}` answers `V`;
//! - `{"op":"add","a":1,"b":2}` answers `3`;
//! - `{"op":"sleep","ms":N,"value":V}` answers `V` after `N` ms;
//! - `{"op":"fail","message":M}` answers with the error `M`;
//! - `{"op":"crash","code":C}` exits at once with code `C`;
//! - `{"op":"garbage"}` writes a line that is not a frame to stdout;
//! - `{"op":"panic"}` panics in the handler (answered with an error; the worker goes on).
//!
//! `echo_worker --binary` (the default) speaks length-prefixed binary frames and echoes
//! the bytes, except: `crash` exits with code 3, `garbage` writes bytes that are not a
//! frame, `panic` panics in the handler, `sleep:N` answers after `N` ms.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write;
use std::time::Duration;

use palisade_process::codec::{Json, LengthPrefixed};
use palisade_process::worker::serve_stdio;
use serde_json::{json, Value};

fn garbage() {
    let mut out = std::io::stdout();
    let _ = out.write_all(b"\xff\xffthis is not a frame\n\x00\x00\x00\x01");
    let _ = out.flush();
}

async fn json_op(req: Value) -> Result<Value, String> {
    match req["op"].as_str().unwrap_or("echo") {
        "echo" => Ok(req["value"].clone()),
        "add" => {
            let a = req["a"].as_i64().ok_or("`a` must be an integer")?;
            let b = req["b"].as_i64().ok_or("`b` must be an integer")?;
            Ok(json!(a + b))
        }
        "sleep" => {
            tokio::time::sleep(Duration::from_millis(req["ms"].as_u64().unwrap_or(0))).await;
            Ok(req["value"].clone())
        }
        "fail" => Err(req["message"].as_str().unwrap_or("failed").to_owned()),
        "panic" => panic!("asked to panic"),
        "crash" => std::process::exit(req["code"].as_i64().unwrap_or(3) as i32),
        "garbage" => {
            garbage();
            // Never answer: the parent has already seen the garbage.
            std::future::pending().await
        }
        other => Err(format!("unknown op `{other}`")),
    }
}

async fn binary_op(req: Vec<u8>) -> Result<Vec<u8>, String> {
    if req == b"crash" {
        std::process::exit(3);
    }
    assert!(req != b"panic", "asked to panic");
    if req == b"garbage" {
        garbage();
        return std::future::pending().await;
    }
    if let Some(ms) = req.strip_prefix(b"sleep:") {
        let ms: u64 = std::str::from_utf8(ms).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    Ok(req)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let result = if json {
        serve_stdio(Json::<Value, Value>::new(), json_op).await
    } else {
        serve_stdio(LengthPrefixed, binary_op).await
    };
    if let Err(e) = result {
        eprintln!("echo_worker: {e}");
        std::process::exit(1);
    }
}
