//! The codec every service of the suite is generated with: prost's, plus
//! the check of [`crate::storable`] on every message it decodes, so that
//! text PostgreSQL cannot store is refused at the door with INVALID_ARGUMENT
//! naming the field, whatever the method.
//!
//! The items of bulk batches (`ImportContactsRequest.rows`,
//! `IngestInteractionsRequest.interactions`) are exempt here: their handlers
//! check each item and reject a bad one as that item, never the batch.

use std::{collections::HashMap, marker::PhantomData};

use prost::{Message, Name, bytes::Buf};
use tonic::{
    Code, Status,
    codec::{Codec, DecodeBuf, Decoder},
};
use tonic_prost::{ProstCodec, ProstEncoder};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::storable;

/// The `ErrorInfo.domain` of every error the suite returns.
pub const ERROR_DOMAIN: &str = "crm";

/// Repeated fields whose entries are bulk items, checked by their handlers.
const BULK_ITEMS: &[(&str, &str)] = &[
    ("crm.contacts.v1.ImportContactsRequest", "rows"),
    ("crm.interactions.v1.IngestInteractionsRequest", "interactions"),
];

/// prost's codec, decoding only messages whose text PostgreSQL can store.
#[derive(Debug, Clone)]
pub struct CheckedCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for CheckedCodec<T, U> {
    fn default() -> Self {
        CheckedCodec { _types: PhantomData }
    }
}

impl<T, U> Codec for CheckedCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Name + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = CheckedDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder { _type: PhantomData }
    }
}

/// Decodes `U` after checking its bytes with [`storable`].
#[derive(Debug)]
pub struct CheckedDecoder<U> {
    _type: PhantomData<U>,
}

impl<U: Message + Name + Default> Decoder for CheckedDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // A decode buffer holds the whole message in one slice.
        if buf.chunk().len() == buf.remaining() {
            let name = U::full_name();
            let found = match BULK_ITEMS.iter().find(|(message, _)| *message == name) {
                Some((_, items)) => storable::first_nul_outside(&name, buf.chunk(), items),
                None => storable::first_nul(&name, buf.chunk()),
            };
            if let Some(field) = found {
                return Err(refused(field));
            }
        }
        // Bytes that are not the message: the caller's mistake, not ours.
        U::decode(buf).map(Some).map_err(|error| {
            Status::invalid_argument(format!("the message is not a valid {}: {error}", U::full_name()))
        })
    }
}

/// INVALID_ARGUMENT naming `field`, with the suite's error details.
fn refused(field: String) -> Status {
    let message = format!("invalid argument: {field}: {}", storable::NUL_REFUSED);
    let mut details = ErrorDetails::new();
    details.set_bad_request(vec![FieldViolation::new(field, storable::NUL_REFUSED)]);
    details.set_error_info("INVALID_ARGUMENT", ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(Code::InvalidArgument, message, details)
}
