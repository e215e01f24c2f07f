//! Typed configuration, read once from the environment and injected everywhere.
//!
//! [`Config::from_vars`] takes the variables as a map so that tests never set
//! process variables; [`Config::from_env`] is the one place that reads them.
//! Every bad value is reported at once, each naming its variable.

use std::{collections::HashMap, fmt, net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use crate::{
    principal::AccessRole,
    role::Role,
    tls::{InternalTls, TlsFiles},
};

/// A value that must never be printed: its `Debug` and `Display` are redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for production.
    Json,
    /// Human-readable, for a terminal.
    Pretty,
    /// Pretty on a terminal, JSON otherwise.
    Auto,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "json" => Ok(LogFormat::Json),
            "pretty" => Ok(LogFormat::Pretty),
            "auto" => Ok(LogFormat::Auto),
            _ => Err("expected json, pretty or auto".into()),
        }
    }
}

/// How the PostgreSQL pool of each role behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct DbSettings {
    /// Connections per role pool.
    pub max_connections: u32,
    /// How long start-up keeps retrying an unreachable database before giving up.
    pub connect_timeout: Duration,
}

/// Limits every gRPC server applies.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerSettings {
    /// Deadline the gateway gives a unary call that comes without one.
    pub request_timeout: Duration,
    /// Longest deadline any call may have: longer ones are cut to it. Streams
    /// without a deadline of their own keep none (a feed runs for days).
    pub max_request_timeout: Duration,
    /// Largest message a server decodes or encodes.
    pub max_message_bytes: usize,
    /// Requests served at once on one connection; more wait.
    pub max_concurrent_requests: usize,
    /// How long shutdown waits for in-flight calls before it cuts them.
    pub shutdown_grace: Duration,
    /// TLS on the gateway's listener (`CRM_TLS_CERT_FILE`, `CRM_TLS_KEY_FILE`).
    pub public_tls: Option<TlsFiles>,
    /// Mutual TLS between the processes of an install (`CRM_INTERNAL_TLS_CA_FILE`,
    /// `CRM_INTERNAL_TLS_CERT_FILE`, `CRM_INTERNAL_TLS_KEY_FILE`).
    pub internal_tls: Option<InternalTls>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            request_timeout: Duration::from_secs(30),
            max_request_timeout: Duration::from_secs(300),
            max_message_bytes: 4 * 1024 * 1024,
            max_concurrent_requests: 256,
            shutdown_grace: Duration::from_secs(30),
            public_tls: None,
            internal_tls: None,
        }
    }
}

/// A token bucket: a steady rate and the burst it may briefly exceed it by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// Per-key limits the gateway applies, by the key's access role.
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayLimits {
    /// Requests per second for one key of each access role; a key with several
    /// roles gets the most generous of them.
    pub rate: HashMap<AccessRole, RateLimit>,
    /// Streaming calls one key may have open at once.
    pub max_streams_per_key: usize,
}

impl Default for GatewayLimits {
    fn default() -> Self {
        let limit = |per_second| RateLimit { per_second, burst: per_second * 2 };
        GatewayLimits {
            rate: HashMap::from([
                (AccessRole::Admin, limit(1000)),
                (AccessRole::Agent, limit(200)),
                (AccessRole::Integration, limit(2000)),
                (AccessRole::Analyst, limit(100)),
                (AccessRole::Sre, limit(100)),
            ]),
            max_streams_per_key: 32,
        }
    }
}

/// Bearer JWTs the gateway accepts besides API keys, verified against a JWKS file.
#[derive(Clone, Debug, PartialEq)]
pub struct JwtSettings {
    /// `CRM_JWT_JWKS_FILE`: the identity provider's keys (re-read when a token names an unknown key).
    pub jwks_file: PathBuf,
    /// `CRM_JWT_ISSUER`: the `iss` every token must carry.
    pub issuer: String,
    /// `CRM_JWT_AUDIENCE`: the `aud` every token must carry.
    pub audience: String,
    /// `CRM_JWT_ROLES_CLAIM` (default `crm_roles`): the claim listing the caller's access roles.
    pub roles_claim: String,
}

/// Where traces and metrics go by OTLP, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
#[derive(Clone, Debug, PartialEq)]
pub struct OtlpSettings {
    pub endpoint: String,
    pub service_name: String,
}

