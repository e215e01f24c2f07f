//! ImportContacts: upsert by external id, deduplication against the base and
//! within the import, each duplicate policy, bad rows, dry run versus real.

use crm_proto::contacts::v1::{
    DuplicatePolicy, ImportContactsRequest, ImportOptions, ImportOutcome, ImportRow, ImportRowResult,
    ListContactsRequest,
};
use crm_testkit::{TestDb, TestSuite};
use tonic::Code;

use super::{Client, audit_trail, create, external, person};

fn row(row_id: &str, contact: crm_proto::contacts::v1::Contact) -> ImportRow {
    ImportRow { row_id: row_id.into(), contact: Some(contact) }
}

async fn import(
    contacts: &mut Client,
    policy: DuplicatePolicy,
    dry_run: bool,
    batches: Vec<Vec<ImportRow>>,
) -> Result<Vec<ImportRowResult>, tonic::Status> {
    let mut messages = Vec::new();
    for (index, rows) in batches.into_iter().enumerate() {
        let options = (index == 0).then(|| ImportOptions {
            duplicate_policy: policy as i32,
            dry_run,
            source: "legacy-crm".into(),
        });
        messages.push(ImportContactsRequest { options, rows });
    }
    let mut stream = contacts.import_contacts(tokio_stream::iter(messages)).await?.into_inner();
    let mut results = Vec::new();
    while let Some(response) = stream.message().await? {
        results.extend(response.results);
    }
    Ok(results)
}

fn outcomes(results: &[ImportRowResult]) -> Vec<(String, ImportOutcome)> {
    results.iter().map(|result| (result.row_id.clone(), result.outcome())).collect()
}

