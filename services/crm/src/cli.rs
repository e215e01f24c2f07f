//! The command line. Settings come from the environment (see the table in docs/configuration.md);
//! flags choose what to run.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use crm_platform::Role;

/// The CRM suite: contacts, interactions, segmentation, alerting and their gateway, in one binary.
///
/// Configuration comes from environment variables (DATABASE_URL, CRM_*, OTEL_*); see docs/configuration.md.
#[derive(Debug, Parser)]
#[command(name = "crm", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every role in one process, for a laptop or a small shop.
    ///
    /// Without DATABASE_URL it starts a private PostgreSQL from this machine's
    /// PostgreSQL binaries in the data directory, and reuses it on the next run.
    /// Prints the gateway address and the bootstrap admin API key.
    Up {
        /// Where the private PostgreSQL and the generated secrets are kept
        /// [env: CRM_DATA_DIR; default: ~/.local/share/crm, or /var/lib/crm for root].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Run one role, several, or all of them against DATABASE_URL (one Deployment per role).
    Serve {
        /// Roles to run: all, or a comma-separated list of gateway, contacts,
        /// interactions, segmentation, alerting.
        #[arg(long, value_name = "ROLES", default_value = "all", value_parser = parse_targets)]
        target: Targets,
    },
    /// Load the suite and report requests/s, p50/p90/p99/max and errors per method,
    /// through the gateway and straight to a role, with the gateway's overhead.
    ///
    /// Without --gateway it starts a private suite on a scratch database
    /// (DATABASE_URL's server, or a private PostgreSQL) and loads both ways.
    Bench {
        /// A running gateway to load (host:port).
        #[arg(long, value_name = "ADDR")]
        gateway: Option<String>,
        /// API key for --gateway.
        #[arg(long, env = "CRM_BENCH_KEY", hide_env_values = true)]
        key: Option<String>,
        /// Also load this contacts role address directly (host:port), signing
        /// identity with CRM_INTERNAL_SECRET, and print the gateway's overhead.
        #[arg(long, value_name = "ADDR")]
        direct: Option<String>,
        /// Concurrent clients.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Length of each phase (saturation, then a fixed rate), e.g. 10s.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// Operations and their weights, e.g. get_contact=1 (list_events, get_contact, create_contact,
        /// lookup_email, lookup_phone, lookup_external_id, search_contacts, timeline_page, contact_summary,
        /// record_interaction, contact_features, contact_segments, contact_score, service_tier_id,
        /// service_tier_phone; the last three define a default score model first).
        #[arg(long, default_value = "list_events=1", value_parser = crate::bench::parse_mix)]
        mix: crate::bench::Mix,
        /// Calls per second of the fixed-rate phase, in total (default: half of the
        /// gateway's saturated rate).
        #[arg(long, value_parser = parse_rate)]
        rate: Option<f64>,
        /// Contacts to import first (timed next to a COPY of the same rows); reads draw from them.
        #[arg(long, default_value_t = 0)]
        contacts: usize,
        /// Interactions to ingest first (timed next to a COPY) over N/50 new contacts, or over the
        /// contacts --contacts imported; timeline reads use them.
        #[arg(long, default_value_t = 0)]
        interactions: usize,
        /// With --interactions: define this many SLOs over interactions halfway through the
        /// ingest, and print both halves' rates and how fast the alerting role counts.
        #[arg(long, default_value_t = 0)]
        slos: usize,
        /// With --slos: rules on InteractionRecorded defined with them.
        #[arg(long, default_value_t = 0)]
        alert_rules: usize,
        /// Define this many dynamic segments (rules over interaction features): with
        /// --interactions before the ingest, which the segmentation role keeps as it follows;
        /// then time PreviewSegment and a new segment's first evaluation over every contact.
        #[arg(long, default_value_t = 0)]
        segments: usize,
        /// Measure from RecordInteraction to the alert in Alertmanager (the first of
        /// CRM_ALERTMANAGER_URLS, which the suite sends to): at 1,000 interactions/s, then
        /// while 20,000 rows/s are ingested besides, --duration each (with --slos and
        /// --alert-rules defined first).
        #[arg(long)]
        alert_latency: bool,
        /// Measure from RecordInteraction to SegmentEntered on a Subscribe stream of the
        /// segmentation role (through the gateway): at 1,000 interactions/s, then while
        /// 20,000 rows/s are ingested besides, --duration each (with --segments defined first).
        #[arg(long)]
        segment_latency: bool,
        /// Time the customer analytics over the whole base (RFM, the lifetime-value fit, the
        /// association rules), each alone and beside an ingest, printing the ingest's rate
        /// with and without it; the analytics reads of the mix read what they computed.
        #[arg(long)]
        analytics: bool,
        /// Rounds of the ingest alone and beside each computation under --analytics
        /// (0: each computation timed alone only).
        #[arg(long, default_value_t = 3)]
        analytics_rounds: usize,
    },
    /// Tools of the alerting role that work against a running install.
    Alerting {
        #[command(subcommand)]
        command: AlertingCommand,
    },
    /// Work on the contacts role's data in DATABASE_URL.
    Contacts {
        #[command(subcommand)]
        command: ContactsCommand,
    },
    /// Bring contacts in from a file (a legacy CRM's export, a spreadsheet, billing's customers).
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Write contacts out to a file, in the columns `crm import` reads back.
    Export {
        #[command(subcommand)]
        command: ExportCommand,
    },
    /// Apply the migrations of every role (or of --target) to DATABASE_URL and exit.
    Migrate {
        /// Roles whose schemas to migrate: all, or a comma-separated list.
        #[arg(long, value_name = "ROLES", default_value = "all", value_parser = parse_targets)]
        target: Targets,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import contacts from a CSV or JSON Lines file (`-`: standard input; `.gz` read as gzip).
    ///
    /// Columns map by their headers (First Name, Surname, E-mail, Phone, Mobile, Zip, DOB…,
    /// case and punctuation aside) or by --map. Field names: given_name, family_name,
    /// display_name, emails, emails[N], phones, phones[N], street, locality, region,
    /// postal_code, country_code, address_type, addresses[N].FIELD, addresses[N].lines[M],
    /// other_addresses, birth_date, lifecycle_stage, owner, tags, attributes, attributes.KEY,
    /// external_id, external_ids, consents, consents.CHANNEL (email, phone, sms, post),
    /// max_contacts_per_week. Rows keep their ids in the source system (the external_id column
    /// under --source, or a digest of the row), so running the same command again after an
    /// interruption duplicates nobody; a checkpoint beside the report (or the file) lets it skip
    /// what was done. Prints a summary; --report lists every row not simply created or updated.
    Contacts(ImportContacts),
    /// Import interactions (orders, invoices, payments, calls, tickets…) from a CSV or JSON Lines file.
    ///
    /// Each row names its contact: contact_id, or contact.email, contact.phone or
    /// contact.external_id (the id the contacts were imported with, under --contact-source),
    /// looked up once per contact. Field names: kind, custom_kind, channel, direction,
    /// occurred_at, subject, notes, amount, currency, sku, quantity, unit_price, product_lines,
    /// invoice_number, due_date, duration_ms, outcome, sentiment, emotion, pain_points, agent,
    /// external_id, attributes, attributes.KEY; common headers (Order ID, Customer ID, Type,
    /// Date, Total, Product, Qty…) map by themselves. Amounts are in the currency's major unit
    /// (12.50). Interactions keep their ids in the source system (external_id under --source,
    /// or a digest of the row): the same file imported again stores nothing twice.
    Interactions(ImportInteractions),
}

/// What `crm import contacts` is asked.
#[derive(Clone, Debug, Args)]
pub struct ImportContacts {
    #[command(flatten)]
    pub input: ImportFile,
    /// What to do with a row that likely duplicates a contact: merge (into it), skip, flag
    /// (create it and flag both for review), or fail (report the row).
    #[arg(long, value_parser = parse_policy)]
    pub duplicates: Option<crm_proto::contacts::v1::DuplicatePolicy>,
    /// Report what would happen, row by row, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The country (ISO code, e.g. GB) of an address whose row names none.
    #[arg(long, value_name = "CODE")]
    pub country: Option<String>,
}

/// What `crm import interactions` is asked.
#[derive(Clone, Debug, Args)]
pub struct ImportInteractions {
    #[command(flatten)]
    pub input: ImportFile,
    /// The system whose ids the contact column holds (contact.external_id; default: --source),
    /// as the contacts were imported with.
    #[arg(long, value_name = "NAME")]
    pub contact_source: Option<String>,
    /// The currency (ISO 4217, e.g. EUR) of an amount whose row names none.
    #[arg(long, value_name = "CODE")]
    pub currency: Option<String>,
    /// The channel of a row that names none: web, email, phone, sms, chat, post, store, event,
    /// social, billing, support or other.
    #[arg(long, value_parser = parse_channel)]
    pub channel: Option<crm_proto::interactions::v1::Channel>,
}

/// The file and the options every import takes.
#[derive(Clone, Debug, Args)]
pub struct ImportFile {
    /// The file.
    pub file: PathBuf,
    /// The gateway (host:port).
    #[arg(long, env = "CRM_GATEWAY", value_name = "ADDR")]
    pub gateway: Option<String>,
    /// An API key that writes contacts (and, for interactions, reads them).
    #[arg(long, env = "CRM_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// The system the rows come from, lower case (default: the file's name): the rows'
    /// external ids are under it, and the audit trail names it.
    #[arg(long)]
    pub source: Option<String>,
    /// Column mappings, e.g. 'Given=given_name,Tel=phones[0],Notes=attributes.notes,Fax=-'
    /// (`-` leaves a column out); may be repeated.
    #[arg(long, value_name = "HEADER=FIELD,…")]
    pub map: Vec<String>,
    /// A file of HEADER=FIELD lines (`#` comments), applied before --map.
    #[arg(long, value_name = "FILE")]
    pub mapping: Option<PathBuf>,
    /// Print what each column becomes, and which are left out, and send nothing.
    #[arg(long)]
    pub show_mapping: bool,
    /// csv or jsonl (default: by the file's name; csv for standard input).
    #[arg(long, value_parser = parse_format)]
    pub format: Option<crm_transfer::Format>,
    /// The CSV delimiter (default: found from the header line among , ; tab |).
    #[arg(long, value_parser = parse_delimiter)]
    pub delimiter: Option<u8>,
    /// The file's encoding when it is not UTF-8: windows-1252, latin1, iso-8859-15, utf-16le…
    #[arg(long)]
    pub encoding: Option<String>,
    /// How to read a date like 03/04/1980: dmy or mdy.
    #[arg(long, value_parser = parse_date_order)]
    pub date_order: Option<crm_transfer::DateOrder>,
    /// Write one CSV line per row that was not simply created or updated (merged, skipped,
    /// flagged, refused, unreadable), with its line, fields and reason.
    #[arg(long, value_name = "FILE.csv")]
    pub report: Option<PathBuf>,
    /// Stop at the first line that cannot be read or converted (the rows before it are imported).
    #[arg(long)]
    pub strict: bool,
    /// Rows per message (the suite commits each message at once).
    #[arg(long, default_value_t = crate::transfer::import::MAX_BATCH)]
    pub batch: usize,
    /// Start over, ignoring the checkpoint an interrupted run left.
    #[arg(long)]
    pub restart: bool,
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Export every live contact, oldest first, as CSV or JSON Lines.
    Contacts(ExportContacts),
    /// Export everything the suite holds about one person as one JSON document (a data-subject
    /// access or portability request): the contact and the ids merged into it, its audit trail,
    /// every interaction, the customer view, features, segments, scores, RFM and lifetime value.
    Subject(ExportSubject),
    /// Export interactions as CSV or JSON Lines: one contact's timeline, or every interaction
    /// recorded (from the interactions feed, in the order they were recorded).
    Interactions(ExportInteractions),
    /// Export a segment's members (contact id and since when), or with --contacts their
    /// contacts, for a mailing or advertising tool.
    Segment(ExportSegment),
}

/// What `crm export segment` is asked.
#[derive(Clone, Debug, Args)]
pub struct ExportSegment {
    /// The segment's id.
    pub segment: String,
    /// The gateway (host:port).
    #[arg(long, env = "CRM_GATEWAY", value_name = "ADDR")]
    pub gateway: String,
    /// An API key that reads segmentation (and, with --contacts, contacts).
    #[arg(long, env = "CRM_API_KEY", hide_env_values = true)]
    pub key: String,
    /// Each member's contact, in the columns of `crm export contacts`, after member_since.
    #[arg(long)]
    pub contacts: bool,
    /// Where to write (default: standard output); `.gz` is written as gzip.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// csv or jsonl (default: by the output's name; csv on standard output).
    #[arg(long, value_parser = parse_format)]
    pub format: Option<crm_transfer::Format>,
}

/// What `crm export interactions` is asked.
#[derive(Clone, Debug, Args)]
pub struct ExportInteractions {
    /// The gateway (host:port).
    #[arg(long, env = "CRM_GATEWAY", value_name = "ADDR")]
    pub gateway: String,
    /// An API key that reads interactions.
    #[arg(long, env = "CRM_API_KEY", hide_env_values = true)]
    pub key: String,
    /// Only this contact's timeline.
    #[arg(long, value_name = "ID")]
    pub contact: Option<String>,
    /// Only interactions that happened at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Where to write (default: standard output); `.gz` is written as gzip.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// csv or jsonl (default: by the output's name; csv on standard output).
    #[arg(long, value_parser = parse_format)]
    pub format: Option<crm_transfer::Format>,
}

/// What `crm export subject` is asked.
#[derive(Clone, Debug, Args)]
pub struct ExportSubject {
    /// The gateway (host:port).
    #[arg(long, env = "CRM_GATEWAY", value_name = "ADDR")]
    pub gateway: String,
    /// An API key that reads contacts, interactions and segmentation.
    #[arg(long, env = "CRM_API_KEY", hide_env_values = true)]
    pub key: String,
    /// The contact's id (or the id of a record merged into it).
    #[arg(long, value_name = "ID", conflicts_with = "email")]
    pub contact: Option<String>,
    /// The contact's email address.
    #[arg(long, value_name = "ADDRESS")]
    pub email: Option<String>,
    /// Where to write (default: standard output); the file is readable by its owner only.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// What `crm export contacts` is asked.
#[derive(Clone, Debug, Args)]
pub struct ExportContacts {
    /// The gateway (host:port).
    #[arg(long, env = "CRM_GATEWAY", value_name = "ADDR")]
    pub gateway: String,
    /// An API key that reads contacts.
    #[arg(long, env = "CRM_API_KEY", hide_env_values = true)]
    pub key: String,
    /// Where to write (default: standard output); `.gz` is written as gzip.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// csv or jsonl (default: by the output's name; csv on standard output).
    #[arg(long, value_parser = parse_format)]
    pub format: Option<crm_transfer::Format>,
    /// Only contacts changed at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub updated_since: Option<chrono::DateTime<chrono::Utc>>,
}

fn parse_policy(value: &str) -> Result<crm_proto::contacts::v1::DuplicatePolicy, String> {
    use crm_proto::contacts::v1::DuplicatePolicy;
    match value {
        "merge" => Ok(DuplicatePolicy::Merge),
        "skip" => Ok(DuplicatePolicy::Skip),
        "flag" => Ok(DuplicatePolicy::CreateAndFlag),
        "fail" => Ok(DuplicatePolicy::Fail),
        _ => Err(format!("{value:?} is not merge, skip, flag or fail")),
    }
}

fn parse_channel(value: &str) -> Result<crm_proto::interactions::v1::Channel, String> {
    crm_transfer::interactions::channel(value).ok_or_else(|| format!("{value:?} is not a channel"))
}

fn parse_format(value: &str) -> Result<crm_transfer::Format, String> {
    match value {
        "csv" => Ok(crm_transfer::Format::Csv),
        "jsonl" | "ndjson" => Ok(crm_transfer::Format::Jsonl),
        _ => Err(format!("{value:?} is not csv or jsonl")),
    }
}

fn parse_delimiter(value: &str) -> Result<u8, String> {
    match value {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ if value.len() == 1 && value.is_ascii() => Ok(value.as_bytes()[0]),
        _ => Err(format!("{value:?} is not one character (or tab)")),
    }
}

fn parse_date_order(value: &str) -> Result<crm_transfer::DateOrder, String> {
    match value {
        "dmy" => Ok(crm_transfer::DateOrder::DayFirst),
        "mdy" => Ok(crm_transfer::DateOrder::MonthFirst),
        _ => Err(format!("{value:?} is not dmy or mdy")),
    }
}

#[derive(Debug, Subcommand)]
pub enum ContactsCommand {
    /// Fit the duplicate-matching model on the live contacts (a sample of up
    /// to 20,000, compared at random and with those they share a blocking
    /// key with) and store it as the next version; running roles take it up
    /// within 30 seconds. Prints the fitted weights.
    FitMatcher,
}

#[derive(Debug, Subcommand)]
pub enum AlertingCommand {
    /// Write the Prometheus recording and alerting rules of the SLOs whose
    /// indicator Prometheus counts, for a team's own Prometheus
    /// (`promtool check rules` passes on them).
    ExportRules {
        /// The gateway (host:port).
        #[arg(long, env = "CRM_GATEWAY", value_name = "ADDR")]
        gateway: String,
        /// An API key that reads alerts (alerts.read).
        #[arg(long, env = "CRM_API_KEY", hide_env_values = true)]
        key: String,
        /// Where to write them (default: standard output).
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Create the SLOs of OpenSLO v1 documents (one file, several documents
    /// separated by `---`; `-` reads standard input). Every document is
    /// checked before any is applied; an SLO that exists with the same
    /// content is left alone, one that differs is reported.
    Apply {
        /// The gateway (host:port).
        #[arg(long, env = "CRM_GATEWAY", value_name = "ADDR")]
        gateway: String,
        /// An API key that writes alerts (alerts.write).
        #[arg(long, env = "CRM_API_KEY", hide_env_values = true)]
        key: String,
        /// The OpenSLO file.
        #[arg(long, short = 'f', value_name = "FILE")]
        file: PathBuf,
    },
    /// Write every SLO as an OpenSLO v1 document.
    ExportOpenslo {
        /// The gateway (host:port).
        #[arg(long, env = "CRM_GATEWAY", value_name = "ADDR")]
        gateway: String,
        /// An API key that reads alerts (alerts.read).
        #[arg(long, env = "CRM_API_KEY", hide_env_values = true)]
        key: String,
        /// Where to write them (default: standard output).
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

fn parse_rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 1.0 => Ok(rate),
        _ => Err(format!("{value:?} is not a rate of at least 1 call per second")),
    }
}

/// The roles chosen with `--target`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Targets(pub Vec<Role>);

fn parse_targets(value: &str) -> Result<Targets, String> {
    if value == "all" {
        return Ok(Targets(Role::ALL.to_vec()));
    }
    let mut roles = Vec::new();
    for name in value.split(',').map(str::trim) {
        let role = name.parse::<Role>().map_err(|error| format!("{error}, or all"))?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    Ok(Targets(roles))
}
