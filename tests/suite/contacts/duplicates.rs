//! Duplicates stopped at the door, overrides audited, and found in the base.

use crm_proto::contacts::v1::{CreateContactRequest, FindDuplicatesRequest};
use crm_testkit::{TestDb, TestSuite};
use tonic::Code;
use tonic_types::StatusExt;

use super::{audit_trail, create, person};

#[tokio::test]
async fn a_likely_duplicate_is_refused_with_its_candidates_unless_overridden() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let robert = create(&mut contacts, person("Robert", "Smith", "", "+1 201 555 0123")).await;

    // Nickname and a reformatted phone: the same man.
    let bob = person("Bob", "Smith", "", "(201) 555-0123");
    let refused = contacts
        .create_contact(CreateContactRequest { contact: Some(bob.clone()), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    let info = refused.check_error_details().unwrap().error_info().cloned().unwrap();
    assert_eq!(info.reason, "LIKELY_DUPLICATE");
    assert_eq!(info.metadata["candidate_ids"], robert.id);
    let score: f64 = info.metadata["candidate_scores"].parse().unwrap();
    assert!(score >= 0.8, "{score}");
    assert!(info.metadata["reasons"].contains("given_name_nickname"), "{:?}", info.metadata);
    assert!(info.metadata["reasons"].contains("phone_exact"), "{:?}", info.metadata);
    assert_eq!(info.metadata["model_version"], "builtin", "a new install decides with the built-in model");

    // A household member sharing the address is not a duplicate.
    create(&mut contacts, {
        let mut helen = person("Helen", "Smith", "helen@example.com", "");
        helen.birth_date = Some(crm_proto::common::v1::Date { year: 1986, month: 7, day: 1 });
        helen
    })
    .await;

    // The override is allowed with a reason, and visible in the audit trail.
    let created = contacts
        .create_contact(CreateContactRequest {
            contact: Some(bob),
            allow_duplicate: true,
            override_reason: "different person, confirmed by phone".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let trail = audit_trail(&contacts, &created.id).await;
    assert_eq!(trail[0].action, "create");
    assert!(trail[0].note.contains("duplicate check overridden: different person"), "{}", trail[0].note);
    assert!(trail[0].note.contains(&robert.id), "{}", trail[0].note);

    let found = contacts
        .find_duplicates(FindDuplicatesRequest { contact_id: robert.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.pairs.len(), 1);
    assert_eq!(found.pairs[0].other_contact_id, created.id);
    assert!(found.pairs[0].reasons.iter().any(|reason| reason.signal == "given_name_nickname"));
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_scan_of_the_base_pairs_duplicates_and_clusters_a_person_seen_three_times() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let forced = |contact| CreateContactRequest {
        contact: Some(contact),
        allow_duplicate: true,
        override_reason: "test data".into(),
        ..Default::default()
    };
    let mut ids = Vec::new();
    for (given, family, email) in [
        ("Katherine", "Johnson", "kj@example.com"),
        ("Kate", "Johnson", "kj@example.com"),
        ("Katherine", "Jonson", "KJ@example.com"),
    ] {
        ids.push(contacts.create_contact(forced(person(given, family, email, ""))).await.unwrap().into_inner().id);
    }
    create(&mut contacts, person("Dorothy", "Vaughan", "dv@example.com", "")).await;
    let mut twins = Vec::new();
    for given in ["Mary", "Molly"] {
        let mut contact = person(given, "Jackson", "mj@example.com", "");
        contact.birth_date = None;
        twins.push(contacts.create_contact(forced(contact)).await.unwrap().into_inner().id);
    }

    let mut pairs = Vec::new();
    let mut clusters = Vec::new();
    let mut token = String::new();
    loop {
        let page = contacts
            .find_duplicates(FindDuplicatesRequest { page_size: 2, page_token: token.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        pairs.extend(page.pairs);
        clusters.extend(page.clusters);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    // Three pairs among the Katherines, one for Mary/Molly (nicknames), each reported once.
    let mut found: Vec<(String, String)> =
        pairs.iter().map(|p| (p.contact_id.clone(), p.other_contact_id.clone())).collect();
    found.sort();
    found.dedup();
    assert_eq!(found.len(), pairs.len(), "a pair was reported twice: {pairs:?}");
    assert!(found.contains(&(twins[0].clone(), twins[1].clone())), "{found:?}");
    for (a, b) in [(0, 1), (0, 2), (1, 2)] {
        assert!(found.contains(&(ids[a].clone(), ids[b].clone())), "{found:?}");
    }
    assert_eq!(found.len(), 4, "{found:?}");
    let mut katherines = ids.clone();
    katherines.sort();
    assert!(clusters.iter().any(|cluster| cluster.contact_ids == katherines), "{clusters:?}");
    suite.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_matcher_is_fitted_on_demand_and_decides_at_once() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let fit = crm_proto::contacts::v1::FitMatcherRequest {};
    let refused = contacts.fit_matcher(fit).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "an empty base: {refused:?}");
    assert_eq!(refused.check_error_details().unwrap().error_info().unwrap().reason, "TOO_FEW_CONTACTS");

    let robert = create(&mut contacts, person("Robert", "Smith", "rob@example.com", "+1 201 555 0123")).await;
    for (given, family, email) in [("Helen", "Jones", "helen@example.com"), ("Ivan", "Petrov", "ivan@example.com")] {
        create(&mut contacts, person(given, family, email, "")).await;
    }
    let fitted = contacts.fit_matcher(fit).await.unwrap().into_inner();
    assert_eq!(fitted.model_version, "1", "{fitted:?}");
    assert_eq!((fitted.contacts, fitted.random_pairs), (3, 100_000), "{fitted:?}");
    assert!(fitted.prior > 0.0 && fitted.prior < 1.0, "{fitted:?}");

    // The next decision names the fitted model.
    let refused = contacts
        .create_contact(CreateContactRequest {
            contact: Some(person("Bob", "Smith", "rob@example.com", "(201) 555-0123")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let info = refused.check_error_details().unwrap().error_info().cloned().unwrap();
    assert_eq!(info.metadata["candidate_ids"], robert.id);
    assert_eq!(info.metadata["model_version"], fitted.model_version);
    suite.shutdown().await.unwrap();
}

/// A number many contacts share (a company's switchboard) still brings its
/// holders to be compared: only the wide keys (an address line's or a
/// locality's sound) are purged when common, so a duplicate known by that
/// number alone is still caught.
#[tokio::test]
async fn a_number_many_contacts_share_still_finds_the_duplicate() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&test_db).await.unwrap();
    let mut contacts = suite.contacts().await.unwrap();
    let switchboard = "+1 201 555 0100";
    let robert = create(&mut contacts, person("Robert", "Smith", "robert@acme.example", switchboard)).await;
    let colleagues = [
        ("Ada", "Lovelace"),
        ("Grace", "Hopper"),
        ("Alan", "Turing"),
        ("Edsger", "Dijkstra"),
        ("Barbara", "Liskov"),
        ("Donald", "Knuth"),
        ("Frances", "Allen"),
        ("John", "Backus"),
        ("Margaret", "Hamilton"),
        ("Niklaus", "Wirth"),
        ("Tony", "Hoare"),
        ("Radia", "Perlman"),
    ];
    for (given, family) in colleagues {
        let email = format!("{}@acme.example", given.to_lowercase());
        create(&mut contacts, person(given, family, &email, switchboard)).await;
    }

    // Known by the number alone: no address, no birth date, no email.
    let mut bob = person("Bob", "Smith", "", switchboard);
    bob.addresses.clear();
    let refused =
        contacts.create_contact(CreateContactRequest { contact: Some(bob), ..Default::default() }).await.unwrap_err();
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    let info = refused.check_error_details().unwrap().error_info().cloned().unwrap();
    assert_eq!(info.metadata["candidate_ids"], robert.id, "{:?}", info.metadata);
    suite.shutdown().await.unwrap();
}
