//! The console: the customer-360 screen built under `console/`, served on its
//! own port (`CRM_CONSOLE_ADDR`) from its built files (`CRM_CONSOLE_DIR`).
//!
//! The page calls the gateway by gRPC-Web, on the gateway's own port: it asks
//! `/config.json` where that is (the host the browser used, the gateway's
//! port). Every answer carries a strict Content-Security-Policy: scripts and
//! styles from this origin only, connections to this origin and the gateway,
//! no frames, no inline code. Unknown paths answer the page itself, so that
//! a screen's address can be reloaded. When the console was not built, every
//! answer says so and how to build it.

use std::{net::SocketAddr, path::PathBuf};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::services::{ServeDir, ServeFile};

/// What the console server needs to know.
#[derive(Clone, Debug)]
pub struct ConsoleSite {
    /// The built console (`index.html` and `assets/`).
    pub dir: PathBuf,
    /// The port browsers reach the gateway on.
    pub gateway_port: u16,
    /// Whether the gateway speaks TLS (`https` then).
    pub gateway_tls: bool,
}

/// The command that builds the console, for messages.
pub const BUILD_HINT: &str = "cd console && npm ci && npm run build";

impl ConsoleSite {
    /// Whether the built console is where it should be.
    pub fn is_built(&self) -> bool {
        self.dir.join("index.html").is_file()
    }

    /// Why the console cannot be served, when it cannot.
    pub fn missing(&self) -> Option<String> {
        (!self.is_built()).then(|| {
            format!(
                "the console is not built: {} has no index.html; run `{BUILD_HINT}` or set CRM_CONSOLE_DIR to a built console",
                self.dir.display()
            )
        })
    }

    /// The origins a page served at `addr` has, for the gateway's CORS list:
    /// `http://addr`, and `http://localhost:port` for a loopback address.
    pub fn origins(addr: SocketAddr) -> Vec<String> {
        let mut origins = vec![format!("http://{addr}")];
        if addr.ip().is_loopback() {
            origins.push(format!("http://localhost:{}", addr.port()));
        }
        origins
    }

    /// The gateway's origin as seen by a browser that reached the console at `host`.
    fn gateway_origin(&self, host: Option<&str>) -> String {
        let host = host.map(host_name).unwrap_or("localhost");
        let scheme = if self.gateway_tls { "https" } else { "http" };
        format!("{scheme}://{host}:{}", self.gateway_port)
    }

    fn policy(&self, host: Option<&str>) -> String {
        format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; \
             connect-src 'self' {}; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            self.gateway_origin(host)
        )
    }

    /// The HTTP routes: `/config.json`, the files, the page for any other path.
    pub fn router(self) -> Router {
        if let Some(reason) = self.missing() {
            return Router::new().fallback(move || {
                let reason = reason.clone();
                async move { (StatusCode::SERVICE_UNAVAILABLE, reason) }
            });
        }
        let files = ServeDir::new(&self.dir).fallback(ServeFile::new(self.dir.join("index.html")));
        Router::new()
            .route("/config.json", get(config))
            .fallback_service(files)
            .layer(axum::middleware::from_fn_with_state(self.clone(), security_headers))
            .with_state(self)
    }
}

/// `host[:port]` without the port (`[::1]:80` keeps its brackets).
fn host_name(host: &str) -> &str {
    match host.rfind(':') {
        Some(colon) if !host[colon..].contains(']') => &host[..colon],
        _ => host,
    }
}

fn host_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|host| host.to_str().ok())
}

/// Where the page finds the gateway.
async fn config(State(site): State<ConsoleSite>, headers: HeaderMap) -> Response {
    let body = serde_json::json!({ "gateway": site.gateway_origin(host_of(&headers)) }).to_string();
    ([(header::CACHE_CONTROL, "no-store"), (header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn security_headers(
    State(site): State<ConsoleSite>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let policy = site.policy(host_of(request.headers()));
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// Serves the console on `listener` until `shutdown`; says where it is or why it is not there.
pub async fn serve(site: ConsoleSite, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let address = listener.local_addr()?;
    match site.missing() {
        Some(reason) => tracing::warn!(%address, "{reason}; the console's port answers with this message"),
        None => tracing::info!(url = %format!("http://{address}/"), dir = %site.dir.display(), "serving the console"),
    }
    axum::serve(listener, site.router()).with_graceful_shutdown(shutdown.cancelled_owned()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_lose_their_port() {
        assert_eq!(host_name("127.0.0.1:50080"), "127.0.0.1");
        assert_eq!(host_name("crm.example.com"), "crm.example.com");
        assert_eq!(host_name("[::1]:50080"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
    }

    #[test]
    fn loopback_consoles_are_also_reached_as_localhost() {
        let origins = ConsoleSite::origins("127.0.0.1:50080".parse().unwrap());
        assert_eq!(origins, vec!["http://127.0.0.1:50080", "http://localhost:50080"]);
        assert_eq!(ConsoleSite::origins("10.0.0.5:80".parse().unwrap()), vec!["http://10.0.0.5:80"]);
    }
}