/// The whole configuration of a `crm` process.
#[derive(Clone, Debug)]
pub struct Config {
    /// `DATABASE_URL`; when unset, `crm up` and the tests start a private PostgreSQL.
    pub database_url: Option<Secret>,
    /// `DATABASE_READ_URL`: the replicas, for the reads that tolerate lag
    /// ([`crate::db::ReadPool`]); unset, every read goes to `DATABASE_URL`.
    pub database_read_url: Option<Secret>,
    pub db: DbSettings,
    /// Listen address of each role (`CRM_<ROLE>_ADDR`).
    pub listen: HashMap<Role, SocketAddr>,
    /// Upstream URLs the gateway routes each domain role to
    /// (`CRM_<ROLE>_UPSTREAMS`, comma-separated; default: the role's listen address).
    pub upstreams: HashMap<Role, Vec<String>>,
    /// Where `/metrics` is served (`CRM_METRICS_ADDR`); `None` when set to `off`.
    pub metrics_addr: Option<SocketAddr>,
    /// `tracing` filter directives (`CRM_LOG`, e.g. `info,crm_gateway=debug`).
    pub log_filter: String,
    pub log_format: LogFormat,
    pub otlp: Option<OtlpSettings>,
    pub server: ServerSettings,
    /// Shared by every replica: signs page tokens and the gateway's identity
    /// headers. Must be the same on every process of one install.
    pub internal_secret: Option<Secret>,
    /// The API key that is an admin before any other key exists.
    pub bootstrap_admin_key: Option<Secret>,
    /// Where `crm up` keeps its private PostgreSQL and generated secrets.
    pub data_dir: PathBuf,
    pub gateway_limits: GatewayLimits,
    /// Origins whose web pages may call the gateway by gRPC-Web (`CRM_CORS_ALLOWED_ORIGINS`,
    /// comma-separated; `*`, the default, allows any: keys travel in headers, not cookies).
    pub cors_allowed_origins: Vec<String>,
    /// Set when `CRM_JWT_JWKS_FILE` is.
    pub jwt: Option<JwtSettings>,
    /// The customer-360 console the gateway serves (`CRM_CONSOLE_ADDR`, `CRM_CONSOLE_DIR`).
    pub console: ConsoleSettings,
    pub contacts: ContactsSettings,
    pub interactions: InteractionsSettings,
    pub alerting: AlertingSettings,
}

/// Where the gateway serves the console, the browser screen built under
/// `console/` (`npm ci && npm run build` makes `console/dist`).
#[derive(Clone, Debug, PartialEq)]
pub struct ConsoleSettings {
    /// `CRM_CONSOLE_ADDR`: an address, `off`, or unset (off under `crm serve`,
    /// `127.0.0.1:50080` under `crm up`).
    pub addr: ConsoleAddr,
    /// The built console (`CRM_CONSOLE_DIR`, default `console/dist` under the
    /// working directory).
    pub dir: PathBuf,
}

/// Whether and where the console is served.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ConsoleAddr {
    /// Not set: the command decides (`crm up` serves it, `crm serve` does not).
    Unset,
    Off,
    At(SocketAddr),
}

impl ConsoleSettings {
    /// Where `crm up` serves the console when `CRM_CONSOLE_ADDR` is not set.
    pub const UP_DEFAULT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 50080);

    /// The address to serve on, with `default` standing in for an unset one.
    pub fn address(&self, default: Option<SocketAddr>) -> Option<SocketAddr> {
        match self.addr {
            ConsoleAddr::Unset => default,
            ConsoleAddr::Off => None,
            ConsoleAddr::At(addr) => Some(addr),
        }
    }
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings { addr: ConsoleAddr::Unset, dir: PathBuf::from("console/dist") }
    }
}

