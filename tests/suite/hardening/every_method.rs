//! Every method of the contracts, called with the largest request it
//! accepts, one just over the message limit, and bytes that are no message
//! at all: each answers with a specific error (never INTERNAL or UNKNOWN,
//! never a panic), and the suite keeps answering other callers.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use crm_platform::Role;
use crm_proto::events::v1::ListEventsRequest;
use crm_testkit::{TestDb, TestSuite};
use prost::Message;
use tonic::{
    Code, Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
};

/// Sends and receives messages as raw bytes, whatever the method.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The number of the first string field of message `name`, if it has one.
fn first_string_field(name: &str) -> Option<u32> {
    let set = prost_types::FileDescriptorSet::decode(crm_proto::FILE_DESCRIPTOR_SET).ok()?;
    let (package, message) = name.trim_start_matches('.').rsplit_once('.')?;
    let file = set
        .file
        .iter()
        .find(|file| file.package() == package && file.message_type.iter().any(|m| m.name() == message))?;
    let message = file.message_type.iter().find(|m| m.name() == message)?;
    message
        .field
        .iter()
        .find(|field| field.r#type() == prost_types::field_descriptor_proto::Type::String)
        .map(|field| field.number() as u32)
}

/// Each method's request type, by path.
fn input_types() -> std::collections::HashMap<String, String> {
    let set = prost_types::FileDescriptorSet::decode(crm_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut types = std::collections::HashMap::new();
    for file in set.file.iter().filter(|file| file.package().starts_with("crm.")) {
        for service in &file.service {
            for method in &service.method {
                types.insert(
                    format!("/{}.{}/{}", file.package(), service.name(), method.name()),
                    method.input_type().to_string(),
                );
            }
        }
    }
    types
}

/// A message of `field` (string) holding `length` bytes of text, or of an
/// unknown field when the message has no string field.
fn message_of(field: Option<u32>, length: usize) -> Bytes {
    let mut encoded = Vec::with_capacity(length + 16);
    prost::encoding::encode_key(field.unwrap_or(9999), prost::encoding::WireType::LengthDelimited, &mut encoded);
    prost::encoding::encode_varint(length as u64, &mut encoded);
    encoded.resize(encoded.len() + length, b'a');
    Bytes::from(encoded)
}

/// A streaming call sending `message` and reading the first answer.
async fn streaming(suite: &TestSuite, path: &str, server_streaming: bool, message: Bytes) -> Result<(), Status> {
    let channel = suite.authed(Role::Gateway).await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(64 * 1024 * 1024);
    grpc.ready().await.map_err(|error| Status::unavailable(error.to_string()))?;
    let mut request = tonic::Request::new(tokio_stream::iter(vec![message]));
    // A bound on waiting: feeds (Subscribe) never end by themselves.
    request.set_timeout(Duration::from_secs(5));
    let path = path.parse().unwrap();
    if server_streaming {
        let mut responses = grpc.streaming(request, path, RawCodec).await?.into_inner();
        // A stream that stays open and waits (a feed, WatchAlerts) answered the request properly.
        match tokio::time::timeout(Duration::from_secs(5), responses.message()).await {
            Ok(answer) => answer.map(|_| ()),
            Err(_) => Ok(()),
        }
    } else {
        grpc.client_streaming(request, path, RawCodec).await.map(|_| ())
    }
}

async fn unary(suite: &TestSuite, path: &str, message: Bytes) -> Result<(), Status> {
    let channel = suite.authed(Role::Gateway).await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(64 * 1024 * 1024);
    grpc.ready().await.map_err(|error| Status::unavailable(error.to_string()))?;
    let mut request = tonic::Request::new(message);
    request.set_timeout(Duration::from_secs(30));
    grpc.unary(request, path.parse().unwrap(), RawCodec).await.map(|_| ())
}

fn specific(outcome: &Result<(), Status>) -> bool {
    !matches!(outcome, Err(status) if matches!(status.code(), Code::Internal | Code::Unknown))
}

#[tokio::test]
async fn every_method_answers_its_largest_request_one_over_and_garbage_with_a_specific_error() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let types = input_types();
    let limit = 4 * 1024 * 1024;
    let garbage = [
        Bytes::from_static(&[0xff, 0xff, 0xff]),
        Bytes::from_static(&[0x0a, 0x05, 0x01]),
        Bytes::from_static(b"\x12\x80\x80\x80\x80\x10"),
    ];
    let mut calls = 0;
    for service in crm_proto::services() {
        for method in &service.methods {
            let path = service.path(method);
            let field = first_string_field(&types[&path]);
            // The largest message the limit lets through (headers of the
            // field aside), one byte over it, and bytes that do not decode.
            let mut messages = vec![message_of(field, limit - 16), message_of(field, limit + 1)];
            messages.extend(garbage.iter().cloned());
            for message in messages {
                let size = message.len();
                let outcome = if method.client_streaming || method.server_streaming {
                    streaming(&suite, &path, method.server_streaming, message).await
                } else {
                    unary(&suite, &path, message).await
                };
                assert!(specific(&outcome), "{path} with {size} bytes: {outcome:?}");
                if size > limit {
                    let status = outcome.expect_err("a message over the limit is refused");
                    assert!(
                        matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange | Code::InvalidArgument),
                        "{path} over the limit: {status:?}"
                    );
                }
                calls += 1;
            }
        }
    }
    // Still answering.
    let mut contacts = suite.contacts().await.unwrap();
    contacts.list_events(ListEventsRequest::default()).await.unwrap();
    println!("{calls} calls, every one answered with a specific status");
    suite.shutdown().await.unwrap();
}
