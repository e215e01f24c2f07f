//! `crm.gateway.v1.GatewayAdminService`: API keys, and the gateway's own feed.

use crm_platform::{
    Error, RoleContext,
    error::Violations,
    feed_api::{FeedApi, SubscribeStream},
    outbox::Feed,
    page_token::{PageTokens, Query, page_size},
    principal::{AccessRole, Caller},
};
use crm_proto::{
    events::v1::{ListEventsRequest, ListEventsResponse, SubscribeRequest},
    gateway::v1::{
        ApiKey, CreateApiKeyRequest, CreateApiKeyResponse, GetApiKeyRequest, GetCallerRequest, GetCallerResponse,
        ListApiKeysRequest, ListApiKeysResponse, RevokeApiKeyRequest,
        gateway_admin_service_server::{GatewayAdminService, SERVICE_NAME},
    },
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::keys::{cache::KeyCache, secret, store::KeyStore};

const MAX_DISPLAY_NAME: usize = 200;
const DEFAULT_PAGE_SIZE: i32 = 50;
const MAX_PAGE_SIZE: i32 = 500;

pub struct GatewayAdminApi {
    feed: FeedApi,
    store: KeyStore,
    cache: KeyCache,
    tokens: PageTokens,
}

impl GatewayAdminApi {
    pub fn new(ctx: &RoleContext, feed: Feed, store: KeyStore, cache: KeyCache) -> Self {
        let feed = FeedApi::new(feed, ctx.page_tokens.clone(), SERVICE_NAME, ctx.shutdown.clone());
        GatewayAdminApi { feed, store, cache, tokens: ctx.page_tokens.clone() }
    }
}

fn parse_id(field: &str, id: &str) -> Result<Uuid, Error> {
    Uuid::try_parse(id).map_err(|_| Error::invalid(field, "must be an API key id (a UUID)"))
}

#[tonic::async_trait]
impl GatewayAdminService for GatewayAdminApi {
    async fn get_caller(&self, request: Request<GetCallerRequest>) -> Result<Response<GetCallerResponse>, Status> {
        let caller = Caller::of(&request)?;
        let principal = caller.principal;
        let mut scopes: Vec<String> = Vec::new();
        for scope in principal.roles.iter().flat_map(|role| crate::policy::scopes_of(*role)) {
            if !scopes.iter().any(|known| known == scope.as_str()) {
                scopes.push(scope.as_str().to_string());
            }
        }
        Ok(Response::new(GetCallerResponse {
            roles: principal.roles.iter().map(|role| role.as_str().to_string()).collect(),
            key_id: principal.key_id,
            scopes,
        }))
    }

    async fn create_api_key(
        &self,
        request: Request<CreateApiKeyRequest>,
    ) -> Result<Response<CreateApiKeyResponse>, Status> {
        let caller = Caller::of(&request)?;
        let body = request.into_inner();
        let mut violations = Violations::new();
        let display_name = body.display_name.trim();
        if display_name.is_empty() || display_name.chars().count() > MAX_DISPLAY_NAME {
            violations.add("display_name", format!("must be 1 to {MAX_DISPLAY_NAME} characters"));
        }
        if body.roles.is_empty() {
            violations.add("roles", "must name at least one access role");
        }
        let mut roles: Vec<AccessRole> = Vec::new();
        for (index, name) in body.roles.iter().enumerate() {
            match name.parse::<AccessRole>() {
                Ok(role) if !roles.contains(&role) => roles.push(role),
                Ok(_) => {}
                Err(reason) => violations.add(format!("roles[{index}]"), reason),
            }
        }
        violations.into_result()?;

        let id = Uuid::now_v7();
        let secret = secret::generate(id);
        let api_key = self
            .store
            .create(id, display_name, &roles, &secret::hash(&secret), caller.principal.actor(), &caller.request_id)
            .await?;
        tracing::info!(key_id = %id, roles = ?body.roles, "api key created");
        Ok(Response::new(CreateApiKeyResponse { api_key: Some(api_key), secret }))
    }

    async fn get_api_key(&self, request: Request<GetApiKeyRequest>) -> Result<Response<ApiKey>, Status> {
        let id = parse_id("id", &request.get_ref().id)?;
        Ok(Response::new(self.store.get(id).await?))
    }

    async fn list_api_keys(
        &self,
        request: Request<ListApiKeysRequest>,
    ) -> Result<Response<ListApiKeysResponse>, Status> {
        let body = request.into_inner();
        let page_size = page_size(body.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let query = Query::builder(&format!("{SERVICE_NAME}/ListApiKeys"))
            .field("show_revoked", if body.show_revoked { "1" } else { "0" })
            .build();
        let before: Option<Uuid> =
            if body.page_token.is_empty() { None } else { Some(self.tokens.decode(&query, &body.page_token)?) };
        let mut api_keys = self.store.list(before, page_size + 1, body.show_revoked).await?;
        let more = api_keys.len() > page_size as usize;
        api_keys.truncate(page_size as usize);
        let next_page_token = match api_keys.last() {
            Some(last) if more => self.tokens.encode(&query, &parse_id("page_token", &last.id)?)?,
            _ => String::new(),
        };
        Ok(Response::new(ListApiKeysResponse { api_keys, next_page_token }))
    }

    async fn revoke_api_key(&self, request: Request<RevokeApiKeyRequest>) -> Result<Response<ApiKey>, Status> {
        let caller = Caller::of(&request)?;
        let id = parse_id("id", &request.get_ref().id)?;
        let api_key = self.store.revoke(id, caller.principal.actor(), &caller.request_id).await?;
        // This replica stops accepting the key now; the others when the event reaches them.
        self.cache.forget(id);
        tracing::info!(key_id = %id, "api key revoked");
        Ok(Response::new(api_key))
    }

    type SubscribeStream = SubscribeStream;

    async fn subscribe(&self, request: Request<SubscribeRequest>) -> Result<Response<SubscribeStream>, Status> {
        self.feed.subscribe(request)
    }

    async fn list_events(&self, request: Request<ListEventsRequest>) -> Result<Response<ListEventsResponse>, Status> {
        self.feed.list_events(request).await
    }
}