/// How the alerting role evaluates and where it delivers.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertingSettings {
    /// How often SLOs are evaluated and alerts sent (`CRM_ALERTING_EVALUATION_INTERVAL`, default 10s).
    pub evaluation_interval: Duration,
    /// Alertmanagers that receive every alert (`CRM_ALERTMANAGER_URLS`,
    /// comma-separated base URLs, e.g. `http://alertmanager:9093`; default none).
    pub alertmanager_urls: Vec<String>,
    /// How often a firing alert is sent again to Alertmanager, which resolves it by
    /// itself when four of these pass without news (`CRM_ALERTMANAGER_RESEND_INTERVAL`, default 1m).
    pub alertmanager_resend_interval: Duration,
    /// Where people open an alert's source, the `generatorURL` of each alert
    /// (`CRM_ALERTING_EXTERNAL_URL`, e.g. the console's address; default none).
    pub external_url: Option<String>,
    /// Networks webhooks may reach although they are loopback, link-local
    /// (cloud metadata), multicast or unspecified (`CRM_WEBHOOK_ALLOWED_NETWORKS`,
    /// comma-separated CIDRs such as `127.0.0.0/8`; default none).
    pub webhook_allowed_networks: Vec<ipnet::IpNet>,
    /// Attempts at a webhook delivery before it is dead (`CRM_WEBHOOK_MAX_ATTEMPTS`, default 8).
    pub webhook_max_attempts: u32,
    /// The first retry's delay; each next one doubles, plus jitter
    /// (`CRM_WEBHOOK_RETRY_MIN`, default 1s).
    pub webhook_retry_min: Duration,
    /// The longest delay between attempts (`CRM_WEBHOOK_RETRY_MAX`, default 10m).
    pub webhook_retry_max: Duration,
    /// How long one attempt may take (`CRM_WEBHOOK_TIMEOUT`, default 10s).
    pub webhook_timeout: Duration,
    /// The Prometheus that SLOs with a Prometheus indicator read
    /// (`CRM_PROMETHEUS_URL`, e.g. `http://prometheus:9090`; default none).
    pub prometheus_url: Option<String>,
}

impl Default for AlertingSettings {
    fn default() -> Self {
        AlertingSettings {
            evaluation_interval: Duration::from_secs(10),
            alertmanager_urls: Vec::new(),
            alertmanager_resend_interval: Duration::from_secs(60),
            external_url: None,
            webhook_allowed_networks: Vec::new(),
            webhook_max_attempts: 8,
            webhook_retry_min: Duration::from_secs(1),
            webhook_retry_max: Duration::from_secs(600),
            webhook_timeout: Duration::from_secs(10),
            prometheus_url: None,
        }
    }
}

/// How the interactions role detects problems and ages invoices.
#[derive(Clone, Debug, PartialEq)]
pub struct InteractionsSettings {
    /// Occurrences of one pain point for one contact that make it recurring
    /// (`CRM_RECURRING_PROBLEM_COUNT`, default 3).
    pub recurring_count: i64,
    /// Within how many days (`CRM_RECURRING_PROBLEM_WINDOW_DAYS`, default 30).
    pub recurring_window_days: i32,
    /// How often open invoices are checked for their due date (`CRM_OVERDUE_CHECK_INTERVAL`, default 1m).
    pub overdue_check_interval: Duration,
}

impl Default for InteractionsSettings {
    fn default() -> Self {
        InteractionsSettings {
            recurring_count: 3,
            recurring_window_days: 30,
            overdue_check_interval: Duration::from_secs(60),
        }
    }
}

/// How the contacts role normalises and deduplicates.
#[derive(Clone, Debug, PartialEq)]
pub struct ContactsSettings {
    /// Region of phone numbers written without a country code
    /// (`CRM_CONTACTS_DEFAULT_REGION`, ISO 3166-1 alpha-2, default `US`).
    pub default_region: String,
    /// Score from which a new contact is a likely duplicate of an existing one
    /// (`CRM_CONTACTS_DUPLICATE_THRESHOLD`, 0 to 1, default 0.8).
    pub duplicate_threshold: f64,
}

impl Default for ContactsSettings {
    fn default() -> Self {
        ContactsSettings { default_region: "US".into(), duplicate_threshold: 0.8 }
    }
}

/// One bad variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: String,
    pub reason: String,
}

