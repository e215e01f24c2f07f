//! The contacts role: people, organizations and their relationships, kept as one clean, deduplicated record per customer.
//!
//! - [`serve`]: the role's gRPC server (`crm.contacts.v1.ContactsService`, health, reflection).
//! - [`migrator`]: the role's migrations, applied to the `contacts` schema.
//! - `api`: the service implementation: validates, calls the store, maps the result.
//! - [`validate`]: request messages to valid, normalised records ([`model`]).
//! - [`matching`]: duplicate detection (blocking keys, scores with reasons) and its labelled benchmark.
//! - [`store`]: the schema: contacts, merge, erase, organizations, relationships, audit trail.
//! - [`terms`]: what a contact is found by (lookups, duplicate candidates, search).
//! - `search`: a free-text query as the terms that may answer it, and its ranking.
//! - `import`: the `ImportContacts` stream, batch by batch.

mod api;
mod import;
pub mod matching;
pub mod model;
pub mod phones;
pub mod search;
pub mod store;
pub mod terms;
pub mod validate;

use crm_platform::{RoleContext, config::ContactsSettings, server::GrpcServer};
use crm_proto::contacts::v1::contacts_service_server::ContactsServiceServer;
use tokio::net::TcpListener;

/// The migrations of the `contacts` schema.
pub fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./migrations")
}

/// How often the role looks for a newer fitted matching model.
const MODEL_CHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// How often one replica (the leader) checks whether the base has grown
/// enough to fit the matching model again (`store::matcher::fit_if_due`,
/// cheap when it has not), and a standby whether the leader is gone.
const FIT_CHECK: std::time::Duration = std::time::Duration::from_secs(60);

/// Fits the matching model on the install's own contacts when it is due: at
/// the leader's start and every [`FIT_CHECK`], the leader being whichever
/// replica holds the advisory lock. The fitting replica decides with the new
/// model at once; the others take it up within [`MODEL_CHECK`].
fn fit_on_schedule(store: &store::ContactStore, ctx: &RoleContext) {
    let (matcher, pool) = (store.matcher.clone(), ctx.pool.clone());
    crm_platform::leader::spawn_periodic(
        ctx.pool.clone(),
        "contacts.matcher_fit",
        FIT_CHECK,
        ctx.shutdown.clone(),
        move || {
            let (matcher, pool) = (matcher.clone(), pool.clone());
            async move {
                if let Some(fitted) = store::matcher::fit_if_due(&pool).await? {
                    tracing::info!(
                        version = %fitted.model.version,
                        contacts = fitted.contacts,
                        blocked_pairs = fitted.blocked_pairs,
                        "fitted the matching model on the base"
                    );
                    matcher.install(fitted.model);
                }
                Ok(())
            }
        },
    );
}

/// Keeps the store's matching model the newest stored one (a fit by any
/// replica, or by `crm contacts fit-matcher`), looking every [`MODEL_CHECK`].
fn follow_fitted_models(store: &store::ContactStore, ctx: &RoleContext) {
    let (matcher, pool, shutdown) = (store.matcher.clone(), ctx.pool.clone(), ctx.shutdown.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(MODEL_CHECK) => {}
            }
            if let Err(error) = matcher.refresh(&pool).await {
                tracing::warn!(error = %error, "reading the newest matching model failed; keeping the one in use");
            }
        }
    });
}

/// Serves the role on `listener` until `ctx.shutdown` is cancelled, then drains.
/// Expects `ctx.pool` to be migrated.
pub async fn serve(ctx: RoleContext, settings: ContactsSettings, listener: TcpListener) -> anyhow::Result<()> {
    let region = validate::Region::parse(&settings.default_region)
        .map_err(|reason| anyhow::anyhow!("CRM_CONTACTS_DEFAULT_REGION: {reason}"))?;
    let matcher = store::matcher::Matcher::default();
    matcher.refresh(&ctx.pool).await?;
    let store = store::ContactStore {
        pool: ctx.pool.clone(),
        reads: ctx.reads.clone(),
        threshold: settings.duplicate_threshold,
        matcher,
    };
    follow_fitted_models(&store, &ctx);
    fit_on_schedule(&store, &ctx);
    let organizations = store.clone();
    tokio::spawn(async move {
        match organizations.fill_name_keys().await {
            Ok(0) => {}
            Ok(filled) => tracing::info!(filled, "organizations given their name keys"),
            Err(error) => {
                tracing::warn!(error = %error, "filling organizations' name keys failed; it resumes at the next start")
            }
        }
    });
    let (pool, shutdown) = (ctx.pool.clone(), ctx.shutdown.clone());
    tokio::spawn(async move {
        match store::reindex::run(&pool, &shutdown).await {
            Ok(0) => {}
            Ok(contacts) => tracing::info!(contacts, "contacts re-indexed"),
            Err(error) => tracing::warn!(error = %error, "re-indexing contacts failed; it resumes at the next start"),
        }
    });
    let api = api::ContactsApi::new(&ctx, store, region).await?;
    let service = ContactsServiceServer::new(api)
        .max_decoding_message_size(ctx.server.max_message_bytes)
        .max_encoding_message_size(ctx.server.max_message_bytes);
    GrpcServer::new("contacts").add_service(service).serve_role(&ctx, listener).await
}
