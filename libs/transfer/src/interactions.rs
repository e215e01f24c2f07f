//! A row of a file to an interaction of the API: the fields a billing
//! export, an order history or a support system's dump can fill, the
//! headers they use, and how the contact is named (the suite's id, or an
//! email, phone or id in the old system, which `crm import` looks up).
//!
//! Cells: `kind` and `channel` by name (`purchase`, `Order`, `support
//! ticket`; `web`, `phone`…); `occurred_at` in RFC 3339, `YYYY-MM-DD HH:MM[:SS]`
//! (UTC) or a date; `amount` and `unit_price` in the currency's major unit
//! (`12.50` EUR is 1250 cents; more decimals than the currency has is an
//! error, never a rounding); one product line from `sku`, `quantity` and
//! `unit_price`, or several as a JSON array (`[{"sku": "A", "quantity": 2,
//! "unit_price": "1.50"}]`); `invoice_number` is the invoice's own number on
//! an invoice and the invoice settled on a payment.

use std::fmt;

use crm_proto::{
    common::v1::{ExternalId, Money},
    interactions::v1::{Channel, Direction, Interaction, Invoice, Kind, Payment, ProductLine},
};
use serde_json::Value;

use crate::{
    columns::{Alias, Field as FieldTrait, Mapping},
    contacts::{Cell, CellError, DateOrder, content_id, date, list},
    input::Record,
};

/// What one column of an interactions file becomes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// The suite's id of the contact.
    ContactId,
    /// The contact's email address, looked up.
    ContactEmail,
    /// The contact's phone number, looked up.
    ContactPhone,
    /// The contact's id in the old system (`--contact-source`), looked up.
    ContactExternalId,
    Kind,
    CustomKind,
    Channel,
    Direction,
    OccurredAt,
    Subject,
    Notes,
    Amount,
    Currency,
    Sku,
    Quantity,
    UnitPrice,
    ProductLines,
    InvoiceNumber,
    DueDate,
    DurationMs,
    Outcome,
    Sentiment,
    Emotion,
    PainPoints,
    Agent,
    /// The interaction's id in the source system.
    ExternalId,
    /// The source system of the row (`--source` when absent).
    Source,
    Attributes,
    Attribute(String),
}

const NAMES: [(&str, Field); 28] = [
    ("contact_id", Field::ContactId),
    ("contact.email", Field::ContactEmail),
    ("contact.phone", Field::ContactPhone),
    ("contact.external_id", Field::ContactExternalId),
    ("kind", Field::Kind),
    ("custom_kind", Field::CustomKind),
    ("channel", Field::Channel),
    ("direction", Field::Direction),
    ("occurred_at", Field::OccurredAt),
    ("subject", Field::Subject),
    ("notes", Field::Notes),
    ("amount", Field::Amount),
    ("currency", Field::Currency),
    ("sku", Field::Sku),
    ("quantity", Field::Quantity),
    ("unit_price", Field::UnitPrice),
    ("product_lines", Field::ProductLines),
    ("invoice_number", Field::InvoiceNumber),
    ("due_date", Field::DueDate),
    ("duration_ms", Field::DurationMs),
    ("outcome", Field::Outcome),
    ("sentiment", Field::Sentiment),
    ("emotion", Field::Emotion),
    ("pain_points", Field::PainPoints),
    ("agent", Field::Agent),
    ("external_id", Field::ExternalId),
    ("source", Field::Source),
    ("attributes", Field::Attributes),
];

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Attribute(key) => write!(f, "attributes.{key}"),
            field => {
                let name = NAMES.iter().find(|(_, named)| named == field).map_or("", |(name, _)| name);
                write!(f, "{name}")
            }
        }
    }
}

impl FieldTrait for Field {
    fn parse(name: &str) -> Option<Field> {
        let name = name.trim();
        if let Some(key) = name.strip_prefix("attributes.") {
            return (!key.is_empty()).then(|| Field::Attribute(key.to_string()));
        }
        NAMES.iter().find(|(named, _)| *named == name).map(|(_, field)| field.clone())
    }

