//! The calls a benchmark mix is made of: contacts (create with the
//! duplicate check, get, look up by email, phone or external id, search) and
//! `list_events`, the unary read every role has. The interactions calls
//! (timeline page, record an interaction) come with that role, and the
//! segmentation reads of a contact (its features, its segments with why)
//! draw from the same contacts. A contact's score and its service tier (by
//! id, or by phone as a call centre's queue asks) draw from the seeded
//! contacts, scored by the default model `scores_seed` defines. The
//! analytics reads (`bench/analytics.rs` computes what they read first):
//! a contact's next best offers, RFM and lifetime value draw from the
//! contacts with timelines; the whole-base answers (movement this quarter,
//! the 80/20 view, the RFM summary, the lifetime-value model, the rules)
//! take no contact.
//!
//! Contact reads draw from the contacts `--contacts` seeded ([`SAMPLE`]).

use std::{
    fmt,
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use crm_proto::{
    contacts::v1::{
        Contact, CreateContactRequest, Email, GetContactRequest, LookupContactRequest, SearchContactsRequest,
        contacts_service_client::ContactsServiceClient, lookup_contact_request::Key,
    },
    events::v1::ListEventsRequest,
    interactions::v1::{
        Channel, GetContactSummaryRequest, Interaction, Kind, ListInteractionsRequest, RecordInteractionRequest,
        interactions_service_client::InteractionsServiceClient,
    },
    segmentation::v1::{
        GetAssociationRulesRequest, GetContactFeaturesRequest, GetContactLifetimeValueRequest, GetContactRfmRequest,
        GetContactScoreRequest, GetContactSegmentsRequest, GetCustomerMovementRequest, GetLifetimeValueModelRequest,
        GetNextBestOffersRequest, GetRevenueConcentrationRequest, GetRfmSummaryRequest, GetServiceTierRequest,
        OfferPurpose, Period, get_service_tier_request, segmentation_service_client::SegmentationServiceClient,
    },
};
use tonic::Code;

use super::{seed::Sample, transport::Transport};

/// The seeded contacts reads draw from; set once, before the load starts.
pub static SAMPLE: OnceLock<Sample> = OnceLock::new();

/// The contacts whose timelines `--interactions` filled.
pub static TIMELINES: OnceLock<Vec<uuid::Uuid>> = OnceLock::new();

static DRAWS: AtomicU64 = AtomicU64::new(0);

fn draw() -> usize {
    // A multiplicative hash spreads consecutive draws over the sample.
    (DRAWS.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17) as usize
}

/// One of `values`, drawn; FAILED_PRECONDITION when the sample has none
/// (contacts without emails or phones), counted as the call's error.
fn draw_from(values: &[String]) -> Result<String, Code> {
    if values.is_empty() {
        return Err(Code::FailedPrecondition);
    }
    Ok(values[draw() % values.len()].clone())
}

/// A name no seeded person has: letters spelling `n`.
fn letters(mut n: u64) -> String {
    let mut name = String::from("Q");
    for _ in 0..6 {
        name.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
    }
    name
}

/// One kind of call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `ContactsService/ListEvents`: one page of the contacts feed.
    ListEvents,
    /// `GetContact` of a seeded contact.
    GetContact,
    /// `CreateContact` of a new person, duplicate check included.
    CreateContact,
    /// `LookupContact` by a seeded email.
    LookupEmail,
    /// `LookupContact` by a seeded phone number.
    LookupPhone,
    /// `LookupContact` by a seeded external id.
    LookupExternalId,
    /// `SearchContacts` for a seeded family and given name.
    SearchContacts,
    /// `ListInteractions`: the newest 20 of a seeded timeline.
    TimelinePage,
    /// `GetContactSummary` of a seeded timeline.
    ContactSummary,
    /// `RecordInteraction` of a new web visit on a seeded timeline.
    RecordInteraction,
    /// `SegmentationService/GetContactFeatures` of a contact with a seeded timeline.
    ContactFeatures,
    /// `SegmentationService/GetContactSegments` (each with why) of a contact with a seeded timeline.
    ContactSegments,
    /// `SegmentationService/GetContactScore` (each contribution) of a seeded contact, by the default model.
    ContactScore,
    /// `SegmentationService/GetServiceTier` of a seeded contact by its id.
    ServiceTierById,
    /// `SegmentationService/GetServiceTier` of a seeded contact by its phone number (looked up in contacts).
    ServiceTierByPhone,
    /// `GetNextBestOffers` for service of a contact with a seeded timeline.
    NextBestOffers,
    /// `GetNextBestOffers` for marketing by email (the frequency check in interactions) of a contact with a seeded timeline.
    MarketingOffers,
    /// `GetContactRfm` of a contact with a seeded timeline.
    ContactRfm,
    /// `GetContactLifetimeValue` of a contact with a seeded timeline.
    ContactLifetimeValue,
    /// `GetCustomerMovement` of this quarter, in EUR, against the previous one.
    CustomerMovement,
    /// `GetRevenueConcentration` over the last 365 days in EUR (the 80/20 view, with data gaps).
    RevenueConcentration,
    /// `GetRfmSummary`: the last computation's group counts.
    RfmSummary,
    /// `GetLifetimeValueModel`: the last fit.
    LifetimeValueModel,
    /// `GetAssociationRules`: the 20 strongest stored rules.
    AssociationRules,
}

