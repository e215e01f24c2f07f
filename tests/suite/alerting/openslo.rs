//! SLOs kept in git as OpenSLO v1 documents: `crm alerting apply` creates
//! them through the gateway (checking every document first, leaving an
//! unchanged SLO alone, naming what differs or what the server refuses),
//! and `crm alerting export-openslo` writes them back, the same SLOs.

use crm_platform::Role;
use crm_proto::alerting::v1::{ListSlosRequest, slo};
use crm_testkit::{TestDb, TestSuite};

fn document(name: &str, target: &str, good: &str, rolling: bool) -> String {
    format!(
        r#"apiVersion: openslo/v1
kind: SLO
metadata:
  name: {name}
  labels:
    owner: billing-team
spec:
  description: Online bill payment in under three minutes
  indicator:
    metadata:
      name: {name}-sli
    spec:
      ratioMetric:
        counter: true
        good:
          metricSource:
            type: crm.interactions
            spec:
              condition: '{good}'
        total:
          metricSource:
            type: crm.interactions
            spec:
              condition: 'kind == "payment" && channel == "web"'
  timeWindow:
    - duration: 4w
      isRolling: {rolling}
  budgetingMethod: Occurrences
  objectives:
    - target: {target}
"#
    )
}

const GOOD: &str = r#"duration_ms <= 180000 && outcome != "failed""#;

#[tokio::test]
async fn openslo_documents_are_applied_once_checked_first_and_exported_back() {
    let test_db = TestDb::create().await.unwrap();
    let suite = TestSuite::start_roles(&test_db, &Role::ALL, &[]).await.unwrap();
    let gateway = suite.address(Role::Gateway).to_string();
    let key = suite.admin_key.clone();
    let dir = std::env::temp_dir().join(format!("crm-openslo-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("slos.yaml");

    // A calendar window in the second document: nothing is applied, and the report says where.
    std::fs::write(
        &file,
        [document("web-payments", "0.9", GOOD, true), document("store", "0.99", GOOD, false)].join("---\n"),
    )
    .unwrap();
    let refused = crm::alerting::apply(&gateway, &key, &file).await.unwrap_err().to_string();
    assert!(refused.contains("document 2 (store): spec.timeWindow[0].isRolling"), "{refused}");
    let mut alerting = suite.alerting().await.unwrap();
    assert!(alerting.list_slos(ListSlosRequest::default()).await.unwrap().into_inner().slos.is_empty());

    // Both right: created; again: unchanged.
    std::fs::write(
        &file,
        [document("web-payments", "0.9", GOOD, true), document("store", "0.99", GOOD, true)].join("---\n"),
    )
    .unwrap();
    let report = crm::alerting::apply(&gateway, &key, &file).await.unwrap();
    assert_eq!(report.matches(": created (").count(), 2, "{report}");
    let report = crm::alerting::apply(&gateway, &key, &file).await.unwrap();
    assert_eq!(report, "web-payments: unchanged\nstore: unchanged\n");
    let slos = alerting.list_slos(ListSlosRequest::default()).await.unwrap().into_inner().slos;
    let payments = slos.iter().find(|slo| slo.name == "web-payments").unwrap();
    assert_eq!((payments.owner.as_str(), payments.objective), ("billing-team", 0.9));
    assert_eq!(payments.window.unwrap().seconds, 28 * 24 * 3600);
    assert!(matches!(&payments.indicator, Some(slo::Indicator::Business(business)) if business.good == GOOD));

    // A changed target is reported, not applied; a condition the server refuses names its field and position.
    std::fs::write(&file, document("web-payments", "0.95", GOOD, true)).unwrap();
    let differs = crm::alerting::apply(&gateway, &key, &file).await.unwrap_err().to_string();
    assert!(differs.contains("web-payments: exists") && differs.contains("differs"), "{differs}");
    std::fs::write(&file, document("refunds", "0.9", "duration_ms <= ", true)).unwrap();
    let bad = crm::alerting::apply(&gateway, &key, &file).await.unwrap_err().to_string();
    assert!(bad.contains("refunds: refused") && bad.contains("slo.business.good"), "{bad}");

    // Written back as documents: the same SLOs.
    let exported = dir.join("exported.yaml");
    crm::alerting::export_openslo(&gateway, &key, Some(&exported)).await.unwrap();
    let documents = crm_alerting::slo::openslo::parse(&std::fs::read_to_string(&exported).unwrap()).unwrap();
    assert_eq!(documents.len(), 2);
    for (document, slo) in documents.iter().zip(&slos) {
        let read = crm_alerting::slo::openslo::to_slo(document).unwrap();
        assert_eq!((read.name.as_str(), read.objective, read.window), (slo.name.as_str(), slo.objective, slo.window));
        assert_eq!((read.owner.as_str(), &read.indicator), (slo.owner.as_str(), &slo.indicator));
    }
    let _ = std::fs::remove_dir_all(&dir);
    suite.shutdown().await.unwrap();
}
