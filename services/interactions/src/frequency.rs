//! "Not too much, or it is spam": whether a contact may get an outbound
//! message on a channel now. Consent and the weekly cap come from the
//! contacts feed (`contact_preferences`); the count from the outbound
//! interactions recorded in the last 7 days, on every channel.
//!
//! Rules, in order: an opt-out on the channel refuses; no recorded opt-in
//! refuses (marketing needs consent); a weekly cap reached refuses, saying
//! when the oldest counted message leaves the window; otherwise allowed.

use chrono::{DateTime, Duration, Utc};
use crm_platform::{Error, timestamp::to_proto};
use crm_proto::interactions::v1 as pb;
use sqlx::PgPool;
use uuid::Uuid;

/// The consent channel a contact channel answers to.
pub fn consent_channel(channel: pb::Channel) -> Option<&'static str> {
    match channel {
        pb::Channel::Email => Some("CONSENT_CHANNEL_EMAIL"),
        pb::Channel::Phone => Some("CONSENT_CHANNEL_PHONE"),
        pb::Channel::Sms => Some("CONSENT_CHANNEL_SMS"),
        pb::Channel::Post => Some("CONSENT_CHANNEL_POST"),
        _ => None,
    }
}

pub async fn check(pool: &PgPool, contact_id: Uuid, consent: &str) -> Result<pb::CheckContactFrequencyResponse, Error> {
    let preferences: Option<(serde_json::Value, i32)> =
        sqlx::query_as("SELECT consents, max_per_week FROM contact_preferences WHERE contact_id = $1")
            .bind(contact_id)
            .fetch_optional(pool)
            .await?;
    let (consents, max_per_week) = preferences.unwrap_or((serde_json::Value::Null, 0));
    let sent: Vec<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT occurred_at FROM interactions
         WHERE contact_id = $1 AND occurred_at > now() - interval '7 days' AND direction = 'DIRECTION_OUTBOUND'
         ORDER BY occurred_at",
    )
    .bind(contact_id)
    .fetch_all(pool)
    .await?;
    let mut answer = pb::CheckContactFrequencyResponse {
        allowed: false,
        reason: String::new(),
        outbound_last_7_days: sent.len() as i64,
        max_per_week,
        next_allowed_time: None,
    };
    match consents.get(consent).and_then(|status| status.as_str()) {
        Some("CONSENT_STATUS_OPTED_OUT") => answer.reason = "opted_out".into(),
        Some("CONSENT_STATUS_OPTED_IN") => {
            if max_per_week > 0 && sent.len() as i64 >= i64::from(max_per_week) {
                answer.reason = "weekly_cap_reached".into();
                let leaves = sent[sent.len() - max_per_week as usize] + Duration::days(7);
                answer.next_allowed_time = Some(to_proto(leaves));
            } else {
                answer.allowed = true;
                answer.reason = "allowed".into();
            }
        }
        _ => answer.reason = "no_consent".into(),
    }
    Ok(answer)
}
