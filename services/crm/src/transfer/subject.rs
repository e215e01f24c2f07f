//! `crm export subject`: everything the suite holds about one person, as
//! one JSON document: the answer to a data-subject access or portability
//! request (GDPR articles 15 and 20), the counterpart of `EraseContact`.
//!
//! Each role serves its part through its own API, and this command gathers
//! them through the gateway: the contact (with the ids of the records
//! merged into it) and its audit trail from contacts; every interaction
//! and the single customer view from interactions; the features, segments,
//! scores, RFM scores and lifetime value from segmentation. Messages are
//! written in the proto3 JSON mapping with the API's field names. A part
//! the key may not read fails the export (an access request answered in
//! part is answered wrongly), saying which part and which key to use.

use std::{io::Write, path::PathBuf};

use anyhow::Context;
use crm_proto::{
    contacts::v1::{
        GetContactRequest, ListAuditEventsRequest, LookupContactRequest,
        contacts_service_client::ContactsServiceClient, list_audit_events_request, lookup_contact_request,
    },
    interactions::v1::{
        GetContactSummaryRequest, ListInteractionsRequest, interactions_service_client::InteractionsServiceClient,
    },
    segmentation::v1::{
        GetContactFeaturesRequest, GetContactLifetimeValueRequest, GetContactRfmRequest, GetContactScoreRequest,
        GetContactSegmentsRequest, ListScoreModelsRequest, segmentation_service_client::SegmentationServiceClient,
    },
};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::{Value, json};

use crate::{bench::transport::Transport, cli::ExportSubject};

/// Items per page when listing.
const PAGE: i32 = 500;

pub async fn run(args: ExportSubject) -> anyhow::Result<()> {
    let transport = Transport::with_key(&args.gateway, &args.key).await?;
    let pool = DescriptorPool::decode(crm_proto::FILE_DESCRIPTOR_SET).context("reading the API's descriptors")?;
    let json = |message: &dyn Proto| to_json(&pool, message);
    let mut contacts = ContactsServiceClient::new(transport.clone()).max_decoding_message_size(64 << 20);
    let mut interactions = InteractionsServiceClient::new(transport.clone()).max_decoding_message_size(64 << 20);
    let mut segmentation = SegmentationServiceClient::new(transport).max_decoding_message_size(64 << 20);

    let contact = match (&args.contact, &args.email) {
        (Some(id), _) => contacts.get_contact(GetContactRequest { id: id.clone() }).await,
        (None, Some(email)) => {
            let key = lookup_contact_request::Key::Email(email.clone());
            contacts.lookup_contact(LookupContactRequest { key: Some(key) }).await
        }
        (None, None) => anyhow::bail!("say whose data to export: --contact ID or --email ADDRESS"),
    };
    let contact = part("the contact (contacts.read)", contact)?;
    let id = contact.id.clone();

    let audit = crate::pages::all(|page_token| {
        let (mut contacts, id) = (contacts.clone(), id.clone());
        async move {
            let parent = Some(list_audit_events_request::Parent::ContactId(id));
            let request = ListAuditEventsRequest { parent, page_size: PAGE, page_token };
            let page = part("the audit trail (contacts.read)", contacts.list_audit_events(request).await)?;
            Ok((page.audit_events, page.next_page_token))
        }
    })
    .await?;
    let timeline = crate::pages::all(|page_token| {
        let (mut interactions, contact_id) = (interactions.clone(), id.clone());
        async move {
            let request = ListInteractionsRequest { contact_id, page_size: PAGE, page_token, ..Default::default() };
            let page = part("the interactions (interactions.read)", interactions.list_interactions(request).await)?;
            Ok((page.interactions, page.next_page_token))
        }
    })
    .await?;
    let summary = interactions.get_contact_summary(GetContactSummaryRequest { contact_id: id.clone() }).await;
    let summary = part("the customer view (interactions.read)", summary)?;

    let contact_id = id.clone();
    let features = segmentation.get_contact_features(GetContactFeaturesRequest { contact_id }).await;
    let features = optional("the features (segmentation.read)", features)?;
    let contact_id = id.clone();
    let segments = segmentation.get_contact_segments(GetContactSegmentsRequest { contact_id }).await;
    let segments = part("the segments (segmentation.read)", segments)?;
    let models = crate::pages::all(|page_token| {
        let mut segmentation = segmentation.clone();
        async move {
            let request = ListScoreModelsRequest { page_size: PAGE, page_token };
            let page = part("the score models (segmentation.read)", segmentation.list_score_models(request).await)?;
            Ok((page.score_models, page.next_page_token))
        }
    })
    .await?;
    let mut scores = Vec::new();
    for model in &models {
        let request = GetContactScoreRequest { contact_id: id.clone(), model_id: model.id.clone() };
        let score = segmentation.get_contact_score(request).await;
        if let Some(score) = optional("a score (segmentation.read)", score)? {
            scores.push(json(&score)?);
        }
    }
    let contact_id = id.clone();
    let rfm = optional("the RFM scores", segmentation.get_contact_rfm(GetContactRfmRequest { contact_id }).await)?;
    let contact_id = id.clone();
    let value = segmentation.get_contact_lifetime_value(GetContactLifetimeValueRequest { contact_id }).await;
    let value = optional("the lifetime value", value)?;

    let document = json!({
        "exported_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "contact": json(&contact)?,
        "audit_trail": audit.iter().map(|event| json(event)).collect::<anyhow::Result<Vec<_>>>()?,
        "interactions": timeline.iter().map(|interaction| json(interaction)).collect::<anyhow::Result<Vec<_>>>()?,
        "customer_view": json(&summary)?,
        "segmentation": {
            "features": features.as_ref().map(|features| json(features)).transpose()?,
            "segments": json(&segments)?,
            "scores": scores,
            "rfm": rfm.as_ref().map(|rfm| json(rfm)).transpose()?,
            "lifetime_value": value.as_ref().map(|value| json(value)).transpose()?,
        },
    });
    let text = serde_json::to_string_pretty(&document)?;
    match &args.output {
        Some(path) => write_private(path, &text)?,
        None => println!("{text}"),
    }
    eprintln!(
        "exported contact {id}: {} audit events, {} interactions, {} scores",
        audit.len(),
        timeline.len(),
        scores.len()
    );
    Ok(())
}

