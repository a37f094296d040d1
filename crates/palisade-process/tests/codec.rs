#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use palisade_process::codec::{Codec, LengthPrefixed, ServeCodec};
use palisade_process::worker::serve;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MAX: usize = 1 << 20;

fn request_frames<C: Codec>(codec: &C, requests: &[(u64, C::Request)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, req) in requests {
        codec.encode_request(*id, req, &mut out).unwrap();
    }
    out
}

proptest! {
    #[test]
    fn binary_requests_round_trip_in_any_split(
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..8),
        split in 0usize..512,
    ) {
        let requests: Vec<(u64, Vec<u8>)> = bodies.into_iter().enumerate().map(|(i, b)| (i as u64 * 7, b)).collect();
        let wire = request_frames(&LengthPrefixed, &requests);
        // A prefix never decodes past what it holds.
        let cut = split.min(wire.len());
        let mut decoded = Vec::new();
        let mut at = 0;
        while let Some(frame) = ServeCodec::decode_request(&LengthPrefixed, &wire[at..cut], MAX).unwrap() {
            at += frame.consumed;
            decoded.push((frame.id, frame.value));
        }
        while let Some(frame) = ServeCodec::decode_request(&LengthPrefixed, &wire[at..], MAX).unwrap() {
            at += frame.consumed;
            decoded.push((frame.id, frame.value));
        }
        prop_assert_eq!(at, wire.len());
        prop_assert_eq!(decoded, requests);
    }

    #[test]
    fn binary_responses_round_trip(body in prop::collection::vec(any::<u8>(), 0..128), id in any::<u64>(), err in any::<bool>()) {
        let mut wire = Vec::new();
        let message = String::from_utf8_lossy(&body).into_owned();
        let response = if err { Err(message.as_str()) } else { Ok(&body) };
        LengthPrefixed.encode_response(id, response, &mut wire).unwrap();
        let frame = Codec::decode_response(&LengthPrefixed, &wire, MAX).unwrap().unwrap();
        prop_assert_eq!(frame.consumed, wire.len());
        prop_assert_eq!(frame.id, id);
        if err {
            prop_assert_eq!(frame.value, Err(message));
        } else {
            prop_assert_eq!(frame.value, Ok(body));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_decoder(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Codec::decode_response(&LengthPrefixed, &bytes, 64);
        let _ = ServeCodec::decode_request(&LengthPrefixed, &bytes, 64);
        #[cfg(feature = "json")]
        {
            let json = palisade_process::Json::<serde_json::Value, serde_json::Value>::new();
            let _ = Codec::decode_response(&json, &bytes, 64);
            let _ = ServeCodec::decode_request(&json, &bytes, 64);
        }
    }
}

#[test]
fn oversized_and_short_frames_are_errors() {
    // Declared length over the limit: refused before the body arrives.
    let mut wire = Vec::new();
    LengthPrefixed.encode_request(1, &vec![0; 100], &mut wire).unwrap();
    assert!(ServeCodec::decode_request(&LengthPrefixed, &wire[..4], 50).is_err());
    // Length shorter than the header.
    assert!(Codec::decode_response(&LengthPrefixed, &[0, 0, 0, 3, 1, 2, 3], MAX).is_err());
    // Unknown tag.
    let mut wire = vec![0, 0, 0, 9];
    wire.extend_from_slice(&5u64.to_be_bytes());
    wire.push(7);
    assert!(Codec::decode_response(&LengthPrefixed, &wire, MAX).is_err());
}

#[cfg(feature = "json")]
#[test]
fn json_frames() {
    use serde_json::{json, Value};
    let codec = palisade_process::Json::<Value, Value>::new();
    let mut wire = Vec::new();
    Codec::encode_request(&codec, 3, &json!({"text": "line\nbreak"}), &mut wire).unwrap();
    assert_eq!(wire.split(|&b| b == b'\n').count(), 2, "one line per frame");
    let frame = ServeCodec::decode_request(&codec, &wire, MAX).unwrap().unwrap();
    assert_eq!((frame.id, frame.value), (3, json!({"text": "line\nbreak"})));

    let mut wire = Vec::new();
    codec.encode_response(4, Ok(&Value::Null), &mut wire).unwrap();
    codec.encode_response(5, Err("bad"), &mut wire).unwrap();
    let first = Codec::decode_response(&codec, &wire, MAX).unwrap().unwrap();
    assert_eq!((first.id, first.value), (4, Ok(Value::Null)));
    let second = Codec::decode_response(&codec, &wire[first.consumed..], MAX).unwrap().unwrap();
    assert_eq!((second.id, second.value), (5, Err("bad".to_owned())));

    // Not a frame, both fields, a line too long without a newline.
    assert!(Codec::decode_response(&codec, b"hello\n", MAX).is_err());
    assert!(Codec::decode_response(&codec, b"{\"id\":1,\"ok\":1,\"err\":\"x\"}\n", MAX).is_err());
    assert!(Codec::decode_response(&codec, &[b'x'; 100], 50).is_err());
    assert!(Codec::decode_response(&codec, b"{\"id\":1", MAX).unwrap().is_none());
}

#[tokio::test]
async fn serve_answers_over_any_pipe() {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let (server_read, server_write) = tokio::io::split(server);
    let serving = tokio::spawn(serve(LengthPrefixed, server_read, server_write, |req: Vec<u8>| async move {
        if req == b"fail" {
            Err("no")
        } else {
            Ok(req.into_iter().rev().collect::<Vec<u8>>())
        }
    }));
    let wire = request_frames(&LengthPrefixed, &[(1, b"abc".to_vec()), (2, b"fail".to_vec())]);
    client.write_all(&wire).await.unwrap();
    client.shutdown().await.unwrap();
    let mut answers = Vec::new();
    client.read_to_end(&mut answers).await.unwrap();
    serving.await.unwrap().unwrap();

    let mut at = 0;
    let mut got = Vec::new();
    while let Some(frame) = Codec::decode_response(&LengthPrefixed, &answers[at..], MAX).unwrap() {
        at += frame.consumed;
        got.push((frame.id, frame.value));
    }
    got.sort_by_key(|(id, _)| *id);
    assert_eq!(got, vec![(1, Ok(b"cba".to_vec())), (2, Err("no".to_owned()))]);
}

#[tokio::test]
async fn serve_fails_on_a_malformed_request_and_answers_a_panic() {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let (r, w) = tokio::io::split(server);
    let serving =
        tokio::spawn(serve(LengthPrefixed, r, w, |req: Vec<u8>| async move { Ok::<_, String>(req) }));
    client.write_all(&[0, 0, 0, 1, 9]).await.unwrap();
    assert!(serving.await.unwrap().is_err());

    let (mut client, server) = tokio::io::duplex(1 << 16);
    let (r, w) = tokio::io::split(server);
    let serving = tokio::spawn(serve(LengthPrefixed, r, w, |req: Vec<u8>| async move {
        assert!(req.is_empty(), "handler panics on purpose");
        Ok::<_, String>(req)
    }));
    client.write_all(&request_frames(&LengthPrefixed, &[(1, b"boom".to_vec())])).await.unwrap();
    // A handler's panic is that request's error answer; serving goes on until stdin ends.
    client.shutdown().await.unwrap();
    let mut answers = Vec::new();
    client.read_to_end(&mut answers).await.unwrap();
    serving.await.unwrap().unwrap();
    let frame = Codec::decode_response(&LengthPrefixed, &answers, MAX).unwrap().unwrap();
    assert_eq!(frame.id, 1);
    assert_eq!(frame.value, Err("the request handler panicked: handler panics on purpose".to_owned()));
}

#[cfg(feature = "json")]
#[tokio::test]
async fn json_frames_split_over_many_reads() {
    use serde_json::{json, Value};
    let codec = palisade_process::Json::<Value, Value>::new();
    let (mut client, server) = tokio::io::duplex(64);
    let (r, w) = tokio::io::split(server);
    let serving = tokio::spawn(serve(codec.clone(), r, w, |req: Value| async move { Ok::<_, String>(req) }));
    let big = "x".repeat(10_000);
    let mut wire = Vec::new();
    for id in 0..3 {
        Codec::encode_request(&codec, id, &json!({"n": id, "pad": big}), &mut wire).unwrap();
    }
    let writer = tokio::spawn(async move {
        for chunk in wire.chunks(7) {
            client.write_all(chunk).await.unwrap();
        }
        client.shutdown().await.unwrap();
        client
    });
    // The server keeps reading requests while its answers wait in the small pipe.
    let mut client = writer.await.unwrap();
    let mut answers = Vec::new();
    client.read_to_end(&mut answers).await.unwrap();
    serving.await.unwrap().unwrap();
    let mut at = 0;
    let mut ids = Vec::new();
    while let Some(frame) = Codec::decode_response(&codec, &answers[at..], MAX).unwrap() {
        at += frame.consumed;
        assert_eq!(frame.value.unwrap()["n"], json!(frame.id));
        ids.push(frame.id);
    }
    ids.sort_unstable();
    assert_eq!(ids, [0, 1, 2]);
}

// Paused clock: the handlers' 2 ms sleeps end only once the runtime is idle, so two handlers
// always overlap (a real-time sleep could let the first finish before the second starts).
#[tokio::test(start_paused = true)]
async fn serve_with_limits_runs_at_most_n_handlers() {
    use palisade_process::worker::{serve_with, ServeOptions};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r_, p_) = (running.clone(), peak.clone());
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let (r, w) = tokio::io::split(server);
    let options = ServeOptions::default().max_concurrency(2).max_frame_len(64);
    let serving = tokio::spawn(serve_with(options, LengthPrefixed, r, w, move |req: Vec<u8>| {
        let (running, peak) = (r_.clone(), p_.clone());
        async move {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            running.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, String>(req)
        }
    }));
    let requests: Vec<(u64, Vec<u8>)> = (0..10).map(|i| (i, vec![i as u8])).collect();
    client.write_all(&request_frames(&LengthPrefixed, &requests)).await.unwrap();
    client.shutdown().await.unwrap();
    let mut answers = Vec::new();
    client.read_to_end(&mut answers).await.unwrap();
    serving.await.unwrap().unwrap();
    assert_eq!(peak.load(Ordering::SeqCst), 2);
    let mut count = 0;
    let mut at = 0;
    while let Some(frame) = Codec::decode_response(&LengthPrefixed, &answers[at..], MAX).unwrap() {
        at += frame.consumed;
        count += 1;
    }
    assert_eq!(count, 10);

    // A frame over the worker's limit ends serving with an error.
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let (r, w) = tokio::io::split(server);
    let options = ServeOptions::default().max_frame_len(16);
    let serving = tokio::spawn(serve_with(options, LengthPrefixed, r, w, |req: Vec<u8>| async move {
        Ok::<_, String>(req)
    }));
    client.write_all(&request_frames(&LengthPrefixed, &[(1, vec![0; 100])])).await.unwrap();
    assert!(serving.await.unwrap().is_err());
}