/// Every bad variable found, so that one run tells the operator all of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for error in &self.0 {
            writeln!(f, "  {}: {}", error.variable, error.reason)?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads the process environment. Call once, in `main`.
    pub fn from_env() -> Result<Config, ConfigErrors> {
        Config::from_vars(&std::env::vars().collect())
    }

    /// Builds the configuration from a map of variables.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Config, ConfigErrors> {
        let mut reader = Reader { vars, errors: Vec::new() };
        let defaults = ServerSettings::default();

        let database_url = reader.text("DATABASE_URL").map(Secret);
        let database_read_url = reader.text("DATABASE_READ_URL").map(Secret);
        for (variable, url) in [("DATABASE_URL", &database_url), ("DATABASE_READ_URL", &database_read_url)] {
            if let Some(url) = url
                && !(url.0.starts_with("postgres://") || url.0.starts_with("postgresql://"))
            {
                reader.fail(variable, "must start with postgres:// or postgresql://");
            }
        }
        let db = DbSettings {
            max_connections: reader.parsed("CRM_DB_MAX_CONNECTIONS", 10, at_least(1)),
            connect_timeout: reader.duration("CRM_DB_CONNECT_TIMEOUT", Duration::from_secs(30)),
        };

        let public_tls = reader.tls_files("CRM_TLS_CERT_FILE", "CRM_TLS_KEY_FILE");
        let internal_tls = reader.internal_tls();
        let mut listen = HashMap::new();
        let mut upstreams = HashMap::new();
        for role in Role::ALL {
            let variable = format!("{}_ADDR", role.env_prefix());
            let default_addr = SocketAddr::from(([127, 0, 0, 1], role.default_port()));
            let addr = reader.parsed(&variable, default_addr, |_| Ok(()));
            listen.insert(role, addr);
            if role != Role::Gateway {
                upstreams.insert(role, reader.upstreams(role, addr, internal_tls.is_some()));
            }
        }

        let metrics_addr = match reader.text("CRM_METRICS_ADDR").as_deref() {
            Some("off") => None,
            _ => Some(reader.parsed("CRM_METRICS_ADDR", SocketAddr::from(([127, 0, 0, 1], 9464)), |_| Ok(()))),
        };

        let otlp = reader.text("OTEL_EXPORTER_OTLP_ENDPOINT").map(|endpoint| OtlpSettings {
            endpoint,
            service_name: reader.text("OTEL_SERVICE_NAME").unwrap_or_else(|| "crm".into()),
        });

        let config = Config {
            database_url,
            database_read_url,
            db,
            listen,
            upstreams,
            metrics_addr,
            log_filter: reader.text("CRM_LOG").unwrap_or_else(|| "info,sqlx::postgres::notice=warn".into()),
            log_format: reader.parsed("CRM_LOG_FORMAT", LogFormat::Auto, |_| Ok(())),
            otlp,
            server: ServerSettings {
                request_timeout: reader.duration("CRM_REQUEST_TIMEOUT", defaults.request_timeout),
                max_request_timeout: reader.duration("CRM_MAX_REQUEST_TIMEOUT", defaults.max_request_timeout),
                max_message_bytes: reader.parsed("CRM_MAX_MESSAGE_BYTES", defaults.max_message_bytes, at_least(1024)),
                max_concurrent_requests: reader.parsed(
                    "CRM_MAX_CONCURRENT_REQUESTS",
                    defaults.max_concurrent_requests,
                    at_least(1),
                ),
                shutdown_grace: reader.duration("CRM_SHUTDOWN_GRACE", defaults.shutdown_grace),
                public_tls,
                internal_tls,
            },
            internal_secret: reader.secret("CRM_INTERNAL_SECRET", 32),
            bootstrap_admin_key: reader.secret("CRM_BOOTSTRAP_ADMIN_KEY", 24),
            data_dir: reader.text("CRM_DATA_DIR").map(PathBuf::from).unwrap_or_else(default_data_dir),
            gateway_limits: reader.gateway_limits(),
            cors_allowed_origins: reader
                .text("CRM_CORS_ALLOWED_ORIGINS")
                .map(|raw| raw.split(',').map(|origin| origin.trim().to_string()).filter(|o| !o.is_empty()).collect())
                .unwrap_or_else(|| vec!["*".to_string()]),
            jwt: reader.jwt(),
            console: reader.console(),
            contacts: reader.contacts(),
            interactions: reader.interactions(),
            alerting: reader.alerting(),
        };
        if config.server.request_timeout > config.server.max_request_timeout {
            reader.fail("CRM_REQUEST_TIMEOUT", "must not be longer than CRM_MAX_REQUEST_TIMEOUT");
        }
        if reader.errors.is_empty() { Ok(config) } else { Err(ConfigErrors(reader.errors)) }
    }
}

