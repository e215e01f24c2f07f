//! Interaction messages to valid, normalised records; every wrong field is
//! reported at once with its path.

use chrono::{DateTime, Duration, NaiveDate, SubsecRound, Utc};
use crm_platform::{
    error::{Violations, quote},
    timestamp::from_proto,
};
use crm_proto::{common::v1 as common, interactions::v1 as pb};
use uuid::Uuid;

use crate::model::{InteractionData, InteractionRecord, Invoice, Money, ProductLine};

const MAX_SUBJECT: usize = 500;
const MAX_NOTES: usize = 10_000;
const MAX_SHORT: usize = 200;
const MAX_LABEL: usize = 64;
const MAX_LINES: usize = 100;
const MAX_PAIN_POINTS: usize = 20;
const MAX_ATTRIBUTES: usize = 50;

fn text(violations: &mut Violations, field: &str, value: &str, max: usize) -> String {
    let value = value.trim();
    if value.chars().count() > max {
        violations.add(field, format!("must be at most {max} characters (got {})", value.chars().count()));
    }
    value.to_string()
}

fn money(violations: &mut Violations, field: &str, value: &common::Money) -> Money {
    let code = value.currency_code.trim().to_uppercase();
    if code.len() != 3 || !code.chars().all(|c| c.is_ascii_uppercase()) {
        violations.add(format!("{field}.currency_code"), "must be a three-letter ISO 4217 code such as EUR");
    }
    Money { currency_code: code, minor_units: value.minor_units }
}

fn date(violations: &mut Violations, field: &str, date: &common::Date) -> Option<NaiveDate> {
    let parsed = crm_platform::timestamp::date_from_proto(date);
    if parsed.is_none() {
        violations.add(field, format!("{}-{:02}-{:02} is not a calendar date", date.year, date.month, date.day));
    }
    parsed
}

