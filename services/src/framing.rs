//! Wire framing shared by every service: a 4-byte big-endian length, then a postcard payload.
//!
//! Owns the frame size limit, the codec (tokio-util's `LengthDelimitedCodec`), and the
//! conversions between messages and payloads. It does not own what the messages mean (that is
//! `rpc` and each service's protocol) or connections (that is `transport`).
//!
//! Decoding is strict: a length above `FRAME_LENGTH_MAX` is refused before any payload byte is
//! buffered, and a payload must decode to exactly one message with no trailing bytes. Garbage is
//! an error value, never a panic; the caller drops the connection.

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Decoder, Framed, LengthDelimitedCodec};

/// Largest payload accepted or sent, in bytes. The biggest message is a motion status or a
/// durable-state snapshot of a few kilobytes; 64 KiB leaves room while bounding what a peer can
/// make us buffer.
pub const FRAME_LENGTH_MAX: usize = 64 * 1024;

/// Bytes of the length prefix.
pub const FRAME_HEADER_LENGTH: usize = 4;

const _: () = assert!(
    FRAME_LENGTH_MAX <= u32::MAX as usize,
    "the length must fit the 4-byte header"
);

/// A stream cut into frames.
pub type FramedStream<S> = Framed<S, LengthDelimitedCodec>;

/// Why a frame could not be sent or received.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream failed (also: a length prefix above the limit, reported by the codec).
    #[error("frame i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A message encoded to more than `FRAME_LENGTH_MAX` bytes.
    #[error("frame of {length_bytes} bytes exceeds the limit of {FRAME_LENGTH_MAX}")]
    TooLong {
        /// The encoded length.
        length_bytes: usize,
    },
    /// The message could not be serialized.
    #[error("frame encode: {0}")]
    Encode(postcard::Error),
    /// The payload is not one well-formed message of the expected type.
    #[error("frame decode: {0}")]
    Decode(postcard::Error),
    /// The payload decoded but bytes were left over.
    #[error("frame decode: {trailing_bytes} trailing bytes")]
    TrailingBytes {
        /// How many bytes followed the message.
        trailing_bytes: usize,
    },
}

/// The codec with servocell's header and limit.
pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_type::<u32>()
        .big_endian()
        .max_frame_length(FRAME_LENGTH_MAX)
        .new_codec()
}

/// Wraps a stream in the codec.
pub fn framed<S: AsyncRead + AsyncWrite>(stream: S) -> FramedStream<S> {
    Framed::new(stream, codec())
}

/// Serializes a message into a payload, refusing one above the limit.
pub fn encode<M: Serialize>(message: &M) -> Result<Bytes, FrameError> {
    let payload = postcard::to_stdvec(message).map_err(FrameError::Encode)?;
    if payload.len() > FRAME_LENGTH_MAX {
        return Err(FrameError::TooLong {
            length_bytes: payload.len(),
        });
    }
    Ok(Bytes::from(payload))
}

/// Deserializes exactly one message from a payload.
pub fn decode<M: DeserializeOwned>(payload: &[u8]) -> Result<M, FrameError> {
    let (message, rest) = postcard::take_from_bytes(payload).map_err(FrameError::Decode)?;
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes {
            trailing_bytes: rest.len(),
        });
    }
    Ok(message)
}

/// Sends one message as one frame.
pub async fn send<S, M>(stream: &mut FramedStream<S>, message: &M) -> Result<(), FrameError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    M: Serialize,
{
    let payload = encode(message)?;
    stream.send(payload).await?;
    Ok(())
}

/// Receives one message; `Ok(None)` when the peer closed the stream between frames.
pub async fn receive<S, M>(stream: &mut FramedStream<S>) -> Result<Option<M>, FrameError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    M: DeserializeOwned,
{
    match stream.next().await {
        None => Ok(None),
        Some(frame) => Ok(Some(decode(&frame?)?)),
    }
}

/// Decodes every complete frame in `buffer` (no I/O): the pure half of `receive`, for tests and
/// for fuzzing the codec. Stops at the first error, which ends the stream as it would on a
/// connection; an incomplete tail stays in `buffer`. The codec is stateful (it consumes a header
/// before its payload has arrived), so one codec must serve one byte stream from start to end.
pub fn decode_buffer<M: DeserializeOwned>(
    codec: &mut LengthDelimitedCodec,
    buffer: &mut BytesMut,
) -> Result<Vec<M>, FrameError> {
    let mut messages = Vec::new();
    while let Some(frame) = codec.decode(buffer)? {
        messages.push(decode(&frame)?);
    }
    Ok(messages)
}