/// `/var/lib/crm` for root (PostgreSQL's own user must reach it), else
/// `$XDG_DATA_HOME/crm`, else `~/.local/share/crm`, else `./.crm`.
fn default_data_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/crm");
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("crm");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/crm"),
        None => PathBuf::from(".crm"),
    }
}

fn at_least<T: PartialOrd + fmt::Display + Copy>(minimum: T) -> impl Fn(&T) -> Result<(), String> {
    move |value| {
        if *value >= minimum { Ok(()) } else { Err(format!("must be at least {minimum}")) }
    }
}

/// `agent=100/s` or `agent=100/s:250`.
fn parse_rate_limit(entry: &str) -> Result<(AccessRole, RateLimit), String> {
    let (role, limit) = entry.split_once('=').ok_or("write ROLE=RATE/s or ROLE=RATE/s:BURST")?;
    let role = role.trim().parse::<AccessRole>()?;
    let (rate, burst) = match limit.split_once(':') {
        Some((rate, burst)) => (rate, Some(burst)),
        None => (limit, None),
    };
    let per_second: u32 = rate
        .trim()
        .strip_suffix("/s")
        .ok_or("the rate is per second: write e.g. 100/s")?
        .parse()
        .map_err(|_| "the rate must be a whole number")?;
    let burst = match burst {
        Some(burst) => burst.trim().parse().map_err(|_| "the burst must be a whole number")?,
        None => per_second * 2,
    };
    if per_second == 0 || burst == 0 {
        return Err("the rate and the burst must be at least 1".into());
    }
    Ok((role, RateLimit { per_second, burst }))
}

/// Reads variables and collects every error instead of stopping at the first.
struct Reader<'a> {
    vars: &'a HashMap<String, String>,
    errors: Vec<ConfigError>,
}