    fn alias(normalised: &str) -> Option<Alias<Field>> {
        use Field::*;
        // A field's own name in any case or punctuation ("Occurred At", "SKU").
        if let Some((_, field)) = NAMES.iter().find(|(name, _)| crate::columns::normalise(name) == normalised) {
            return Some(Alias::Fixed(field.clone()));
        }
        Some(Alias::Fixed(match normalised {
            "customerid" | "clientid" | "accountid" | "customernumber" | "accountnumber" | "contactexternalid" => {
                ContactExternalId
            }
            "email" | "emailaddress" | "customeremail" | "contactemail" => ContactEmail,
            "phone" | "phonenumber" | "customerphone" | "contactphone" | "mobile" => ContactPhone,
            "type" | "eventtype" | "activitytype" | "interactiontype" | "transactiontype" => Kind,
            "medium" => Channel,
            "date" | "datetime" | "timestamp" | "time" | "when" | "createdat" | "orderdate" | "invoicedate"
            | "transactiondate" | "occurred" => OccurredAt,
            "title" | "summary" => Subject,
            "description" | "comment" | "comments" | "body" | "note" => Notes,
            "total" | "value" | "price" | "revenue" | "grandtotal" | "amountpaid" => Amount,
            "currencycode" | "ccy" => Currency,
            "product" | "productcode" | "item" | "itemcode" | "productid" => Sku,
            "qty" | "units" => Quantity,
            "unitcost" | "itemprice" => UnitPrice,
            "invoice" | "invoiceno" | "invoiceid" | "invoicenumber" => InvoiceNumber,
            "due" | "duedate" | "paymentdue" => DueDate,
            "duration" | "durationms" => DurationMs,
            "result" | "resolution" => Outcome,
            "agentname" | "handledby" | "user" | "rep" | "assignee" => Agent,
            "id" | "transactionid" | "orderid" | "eventid" | "ticketid" | "reference" | "ref" => ExternalId,
            "painpoints" => PainPoints,
            _ => return None,
        }))
    }

    fn is_row_id(&self) -> bool {
        *self == Field::ExternalId
    }

    const WHAT: &'static str = "an interaction field; see `crm import interactions --help` for the names";
}

/// How a row names its contact.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ContactKey {
    Id(String),
    Email(String),
    Phone(String),
    External(ExternalId),
}

/// What every row of an interactions import shares.
#[derive(Clone, Debug)]
pub struct InteractionOptions {
    /// The source system: the interactions' ids are under this name.
    pub source: String,
    /// The system the contacts' ids in `contact.external_id` are from.
    pub contact_source: String,
    /// The currency of an amount whose row names none.
    pub default_currency: Option<String>,
    /// The channel of a row that names none (e.g. `billing` for a billing export).
    pub default_channel: Option<Channel>,
    pub date_order: Option<DateOrder>,
}

