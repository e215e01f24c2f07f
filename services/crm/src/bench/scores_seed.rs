//! A default score model for the score and service-tier operations
//! (`contact_score`, `service_tier_id`, `service_tier_phone`): revenue,
//! recency, complaints and reachability, in three tiers, as a call centre
//! would order its queue. Defined before the load when the mix asks for it.

use crm_proto::segmentation::v1::{
    Contribution, CreateScoreModelRequest, ScoreModel, Tier, Transform,
    segmentation_service_client::SegmentationServiceClient,
};

use super::transport::Transport;

fn contribution(feature: &str, key: &str, transform: Transform, weight: f64, cap: f64) -> Contribution {
    Contribution {
        feature: feature.into(),
        key: key.into(),
        transform: transform as i32,
        weight,
        cap,
        ..Default::default()
    }
}

/// Creates the default score model (unique by name: the run's time in it).
pub async fn define(transport: &Transport) -> anyhow::Result<()> {
    let model = ScoreModel {
        name: format!("bench service tiers {}", uuid::Uuid::now_v7()),
        description: "crm bench: revenue, recency, complaints, reachability".into(),
        contributions: vec![
            contribution("revenue_365d", "EUR", Transform::Log, 4.0, 45.0),
            Contribution {
                half_life_days: 30.0,
                ..contribution("days_since_last_purchase", "", Transform::RecencyDecay, 30.0, 30.0)
            },
            contribution("purchases_90d", "", Transform::Linear, 2.0, 15.0),
            contribution("complaints_90d", "", Transform::Linear, -10.0, 20.0),
            contribution("has_phone", "", Transform::Presence, 5.0, 5.0),
            contribution("has_email", "", Transform::Presence, 5.0, 5.0),
        ],
        tiers: vec![
            Tier { name: "standard".into(), min_score: 0.0, queue_priority: 1 },
            Tier { name: "gold".into(), min_score: 40.0, queue_priority: 5 },
            Tier { name: "platinum".into(), min_score: 75.0, queue_priority: 9 },
        ],
        is_default: true,
        ..Default::default()
    };
    SegmentationServiceClient::new(transport.clone())
        .create_score_model(CreateScoreModelRequest { score_model: Some(model) })
        .await?;
    println!("scores: a default score model with 6 contributions and 3 tiers defined");
    Ok(())
}