/// A message of the API, whatever its type.
trait Proto {
    fn full_name(&self) -> String;
    fn bytes(&self) -> Vec<u8>;
}

impl<M: prost::Message + prost::Name> Proto for M {
    fn full_name(&self) -> String {
        M::full_name()
    }

    fn bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
}

/// A message in the proto3 JSON mapping, with the API's field names.
fn to_json(pool: &DescriptorPool, message: &dyn Proto) -> anyhow::Result<Value> {
    let name = message.full_name();
    let descriptor = pool.get_message_by_name(&name).with_context(|| format!("{name} is not in the API"))?;
    let dynamic = DynamicMessage::decode(descriptor, message.bytes().as_slice())?;
    let options = SerializeOptions::new().use_proto_field_name(true);
    Ok(dynamic.serialize_with_options(serde_json::value::Serializer, &options)?)
}

/// A part of the export; failing names the part.
fn part<T>(what: &str, answer: Result<tonic::Response<T>, tonic::Status>) -> anyhow::Result<T> {
    answer.map(tonic::Response::into_inner).map_err(|status| {
        let hint = if status.code() == tonic::Code::PermissionDenied {
            "; use a key that reads contacts, interactions and segmentation (an admin key does)"
        } else {
            ""
        };
        anyhow::anyhow!("reading {what}: {} ({:?}){hint}", status.message(), status.code())
    })
}

/// A part that may not exist yet (never computed: NOT_FOUND or FAILED_PRECONDITION).
fn optional<T>(what: &str, answer: Result<tonic::Response<T>, tonic::Status>) -> anyhow::Result<Option<T>> {
    match answer {
        Err(status) if matches!(status.code(), tonic::Code::NotFound | tonic::Code::FailedPrecondition) => Ok(None),
        answer => part(what, answer).map(Some),
    }
}

/// Writes personal data readable by the owner only.
fn write_private(path: &PathBuf, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}