/// The interaction a row describes and how it names its contact, or every
/// cell that could not be read.
pub fn to_interaction(
    mapping: &Mapping<Field>,
    record: &Record,
    options: &InteractionOptions,
) -> Result<(Interaction, ContactKey), Vec<CellError>> {
    let mut interaction = Interaction { source: options.source.clone(), ..Default::default() };
    let (mut key, mut currency, mut amount, mut invoice_number) = (None, options.default_currency.clone(), None, None);
    let (mut sku, mut quantity, mut unit_price, mut lines) = (None, None, None, None);
    let mut errors = Vec::new();
    for (index, text) in &record.values {
        let Some(column) = mapping.columns.get(*index) else { continue };
        let Some(field) = &column.target else { continue };
        let mut fail =
            |reason: String| errors.push(CellError { column: column.header.clone(), field: field.to_string(), reason });
        match field {
            Field::ContactId => key = Some(ContactKey::Id(text.clone())),
            Field::ContactEmail => key = key.or(Some(ContactKey::Email(text.clone()))),
            Field::ContactPhone => key = key.or(Some(ContactKey::Phone(text.clone()))),
            Field::ContactExternalId => {
                key =
                    Some(ContactKey::External(ExternalId { source: options.contact_source.clone(), id: text.clone() }))
            }
            Field::Kind => match kind(text) {
                Some((kind, custom)) => {
                    interaction.kind = kind as i32;
                    if let Some(custom) = custom {
                        interaction.custom_kind = custom;
                    }
                }
                None => fail(format!("{text:?} is not a kind: purchase, payment, invoice, refund, complaint, call…")),
            },
            Field::CustomKind => interaction.custom_kind = text.clone(),
            Field::Channel => match channel(text) {
                Some(channel) => interaction.channel = channel as i32,
                None => fail(format!("{text:?} is not a channel: web, email, phone, sms, chat, store, billing…")),
            },
            Field::Direction => match normal(text).as_str() {
                "inbound" | "in" | "incoming" => interaction.direction = Direction::Inbound as i32,
                "outbound" | "out" | "outgoing" => interaction.direction = Direction::Outbound as i32,
                _ => fail(format!("{text:?} is not a direction: inbound or outbound")),
            },
            Field::OccurredAt => match time(text, options.date_order) {
                Ok(at) => interaction.occurred_at = Some(at),
                Err(reason) => fail(reason),
            },
            Field::Subject => interaction.subject = text.clone(),
            Field::Notes => interaction.notes = text.clone(),
            Field::Amount => amount = Some(text.clone()),
            Field::Currency => currency = Some(text.trim().to_uppercase()),
            Field::Sku => sku = Some(text.clone()),
            Field::Quantity => match text.trim().parse::<i64>() {
                Ok(count) => quantity = Some(count),
                Err(_) => fail(format!("{text:?} is not a whole number")),
            },
            Field::UnitPrice => unit_price = Some(text.clone()),
            Field::ProductLines => lines = Some(text.clone()),
            Field::InvoiceNumber => invoice_number = Some(text.clone()),
            Field::DueDate => match date(text, options.date_order) {
                Ok(due) => interaction.invoice.get_or_insert_with(Invoice::default).due_date = Some(due),
                Err(reason) => fail(reason),
            },
            Field::DurationMs => match text.trim().parse::<i64>() {
                Ok(ms) => interaction.duration_ms = ms,
                Err(_) => fail(format!("{text:?} is not a whole number of milliseconds")),
            },
            Field::Outcome => interaction.outcome = text.clone(),
            Field::Sentiment => match text.trim().parse::<f64>() {
                Ok(sentiment) => interaction.sentiment = Some(sentiment),
                Err(_) => fail(format!("{text:?} is not a number from -1 to 1")),
            },
            Field::Emotion => interaction.emotion = text.clone(),
            Field::PainPoints => match list(text) {
                Ok(items) => interaction.pain_points = items,
                Err(reason) => fail(reason),
            },
            Field::Agent => interaction.agent = text.clone(),
            Field::ExternalId => interaction.external_id = text.clone(),
            Field::Source => interaction.source = text.trim().to_lowercase(),
            Field::Attributes => match serde_json::from_str::<serde_json::Map<String, Value>>(text) {
                Ok(object) => interaction.attributes.extend(object.into_iter().map(|(key, value)| {
                    let value = match value {
                        Value::String(text) => text,
                        other => other.to_string(),
                    };
                    (key, value)
                })),
                Err(error) => fail(format!("not a JSON object of attributes: {error}")),
            },
            Field::Attribute(key) => {
                interaction.attributes.insert(key.clone(), text.clone());
            }
        }
    }
    let mut fail = |field: &str, reason: String| {
        let column = mapping
            .columns
            .iter()
            .find(|column| column.target.as_ref().is_some_and(|target| target.to_string() == field))
            .map_or_else(String::new, |column| column.header.clone());
        errors.push(CellError { column, field: field.to_string(), reason })
    };
    if interaction.channel == Channel::Unspecified as i32 {
        match options.default_channel {
            Some(channel) => interaction.channel = channel as i32,
            None => fail("channel", "the row names no channel: map a channel column or give --channel".into()),
        }
    }
    let needs_currency = amount.is_some() || unit_price.is_some() || lines.is_some();
    let currency = match currency {
        Some(code) => code,
        None if needs_currency => {
            fail("currency", "an amount needs a currency: map a currency column or give --currency".into());
            String::new()
        }
        None => String::new(),
    };
    if let Some(text) = amount {
        match money(&text, &currency) {
            Ok(money) => interaction.amount = Some(money),
            Err(reason) => fail("amount", reason),
        }
    }
    if let Some(sku) = sku {
        let unit_price = match unit_price.map(|price| money(&price, &currency)).transpose() {
            Ok(price) => price,
            Err(reason) => {
                fail("unit_price", reason);
                None
            }
        };
        interaction.product_lines.push(ProductLine { sku, quantity: quantity.unwrap_or(1), unit_price });
    }
    if let Some(text) = lines {
        match product_lines(&text, &currency) {
            Ok(lines) => interaction.product_lines.extend(lines),
            Err(reason) => fail("product_lines", reason),
        }
    }
    if let Some(number) = invoice_number {
        if interaction.kind == Kind::Payment as i32 {
            interaction.payment = Some(Payment { invoice_number: number });
        } else {
            interaction.invoice.get_or_insert_with(Invoice::default).number = number;
        }
    }
    if interaction.external_id.is_empty() {
        interaction.external_id = content_id(mapping, record);
    }
    let Some(key) = key else {
        fail(
            "contact_id",
            "the row names no contact: map contact_id, contact.email, contact.phone or contact.external_id".into(),
        );
        return Err(errors);
    };
    if errors.is_empty() { Ok((interaction, key)) } else { Err(errors) }
}