impl Reader<'_> {
    fn fail(&mut self, variable: &str, reason: impl Into<String>) {
        self.errors.push(ConfigError { variable: variable.into(), reason: reason.into() });
    }

    /// The trimmed value; an empty value counts as unset.
    fn text(&self, variable: &str) -> Option<String> {
        self.vars.get(variable).map(|value| value.trim().to_string()).filter(|value| !value.is_empty())
    }

    fn parsed<T>(&mut self, variable: &str, default: T, check: impl Fn(&T) -> Result<(), String>) -> T
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let Some(raw) = self.text(variable) else {
            return default;
        };
        match raw.parse::<T>().map_err(|error| error.to_string()).and_then(|value| check(&value).map(|()| value)) {
            Ok(value) => value,
            Err(reason) => {
                self.fail(variable, format!("{raw:?} is not valid: {reason}"));
                default
            }
        }
    }

    fn duration(&mut self, variable: &str, default: Duration) -> Duration {
        let Some(raw) = self.text(variable) else {
            return default;
        };
        match humantime::parse_duration(&raw) {
            Ok(value) if !value.is_zero() => value,
            Ok(_) => {
                self.fail(variable, format!("{raw:?} is not valid: must be longer than zero"));
                default
            }
            Err(error) => {
                self.fail(variable, format!("{raw:?} is not a duration ({error}); write e.g. 30s, 500ms or 2m"));
                default
            }
        }
    }

    fn secret(&mut self, variable: &str, min_len: usize) -> Option<Secret> {
        let value = self.text(variable)?;
        if value.len() < min_len {
            // Never echo a secret, not even a bad one.
            self.fail(variable, format!("must be at least {min_len} characters long"));
            return None;
        }
        Some(Secret(value))
    }

    fn interactions(&mut self) -> InteractionsSettings {
        let defaults = InteractionsSettings::default();
        InteractionsSettings {
            recurring_count: self.parsed("CRM_RECURRING_PROBLEM_COUNT", defaults.recurring_count, at_least(2)),
            recurring_window_days: self.parsed(
                "CRM_RECURRING_PROBLEM_WINDOW_DAYS",
                defaults.recurring_window_days,
                at_least(1),
            ),
            overdue_check_interval: self.duration("CRM_OVERDUE_CHECK_INTERVAL", defaults.overdue_check_interval),
        }
    }

    fn alerting(&mut self) -> AlertingSettings {
        let defaults = AlertingSettings::default();
        let mut urls = Vec::new();
        for url in self.text("CRM_ALERTMANAGER_URLS").unwrap_or_default().split(',').map(str::trim) {
            if url.is_empty() {
                continue;
            }
            match url.parse::<http::Uri>() {
                Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {
                    urls.push(url.trim_end_matches('/').to_string())
                }
                _ => self.fail(
                    "CRM_ALERTMANAGER_URLS",
                    format!("{url:?} is not an http(s) URL such as http://alertmanager:9093"),
                ),
            }
        }
        let prometheus_url = self.text("CRM_PROMETHEUS_URL").map(|url| url.trim().trim_end_matches('/').to_string());
        if let Some(url) = &prometheus_url
            && !matches!(url.parse::<http::Uri>(), Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some())
        {
            self.fail("CRM_PROMETHEUS_URL", format!("{url:?} is not an http(s) URL such as http://prometheus:9090"));
        }
        let mut networks = Vec::new();
        for network in self.text("CRM_WEBHOOK_ALLOWED_NETWORKS").unwrap_or_default().split(',').map(str::trim) {
            if network.is_empty() {
                continue;
            }
            match network.parse::<ipnet::IpNet>() {
                Ok(parsed) => networks.push(parsed),
                Err(_) => self.fail(
                    "CRM_WEBHOOK_ALLOWED_NETWORKS",
                    format!("{network:?} is not a network in CIDR notation such as 127.0.0.0/8 or ::1/128"),
                ),
            }
        }
        AlertingSettings {
            evaluation_interval: self.duration("CRM_ALERTING_EVALUATION_INTERVAL", defaults.evaluation_interval),
            alertmanager_urls: urls,
            alertmanager_resend_interval: self
                .duration("CRM_ALERTMANAGER_RESEND_INTERVAL", defaults.alertmanager_resend_interval),
            external_url: self.text("CRM_ALERTING_EXTERNAL_URL").map(|url| url.trim_end_matches('/').to_string()),
            webhook_allowed_networks: networks,
            webhook_max_attempts: self.parsed("CRM_WEBHOOK_MAX_ATTEMPTS", defaults.webhook_max_attempts, at_least(1)),
            webhook_retry_min: self.duration("CRM_WEBHOOK_RETRY_MIN", defaults.webhook_retry_min),
            webhook_retry_max: self.duration("CRM_WEBHOOK_RETRY_MAX", defaults.webhook_retry_max),
            webhook_timeout: self.duration("CRM_WEBHOOK_TIMEOUT", defaults.webhook_timeout),
            prometheus_url,
        }
    }

    fn contacts(&mut self) -> ContactsSettings {
        let defaults = ContactsSettings::default();
        let default_region = self.parsed("CRM_CONTACTS_DEFAULT_REGION", defaults.default_region, |region: &String| {
            if region.len() == 2 && region.chars().all(|c| c.is_ascii_uppercase()) {
                Ok(())
            } else {
                Err("must be an ISO 3166-1 alpha-2 code in upper case, for example GB".into())
            }
        });
        let duplicate_threshold =
            self.parsed("CRM_CONTACTS_DUPLICATE_THRESHOLD", defaults.duplicate_threshold, |threshold: &f64| {
                if (0.0..=1.0).contains(threshold) { Ok(()) } else { Err("must be between 0 and 1".into()) }
            });
        ContactsSettings { default_region, duplicate_threshold }
    }

    /// `CRM_RATE_LIMITS` (`agent=100/s,integration=2000/s:5000`, each `role=RATE/s[:BURST]`,
    /// overriding the defaults for the roles named) and `CRM_MAX_STREAMS_PER_KEY`.
    fn gateway_limits(&mut self) -> GatewayLimits {
        let mut limits = GatewayLimits::default();
        limits.max_streams_per_key = self.parsed("CRM_MAX_STREAMS_PER_KEY", limits.max_streams_per_key, at_least(1));
        let Some(raw) = self.text("CRM_RATE_LIMITS") else { return limits };
        for entry in raw.split(',').map(str::trim).filter(|entry| !entry.is_empty()) {
            match parse_rate_limit(entry) {
                Ok((role, limit)) => {
                    limits.rate.insert(role, limit);
                }
                Err(reason) => self.fail("CRM_RATE_LIMITS", format!("{entry:?} is not valid: {reason}")),
            }
        }
        limits
    }

    fn console(&mut self) -> ConsoleSettings {
        let defaults = ConsoleSettings::default();
        let addr = match self.text("CRM_CONSOLE_ADDR").as_deref() {
            None => ConsoleAddr::Unset,
            Some("off") => ConsoleAddr::Off,
            Some(_) => ConsoleAddr::At(self.parsed("CRM_CONSOLE_ADDR", ConsoleSettings::UP_DEFAULT, |_| Ok(()))),
        };
        ConsoleSettings { addr, dir: self.text("CRM_CONSOLE_DIR").map(PathBuf::from).unwrap_or(defaults.dir) }
    }

    fn jwt(&mut self) -> Option<JwtSettings> {
        let jwks_file = PathBuf::from(self.text("CRM_JWT_JWKS_FILE")?);
        let required = |reader: &mut Self, variable: &str| {
            reader.text(variable).unwrap_or_else(|| {
                reader.fail(variable, "must be set when CRM_JWT_JWKS_FILE is");
                String::new()
            })
        };
        let issuer = required(self, "CRM_JWT_ISSUER");
        let audience = required(self, "CRM_JWT_AUDIENCE");
        let roles_claim = self.text("CRM_JWT_ROLES_CLAIM").unwrap_or_else(|| "crm_roles".into());
        Some(JwtSettings { jwks_file, issuer, audience, roles_claim })
    }

    /// A certificate and key, both set or neither; each must be a readable file.
    fn tls_files(&mut self, cert: &str, key: &str) -> Option<TlsFiles> {
        match (self.file(cert), self.file(key)) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => {
                self.fail(key, format!("must be set when {cert} is"));
                None
            }
            (None, Some(_)) => {
                self.fail(cert, format!("must be set when {key} is"));
                None
            }
        }
    }

    fn internal_tls(&mut self) -> Option<InternalTls> {
        let ca = self.file("CRM_INTERNAL_TLS_CA_FILE");
        let identity = self.tls_files("CRM_INTERNAL_TLS_CERT_FILE", "CRM_INTERNAL_TLS_KEY_FILE");
        match (ca, identity) {
            (Some(ca), Some(identity)) => Some(InternalTls { ca, identity }),
            (None, None) => None,
            (None, Some(_)) => {
                self.fail("CRM_INTERNAL_TLS_CA_FILE", "must be set with the internal certificate and key");
                None
            }
            (Some(_), None) => {
                self.fail("CRM_INTERNAL_TLS_CERT_FILE", "must be set (with its key) when CRM_INTERNAL_TLS_CA_FILE is");
                None
            }
        }
    }

    /// A path that names a readable file.
    fn file(&mut self, variable: &str) -> Option<PathBuf> {
        let path = PathBuf::from(self.text(variable)?);
        if let Err(error) = std::fs::File::open(&path) {
            self.fail(variable, format!("{} cannot be read: {error}", path.display()));
        }
        Some(path)
    }

    fn upstreams(&mut self, role: Role, listen: SocketAddr, internal_tls: bool) -> Vec<String> {
        let variable = format!("{}_UPSTREAMS", role.env_prefix());
        let Some(raw) = self.text(&variable) else {
            let scheme = if internal_tls { "https" } else { "http" };
            return vec![format!("{scheme}://{listen}")];
        };
        let urls: Vec<String> =
            raw.split(',').map(|url| url.trim().to_string()).filter(|url| !url.is_empty()).collect();
        for url in &urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.parse::<http::Uri>().is_err() {
                self.fail(&variable, format!("{url:?} is not an http:// or https:// URL"));
            }
        }
        urls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    #[test]
    fn defaults_need_no_variables() {
        let config = Config::from_vars(&vars(&[])).unwrap();
        assert!(config.database_url.is_none());
        assert_eq!(config.listen[&Role::Gateway].port(), 50051);
        assert_eq!(config.upstreams[&Role::Contacts], vec!["http://127.0.0.1:50061".to_string()]);
        assert_eq!(config.server, ServerSettings::default());
        assert_eq!(config.log_format, LogFormat::Auto);
    }

    #[test]
    fn every_bad_value_is_reported_with_its_variable() {
        let errors = Config::from_vars(&vars(&[
            ("DATABASE_URL", "mysql://nope"),
            ("DATABASE_READ_URL", "replica:5432"),
            ("CRM_DB_MAX_CONNECTIONS", "0"),
            ("CRM_GATEWAY_ADDR", "localhost"),
            ("CRM_REQUEST_TIMEOUT", "soon"),
            ("CRM_SHUTDOWN_GRACE", "0s"),
            ("CRM_LOG_FORMAT", "xml"),
            ("CRM_CONTACTS_UPSTREAMS", "http://10.0.0.1:50061, ftp://x"),
            ("CRM_INTERNAL_SECRET", "short-secret-value"),
        ]))
        .unwrap_err();
        let named: Vec<&str> = errors.0.iter().map(|error| error.variable.as_str()).collect();
        assert_eq!(
            named,
            [
                "DATABASE_URL",
                "DATABASE_READ_URL",
                "CRM_DB_MAX_CONNECTIONS",
                "CRM_CONTACTS_UPSTREAMS",
                "CRM_GATEWAY_ADDR",
                "CRM_LOG_FORMAT",
                "CRM_REQUEST_TIMEOUT",
                "CRM_SHUTDOWN_GRACE",
                "CRM_INTERNAL_SECRET",
            ]
        );
        let message = errors.to_string();
        assert!(message.contains("\"soon\" is not a duration"), "{message}");
        assert!(message.contains("must be at least 1"), "{message}");
        assert!(!message.contains("short-secret-value"), "secrets are never echoed: {message}");
    }

    #[test]
    fn jwt_needs_an_issuer_and_an_audience() {
        let errors = Config::from_vars(&vars(&[("CRM_JWT_JWKS_FILE", "/etc/crm/jwks.json")])).unwrap_err();
        let named: Vec<&str> = errors.0.iter().map(|error| error.variable.as_str()).collect();
        assert_eq!(named, ["CRM_JWT_ISSUER", "CRM_JWT_AUDIENCE"]);
        let config = Config::from_vars(&vars(&[
            ("CRM_JWT_JWKS_FILE", "/etc/crm/jwks.json"),
            ("CRM_JWT_ISSUER", "https://id.example"),
            ("CRM_JWT_AUDIENCE", "crm"),
        ]))
        .unwrap();
        assert_eq!(config.jwt.unwrap().roles_claim, "crm_roles");
    }

    #[test]
    fn rate_limits_override_the_defaults_of_the_roles_they_name() {
        let config = Config::from_vars(&vars(&[
            ("CRM_RATE_LIMITS", "analyst=5/s:7, sre=3/s"),
            ("CRM_MAX_STREAMS_PER_KEY", "4"),
        ]))
        .unwrap();
        let rate = &config.gateway_limits.rate;
        assert_eq!(rate[&AccessRole::Analyst], RateLimit { per_second: 5, burst: 7 });
        assert_eq!(rate[&AccessRole::Sre], RateLimit { per_second: 3, burst: 6 });
        assert_eq!(rate[&AccessRole::Admin], GatewayLimits::default().rate[&AccessRole::Admin]);
        assert_eq!(config.gateway_limits.max_streams_per_key, 4);

        let errors = Config::from_vars(&vars(&[("CRM_RATE_LIMITS", "root=5/s,agent=5,agent=0/s")])).unwrap_err();
        assert_eq!(errors.0.len(), 3, "{errors}");
        assert!(errors.0.iter().all(|error| error.variable == "CRM_RATE_LIMITS"));
    }

    #[test]
    fn values_are_read_and_secrets_are_redacted() {
        let config = Config::from_vars(&vars(&[
            ("DATABASE_URL", "postgres://postgres@127.0.0.1/crm"),
            ("CRM_METRICS_ADDR", "off"),
            ("CRM_REQUEST_TIMEOUT", "500ms"),
            ("CRM_CONTACTS_UPSTREAMS", "http://a:1, http://b:2"),
            ("CRM_INTERNAL_SECRET", "0123456789abcdef0123456789abcdef"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
        ]))
        .unwrap();
        assert_eq!(config.metrics_addr, None);
        assert_eq!(config.server.request_timeout, Duration::from_millis(500));
        assert_eq!(config.upstreams[&Role::Contacts], vec!["http://a:1".to_string(), "http://b:2".to_string()]);
        assert_eq!(config.otlp.unwrap().service_name, "crm");
        let printed = format!("{:?}", config.internal_secret);
        assert!(!printed.contains("0123456789"), "{printed}");
    }
}
