//! An interaction as this role stores it: the columns that key, partition and
//! filter it, and the rest as JSON in `data`. Built only by `validate`.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use crm_platform::timestamp::to_proto;
use crm_proto::{common::v1 as common, interactions::v1 as pb};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq)]
pub struct InteractionRecord {
    pub id: Uuid,
    pub contact_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// Protobuf names: `CHANNEL_WEB`, `KIND_PURCHASE`, `DIRECTION_INBOUND`.
    pub channel: String,
    pub kind: String,
    pub direction: String,
    pub source: String,
    pub external_id: String,
    pub data: InteractionData,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Money {
    pub currency_code: String,
    pub minor_units: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProductLine {
    pub sku: String,
    pub quantity: i64,
    pub unit_price: Option<Money>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Invoice {
    pub number: String,
    pub due_date: Option<NaiveDate>,
    pub status: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InteractionData {
    pub custom_kind: String,
    pub subject: String,
    pub notes: String,
    pub amount: Option<Money>,
    pub product_lines: Vec<ProductLine>,
    pub invoice: Option<Invoice>,
    pub payment_invoice_number: String,
    pub duration_ms: i64,
    pub outcome: String,
    pub sentiment: Option<f64>,
    pub emotion: String,
    pub pain_points: Vec<String>,
    pub agent: String,
    pub attributes: BTreeMap<String, String>,
}

fn money(value: &Money) -> common::Money {
    common::Money { currency_code: value.currency_code.clone(), minor_units: value.minor_units }
}

impl InteractionRecord {
    pub fn to_proto(&self) -> pb::Interaction {
        let data = &self.data;
        pb::Interaction {
            id: self.id.to_string(),
            contact_id: self.contact_id.to_string(),
            channel: pb::Channel::from_str_name(&self.channel).unwrap_or_default() as i32,
            kind: pb::Kind::from_str_name(&self.kind).unwrap_or_default() as i32,
            custom_kind: data.custom_kind.clone(),
            direction: pb::Direction::from_str_name(&self.direction).unwrap_or_default() as i32,
            occurred_at: Some(to_proto(self.occurred_at)),
            recorded_at: Some(to_proto(self.recorded_at)),
            subject: data.subject.clone(),
            notes: data.notes.clone(),
            amount: data.amount.as_ref().map(money),
            product_lines: data
                .product_lines
                .iter()
                .map(|line| pb::ProductLine {
                    sku: line.sku.clone(),
                    quantity: line.quantity,
                    unit_price: line.unit_price.as_ref().map(money),
                })
                .collect(),
            invoice: data.invoice.as_ref().map(|invoice| pb::Invoice {
                number: invoice.number.clone(),
                due_date: invoice.due_date.map(crm_platform::timestamp::date_to_proto),
                status: pb::InvoiceStatus::from_str_name(&invoice.status).unwrap_or_default() as i32,
            }),
            payment: (!data.payment_invoice_number.is_empty())
                .then(|| pb::Payment { invoice_number: data.payment_invoice_number.clone() }),
            duration_ms: data.duration_ms,
            outcome: data.outcome.clone(),
            sentiment: data.sentiment,
            emotion: data.emotion.clone(),
            pain_points: data.pain_points.clone(),
            agent: data.agent.clone(),
            source: self.source.clone(),
            external_id: self.external_id.clone(),
            attributes: data.attributes.clone().into_iter().collect(),
        }
    }
}