fn normal(text: &str) -> String {
    text.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_lowercase()
}

/// A kind by the names systems give it; an unknown name is a custom kind
/// only when spelled `custom:NAME`.
fn kind(text: &str) -> Option<(Kind, Option<String>)> {
    if let Some(custom) = text.trim().strip_prefix("custom:") {
        return Some((Kind::Custom, Some(custom.trim().to_string())));
    }
    let normal = normal(text);
    let normal = normal.trim_start_matches("kind");
    Some((
        match normal {
            "inquiry" | "enquiry" | "question" => Kind::Inquiry,
            "purchase" | "order" | "sale" | "orderplaced" => Kind::Purchase,
            "payment" | "paid" => Kind::Payment,
            "invoice" | "bill" => Kind::Invoice,
            "refund" | "return" | "creditnote" => Kind::Refund,
            "complaint" => Kind::Complaint,
            "supportrequest" | "support" | "ticket" | "supportticket" | "case" => Kind::SupportRequest,
            "referral" => Kind::Referral,
            "campaignresponse" => Kind::CampaignResponse,
            "competitionentry" => Kind::CompetitionEntry,
            "couponredemption" | "coupon" => Kind::CouponRedemption,
            "visit" => Kind::Visit,
            "meeting" => Kind::Meeting,
            "call" | "phonecall" => Kind::Call,
            "note" => Kind::Note,
            _ => return None,
        },
        None,
    ))
}

/// A channel by the names systems give it.
pub fn channel(text: &str) -> Option<Channel> {
    let normal = normal(text);
    Some(match normal.trim_start_matches("channel") {
        "web" | "website" | "online" | "webshop" | "app" => Channel::Web,
        "email" | "mail" => Channel::Email,
        "phone" | "telephone" | "call" => Channel::Phone,
        "sms" | "text" => Channel::Sms,
        "chat" | "livechat" => Channel::Chat,
        "post" | "letter" => Channel::Post,
        "store" | "shop" | "instore" | "pos" => Channel::Store,
        "event" => Channel::Event,
        "social" | "socialmedia" => Channel::Social,
        "billing" => Channel::Billing,
        "support" | "helpdesk" => Channel::Support,
        "other" => Channel::Other,
        _ => return None,
    })
}

/// When something happened: RFC 3339, a date and time taken as UTC, or a date.
fn time(text: &str, order: Option<DateOrder>) -> Result<prost_types::Timestamp, String> {
    let text = text.trim();
    let at = chrono::DateTime::parse_from_rfc3339(text).map(|at| at.to_utc()).or_else(|_| {
        ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"]
            .iter()
            .find_map(|format| chrono::NaiveDateTime::parse_from_str(text, format).ok())
            .map(|at| at.and_utc())
            .ok_or(())
    });
    let at = match at {
        Ok(at) => at,
        Err(()) => {
            let day = date(text, order).map_err(|_| {
                format!("{text:?} is not a time: write 2026-03-01T14:30:00Z, 2026-03-01 14:30 (UTC) or 2026-03-01")
            })?;
            chrono::NaiveDate::from_ymd_opt(day.year, day.month as u32, day.day as u32)
                .and_then(|day| day.and_hms_opt(0, 0, 0))
                .map(|at| at.and_utc())
                .ok_or_else(|| format!("{text:?} is not a day of the calendar"))?
        }
    };
    Ok(prost_types::Timestamp { seconds: at.timestamp(), nanos: at.timestamp_subsec_nanos() as i32 })
}