/// An interaction from its message; `field` is its path in the request.
/// `contact_id` overrides the message's (a resolved lookup).
pub fn interaction(
    violations: &mut Violations,
    field: &str,
    input: &pb::Interaction,
    now: DateTime<Utc>,
) -> InteractionRecord {
    let at = |name: &str| format!("{field}.{name}");
    // Unary requests were checked by the codec; a bulk item is checked here, as itself.
    if let Some(path) = crm_proto::storable::nul_in_message(input) {
        violations.add(at(&path), crm_proto::storable::NUL_REFUSED);
    }
    let contact_id = Uuid::try_parse(input.contact_id.trim()).unwrap_or_else(|_| {
        violations.add(at("contact_id"), "must be a contact id (a UUID)");
        Uuid::nil()
    });
    let channel = match pb::Channel::try_from(input.channel) {
        Ok(pb::Channel::Unspecified) | Err(_) => {
            violations.add(at("channel"), "must be a channel such as CHANNEL_WEB");
            String::new()
        }
        Ok(channel) => channel.as_str_name().to_string(),
    };
    let kind = match pb::Kind::try_from(input.kind) {
        Ok(pb::Kind::Unspecified) | Err(_) => {
            violations.add(at("kind"), "must be a kind such as KIND_PURCHASE");
            pb::Kind::Unspecified
        }
        Ok(kind) => kind,
    };
    let custom_kind = text(violations, &at("custom_kind"), &input.custom_kind, MAX_LABEL);
    if kind == pb::Kind::Custom && custom_kind.is_empty() {
        violations.add(at("custom_kind"), "is required for KIND_CUSTOM");
    }
    let direction = match pb::Direction::try_from(input.direction) {
        Ok(pb::Direction::Unspecified) => pb::Direction::Inbound.as_str_name().to_string(),
        Ok(direction) => direction.as_str_name().to_string(),
        Err(_) => {
            violations.add(at("direction"), format!("{} is not a direction", input.direction));
            String::new()
        }
    };
    let occurred_at = match input.occurred_at.as_ref().map(from_proto) {
        None => {
            violations.add(at("occurred_at"), "is required");
            now
        }
        Some(None) => {
            violations.add(at("occurred_at"), "is not a valid timestamp");
            now
        }
        Some(Some(time)) if time > now + Duration::days(1) => {
            violations.add(at("occurred_at"), "must not be more than a day in the future");
            time
        }
        Some(Some(time)) => time,
    }
    // PostgreSQL keeps microseconds: what is answered is what is stored.
    .trunc_subsecs(6);
    let now = now.trunc_subsecs(6);
    let source = text(violations, &at("source"), &input.source, MAX_LABEL).to_lowercase();
    let external_id = text(violations, &at("external_id"), &input.external_id, MAX_SHORT);
    if source.is_empty() != external_id.is_empty() {
        violations.add(at("external_id"), "source and external_id go together");
    }

    let amount = input.amount.as_ref().map(|amount| money(violations, &at("amount"), amount));
    let product_lines = violations
        .within(&at("product_lines"), &input.product_lines, MAX_LINES)
        .iter()
        .enumerate()
        .map(|(index, line)| {
            let path = format!("{}[{index}]", at("product_lines"));
            let sku = text(violations, &format!("{path}.sku"), &line.sku, MAX_LABEL);
            if sku.is_empty() {
                violations.add(format!("{path}.sku"), "must not be empty");
            }
            if line.quantity < 1 {
                violations.add(format!("{path}.quantity"), "must be at least 1");
            }
            let unit_price =
                line.unit_price.as_ref().map(|price| money(violations, &format!("{path}.unit_price"), price));
            if let (Some(price), Some(total)) = (&unit_price, &amount)
                && price.currency_code != total.currency_code
            {
                violations.add(format!("{path}.unit_price.currency_code"), "must be the currency of the amount");
            }
            ProductLine { sku, quantity: line.quantity, unit_price }
        })
        .collect();
    let money_moves = matches!(kind, pb::Kind::Purchase | pb::Kind::Payment | pb::Kind::Invoice | pb::Kind::Refund);
    if money_moves && amount.is_none() {
        violations.add(at("amount"), "is required for purchases, payments, invoices and refunds");
    }
    if let Some(amount) = &amount
        && amount.minor_units < 0
    {
        violations
            .add(at("amount.minor_units"), "must not be negative (a refund is KIND_REFUND with the refunded amount)");
    }
    let invoice = match (&input.invoice, kind) {
        (Some(invoice), pb::Kind::Invoice) => {
            let number = text(violations, &at("invoice.number"), &invoice.number, MAX_LABEL);
            if number.is_empty() {
                violations.add(at("invoice.number"), "must not be empty");
            }
            let due_date = match &invoice.due_date {
                Some(due) => date(violations, &at("invoice.due_date"), due),
                None => {
                    violations.add(at("invoice.due_date"), "is required");
                    None
                }
            };
            Some(Invoice { number, due_date, status: pb::InvoiceStatus::Open.as_str_name().to_string() })
        }
        (None, pb::Kind::Invoice) => {
            violations.add(at("invoice"), "is required for KIND_INVOICE");
            None
        }
        (Some(_), _) => {
            violations.add(at("invoice"), "is only for KIND_INVOICE");
            None
        }
        (None, _) => None,
    };
    let payment_invoice_number = match (&input.payment, kind) {
        (Some(payment), pb::Kind::Payment) => {
            text(violations, &at("payment.invoice_number"), &payment.invoice_number, MAX_LABEL)
        }
        (Some(_), _) => {
            violations.add(at("payment"), "is only for KIND_PAYMENT");
            String::new()
        }
        (None, _) => String::new(),
    };
    if input.duration_ms < 0 {
        violations.add(at("duration_ms"), "must not be negative");
    }
    if let Some(sentiment) = input.sentiment
        && !(-1.0..=1.0).contains(&sentiment)
    {
        violations.add(at("sentiment"), "must be between -1 and 1");
    }
    let mut pain_points: Vec<String> = Vec::new();
    for (index, point) in violations.within(&at("pain_points"), &input.pain_points, MAX_PAIN_POINTS).iter().enumerate()
    {
        let point = point.trim().to_lowercase();
        if point.is_empty() || point.chars().count() > MAX_LABEL {
            violations.add(format!("{}[{index}]", at("pain_points")), format!("must be 1 to {MAX_LABEL} characters"));
        } else if !pain_points.contains(&point) {
            pain_points.push(point);
        }
    }
    let attributes_fit = input.attributes.len() <= MAX_ATTRIBUTES;
    if !attributes_fit {
        violations.add(at("attributes"), format!("must have at most {MAX_ATTRIBUTES} entries"));
    }
    for (key, value) in input.attributes.iter().filter(|_| attributes_fit) {
        if key.trim().is_empty() || key.chars().count() > MAX_LABEL || value.chars().count() > 1000 {
            violations.add(
                format!("{}[{}]", at("attributes"), quote(key)),
                "keys must be 1 to 64 characters, values at most 1000",
            );
        }
    }
    InteractionRecord {
        id: Uuid::now_v7(),
        contact_id,
        occurred_at,
        recorded_at: now,
        channel,
        kind: kind.as_str_name().to_string(),
        direction,
        source,
        external_id,
        data: InteractionData {
            custom_kind,
            subject: text(violations, &at("subject"), &input.subject, MAX_SUBJECT),
            notes: text(violations, &at("notes"), &input.notes, MAX_NOTES),
            amount,
            product_lines,
            invoice,
            payment_invoice_number,
            duration_ms: input.duration_ms.max(0),
            outcome: text(violations, &at("outcome"), &input.outcome, MAX_SHORT),
            sentiment: input.sentiment,
            emotion: text(violations, &at("emotion"), &input.emotion, MAX_LABEL).to_lowercase(),
            pain_points,
            agent: text(violations, &at("agent"), &input.agent, MAX_SHORT),
            attributes: input.attributes.iter().map(|(k, v)| (k.trim().to_string(), v.clone())).collect(),
        },
    }
}
