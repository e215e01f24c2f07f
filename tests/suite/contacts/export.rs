//! ExportContacts: a whole base in one call, in batches, the same contacts
//! as ListContacts gives page by page; filters, resumption, bad requests.

use crm_proto::contacts::v1::{
    Contact, DeleteContactRequest, DuplicatePolicy, ExportContactsRequest, ImportContactsRequest, ImportOptions,
    ImportOutcome, ImportRow, ListContactsRequest,
};
use crm_testkit::{TestDb, TestSuite};
use tonic::Code;

use super::{Client, external, person, violated_fields};

/// Every batch of an export, as it came.
async fn export(contacts: &mut Client, request: ExportContactsRequest) -> Result<Vec<Vec<Contact>>, tonic::Status> {
    let mut stream = contacts.export_contacts(request).await?.into_inner();
    let mut batches = Vec::new();
    while let Some(batch) = stream.message().await? {
        batches.push(batch.contacts);
    }
    Ok(batches)
}

/// Every contact ListContacts gives, page by page.
async fn listed(contacts: &mut Client, show_deleted: bool) -> Vec<Contact> {
    let (mut all, mut page_token) = (Vec::new(), String::new());
    loop {
        let request = ListContactsRequest { page_size: 500, page_token, show_deleted, ..Default::default() };
        let page = contacts.list_contacts(request).await.unwrap().into_inner();
        all.extend(page.contacts);
        if page.next_page_token.is_empty() {
            return all;
        }
        page_token = page.next_page_token;
    }
}

fn ids(contacts: &[Contact]) -> Vec<&str> {
    contacts.iter().map(|contact| contact.id.as_str()).collect()
}

#[tokio::test]
async fn an_export_streams_the_whole_base_in_batches_as_the_list_gives_it_and_resumes_after_an_id() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let total = 2_050;
    let rows: Vec<ImportRow> = (0..total)
        .map(|n| {
            let mut contact = person(&format!("Given{n}"), &format!("Family{n}"), &format!("x{n}@example.com"), "");
            contact.external_ids = vec![external("legacy", &format!("L-{n}"))];
            if n % 7 == 0 {
                contact.tags = vec!["vip".into()];
            }
            ImportRow { row_id: n.to_string(), contact: Some(contact) }
        })
        .collect();
    let options = ImportOptions {
        duplicate_policy: DuplicatePolicy::CreateAndFlag as i32,
        source: "legacy".into(),
        ..Default::default()
    };
    let messages = vec![ImportContactsRequest { options: Some(options), rows }];
    let mut results = contacts.import_contacts(tokio_stream::iter(messages)).await.unwrap().into_inner();
    while let Some(response) = results.message().await.unwrap() {
        assert!(response.results.iter().all(|result| result.outcome() != ImportOutcome::Failed));
    }
    let deleted = listed(&mut contacts, false).await[10].id.clone();
    contacts.delete_contact(DeleteContactRequest { id: deleted.clone(), etag: String::new() }).await.unwrap();

    // The whole base: every contact the list gives, the same in every field, oldest first.
    let batches = export(&mut contacts, ExportContactsRequest::default()).await.unwrap();
    assert!(batches.len() >= 3 && batches.iter().all(|batch| !batch.is_empty() && batch.len() <= 1000));
    let exported: Vec<Contact> = batches.into_iter().flatten().collect();
    let expected = listed(&mut contacts, false).await;
    assert_eq!(exported.len(), total - 1);
    assert!(!ids(&exported).contains(&deleted.as_str()));
    assert_eq!(exported, expected);

    // Resumed after the 1,500th: the rest, and nothing twice.
    let resumed =
        export(&mut contacts, ExportContactsRequest { start_after: exported[1499].id.clone(), ..Default::default() })
            .await
            .unwrap();
    assert_eq!(ids(&resumed.concat()), ids(&exported[1500..]));

    // The list's filters.
    let vip = export(&mut contacts, ExportContactsRequest { tag: " VIP ".into(), ..Default::default() }).await.unwrap();
    let expected_vip: Vec<&str> =
        exported.iter().filter(|contact| contact.tags.contains(&"vip".to_string())).map(|c| c.id.as_str()).collect();
    assert_eq!(ids(&vip.concat()), expected_vip);
    assert!(expected_vip.len() > 250, "{} tagged", expected_vip.len());
    let with_deleted =
        export(&mut contacts, ExportContactsRequest { show_deleted: true, ..Default::default() }).await.unwrap();
    assert_eq!(ids(&with_deleted.concat()), ids(&listed(&mut contacts, true).await));
    assert_eq!(with_deleted.concat().len(), total);

    // Every wrong field named, before anything is sent.
    let bad = export(
        &mut contacts,
        ExportContactsRequest { start_after: "the 1500th".into(), lifecycle_stage: 99, ..Default::default() },
    )
    .await
    .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    assert_eq!(violated_fields(&bad), ["lifecycle_stage", "start_after"], "{bad:?}");
    suite.shutdown().await.unwrap();
}