/// Digits after the point in `currency`'s minor unit (ISO 4217).
fn exponent(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX" | "UYI" | "VND"
        | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// An amount in major units (`12.50`) as money in minor units; more
/// decimals than the currency has, or a decimal comma, is an error.
pub fn money(text: &str, currency: &str) -> Result<Money, String> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let places = exponent(currency);
    if whole.is_empty()
        || !whole.bytes().all(|byte| byte.is_ascii_digit())
        || !fraction.bytes().all(|byte| byte.is_ascii_digit())
    {
        return Err(format!("{text:?} is not an amount: write 1234.50 (a point, no thousands separators)"));
    }
    if fraction.len() > places as usize {
        return Err(format!("{text:?} has more decimals than {currency} has ({places})"));
    }
    let minor = format!("{whole}{fraction:0<width$}", width = places as usize)
        .parse::<i64>()
        .map_err(|_| format!("{text:?} is too large"))?;
    Ok(Money { currency_code: currency.to_string(), minor_units: if negative { -minor } else { minor } })
}

/// Product lines as a JSON array of `{"sku", "quantity", "unit_price"}`.
fn product_lines(text: &str, currency: &str) -> Result<Vec<ProductLine>, String> {
    let items: Vec<Value> =
        serde_json::from_str(text).map_err(|error| format!("not a JSON array of product lines: {error}"))?;
    items
        .iter()
        .map(|item| {
            let sku = item["sku"].as_str().ok_or_else(|| format!("{item} has no sku"))?.to_string();
            let quantity = item["quantity"].as_i64().unwrap_or(1);
            let unit_price = match &item["unit_price"] {
                Value::Null => None,
                Value::String(price) => Some(money(price, currency)?),
                other => Some(money(&other.to_string(), currency)?),
            };
            Ok(ProductLine { sku, quantity, unit_price })
        })
        .collect()
}

/// The columns `crm export interactions` writes, in order: each an
/// interaction field [`to_interaction`] reads back, but `crm_id` (the
/// interaction's id in the install it came from) and `recorded_at`.
pub const EXPORT_COLUMNS: [&str; 24] = [
    "crm_id",
    "source",
    "external_id",
    "contact_id",
    "kind",
    "custom_kind",
    "channel",
    "direction",
    "occurred_at",
    "subject",
    "notes",
    "amount",
    "currency",
    "product_lines",
    "invoice_number",
    "due_date",
    "duration_ms",
    "outcome",
    "sentiment",
    "emotion",
    "pain_points",
    "agent",
    "attributes",
    "recorded_at",
];

/// Minor units as the major-unit text [`money`] reads (`1250` EUR is `12.50`).
pub fn major(money: &Money) -> String {
    let places = exponent(&money.currency_code) as usize;
    let sign = if money.minor_units < 0 { "-" } else { "" };
    let digits = format!("{:0>width$}", money.minor_units.unsigned_abs(), width = places + 1);
    let (whole, fraction) = digits.split_at(digits.len() - places);
    if places == 0 { format!("{sign}{whole}") } else { format!("{sign}{whole}.{fraction}") }
}

fn enum_name(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_lowercase()
}

