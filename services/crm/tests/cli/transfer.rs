//! `crm import contacts` and `crm export contacts`: the real binary on real
//! files against a running suite, counted in its database.

use std::{
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::Duration,
};

use crm_platform::Role;
use crm_proto::{
    contacts::v1::{Contact, ListContactsRequest},
    segmentation::v1::{AddSegmentMembersRequest, CreateSegmentRequest, Segment, SegmentKind},
};
use crm_testkit::{TestDb, TestSuite};
use tokio::process::Command;

/// A scratch directory of the test's own.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("crm-cli-{test}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn crm(suite: &TestSuite) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_crm"));
    command
        .env("CRM_GATEWAY", suite.address(Role::Gateway).to_string())
        .env("CRM_API_KEY", &suite.admin_key)
        .env("CRM_LOG", "warn")
        .env_remove("DATABASE_URL");
    command
}

/// Runs `crm args…`, failing the test when it fails; answers its standard output.
async fn run(suite: &TestSuite, args: &[&str]) -> String {
    let output = crm(suite).args(args).output().await.unwrap();
    assert!(output.status.success(), "crm {args:?} failed:\n{}", text(&output));
    String::from_utf8(output.stdout).unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// One connection, closed after: the tests of this binary share the
/// server's connections with the chaos tests' `crm serve`.
async fn live_contacts(db: &TestDb) -> i64 {
    let mut conn = db.connect().await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM contacts.contacts WHERE delete_time IS NULL")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

/// One of these tests at a time: each runs a suite (and the round trip a
/// second one), and beside the chaos tests' servers two at once could use
/// up the test server's connections.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

async fn all_contacts(suite: &TestSuite) -> Vec<Contact> {
    let mut client = suite.contacts().await.unwrap();
    let (mut contacts, mut page_token) = (Vec::new(), String::new());
    loop {
        let page = client
            .list_contacts(ListContactsRequest { page_size: 500, page_token, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        contacts.extend(page.contacts);
        if page.next_page_token.is_empty() {
            return contacts;
        }
        page_token = page.next_page_token;
    }
}

/// A legacy CRM's dump as such files come: Windows-1252, a header of its
/// own, a street over two lines, a row cut short, a date that is no date,
/// an email that is no email, and one person twice.
fn legacy_file() -> Vec<u8> {
    let text = "Customer ID;First Name;SURNAME;E-mail;Mobile;Street;Town;Zip;D.O.B.;Notes\r\n\
                C-1;José;Müller;jose@example.com;+1 201 555 0101;\"1 Rue de l'Église\r\nBâtiment B\";Bath;BA1 1AA;1980-04-03;likes tea\r\n\
                C-2;Zoë;Brontë;zoe@example.com;+1 201 555 0102;2 High St;York;YO1 7HH;31.12.1975;\r\n\
                C-3;Short;Row\r\n\
                C-4;Ann;Datey;ann@example.com;+1 201 555 0104;4 Low St;Leeds;LS1 4AP;1980-02-30;\r\n\
                C-5;Bad;Email;not-an-email;+1 201 555 0105;5 Mid St;Hull;HU1 1AA;1970-01-01;\r\n\
                C-6;José;Müller;jose@example.com;+1 201 555 0101;1 Rue de l'Église;Bath;BA1 1AA;1980-04-03;again\r\n";
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(text);
    assert!(!unmappable);
    bytes.into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_file_is_mapped_tried_imported_and_reported() {
    let _turn = one_at_a_time().await;
    let db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&db).await.unwrap();
    let dir = scratch("legacy");
    let file = dir.join("legacy-crm.csv");
    std::fs::write(&file, legacy_file()).unwrap();
    let common = ["--encoding", "windows-1252", "--country", "GB", "--duplicates", "flag"];

    let mapping = run(&suite, &[&["import", "contacts", path(&file), "--show-mapping"][..], &common].concat()).await;
    for expected in [
        "Customer ID  external_id",
        "First Name   given_name",
        "SURNAME      family_name",
        "E-mail       emails[0]",
        "Mobile       phones[0]",
        "Street       addresses[0].lines[0]",
        "Zip          postal_code",
        "D.O.B.       birth_date",
        "Notes        ignored: no field of that name (keep it with --map 'Notes=attributes.notes')",
    ] {
        assert!(mapping.contains(expected), "{expected:?} not in:\n{mapping}");
    }
    assert_eq!(live_contacts(&db).await, 0, "showing the mapping sends nothing");

    let keep_notes = ["--map", "Notes=attributes.notes"];
    let dry =
        run(&suite, &[&["import", "contacts", path(&file), "--dry-run"][..], &common, &keep_notes].concat()).await;
    assert!(dry.starts_with("dry run (nothing was written)"), "{dry}");
    assert!(
        dry.contains(
            "2 created, 0 updated, 0 merged, 0 skipped, 1 flagged for review, 3 rejected (2 unreadable, 1 refused)"
        ),
        "{dry}"
    );
    assert_eq!(live_contacts(&db).await, 0, "a dry run writes nothing");

    let report = dir.join("report.csv");
    let real = run(
        &suite,
        &[&["import", "contacts", path(&file), "--report", path(&report)][..], &common, &keep_notes].concat(),
    )
    .await;
    assert!(
        real.contains(
            "2 created, 0 updated, 0 merged, 0 skipped, 1 flagged for review, 3 rejected (2 unreadable, 1 refused)"
        ),
        "the real run does what the dry run said:\n{real}"
    );
    assert!(real.contains("report: 4 rows to look at"), "{real}");
    assert_eq!(live_contacts(&db).await, 3);
    assert!(!dir.join("report.csv.checkpoint").exists(), "a finished import leaves no checkpoint");

    let contacts = all_contacts(&suite).await;
    let jose = contacts.iter().find(|contact| contact.external_ids.iter().any(|id| id.id == "C-1")).unwrap();
    assert_eq!((jose.given_name.as_str(), jose.family_name.as_str()), ("José", "Müller"));
    assert_eq!(jose.addresses[0].lines, ["1 Rue de l'Église", "Bâtiment B"]);
    assert_eq!(jose.addresses[0].country_code, "GB");
    assert_eq!(jose.attributes["notes"], "likes tea");
    assert_eq!(jose.external_ids[0].source, "legacy-crm", "the source is the file's name");

    let mut lines = csv::Reader::from_path(&report).unwrap();
    let rows: Vec<Vec<String>> =
        lines.records().map(|record| record.unwrap().iter().map(String::from).collect()).collect();
    let summary: Vec<(&str, &str)> = rows.iter().map(|row| (row[0].as_str(), row[1].as_str())).collect();
    assert_eq!(summary, [("5", "invalid"), ("6", "invalid"), ("7", "failed"), ("8", "flagged")]);
    assert!(rows[0][6].contains("3 fields where the header has 10"), "{:?}", rows[0]);
    assert!(rows[1][5].contains("birth_date (column \"D.O.B.\")") && rows[1][6].contains("not a day"), "{:?}", rows[1]);
    assert!(rows[2][5].contains("emails"), "the suite's own verdict names the field: {:?}", rows[2]);
    assert_eq!(rows[3][3], jose.id, "the flagged row names the contact it likely duplicates");

    // The same command again: everything is already there, nobody twice.
    let again = run(
        &suite,
        &[&["import", "contacts", path(&file), "--report", path(&report)][..], &common, &keep_notes].concat(),
    )
    .await;
    assert!(again.contains("0 created, 3 updated"), "{again}");
    assert_eq!(live_contacts(&db).await, 3);
    suite.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bom_semicolons_and_json_lines_need_no_options() {
    let _turn = one_at_a_time().await;
    let db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&db).await.unwrap();
    let dir = scratch("bom");
    let csv_file = dir.join("shop.csv");
    std::fs::write(&csv_file, "\u{feff}first_name;last_name;email\nAnn;Lee;ann@example.com\n").unwrap();
    let jsonl = dir.join("app.jsonl");
    std::fs::write(
        &jsonl,
        "{\"given_name\":\"Bo\",\"family_name\":\"Kim\",\"emails\":[\"bo@example.com\"],\"tags\":[\"vip\"]}\n{broken\n",
    )
    .unwrap();
    let out = run(&suite, &["import", "contacts", path(&csv_file), "--duplicates", "fail"]).await;
    assert!(out.contains("1 created"), "{out}");
    let out = run(&suite, &["import", "contacts", path(&jsonl), "--duplicates", "fail"]).await;
    assert!(out.contains("1 created") && out.contains("1 rejected (1 unreadable"), "{out}");
    let contacts = all_contacts(&suite).await;
    let names: Vec<(&str, &[String])> =
        contacts.iter().map(|contact| (contact.given_name.as_str(), contact.tags.as_slice())).collect();
    assert_eq!(names, [("Ann", &[][..]), ("Bo", &["vip".to_string()][..])]);

    // --strict stops at the broken line and says where.
    let output = crm(&suite)
        .args(["import", "contacts", path(&jsonl), "--duplicates", "fail", "--strict", "--source", "other-app"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(text(&output).contains("stopped at line 2 (--strict)"), "{}", text(&output));
    suite.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_in_the_middle_then_the_same_command_gives_exactly_the_file() {
    let _turn = one_at_a_time().await;
    const ROWS: usize = 30_000;
    let db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&db).await.unwrap();
    let dir = scratch("kill");
    let file = dir.join("big.csv");
    let mut text = String::from("id,given_name,family_name,email\n");
    for n in 0..ROWS {
        text.push_str(&format!("P{n},Given{n},Family{n},person{n}@example.com\n"));
    }
    std::fs::write(&file, text).unwrap();
    let report = dir.join("report.csv");
    let checkpoint = dir.join("report.csv.checkpoint");
    let args = ["import", "contacts", path(&file), "--duplicates", "flag", "--batch", "200", "--report", path(&report)];

    let mut child = crm(&suite).args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !checkpoint.exists() {
        assert!(tokio::time::Instant::now() < deadline, "no checkpoint after two minutes");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(child.try_wait().unwrap().is_none(), "the import finished before it could be killed: make the file bigger");
    child.kill().await.unwrap(); // SIGKILL, then reaped
    let imported_before = live_contacts(&db).await;
    assert!(imported_before > 0 && (imported_before as usize) < ROWS, "killed in the middle: {imported_before}");

    let out = run(&suite, &args).await;
    assert_eq!(live_contacts(&db).await, ROWS as i64, "{out}");
    let mut conn = db.connect().await.unwrap();
    let (ids, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT external_id) FROM contacts.contact_external_ids WHERE source = 'big'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    drop(conn);
    assert_eq!((ids, distinct), (ROWS as i64, ROWS as i64), "every row once, by its id in the file");
    assert!(!checkpoint.exists());

    // Without the checkpoint (removed, or never written), the rerun still duplicates nobody.
    let out = run(&suite, &args).await;
    assert!(out.contains(&format!("0 created, {ROWS} updated")), "{out}");
    assert_eq!(live_contacts(&db).await, ROWS as i64);
    suite.shutdown().await.unwrap();
}

/// A contact without what two installs cannot share (ids, times, etags).
fn portable(mut contact: Contact) -> Contact {
    contact.id.clear();
    contact.etag.clear();
    contact.create_time = None;
    contact.update_time = None;
    contact.needs_review = false;
    contact
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_imports_into_an_empty_install_as_the_same_contacts() {
    let _turn = one_at_a_time().await;
    let db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&db).await.unwrap();
    let dir = scratch("round-trip");
    let file = dir.join("customers.jsonl");
    let rows = [
        r#"{"id":"A1","given_name":"Ann","family_name":"Lee","emails":["ann@example.com (work)","a.lee@example.org"],"phones":["+1 201 555 0111 (mobile)"],"street":"1 High St\nFlat 2","locality":"Bath","postal_code":"BA1 1AA","country_code":"GB","other_addresses":[{"type":"mailing","lines":["PO Box 9"],"locality":"York","country_code":"GB"}],"birth_date":"1980-04-03","lifecycle_stage":"customer","owner":"kim","tags":["vip","a;b"],"attributes":{"tier":"gold"},"consents":[{"channel":"email","status":"opted_in","time":"2026-01-02T03:04:05.123456Z","source":"web form"}],"max_contacts_per_week":2}"#,
        r#"{"id":"A2","given_name":"Bo","family_name":"Kim","emails":["bo@example.com"],"consents.sms":"no"}"#,
        r#"{"id":"A3","display_name":"Zoë Brontë","phones":["+1 201 555 0133"],"lifecycle_stage":"former customer"}"#,
    ];
    std::fs::write(&file, rows.join("\n")).unwrap();
    run(&suite, &["import", "contacts", path(&file), "--duplicates", "fail"]).await;
    let originals = all_contacts(&suite).await;
    assert_eq!(originals.len(), 3);

    let formats = [("csv", dir.join("export.csv")), ("jsonl", dir.join("export.jsonl.gz"))];
    for (_, export) in &formats {
        run(&suite, &["export", "contacts", "--output", path(export)]).await;
    }
    suite.shutdown().await.unwrap();
    for (format, export) in formats {
        let export = &export;
        let other_db = TestDb::create().await.unwrap();
        let other = TestSuite::start(&other_db).await.unwrap();
        let out = run(&other, &["import", "contacts", path(export), "--duplicates", "fail", "--restart"]).await;
        assert!(out.contains("3 created"), "{format}: {out}");
        let copies = all_contacts(&other).await;
        let mut copies: Vec<Contact> = copies.into_iter().map(portable).collect();
        let mut expected: Vec<Contact> = originals.iter().cloned().map(portable).collect();
        let key = |contact: &Contact| contact.external_ids[0].id.clone();
        copies.sort_by_key(key);
        expected.sort_by_key(key);
        assert_eq!(copies, expected, "{format}");
        other.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_cut_in_the_middle_takes_up_again_after_the_last_contact_and_writes_each_once() {
    use tokio::io::AsyncBufReadExt;
    let _turn = one_at_a_time().await;
    let db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&db).await.unwrap();
    let dir = scratch("export-cut");
    let file = dir.join("people.csv");
    let total = 12_000;
    let rows: Vec<String> = (0..total).map(|n| format!("P{n},Given{n},Family{n},p{n}@example.com")).collect();
    std::fs::write(&file, format!("id,given_name,family_name,email\n{}\n", rows.join("\n"))).unwrap();
    run(&suite, &["import", "contacts", path(&file), "--duplicates", "fail"]).await;

    // The export reads through a connection the test cuts once a part is
    // written (standard output is a pipe the test reads slowly: the command
    // waits on it, with the rest of the stream not yet sent).
    let proxy = crm_testkit::TcpProxy::start(suite.address(Role::Gateway)).await.unwrap();
    let mut export = crm(&suite)
        .env("CRM_GATEWAY", proxy.address().to_string())
        .args(["export", "contacts", "--format", "csv"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(export.stdout.take().unwrap()).lines();
    let mut written = Vec::new();
    while written.len() < 1_500 {
        written.push(lines.next_line().await.unwrap().expect("the export ended before the cut"));
    }
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.restore();
    while let Some(line) = lines.next_line().await.unwrap() {
        written.push(line);
    }
    let output = export.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("taking it up again"), "the cut broke the stream: {stderr}");

    let header = written.remove(0);
    let crm_id = header.split(',').position(|column| column == "crm_id").expect("a crm_id column");
    let mut ids: Vec<String> = written
        .iter()
        .map(|line| csv::ReaderBuilder::new().has_headers(false).from_reader(line.as_bytes()).records().next())
        .map(|record| record.unwrap().unwrap()[crm_id].to_string())
        .collect();
    assert_eq!(ids.len(), total, "every contact once");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "no contact twice");
    suite.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_history_follows_the_contacts_it_names() {
    let _turn = one_at_a_time().await;
    let db = TestDb::create().await.unwrap();
    let suite = TestSuite::start(&db).await.unwrap();
    let dir = scratch("orders");
    let people = dir.join("old-crm.csv");
    std::fs::write(
        &people,
        "Customer ID,First Name,Last Name,Email\nC-1,Ann,Lee,ann@example.com\nC-2,Bo,Kim,bo@example.com\n",
    )
    .unwrap();
    run(&suite, &["import", "contacts", path(&people), "--duplicates", "fail"]).await;

    let orders = dir.join("billing.csv");
    std::fs::write(
        &orders,
        "Order ID,Customer ID,Type,Order Date,Total,Product,Qty,Unit Price,Invoice No,Due Date\n\
         O-1,C-1,order,2026-03-01 14:30,25.00,SKU-1,2,12.50,,\n\
         O-2,C-2,invoice,2026-03-02,100,,,,INV-1,2026-04-01\n\
         O-3,C-9,order,2026-03-03,5.00,SKU-2,1,5.00,,\n\
         O-4,C-1,gift,2026-03-04,1.00,,,,,\n\
         O-5,C-2,payment,2026-03-05,100,,,,INV-1,\n\
         O-6,C-1,order,2026-03-06,1.005,SKU-1,1,1.005,,\n",
    )
    .unwrap();
    let report = dir.join("orders-report.csv");
    let args = [
        "import",
        "interactions",
        path(&orders),
        "--contact-source",
        "old-crm",
        "--currency",
        "EUR",
        "--channel",
        "billing",
        "--report",
        path(&report),
    ];
    let out = run(&suite, &args).await;
    assert!(
        out.contains("3 stored, 0 already there, 3 rejected (2 unreadable, 1 without a known contact, 0 refused)"),
        "{out}"
    );
    let mut lines = csv::Reader::from_path(&report).unwrap();
    let rows: Vec<Vec<String>> =
        lines.records().map(|record| record.unwrap().iter().map(String::from).collect()).collect();
    let summary: Vec<(&str, &str)> = rows.iter().map(|row| (row[0].as_str(), row[1].as_str())).collect();
    assert_eq!(summary, [("4", "no contact"), ("5", "invalid"), ("7", "invalid")]);
    assert_eq!(rows[0][6], "no contact holds id C-9 in old-crm");
    assert!(rows[2][6].contains("more decimals than EUR has"), "never rounded: {:?}", rows[2]);

    let contacts = all_contacts(&suite).await;
    let ann = contacts.iter().find(|contact| contact.given_name == "Ann").unwrap();
    let mut interactions = suite.interactions().await.unwrap();
    let timeline = interactions
        .list_interactions(crm_proto::interactions::v1::ListInteractionsRequest {
            contact_id: ann.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .interactions;
    assert_eq!(timeline.len(), 1);
    let order = &timeline[0];
    assert_eq!((order.source.as_str(), order.external_id.as_str()), ("billing", "O-1"));
    assert_eq!(order.amount.as_ref().unwrap().minor_units, 2500);
    assert_eq!(order.product_lines[0].sku, "SKU-1");
    assert_eq!(order.product_lines[0].quantity, 2);

    // Again: nothing is stored twice.
    let again = run(&suite, &args).await;
    assert!(again.contains("0 stored, 3 already there"), "{again}");

    // Exported, the interactions import again as themselves: nothing new.
    let all = dir.join("interactions.csv");
    run(&suite, &["export", "interactions", "-o", path(&all)]).await;
    let exported = std::fs::read_to_string(&all).unwrap();
    assert_eq!(exported.lines().count(), 4, "a header and three interactions:\n{exported}");
    let again = run(&suite, &["import", "interactions", path(&all), "--source", "billing"]).await;
    assert!(again.contains("0 stored, 3 already there, 0 rejected"), "{again}");
    let anns = run(&suite, &["export", "interactions", "--contact", &ann.id, "--format", "jsonl"]).await;
    assert_eq!(anns.lines().count(), 1, "{anns}");
    assert!(anns.contains("\"external_id\":\"O-1\"") && anns.contains("\"amount\":\"25.00\""), "{anns}");

    // A segment's members, for a mailing tool: ids, or whole contacts.
    let mut segmentation = suite.segmentation().await.unwrap();
    let segment = Segment { name: "Trade fair".into(), kind: SegmentKind::Static as i32, ..Default::default() };
    let list = segmentation.create_segment(CreateSegmentRequest { segment: Some(segment) }).await.unwrap().into_inner();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let add = AddSegmentMembersRequest { segment_id: list.id.clone(), contact_ids: vec![ann.id.clone()] };
    while let Err(status) = segmentation.add_segment_members(add.clone()).await {
        // Segmentation learns of Ann from the contacts feed.
        assert!(tokio::time::Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids = run(&suite, &["export", "segment", &list.id]).await;
    assert_eq!(ids.lines().count(), 2, "{ids}");
    assert!(ids.starts_with("contact_id,member_since\n") && ids.contains(&ann.id), "{ids}");
    let people = run(&suite, &["export", "segment", &list.id, "--contacts", "--format", "jsonl"]).await;
    assert!(people.contains("ann@example.com") && !people.contains("bo@example.com"), "{people}");

    // Everything about Ann, from every role, and nothing about anyone else.
    let subject = dir.join("ann.json");
    run(&suite, &["export", "subject", "--email", "ann@example.com", "-o", path(&subject)]).await;
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&subject).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&subject).unwrap();
    let document: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(document["contact"]["id"], ann.id.as_str());
    assert_eq!(document["contact"]["external_ids"][0]["id"], "C-1");
    assert_eq!(document["interactions"].as_array().unwrap().len(), 1);
    assert_eq!(document["interactions"][0]["external_id"], "O-1");
    assert!(!document["audit_trail"].as_array().unwrap().is_empty(), "the import is in the trail");
    assert!(document["customer_view"].is_object());
    assert!(document["segmentation"]["segments"].is_object());
    assert!(!text.contains("bo@example.com") && !text.contains("C-2"), "another person's data leaked");
    suite.shutdown().await.unwrap();
}
