//! Association rules and next best offers: validate, compute or read the
//! rules, pick a contact's offers, and for marketing ask the interactions
//! role whether the contact may be contacted at all.

use crm_platform::{
    Error,
    error::Violations,
    principal::{Caller, SignedChannel},
    timestamp::to_proto,
};
use crm_proto::{
    interactions::v1::{self as interactions, interactions_service_client::InteractionsServiceClient},
    segmentation::v1 as pb,
};
use tonic::{Request, Response, Status};

use super::{
    SegmentationApi,
    analytics::{count, days, share},
    id,
};
use crate::{
    analytics::{
        associations::{self, Rule},
        recompute::{self, Params},
    },
    store::analytics::{self as store, RulesRun},
};

/// At most this many rules answered at once.
const MAX_RULES_LISTED: i32 = 1000;
/// At most this many offers.
const MAX_OFFERS: i32 = 50;

fn to_rule(rule: &Rule) -> pb::AssociationRule {
    pb::AssociationRule {
        antecedent: rule.antecedent.clone(),
        consequent: rule.consequent.clone(),
        antecedent_baskets: rule.antecedent_baskets,
        both_baskets: rule.both_baskets,
        support: rule.support,
        confidence: rule.confidence,
        lift: rule.lift,
    }
}

fn to_rules(run: Option<&RulesRun>, rules: &[Rule]) -> pb::AssociationRules {
    pb::AssociationRules {
        computed_time: run.map(|run| to_proto(run.computed_at)),
        window_days: run.map_or(0, |run| run.window_days),
        min_support: run.map_or(0.0, |run| run.min_support),
        min_confidence: run.map_or(0.0, |run| run.min_confidence),
        baskets: run.map_or(0, |run| run.baskets),
        total_rules: run.map_or(0, |run| run.total_rules),
        rules: rules.iter().map(to_rule).collect(),
    }
}

impl SegmentationApi {
    pub(super) async fn compute_association_rules(
        &self,
        request: Request<pb::ComputeAssociationRulesRequest>,
    ) -> Result<Response<pb::AssociationRules>, Status> {
        let caller = Caller::of(&request)?;
        let body = request.into_inner();
        let defaults = Params::default();
        let mut violations = Violations::new();
        let params = Params {
            window_days: days(&mut violations, "window_days", body.window_days, defaults.window_days).num_days() as i32,
            min_support: share(&mut violations, "min_support", body.min_support, defaults.min_support),
            min_confidence: share(&mut violations, "min_confidence", body.min_confidence, defaults.min_confidence),
        };
        let limit = count(&mut violations, "page_size", body.page_size, 100, MAX_RULES_LISTED);
        violations.into_result()?;
        let run = recompute::compute(&self.pool, params, self.clock.now(), caller.principal.actor()).await?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let rules = store::strongest_rules(&mut conn, limit).await?;
        Ok(Response::new(to_rules(Some(&run), &rules)))
    }

    pub(super) async fn get_association_rules(
        &self,
        request: Request<pb::GetAssociationRulesRequest>,
    ) -> Result<Response<pb::AssociationRules>, Status> {
        let mut violations = Violations::new();
        let limit = count(&mut violations, "page_size", request.get_ref().page_size, 100, MAX_RULES_LISTED);
        violations.into_result()?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let run = store::last_run(&mut conn).await?;
        let rules = store::strongest_rules(&mut conn, limit).await?;
        Ok(Response::new(to_rules(run.as_ref(), &rules)))
    }

    pub(super) async fn get_next_best_offers(
        &self,
        request: Request<pb::GetNextBestOffersRequest>,
    ) -> Result<Response<pb::NextBestOffers>, Status> {
        let caller = Caller::of(&request)?;
        let body = request.into_inner();
        let contact_id = id("contact_id", &body.contact_id)?;
        let mut violations = Violations::new();
        let limit = count(&mut violations, "limit", body.limit, 5, MAX_OFFERS) as usize;
        let marketing = match pb::OfferPurpose::try_from(body.purpose) {
            Ok(pb::OfferPurpose::Unspecified | pb::OfferPurpose::Service) => false,
            Ok(pb::OfferPurpose::Marketing) => true,
            Err(_) => {
                violations.add("purpose", "must be OFFER_PURPOSE_SERVICE or OFFER_PURPOSE_MARKETING");
                false
            }
        };
        let outbound = [
            interactions::Channel::Email,
            interactions::Channel::Phone,
            interactions::Channel::Sms,
            interactions::Channel::Post,
        ];
        if marketing && !outbound.iter().any(|channel| *channel as i32 == body.channel) {
            violations
                .add("channel", "a marketing offer needs CHANNEL_EMAIL, CHANNEL_PHONE, CHANNEL_SMS or CHANNEL_POST");
        }
        violations.into_result()?;

        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let run = store::last_run(&mut conn).await?;
        let (contact_id, bought) = store::bought_skus(&mut conn, contact_id).await?;
        let mut answer = pb::NextBestOffers {
            contact_id: contact_id.to_string(),
            rules_computed_time: run.as_ref().map(|run| to_proto(run.computed_at)),
            ..Default::default()
        };
        if marketing {
            let check = self.may_contact(&caller, &answer.contact_id, body.channel).await?;
            if !check.allowed {
                answer.held_back_reason = check.reason;
                return Ok(Response::new(answer));
            }
        }
        let rules = store::rules_from(&mut conn, &bought).await?;
        drop(conn);
        answer.offers = associations::offers(&rules, &bought, limit)
            .into_iter()
            .map(|rule| pb::Offer {
                sku: rule.consequent.clone(),
                rule: Some(to_rule(rule)),
                reason: associations::reason(rule),
            })
            .collect();
        Ok(Response::new(answer))
    }

    /// The interactions role's frequency check of `contact` on `channel`, asked as the caller.
    async fn may_contact(
        &self,
        caller: &Caller,
        contact: &str,
        channel: i32,
    ) -> Result<interactions::CheckContactFrequencyResponse, Error> {
        let peer = self.interactions.clone().ok_or_else(|| Error::Unavailable {
            message: "the interactions role is not configured for this role: marketing offers cannot be checked".into(),
            retry_after: std::time::Duration::from_secs(1),
        })?;
        let mut client =
            InteractionsServiceClient::new(SignedChannel::new(peer, self.identity.clone(), caller.principal.clone()));
        let request = interactions::CheckContactFrequencyRequest { contact_id: contact.to_string(), channel };
        match client.check_contact_frequency(request).await {
            Ok(answer) => Ok(answer.into_inner()),
            Err(status) => Err(match status.code() {
                tonic::Code::InvalidArgument => Error::invalid("channel", status.message().to_string()),
                tonic::Code::PermissionDenied => Error::PermissionDenied(status.message().to_string()),
                tonic::Code::NotFound => Error::NotFound { resource: "contact", id: contact.to_string() },
                _ => Error::Unavailable {
                    message: format!("the interactions role could not check the contact: {}", status.message()),
                    retry_after: std::time::Duration::from_millis(500),
                },
            }),
        }
    }
}