impl Operation {
    pub const ALL: [Operation; 24] = [
        Operation::TimelinePage,
        Operation::ContactSummary,
        Operation::RecordInteraction,
        Operation::ContactFeatures,
        Operation::ContactSegments,
        Operation::ContactScore,
        Operation::ServiceTierById,
        Operation::ServiceTierByPhone,
        Operation::NextBestOffers,
        Operation::MarketingOffers,
        Operation::ContactRfm,
        Operation::ContactLifetimeValue,
        Operation::CustomerMovement,
        Operation::RevenueConcentration,
        Operation::RfmSummary,
        Operation::LifetimeValueModel,
        Operation::AssociationRules,
        Operation::ListEvents,
        Operation::GetContact,
        Operation::CreateContact,
        Operation::LookupEmail,
        Operation::LookupPhone,
        Operation::LookupExternalId,
        Operation::SearchContacts,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Operation::ListEvents => "list_events",
            Operation::GetContact => "get_contact",
            Operation::CreateContact => "create_contact",
            Operation::LookupEmail => "lookup_email",
            Operation::LookupPhone => "lookup_phone",
            Operation::LookupExternalId => "lookup_external_id",
            Operation::SearchContacts => "search_contacts",
            Operation::TimelinePage => "timeline_page",
            Operation::ContactSummary => "contact_summary",
            Operation::RecordInteraction => "record_interaction",
            Operation::ContactFeatures => "contact_features",
            Operation::ContactSegments => "contact_segments",
            Operation::ContactScore => "contact_score",
            Operation::ServiceTierById => "service_tier_id",
            Operation::ServiceTierByPhone => "service_tier_phone",
            Operation::NextBestOffers => "next_best_offers",
            Operation::MarketingOffers => "marketing_offers",
            Operation::ContactRfm => "contact_rfm",
            Operation::ContactLifetimeValue => "contact_lifetime_value",
            Operation::CustomerMovement => "customer_movement",
            Operation::RevenueConcentration => "revenue_concentration",
            Operation::RfmSummary => "rfm_summary",
            Operation::LifetimeValueModel => "lifetime_value_model",
            Operation::AssociationRules => "association_rules",
        }
    }

    /// Whether the operation calls another role than contacts (interactions, segmentation).
    pub fn calls_other_roles(self) -> bool {
        self.needs_timelines() || self.needs_score_model() || self.reads_analytics()
    }

    /// Whether the operation reads what the customer analytics computed (`bench/analytics.rs`).
    pub fn reads_analytics(self) -> bool {
        matches!(
            self,
            Operation::NextBestOffers
                | Operation::MarketingOffers
                | Operation::ContactRfm
                | Operation::ContactLifetimeValue
                | Operation::CustomerMovement
                | Operation::RevenueConcentration
                | Operation::RfmSummary
                | Operation::LifetimeValueModel
                | Operation::AssociationRules
        )
    }

    /// Whether the operation reads scores: a default score model must exist (`scores_seed`).
    pub fn needs_score_model(self) -> bool {
        matches!(self, Operation::ContactScore | Operation::ServiceTierById | Operation::ServiceTierByPhone)
    }

    /// Whether the operation reads seeded timelines (`--interactions`).
    pub fn needs_timelines(self) -> bool {
        matches!(
            self,
            Operation::TimelinePage
                | Operation::ContactSummary
                | Operation::RecordInteraction
                | Operation::ContactFeatures
                | Operation::ContactSegments
                | Operation::NextBestOffers
                | Operation::MarketingOffers
                | Operation::ContactRfm
                | Operation::ContactLifetimeValue
        )
    }

    /// Whether the operation reads seeded contacts (`--contacts`).
    pub fn needs_sample(self) -> bool {
        !matches!(self, Operation::ListEvents | Operation::CreateContact)
            && !self.needs_timelines()
            && !self.reads_analytics()
    }

    /// Makes one call; `Err` carries the gRPC code.
    pub async fn call(self, transport: &Transport) -> Result<(), Code> {
        let mut contacts = ContactsServiceClient::new(transport.clone());
        let timelines = || TIMELINES.get().filter(|contacts| !contacts.is_empty()).ok_or(Code::FailedPrecondition);
        let mut interactions = InteractionsServiceClient::new(transport.clone());
        let sample = || SAMPLE.get().filter(|sample| !sample.ids.is_empty()).ok_or(Code::FailedPrecondition);
        let mut segmentation = SegmentationServiceClient::new(transport.clone());
        let outcome = match self {
            Operation::ListEvents => {
                contacts.list_events(ListEventsRequest { page_size: 10, ..Default::default() }).await.map(|_| ())
            }
            Operation::GetContact => {
                let sample = sample()?;
                let id = sample.ids[draw() % sample.ids.len()].clone();
                contacts.get_contact(GetContactRequest { id }).await.map(|_| ())
            }
            Operation::CreateContact => {
                let n = DRAWS.fetch_add(1, Ordering::Relaxed);
                let contact = Contact {
                    given_name: letters(n),
                    family_name: letters(n.wrapping_mul(7919)),
                    emails: vec![Email {
                        address: format!("create{n}.{}@bench.example", std::process::id()),
                        ..Default::default()
                    }],
                    ..Default::default()
                };
                contacts
                    .create_contact(CreateContactRequest { contact: Some(contact), ..Default::default() })
                    .await
                    .map(|_| ())
            }
            Operation::LookupEmail | Operation::LookupPhone | Operation::LookupExternalId => {
                let sample = sample()?;
                let key = match self {
                    Operation::LookupEmail => Key::Email(draw_from(&sample.emails)?),
                    Operation::LookupPhone => Key::Phone(draw_from(&sample.phones)?),
                    _ => Key::ExternalId(sample.external_ids[draw() % sample.external_ids.len()].clone()),
                };
                contacts.lookup_contact(LookupContactRequest { key: Some(key) }).await.map(|_| ())
            }
            Operation::SearchContacts => {
                let sample = sample()?;
                let query = sample.names[draw() % sample.names.len()].clone();
                contacts.search_contacts(SearchContactsRequest { query, page_size: 10 }).await.map(|_| ())
            }
            Operation::TimelinePage => {
                let contacts = timelines()?;
                let contact_id = contacts[draw() % contacts.len()].to_string();
                let request = ListInteractionsRequest { contact_id, page_size: 20, ..Default::default() };
                interactions.list_interactions(request).await.map(|_| ())
            }
            Operation::ContactSummary => {
                let contacts = timelines()?;
                let contact_id = contacts[draw() % contacts.len()].to_string();
                interactions.get_contact_summary(GetContactSummaryRequest { contact_id }).await.map(|_| ())
            }
            Operation::RecordInteraction => {
                let contacts = timelines()?;
                let n = DRAWS.fetch_add(1, Ordering::Relaxed);
                let interaction = Interaction {
                    contact_id: contacts[draw() % contacts.len()].to_string(),
                    channel: Channel::Web as i32,
                    kind: Kind::Visit as i32,
                    occurred_at: Some(crm_platform::timestamp::to_proto(chrono::Utc::now())),
                    source: "bench-live".into(),
                    external_id: format!("{}-{n}", std::process::id()),
                    ..Default::default()
                };
                let request = RecordInteractionRequest { interaction: Some(interaction), contact_lookup: None };
                interactions.record_interaction(request).await.map(|_| ())
            }
            Operation::ContactFeatures | Operation::ContactSegments => {
                let contacts = timelines()?;
                let contact_id = contacts[draw() % contacts.len()].to_string();
                if self == Operation::ContactFeatures {
                    segmentation.get_contact_features(GetContactFeaturesRequest { contact_id }).await.map(|_| ())
                } else {
                    segmentation.get_contact_segments(GetContactSegmentsRequest { contact_id }).await.map(|_| ())
                }
            }
            Operation::ContactScore => {
                let sample = sample()?;
                let contact_id = sample.ids[draw() % sample.ids.len()].clone();
                let request = GetContactScoreRequest { contact_id, model_id: String::new() };
                segmentation.get_contact_score(request).await.map(|_| ())
            }
            Operation::ServiceTierById | Operation::ServiceTierByPhone => {
                let sample = sample()?;
                let contact = if self == Operation::ServiceTierById {
                    get_service_tier_request::Contact::ContactId(sample.ids[draw() % sample.ids.len()].clone())
                } else {
                    get_service_tier_request::Contact::Phone(draw_from(&sample.phones)?)
                };
                let request = GetServiceTierRequest { contact: Some(contact), model_id: String::new() };
                segmentation.get_service_tier(request).await.map(|_| ())
            }
            Operation::NextBestOffers | Operation::MarketingOffers => {
                let contacts = timelines()?;
                let (purpose, channel) = match self {
                    Operation::NextBestOffers => (OfferPurpose::Service, Channel::Unspecified),
                    _ => (OfferPurpose::Marketing, Channel::Email),
                };
                let request = GetNextBestOffersRequest {
                    contact_id: contacts[draw() % contacts.len()].to_string(),
                    purpose: purpose as i32,
                    channel: channel as i32,
                    limit: 3,
                };
                segmentation.get_next_best_offers(request).await.map(|_| ())
            }
            Operation::ContactRfm => {
                let contacts = timelines()?;
                let contact_id = contacts[draw() % contacts.len()].to_string();
                segmentation.get_contact_rfm(GetContactRfmRequest { contact_id }).await.map(|_| ())
            }
            Operation::ContactLifetimeValue => {
                let contacts = timelines()?;
                let contact_id = contacts[draw() % contacts.len()].to_string();
                let request = GetContactLifetimeValueRequest { contact_id };
                segmentation.get_contact_lifetime_value(request).await.map(|_| ())
            }
            Operation::CustomerMovement => {
                let request = GetCustomerMovementRequest {
                    period: Period::Quarter as i32,
                    currency_code: "EUR".into(),
                    ..Default::default()
                };
                segmentation.get_customer_movement(request).await.map(|_| ())
            }
            Operation::RevenueConcentration => {
                let request = GetRevenueConcentrationRequest { currency_code: "EUR".into(), ..Default::default() };
                segmentation.get_revenue_concentration(request).await.map(|_| ())
            }
            Operation::RfmSummary => segmentation.get_rfm_summary(GetRfmSummaryRequest {}).await.map(|_| ()),
            Operation::LifetimeValueModel => {
                segmentation.get_lifetime_value_model(GetLifetimeValueModelRequest {}).await.map(|_| ())
            }
            Operation::AssociationRules => {
                let request = GetAssociationRulesRequest { page_size: 20 };
                segmentation.get_association_rules(request).await.map(|_| ())
            }
        };
        outcome.map_err(|status| status.code())
    }
}

