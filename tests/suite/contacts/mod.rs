//! The contacts role end to end: through the gateway, against PostgreSQL.

mod crud;
mod duplicates;
mod erase;
mod export;
mod febrl;
mod import;
mod merge;
mod organizations;
mod reindex;

use crm_proto::{
    common::v1::{Date, ExternalId, PostalAddress},
    contacts::v1::{
        AuditEvent, Contact, CreateContactRequest, Email, ListAuditEventsRequest, Phone, UpdateContactRequest,
        list_audit_events_request::Parent,
    },
};
use crm_testkit::Authed;
use tonic_types::StatusExt;

pub type Client = crm_proto::contacts::v1::contacts_service_client::ContactsServiceClient<Authed>;

/// A valid contact; tests change what they need.
pub fn person(given: &str, family: &str, email: &str, phone: &str) -> Contact {
    Contact {
        given_name: given.into(),
        family_name: family.into(),
        emails: (!email.is_empty())
            .then(|| Email { address: email.into(), ..Default::default() })
            .into_iter()
            .collect(),
        phones: (!phone.is_empty()).then(|| Phone { number: phone.into(), ..Default::default() }).into_iter().collect(),
        addresses: vec![PostalAddress {
            lines: vec!["12 Market Street".into()],
            locality: "San Francisco".into(),
            postal_code: "94105".into(),
            country_code: "US".into(),
            ..Default::default()
        }],
        birth_date: Some(Date { year: 1984, month: 3, day: 9 }),
        ..Default::default()
    }
}

pub fn external(source: &str, id: &str) -> ExternalId {
    ExternalId { source: source.into(), id: id.into() }
}

pub async fn create(client: &mut Client, contact: Contact) -> Contact {
    client
        .create_contact(CreateContactRequest { contact: Some(contact), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
}

/// Gives a contact an owner (any change that bumps its update time will do).
pub async fn set_owner(client: &mut Client, contact: &Contact, owner: &str) -> Contact {
    let change = Contact { owner: owner.into(), ..contact.clone() };
    let mask = prost_types::FieldMask { paths: vec!["owner".into()] };
    client
        .update_contact(UpdateContactRequest { contact: Some(change), update_mask: Some(mask) })
        .await
        .unwrap()
        .into_inner()
}

/// A contact's audit trail, newest first.
pub async fn audit_trail(client: &Client, id: &str) -> Vec<AuditEvent> {
    client
        .clone()
        .list_audit_events(ListAuditEventsRequest { parent: Some(Parent::ContactId(id.into())), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .audit_events
}

/// The fields named in an INVALID_ARGUMENT's BadRequest.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let details = status.check_error_details().unwrap();
    details.bad_request().unwrap().field_violations.iter().map(|violation| violation.field.clone()).collect()
}
