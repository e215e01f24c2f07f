//! The `Subscribe` and `ListEvents` RPCs that every role serves over its own
//! outbox. A role's generated service trait delegates both methods here.

use std::{pin::Pin, time::Duration};

use crm_proto::events::v1 as pb;
use futures_util::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{
    RoleContext,
    error::{Error, Violations},
    outbox::{Delivery, Feed, Position, is_wanted},
    page_token::{PageTokens, Query},
};

/// Largest `page_size` honoured; larger values are lowered to it (AIP-158).
pub const MAX_PAGE_SIZE: i32 = 1000;
const DEFAULT_PAGE_SIZE: i32 = 100;
const MAX_FILTER_VALUES: usize = 100;
const MAX_FILTER_VALUE_LEN: usize = 200;
/// How long a page waits for transactions running when it was asked for, so
/// that an event committed before the call is not left out because an older
/// transaction (a consumer's burst, another request) had not finished yet.
const SETTLE_PATIENCE: Duration = Duration::from_secs(1);

/// The stream type of every role's `Subscribe`.
pub type SubscribeStream = Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>>;

/// A role's event-feed API.
#[derive(Clone)]
pub struct FeedApi {
    feed: Feed,
    tokens: PageTokens,
    /// Full service name, e.g. `crm.contacts.v1.ContactsService`; binds page tokens to it.
    service: &'static str,
    /// Cancelled at shutdown: open `Subscribe` streams then end cleanly so the server can drain.
    shutdown: CancellationToken,
}

impl FeedApi {
    pub fn new(feed: Feed, tokens: PageTokens, service: &'static str, shutdown: CancellationToken) -> Self {
        FeedApi { feed, tokens, service, shutdown }
    }

    /// The feed API of `ctx`'s role, served by `service` (its full name).
    pub async fn start(ctx: &RoleContext, service: &'static str) -> anyhow::Result<Self> {
        Ok(FeedApi::new(ctx.feed().await?, ctx.page_tokens.clone(), service, ctx.shutdown.clone()))
    }

    /// `Subscribe`, as the generated service trait calls it.
    pub fn subscribe(&self, request: Request<pb::SubscribeRequest>) -> Result<Response<SubscribeStream>, Status> {
        Ok(Response::new(self.follow(request.into_inner())?))
    }

    /// `ListEvents`, as the generated service trait calls it.
    pub async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        Ok(Response::new(self.page(request.into_inner()).await?))
    }

    /// Events of `event_types` after `after` (`None`: from now on) as they
    /// commit, for a role's own streams over its feed (alerting's WatchAlerts).
    pub async fn watch(
        &self,
        after: Option<pb::EventPosition>,
        event_types: Vec<String>,
    ) -> Result<impl Stream<Item = Result<pb::Event, Error>> + Send + use<>, Error> {
        let after = match after {
            Some(position) => Position::from(Some(position)),
            None => self.feed.end().await?,
        };
        Ok(self.feed.follow(after, event_types, self.shutdown.clone()))
    }

    /// The feed from `after`, then new events as they commit.
    fn follow(&self, request: pb::SubscribeRequest) -> Result<SubscribeStream, Error> {
        let mut violations = Violations::new();
        check_filter_values(&mut violations, "event_types", &request.event_types);
        violations.into_result()?;
        let after = Position::from(request.after);
        if request.live {
            if request.caught_up_markers {
                return Err(Error::invalid(
                    "caught_up_markers",
                    "the live lane is not in feed order and is never caught up: ask for markers on the whole feed",
                ));
            }
            let respond = |event: Result<pb::Event, Error>| match event {
                Ok(event) => Ok(pb::SubscribeResponse { event: Some(event), caught_up: None }),
                Err(error) => Err(Status::from(error)),
            };
            let events = self.feed.follow_live(after, request.event_types, self.shutdown.clone());
            return Ok(Box::pin(events.map(respond)));
        }
        let markers = request.caught_up_markers;
        let respond = move |delivery: Result<Delivery, Error>| match delivery {
            Ok(Delivery::Event(event)) => Some(Ok(pb::SubscribeResponse { event: Some(event), caught_up: None })),
            Ok(Delivery::CaughtUp(position)) => {
                markers.then(|| Ok(pb::SubscribeResponse { event: None, caught_up: Some(position.into()) }))
            }
            Err(error) => Some(Err(Status::from(error))),
        };
        let deliveries = self.feed.follow_marked(after, request.event_types, self.shutdown.clone());
        Ok(Box::pin(deliveries.filter_map(move |delivery| std::future::ready(respond(delivery)))))
    }

    /// One page of the feed.
    async fn page(&self, request: pb::ListEventsRequest) -> Result<pb::ListEventsResponse, Error> {
        let mut violations = Violations::new();
        if request.page_size < 0 {
            violations.add("page_size", "must not be negative");
        }
        check_filter_values(&mut violations, "event_types", &request.event_types);
        if request.aggregate_id.len() > MAX_FILTER_VALUE_LEN {
            violations.add("aggregate_id", format!("must be at most {MAX_FILTER_VALUE_LEN} bytes long"));
        }
        violations.into_result()?;

        let page_size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            size => size.min(MAX_PAGE_SIZE),
        };
        let query = self.list_query(&request);
        let after = if request.page_token.is_empty() {
            Position::from(request.after)
        } else {
            self.tokens.decode::<Position>(&query, &request.page_token)?
        };
        let aggregate_id = Some(request.aggregate_id.as_str()).filter(|id| !id.is_empty());
        let batch = self.feed.read_settled(after, aggregate_id, i64::from(page_size), SETTLE_PATIENCE).await?;
        let events = batch.events.into_iter().filter(|event| is_wanted(&request.event_types, event)).collect();
        let next_page_token = if batch.full { self.tokens.encode(&query, &batch.scanned_to)? } else { String::new() };
        Ok(pb::ListEventsResponse { events, next_page_token })
    }

    /// What a `ListEvents` page token is bound to: everything but the page size and token.
    fn list_query(&self, request: &pb::ListEventsRequest) -> Query {
        let after = Position::from(request.after);
        Query::builder(&format!("{}/ListEvents", self.service))
            .field("after", format!("{}.{}", after.transaction, after.sequence))
            .field("event_types", request.event_types.join("\n"))
            .field("aggregate_id", &request.aggregate_id)
            .build()
    }
}

fn check_filter_values(violations: &mut Violations, field: &str, values: &[String]) {
    if values.len() > MAX_FILTER_VALUES {
        violations.add(field, format!("must have at most {MAX_FILTER_VALUES} entries"));
    }
    for (index, value) in values.iter().enumerate() {
        if value.is_empty() || value.len() > MAX_FILTER_VALUE_LEN {
            violations.add(format!("{field}[{index}]"), format!("must be 1 to {MAX_FILTER_VALUE_LEN} bytes long"));
        }
    }
}