async fn count(contacts: &mut Client) -> usize {
    contacts
        .list_contacts(ListContactsRequest { page_size: 500, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .contacts
        .len()
}

fn legacy_rows() -> Vec<Vec<ImportRow>> {
    let mut updated = person("Grace", "Hopper", "grace@navy.example", "");
    updated.external_ids = vec![external("legacy", "G-1")];
    updated.owner = "agent-import".into();
    let mut broken = person("Broken", "Row", "not-an-email", "");
    broken.addresses[0].country_code = "ZZ".into();
    let mut first_copy = person("Alan", "Turing", "alan@bletchley.example", "");
    first_copy.external_ids = vec![external("legacy", "A-1")];
    let mut second_copy = person("Alan", "Turring", "alan@bletchley.example", "");
    second_copy.external_ids = vec![external("legacy", "A-2")];
    vec![
        vec![
            row("1", updated),
            row("2", person("Bob", "Lovelace", "", "+1 201 555 0123")), // duplicates the base
            row("3", broken),
        ],
        vec![
            row("4", first_copy),
            row("5", second_copy), // duplicates row 4 of this import
            row("6", person("Edsger", "Dijkstra", "ewd@example.com", "")),
        ],
    ]
}

#[tokio::test]
async fn a_dry_run_reports_exactly_what_the_real_import_then_does_and_writes_nothing() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let mut grace = person("Grace", "Hopper", "grace@navy.example", "");
    grace.external_ids = vec![external("legacy", "G-1")];
    let grace = create(&mut contacts, grace).await;
    let robert = create(&mut contacts, person("Robert", "Lovelace", "", "(201) 555-0123")).await;
    assert_eq!(count(&mut contacts).await, 2);

    let dry = import(&mut contacts, DuplicatePolicy::Fail, true, legacy_rows()).await.unwrap();
    assert_eq!(count(&mut contacts).await, 2, "a dry run writes nothing");
    let expected = [
        ("1", ImportOutcome::Updated),
        ("2", ImportOutcome::Failed),
        ("3", ImportOutcome::Failed),
        ("4", ImportOutcome::Created),
        ("5", ImportOutcome::Failed),
        ("6", ImportOutcome::Created),
    ];
    let expected: Vec<(String, ImportOutcome)> =
        expected.iter().map(|(id, outcome)| (id.to_string(), *outcome)).collect();
    assert_eq!(outcomes(&dry), expected);
    assert_eq!(dry[1].matched_contact_id, robert.id);
    assert!(dry[1].error.contains("likely duplicate"), "{}", dry[1].error);
    assert!(dry[2].invalid_fields.contains(&"contact.emails[0].address".to_string()), "{:?}", dry[2].invalid_fields);
    assert!(dry[2].invalid_fields.contains(&"contact.addresses[0].country_code".to_string()));
    assert!(!dry[4].matched_contact_id.is_empty(), "row 5 matched row 4 of the same import");

    let real = import(&mut contacts, DuplicatePolicy::Fail, false, legacy_rows()).await.unwrap();
    assert_eq!(outcomes(&real), expected);
    assert_eq!(real[0].contact_id, grace.id);
    assert_eq!(real[4].matched_contact_id, real[3].contact_id);
    assert_eq!(count(&mut contacts).await, 4);
    let updated = contacts
        .get_contact(crm_proto::contacts::v1::GetContactRequest { id: grace.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.owner, "agent-import");

    // Each imported row is in the audit trail: who, which request, what it set or changed.
    let created = audit_trail(&contacts, &real[3].contact_id).await;
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!((created[0].action.as_str(), created[0].note.as_str()), ("import_create", "import from legacy-crm"));
    assert!(created[0].actor == "bootstrap" && !created[0].request_id.is_empty(), "{:?}", created[0]);
    let set: Vec<(&str, &str, &str)> =
        created[0].changes.iter().map(|c| (c.field.as_str(), c.before.as_str(), c.after.as_str())).collect();
    assert!(set.contains(&("given_name", "", "\"Alan\"")), "{set:?}");
    assert!(set.iter().any(|(field, ..)| *field == "external_ids") && !set.iter().any(|(field, ..)| *field == "owner"));
    let changed = audit_trail(&contacts, &grace.id).await;
    let actions: Vec<&str> = changed.iter().map(|event| event.action.as_str()).collect();
    assert_eq!(actions, ["import_update", "create"]);
    let owner = changed[0].changes.iter().find(|change| change.field == "owner").unwrap();
    assert_eq!((owner.before.as_str(), owner.after.as_str()), ("", "\"agent-import\""));
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn each_duplicate_policy_does_what_it_says() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let robert = create(&mut contacts, person("Robert", "Lovelace", "", "(201) 555-0123")).await;
    let mut bob = person("Bob", "Lovelace", "bob@example.com", "+1 201 555 0123");
    bob.tags = vec!["imported".into()];

    let skipped = import(&mut contacts, DuplicatePolicy::Skip, false, vec![vec![row("s", bob.clone())]]).await.unwrap();
    assert_eq!(skipped[0].outcome(), ImportOutcome::Skipped);
    assert_eq!(skipped[0].matched_contact_id, robert.id);
    assert_eq!(count(&mut contacts).await, 1);

    let flagged =
        import(&mut contacts, DuplicatePolicy::CreateAndFlag, false, vec![vec![row("f", bob.clone())]]).await.unwrap();
    assert_eq!(flagged[0].outcome(), ImportOutcome::Flagged);
    let flagged_contact = contacts
        .get_contact(crm_proto::contacts::v1::GetContactRequest { id: flagged[0].contact_id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(flagged_contact.needs_review);
    contacts
        .delete_contact(crm_proto::contacts::v1::DeleteContactRequest {
            id: flagged_contact.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();

    let merged = import(&mut contacts, DuplicatePolicy::Merge, false, vec![vec![row("m", bob)]]).await.unwrap();
    assert_eq!(merged[0].outcome(), ImportOutcome::Merged);
    assert_eq!(merged[0].contact_id, robert.id);
    let robert_now = contacts
        .get_contact(crm_proto::contacts::v1::GetContactRequest { id: robert.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(robert_now.emails[0].address, "bob@example.com");
    assert_eq!(robert_now.tags, ["imported"]);

    // Options are required, and a policy must be chosen.
    let refused = import(&mut contacts, DuplicatePolicy::Unspecified, false, vec![vec![]]).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("options.duplicate_policy"), "{}", refused.message());
    suite.shutdown().await.unwrap();
}

/// Messages sent back to back are in flight together; each still sees what
/// the messages before it did, as if they had been sent one at a time.
#[tokio::test]
async fn messages_in_flight_together_see_the_contacts_of_the_messages_before_them() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();

    let mut ada = person("Ada", "Lovelace", "ada@analytical.example", "");
    ada.external_ids = vec![external("legacy", "L-1")];
    let mut ada_again = person("Ada", "Lovelace", "ada@analytical.example", "+44 20 7946 0018");
    ada_again.external_ids = vec![external("legacy", "L-2")];
    let mut ada_update = person("Ada", "Lovelace", "", "");
    ada_update.external_ids = vec![external("legacy", "L-1")];
    ada_update.tags = vec!["countess".into()];
    // Fifty people unlike each other: no shared address, birth date, name or email.
    let filler = |from: usize| -> Vec<ImportRow> {
        (from..from + 50)
            .map(|n| {
                let given: String =
                    format!("{n:02}").chars().map(|d| (b'a' + d.to_digit(10).unwrap() as u8) as char).collect();
                let mut contact =
                    person(&format!("Q{given}x"), &format!("Z{given}{n}w"), &format!("filler{n}@example.com"), "");
                contact.addresses.clear();
                contact.birth_date = None;
                contact.external_ids = vec![external("legacy", &format!("F-{n}"))];
                row(&format!("f{n}"), contact)
            })
            .collect()
    };
    let batches = vec![
        vec![row("a1", ada)],
        vec![row("a2", ada_again)], // a likely duplicate of a1: merged into it
        filler(0),
        vec![row("a3", ada_update)], // a1's external id: an update of it
        filler(0),                   // the same external ids again: updates, not new contacts
    ];
    let results = import(&mut contacts, DuplicatePolicy::Merge, false, batches).await.unwrap();
    let by_row = |id: &str| results.iter().find(|result| result.row_id == id).unwrap().clone();
    let ada_id = by_row("a1").contact_id;
    assert_eq!(by_row("a1").outcome(), ImportOutcome::Created);
    assert_eq!((by_row("a2").outcome(), by_row("a2").contact_id), (ImportOutcome::Merged, ada_id.clone()));
    assert_eq!((by_row("a3").outcome(), by_row("a3").contact_id), (ImportOutcome::Updated, ada_id.clone()));
    let updates = results.iter().skip(53).filter(|result| result.outcome() == ImportOutcome::Updated).count();
    assert_eq!(updates, 50, "{:?}", outcomes(&results[53..]));
    assert_eq!(count(&mut contacts).await, 51, "one Ada and fifty fillers");

    let stored =
        contacts.get_contact(crm_proto::contacts::v1::GetContactRequest { id: ada_id }).await.unwrap().into_inner();
    assert_eq!(stored.phones.len(), 1, "the merged row's phone is kept");
    assert_eq!(stored.tags, ["countess"], "the update's tag is kept");
    let mut externals: Vec<&str> = stored.external_ids.iter().map(|x| x.id.as_str()).collect();
    externals.sort();
    assert_eq!(externals, ["L-1", "L-2"]);
    suite.shutdown().await.unwrap();
}

/// A message over the row limit is refused whole, naming `rows`; the
/// messages before it stand.
#[tokio::test]
async fn a_message_of_more_rows_than_the_limit_is_refused_and_the_earlier_messages_stand() {
    use tonic_types::StatusExt;

    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let first = ImportContactsRequest {
        options: Some(ImportOptions {
            duplicate_policy: DuplicatePolicy::Fail as i32,
            dry_run: false,
            source: "legacy-crm".into(),
        }),
        rows: vec![row("1", person("Grace", "Hopper", "grace@navy.example", ""))],
    };
    let limit = 5000;
    let too_many = ImportContactsRequest {
        options: None,
        rows: (0..=limit).map(|n| ImportRow { row_id: n.to_string(), contact: None }).collect(),
    };
    let mut stream = contacts.import_contacts(tokio_stream::iter([first, too_many])).await.unwrap().into_inner();
    let answered = stream.message().await.unwrap().expect("the first message's results");
    assert_eq!(outcomes(&answered.results), [("1".to_string(), ImportOutcome::Created)]);
    let status = stream.message().await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let violations = status.check_error_details().unwrap().bad_request().unwrap().field_violations.clone();
    assert_eq!(violations[0].field, "rows");
    assert!(violations[0].description.contains(&format!("at most {limit} rows")), "{}", violations[0].description);
    assert_eq!(count(&mut contacts).await, 1, "the first message was committed");
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_large_import_leaves_the_tables_vacuumed_and_analysed() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let rows: Vec<ImportRow> = (0..crm_platform::db::TIDY_AFTER + 200)
        .map(|n| {
            let mut contact = person(&format!("Given{n}"), &format!("Family{n}"), &format!("p{n}@example.com"), "");
            contact.external_ids = vec![external("legacy", &format!("L-{n}"))];
            row(&n.to_string(), contact)
        })
        .collect();
    let results = import(&mut contacts, DuplicatePolicy::CreateAndFlag, false, vec![rows]).await.unwrap();
    assert!(results.iter().all(|result| result.outcome() != ImportOutcome::Failed));
    // Straight after, not when autovacuum gets round to it (minutes at a million).
    let pool = test_db.role_pool(crm_platform::Role::Contacts).await.unwrap();
    crate::support::eventually(std::time::Duration::from_secs(60), "VACUUM (ANALYZE) after the import", || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT last_vacuum IS NOT NULL AND last_analyze IS NOT NULL FROM pg_stat_user_tables
                 WHERE schemaname = 'contacts' AND relname = 'contacts'",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    })
    .await;
    suite.shutdown().await.unwrap();
}

/// The contacts an import flagged, listed until someone reviews them: an
/// update with `needs_review` in the mask ("not a duplicate", audited), or a
/// merge that keeps the flagged contact.
#[tokio::test]
async fn flagged_contacts_are_listed_until_reviewed_or_merged() {
    use crm_proto::contacts::v1::{Contact, GetContactRequest, MergeContactsRequest, UpdateContactRequest};

    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let robert = create(&mut contacts, person("Robert", "Lovelace", "", "(201) 555-0123")).await;
    let ada = create(&mut contacts, person("Ada", "Byron", "ada@example.com", "")).await;
    let rows = vec![
        row("1", person("Bob", "Lovelace", "bob@example.com", "+1 201 555 0123")),
        row("2", person("Ada", "Byron", "ada@example.com", "")),
    ];
    let flagged = import(&mut contacts, DuplicatePolicy::CreateAndFlag, false, vec![rows]).await.unwrap();
    assert!(flagged.iter().all(|row| row.outcome() == ImportOutcome::Flagged), "{flagged:?}");
    let (bob, ada_again) = (flagged[0].contact_id.clone(), flagged[1].contact_id.clone());

    async fn listed(contacts: &mut Client) -> Vec<String> {
        let request = ListContactsRequest { needs_review: true, ..Default::default() };
        let page = contacts.list_contacts(request).await.unwrap().into_inner();
        page.contacts.into_iter().map(|contact| contact.id).collect()
    }
    assert_eq!(listed(&mut contacts).await, vec![bob.clone(), ada_again.clone()]);

    // Bob is not Robert: a person says so, and the trail says who did.
    let reviewed = Contact { id: bob.clone(), needs_review: false, ..Default::default() };
    let request = UpdateContactRequest {
        contact: Some(reviewed),
        update_mask: Some(prost_types::FieldMask { paths: vec!["needs_review".into()] }),
    };
    let updated = contacts.update_contact(request).await.unwrap().into_inner();
    assert!(!updated.needs_review && updated.given_name == "Bob", "only the flag changed: {updated:?}");
    let trail = audit_trail(&contacts, &bob).await;
    let change = trail[0].changes.iter().find(|change| change.field == "needs_review").expect("the review audited");
    assert_eq!((change.before.as_str(), change.after.as_str()), ("true", "false"));
    assert_eq!(listed(&mut contacts).await, vec![ada_again.clone()]);

    // The second Ada is Ada: merged into the import's record, which is kept, unflagged.
    let merged = contacts
        .merge_contacts(MergeContactsRequest {
            survivor_id: ada_again.clone(),
            loser_ids: vec![ada.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!merged.contact.unwrap().needs_review);
    assert!(listed(&mut contacts).await.is_empty());
    let robert_now = contacts.get_contact(GetContactRequest { id: robert.id }).await.unwrap().into_inner();
    assert!(!robert_now.needs_review);
    suite.shutdown().await.unwrap();
}