/// Appends one message as a frame to `buffer` (no I/O): the pure half of `send`.
pub fn encode_into<M: Serialize>(message: &M, buffer: &mut BytesMut) -> Result<(), FrameError> {
    use tokio_util::codec::Encoder;
    let payload = encode(message)?;
    codec().encode(payload, buffer)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    enum Sample {
        Empty,
        Number { id: u64, value_rad: f64 },
        Text(String),
        Bytes(Vec<u8>),
    }

    fn sample() -> impl Strategy<Value = Sample> {
        prop_oneof![
            Just(Sample::Empty),
            (
                any::<u64>(),
                any::<f64>().prop_filter("NaN != NaN", |v| !v.is_nan())
            )
                .prop_map(|(id, value_rad)| Sample::Number { id, value_rad }),
            ".{0,64}".prop_map(Sample::Text),
            proptest::collection::vec(any::<u8>(), 0..512).prop_map(Sample::Bytes),
        ]
    }

    proptest! {
        #[test]
        fn frames_round_trip(messages in proptest::collection::vec(sample(), 0..16)) {
            // Goal: any sequence of messages comes back unchanged through the codec. Method:
            // encode them back to back into one buffer and decode it whole.
            let mut decoder = codec();
            let mut buffer = BytesMut::new();
            for message in &messages {
                encode_into(message, &mut buffer).unwrap();
            }
            let decoded: Vec<Sample> = decode_buffer(&mut decoder, &mut buffer).unwrap();
            prop_assert_eq!(decoded, messages);
            prop_assert!(buffer.is_empty());
        }

        #[test]
        fn frames_split_anywhere_still_decode(message in sample(), split in 0usize..600) {
            // Goal: a frame arriving in two pieces decodes once whole, never early. Method: feed
            // a prefix, expect nothing, feed the rest, expect the message.
            let mut whole = BytesMut::new();
            encode_into(&message, &mut whole).unwrap();
            let split = split.min(whole.len().saturating_sub(1));
            let mut decoder = codec();
            let mut buffer = BytesMut::from(&whole[..split]);
            let early: Vec<Sample> = decode_buffer(&mut decoder, &mut buffer).unwrap();
            prop_assert!(early.is_empty());
            buffer.extend_from_slice(&whole[split..]);
            let decoded: Vec<Sample> = decode_buffer(&mut decoder, &mut buffer).unwrap();
            prop_assert_eq!(decoded, vec![message]);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            // Goal: arbitrary bytes from a peer give messages or an error, never a panic or an
            // allocation beyond the limit. Method: decode random buffers; any Ok message must
            // re-encode to a frame no longer than the limit.
            let mut buffer = BytesMut::from(&bytes[..]);
            if let Ok(messages) = decode_buffer::<Sample>(&mut codec(), &mut buffer) {
                for message in messages {
                    prop_assert!(encode(&message).unwrap().len() <= FRAME_LENGTH_MAX);
                }
            }
        }
    }

    #[test]
    fn oversized_length_prefix_is_refused_before_buffering() {
        // Goal: a peer cannot make us wait for (and buffer) a frame above the limit. Method:
        // present only a header announcing FRAME_LENGTH_MAX + 1 bytes and expect an error at once.
        let mut buffer = BytesMut::new();
        buffer.extend_from_slice(&((FRAME_LENGTH_MAX + 1) as u32).to_be_bytes());
        let error = decode_buffer::<Sample>(&mut codec(), &mut buffer).unwrap_err();
        assert!(matches!(error, FrameError::Io(_)), "{error:?}");
    }

    #[test]
    fn frame_at_the_limit_is_accepted_and_one_above_is_refused() {
        // Goal: the limit is exact on both sides. Method: build payloads of exactly the limit and
        // one byte more (a byte vector's postcard length is a varint plus the bytes).
        let varint_len = 3; // 65_533 needs three varint bytes
        let at_limit = Sample::Bytes(vec![7; FRAME_LENGTH_MAX - 1 - varint_len]);
        assert_eq!(encode(&at_limit).unwrap().len(), FRAME_LENGTH_MAX);
        let mut buffer = BytesMut::new();
        encode_into(&at_limit, &mut buffer).unwrap();
        assert_eq!(
            decode_buffer::<Sample>(&mut codec(), &mut buffer).unwrap(),
            vec![at_limit]
        );

        let above = Sample::Bytes(vec![7; FRAME_LENGTH_MAX - varint_len]);
        let error = encode(&above).unwrap_err();
        assert!(matches!(
            error,
            FrameError::TooLong { length_bytes } if length_bytes == FRAME_LENGTH_MAX + 1
        ));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        // Goal: a payload holding more than one message is malformed, not half-read. Method:
        // append a byte to a valid payload.
        let mut payload = encode(&Sample::Empty).unwrap().to_vec();
        payload.push(0);
        let error = decode::<Sample>(&payload).unwrap_err();
        assert!(matches!(
            error,
            FrameError::TrailingBytes { trailing_bytes: 1 }
        ));
    }

    #[test]
    fn payload_of_the_wrong_type_is_a_decode_error() {
        // Goal: a frame that is well-delimited but not the expected message is an error. Method:
        // decode an enum tag that does not exist.
        let error = decode::<Sample>(&[200]).unwrap_err();
        assert!(matches!(error, FrameError::Decode(_)));
    }
}
