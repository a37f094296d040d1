//! [`LengthPrefixed`]: binary frames with a 4-byte big-endian length and an 8-byte id.

use crate::error::FrameError;

use super::{Codec, Decoded, ServeCodec};

/// Length-prefixed binary frames; requests and responses are raw bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct LengthPrefixed;

fn frame_len(src: &[u8], min: usize, max_frame_len: usize) -> Result<Option<usize>, FrameError> {
    let Some(header) = src.get(..4) else { return Ok(None) };
    let mut len = [0u8; 4];
    len.copy_from_slice(header);
    let len = u32::from_be_bytes(len) as usize;
    if len < min {
        return Err(FrameError::new(format!("frame length {len} is shorter than its header")));
    }
    if len > max_frame_len {
        return Err(FrameError::new(format!("frame of {len} bytes is over the {max_frame_len}-byte limit")));
    }
    if src.len() < 4 + len {
        return Ok(None);
    }
    Ok(Some(len))
}

fn read_id(src: &[u8]) -> u64 {
    let mut id = [0u8; 8];
    id.copy_from_slice(&src[4..12]);
    u64::from_be_bytes(id)
}

fn put_len(len: usize, dst: &mut Vec<u8>) -> Result<(), FrameError> {
    let len = u32::try_from(len).map_err(|_| FrameError::new("frame over 4 GiB"))?;
    dst.extend_from_slice(&len.to_be_bytes());
    Ok(())
}

impl Codec for LengthPrefixed {
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    fn encode_request(&self, id: u64, request: &Vec<u8>, dst: &mut Vec<u8>) -> Result<(), FrameError> {
        dst.reserve(12 + request.len());
        put_len(8 + request.len(), dst)?;
        dst.extend_from_slice(&id.to_be_bytes());
        dst.extend_from_slice(request);
        Ok(())
    }

    fn decode_response(
        &self,
        src: &[u8],
        max_frame_len: usize,
    ) -> Result<Option<Decoded<Result<Vec<u8>, String>>>, FrameError> {
        let Some(len) = frame_len(src, 9, max_frame_len)? else { return Ok(None) };
        let id = read_id(src);
        let body = &src[13..4 + len];
        let value = match src[12] {
            0 => Ok(body.to_vec()),
            1 => Err(String::from_utf8_lossy(body).into_owned()),
            tag => return Err(FrameError::new(format!("unknown response tag {tag}"))),
        };
        Ok(Some(Decoded { consumed: 4 + len, id, value }))
    }
}

impl ServeCodec for LengthPrefixed {
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    fn decode_request(
        &self,
        src: &[u8],
        max_frame_len: usize,
    ) -> Result<Option<Decoded<Vec<u8>>>, FrameError> {
        let Some(len) = frame_len(src, 8, max_frame_len)? else { return Ok(None) };
        let id = read_id(src);
        Ok(Some(Decoded { consumed: 4 + len, id, value: src[12..4 + len].to_vec() }))
    }

    fn encode_response(
        &self,
        id: u64,
        response: Result<&Vec<u8>, &str>,
        dst: &mut Vec<u8>,
    ) -> Result<(), FrameError> {
        let (tag, body) = match response {
            Ok(body) => (0u8, body.as_slice()),
            Err(message) => (1u8, message.as_bytes()),
        };
        dst.reserve(13 + body.len());
        put_len(9 + body.len(), dst)?;
        dst.extend_from_slice(&id.to_be_bytes());
        dst.push(tag);
        dst.extend_from_slice(body);
        Ok(())
    }
}
