//! `--segments N` with `--interactions`: dynamic segments over the features
//! the ingest moves (counts, revenue, complaints, recency per window), with
//! thresholds spread so that contacts enter them as their interactions
//! arrive, defined before the ingest: the segmentation role evaluates every
//! one for every contact each burst touches (issue #13 asks for 20).
//! Once the role has applied the ingest, [`time_evaluations`] times what a
//! whole-base evaluation costs: `PreviewSegment` and a new segment's first
//! evaluation (its `CreateSegment`), then deletes the new segments, timed
//! too, so that each run starts from the same base.

use std::time::Instant;

use crm_proto::segmentation::v1::{
    CreateSegmentRequest, DeleteSegmentRequest, GetSegmentRequest, PreviewSegmentRequest, Segment, SegmentKind,
    segmentation_service_client::SegmentationServiceClient,
};

use uuid::Uuid;

use super::transport::Transport;

/// The deadline of a call that evaluates every contact.
const WHOLE_BASE: std::time::Duration = std::time::Duration::from_secs(300);

/// Segment `n`'s rule.
fn rule(n: usize) -> String {
    let step = (n / 6 + 1) as i64;
    match n % 6 {
        0 => format!("purchases_365d >= {}", 2 * step),
        1 => format!(r#"revenue_365d["EUR"] > {}"#, 20_000 * step),
        2 => format!(r#"kinds_90d["complaint"] >= {step} && interactions_total > {}"#, 10 * step),
        3 => format!("interactions_30d >= {step} && days_since_last_purchase < {}", 30 * step),
        4 => format!(r#"channels_total["web"] > {} || sentiment_avg_90d < -0.3"#, 5 * step),
        _ => format!(r#"complaints_90d == 0 && revenue_total["EUR"] >= {}"#, 10_000 * step),
    }
}

/// Defines `count` dynamic segments.
pub async fn define(transport: &Transport, count: usize) -> anyhow::Result<()> {
    for n in 0..count {
        create(transport, &format!("bench segment {n}"), &rule(n)).await?;
    }
    if count > 0 {
        println!("segments: {count} dynamic segments defined before the ingest");
    }
    Ok(())
}

/// Creates a dynamic segment named `name` (made unique) with `rule`; returns its id.
pub async fn create(transport: &Transport, name: &str, rule: &str) -> anyhow::Result<Uuid> {
    let segment = Segment {
        name: format!("{name} {}", Uuid::now_v7()),
        kind: SegmentKind::Dynamic as i32,
        rule: rule.into(),
        ..Default::default()
    };
    // A first evaluation over a large base may outlast the gateway's default deadline.
    let mut request = tonic::Request::new(CreateSegmentRequest { segment: Some(segment) });
    request.set_timeout(WHOLE_BASE);
    let created = SegmentationServiceClient::new(transport.clone()).create_segment(request).await?.into_inner();
    Ok(Uuid::parse_str(&created.id)?)
}

/// Times `PreviewSegment` of three of the rules and the first evaluation of
/// a new segment (its `CreateSegment`, which evaluates every contact before
/// it answers), through the gateway, and prints them.
pub async fn time_evaluations(transport: &Transport) -> anyhow::Result<()> {
    let mut segmentation = SegmentationServiceClient::new(transport.clone());
    let rules = [rule(0), rule(1), rule(3), "has_phone".to_string()];
    for rule in rules {
        let started = Instant::now();
        let mut request = tonic::Request::new(PreviewSegmentRequest { rule: rule.clone(), sample_size: 20 });
        request.set_timeout(WHOLE_BASE);
        let preview = segmentation.preview_segment(request).await?.into_inner();
        println!(
            "PreviewSegment `{rule}`: {} of {} contacts in {:.0} ms ({} ms in the role)",
            preview.count,
            preview.evaluated,
            started.elapsed().as_secs_f64() * 1000.0,
            preview.elapsed_ms
        );
    }
    // A narrow rule (few members to write) and a broad one (most contacts enter).
    for first in [r#"purchases_365d >= 3 && has_phone && complaints_90d == 0"#, r#"has_email || has_phone"#] {
        let started = Instant::now();
        let id = create(transport, "bench first evaluation", first).await?;
        let elapsed = started.elapsed().as_secs_f64();
        let segment = segmentation.get_segment(GetSegmentRequest { id: id.to_string() }).await?.into_inner();
        println!(
            "first evaluation of a new segment `{first}` (CreateSegment): {} members in {:.0} ms",
            segment.member_count,
            elapsed * 1000.0
        );
        let started = Instant::now();
        let mut request = tonic::Request::new(DeleteSegmentRequest { id: segment.id, etag: segment.etag });
        request.set_timeout(WHOLE_BASE);
        segmentation.delete_segment(request).await?;
        println!("  deleted again (each member exits) in {:.0} ms", started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(())
}
