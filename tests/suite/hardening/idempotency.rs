//! Request ids and idempotency keys: bounded, scoped to their caller, and
//! bound to the request they first came with.

use crm_platform::{
    Role,
    principal::{AccessRole, Principal},
};
use crm_proto::contacts::v1::{CreateContactRequest, contacts_service_client::ContactsServiceClient};
use crm_testkit::{INTERNAL_SECRET, TestDb, TestSuite};
use tonic::Code;

use crate::contacts::{person, violated_fields};

fn with_request_id<T>(message: T, request_id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("x-request-id", request_id.parse().unwrap());
    request
}

#[tokio::test]
async fn a_request_id_too_long_to_store_is_invalid_argument_at_the_gateway_and_at_the_role() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut through_gateway = suite.contacts().await.unwrap();
    let principal = Principal { key_id: "direct".into(), roles: vec![AccessRole::Admin] };
    let mut direct =
        ContactsServiceClient::new(suite.signed(Role::Contacts, principal, INTERNAL_SECRET).await.unwrap());

    let long = "r".repeat(3000);
    let create = || CreateContactRequest { contact: Some(person("Long", "Request", "", "")), ..Default::default() };
    let refused = through_gateway.create_contact(with_request_id(create(), &long)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(violated_fields(&refused), ["x-request-id"]);
    let refused = direct.create_contact(with_request_id(create(), &long)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");

    // The longest accepted id works, and names the contact's creation.
    let longest = "r".repeat(200);
    through_gateway.create_contact(with_request_id(create(), &longest)).await.unwrap();
    suite.shutdown().await.unwrap();
}