/// Operations with weights: `list_events=3,get_contact=1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix(pub Vec<(Operation, u32)>);

impl Mix {
    /// The operation for draw `n` (any number): weights decide how often each comes.
    pub fn pick(&self, n: u64) -> Operation {
        let total: u64 = self.0.iter().map(|(_, weight)| u64::from(*weight)).sum();
        let mut point = n % total.max(1);
        for (operation, weight) in &self.0 {
            if point < u64::from(*weight) {
                return *operation;
            }
            point -= u64::from(*weight);
        }
        self.0[0].0
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(op, weight)| format!("{}={weight}", op.name())).collect();
        f.write_str(&parts.join(","))
    }
}

/// Parses `--mix`.
pub fn parse_mix(value: &str) -> Result<Mix, String> {
    let mut mix = Vec::new();
    for part in value.split(',').map(str::trim).filter(|part| !part.is_empty()) {
        let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
        let operation = Operation::ALL.into_iter().find(|op| op.name() == name).ok_or_else(|| {
            let known: Vec<&str> = Operation::ALL.iter().map(|op| op.name()).collect();
            format!("unknown operation {name:?}; known: {}", known.join(", "))
        })?;
        let weight: u32 = weight.parse().map_err(|_| format!("the weight of {name} must be a whole number"))?;
        if weight > 0 {
            mix.push((operation, weight));
        }
    }
    if mix.is_empty() {
        return Err("the mix needs at least one operation with a weight above 0".into());
    }
    Ok(Mix(mix))
}