/// An interaction as the cells of [`EXPORT_COLUMNS`], empty cells as `None`.
pub fn to_row(interaction: &Interaction) -> Vec<Option<Cell>> {
    let text = |value: &str| (!value.is_empty()).then(|| Cell::Text(value.to_string()));
    let time = |at: &Option<prost_types::Timestamp>| {
        at.as_ref()
            .and_then(|at| chrono::DateTime::from_timestamp(at.seconds, at.nanos.max(0) as u32))
            .map(|at| Cell::Text(at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)))
    };
    let currency = interaction.amount.as_ref().map(|money| money.currency_code.clone()).or_else(|| {
        interaction.product_lines.iter().find_map(|line| Some(line.unit_price.as_ref()?.currency_code.clone()))
    });
    let lines: Vec<Value> = interaction
        .product_lines
        .iter()
        .map(|line| {
            let mut item = serde_json::json!({"sku": line.sku, "quantity": line.quantity});
            if let Some(price) = &line.unit_price {
                item["unit_price"] = Value::String(major(price));
            }
            item
        })
        .collect();
    let invoice_number = match (&interaction.invoice, &interaction.payment) {
        (Some(invoice), _) if !invoice.number.is_empty() => Some(invoice.number.clone()),
        (_, Some(payment)) if !payment.invoice_number.is_empty() => Some(payment.invoice_number.clone()),
        _ => None,
    };
    let due = interaction.invoice.as_ref().and_then(|invoice| invoice.due_date.as_ref());
    let mut attributes: Vec<(&String, &String)> = interaction.attributes.iter().collect();
    attributes.sort();
    let kind = if interaction.kind() == Kind::Custom {
        format!("custom:{}", interaction.custom_kind)
    } else {
        enum_name(interaction.kind().as_str_name(), "KIND_")
    };
    vec![
        text(&interaction.id),
        text(&interaction.source),
        text(&interaction.external_id),
        text(&interaction.contact_id),
        Some(Cell::Text(kind)),
        None,
        (interaction.channel() != Channel::Unspecified)
            .then(|| Cell::Text(enum_name(interaction.channel().as_str_name(), "CHANNEL_"))),
        (interaction.direction() != Direction::Unspecified)
            .then(|| Cell::Text(enum_name(interaction.direction().as_str_name(), "DIRECTION_"))),
        time(&interaction.occurred_at),
        text(&interaction.subject),
        text(&interaction.notes),
        interaction.amount.as_ref().map(|money| Cell::Text(major(money))),
        currency.map(Cell::Text),
        (!lines.is_empty()).then(|| Cell::Json(Value::from(lines))),
        invoice_number.map(Cell::Text),
        due.map(|date| Cell::Text(format!("{:04}-{:02}-{:02}", date.year, date.month, date.day))),
        (interaction.duration_ms != 0).then(|| Cell::Text(interaction.duration_ms.to_string())),
        text(&interaction.outcome),
        interaction.sentiment.map(|sentiment| Cell::Text(sentiment.to_string())),
        text(&interaction.emotion),
        (!interaction.pain_points.is_empty()).then(|| Cell::List(interaction.pain_points.clone())),
        text(&interaction.agent),
        (!attributes.is_empty()).then(|| {
            Cell::Json(Value::Object(
                attributes.into_iter().map(|(key, value)| (key.clone(), Value::String(value.clone()))).collect(),
            ))
        }),
        time(&interaction.recorded_at),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::Overrides;
    use crate::input::row as record;

    fn mapping(headers: &[&str]) -> Mapping<Field> {
        let headers: Vec<String> = headers.iter().map(|header| header.to_string()).collect();
        Mapping::new(&headers, &Overrides::default())
    }

    fn options() -> InteractionOptions {
        InteractionOptions {
            source: "billing".into(),
            contact_source: "old-crm".into(),
            default_currency: None,
            default_channel: None,
            date_order: None,
        }
    }

    /// An order history's header.
    const ORDER_HEADERS: [&str; 10] = [
        "Order ID",
        "Customer ID",
        "Type",
        "Order Date",
        "Total",
        "Currency",
        "Product",
        "Qty",
        "Unit Price",
        "Channel",
    ];

    #[test]
    fn an_order_history_row_becomes_a_purchase() {
        let mapping = mapping(&ORDER_HEADERS);
        let (interaction, key) = to_interaction(
            &mapping,
            &record(&["O-9", "C-1", "Order", "2026-03-01 14:30", "25.00", "eur", "SKU-1", "2", "12.50", "web shop"]),
            &options(),
        )
        .unwrap();
        assert_eq!(key, ContactKey::External(ExternalId { source: "old-crm".into(), id: "C-1".into() }));
        assert_eq!((interaction.source.as_str(), interaction.external_id.as_str()), ("billing", "O-9"));
        assert_eq!(interaction.kind(), Kind::Purchase);
        assert_eq!(interaction.channel(), Channel::Web);
        assert_eq!(interaction.occurred_at.unwrap().seconds, 1_772_375_400);
        assert_eq!(interaction.amount, Some(Money { currency_code: "EUR".into(), minor_units: 2500 }));
        assert_eq!(interaction.product_lines[0].quantity, 2);
        assert_eq!(interaction.product_lines[0].unit_price.as_ref().unwrap().minor_units, 1250);
    }

    #[test]
    fn an_invoice_number_is_the_invoice_or_the_one_a_payment_settles() {
        let mapping = mapping(&["email", "type", "date", "invoice no", "due date", "amount", "currency"]);
        let options = InteractionOptions { default_channel: Some(Channel::Billing), ..options() };
        let (invoice, key) = to_interaction(
            &mapping,
            &record(&["ann@example.com", "invoice", "2026-03-01", "INV-7", "2026-03-31", "100", "JPY"]),
            &options,
        )
        .unwrap();
        assert_eq!(key, ContactKey::Email("ann@example.com".into()));
        assert_eq!(invoice.invoice.as_ref().unwrap().number, "INV-7");
        assert_eq!(invoice.amount.as_ref().unwrap().minor_units, 100, "yen have no minor unit");
        let (payment, _) = to_interaction(
            &mapping,
            &record(&["ann@example.com", "payment", "2026-03-05", "INV-7", "", "100", "JPY"]),
            &options,
        )
        .unwrap();
        assert_eq!(payment.payment.unwrap().invoice_number, "INV-7");
        assert!(payment.invoice.is_none());
    }

    #[test]
    fn unreadable_cells_and_a_missing_contact_are_named() {
        let mapping = mapping(&["type", "date", "amount", "currency"]);
        let errors = to_interaction(&mapping, &record(&["gift", "yesterday", "12,50", "EUR"]), &options()).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|error| error.field.as_str()).collect();
        assert_eq!(fields, ["kind", "occurred_at", "channel", "amount", "contact_id"]);
        assert!(errors[3].reason.contains("a point, no thousands separators"), "{errors:?}");
    }

    #[test]
    fn an_exported_row_reads_back_as_the_same_interaction() {
        let mapping = mapping(&ORDER_HEADERS);
        let (mut original, _) = to_interaction(
            &mapping,
            &record(&["O-9", "C-1", "Order", "2026-03-01 14:30", "25.00", "EUR", "SKU-1", "2", "12.50", "web"]),
            &options(),
        )
        .unwrap();
        original.contact_id = "0190".into();
        original.sentiment = Some(-0.25);
        original.pain_points = vec!["late delivery".into()];
        original.attributes.insert("store".into(), "bath".into());
        let cells = to_row(&original);
        let columns: Vec<String> = EXPORT_COLUMNS.iter().map(|column| column.to_string()).collect();
        let mapping = Mapping::new(&columns, &Overrides::default());
        let values = cells.iter().enumerate().filter_map(|(index, cell)| Some((index, cell.as_ref()?.to_text())));
        let (back, key) = to_interaction(&mapping, &Record { line: 2, values: values.collect() }, &options()).unwrap();
        assert_eq!(key, ContactKey::Id("0190".into()));
        let mut expected = original.clone();
        expected.contact_id.clear();
        assert_eq!(Interaction { contact_id: String::new(), ..back }, expected);
    }

    #[test]
    fn amounts_are_exact_in_the_currencys_minor_unit() {
        assert_eq!(major(&money("12.5", "EUR").unwrap()), "12.50");
        assert_eq!(major(&money("-0.05", "EUR").unwrap()), "-0.05");
        assert_eq!(major(&money("7", "JPY").unwrap()), "7");
        assert_eq!(money("12.5", "EUR").unwrap().minor_units, 1250);
        assert_eq!(money("-3", "EUR").unwrap().minor_units, -300);
        assert_eq!(money("1.234", "KWD").unwrap().minor_units, 1234);
        assert!(money("1.234", "EUR").unwrap_err().contains("more decimals"));
        assert!(money("1,000.00", "EUR").is_err());
    }
}
