//! One error type for every role, mapped to `tonic::Status` in one place.
//!
//! Handlers return [`Error`]; `From<Error> for Status` chooses the gRPC code
//! and attaches google.rpc details (`ErrorInfo` always, `BadRequest` field
//! violations, `RetryInfo` where a retry can succeed, `PreconditionFailure`
//! for stale etags). Internal causes are logged with their whole chain and
//! never reach the client.

use std::{collections::HashMap, time::Duration};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// The `ErrorInfo.domain` of every error the suite returns.
pub const ERROR_DOMAIN: &str = "crm";

/// The most characters of caller-sent text an error quotes (see [`quote`]).
pub const MAX_QUOTE: usize = 64;
/// The longest field path or description a violation keeps.
const MAX_VIOLATION_TEXT: usize = 300;
/// The most violations one error lists; the rest are counted.
pub const MAX_VIOLATIONS: usize = 50;
/// The longest `grpc-message` the suite sends: clients refuse metadata over
/// 8–16 KB, and an echo of a huge input would hide the real error.
pub const MAX_MESSAGE: usize = 2048;

/// Caller-sent text as an error may quote it: Debug-quoted, and cut to
/// [`MAX_QUOTE`] characters with the full length said, so that an error never
/// echoes an input without bound.
pub fn quote(text: &str) -> String {
    let length = text.chars().count();
    if length <= MAX_QUOTE {
        return format!("{text:?}");
    }
    let prefix: String = text.chars().take(MAX_QUOTE).collect();
    format!("{prefix:?}… ({length} characters)")
}

/// `text` cut to at most `max` bytes, at a character boundary (an ellipsis marks the cut).
fn bounded(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// One or more fields of the request are wrong; all of them are listed.
    #[error("invalid argument: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{resource} {id} not found")]
    NotFound { resource: &'static str, id: String },
    /// The resource (or a likely duplicate of it) exists already.
    #[error("{message}")]
    AlreadyExists { reason: &'static str, message: String, metadata: HashMap<String, String> },
    /// The resource changed since the caller read it (stale etag); read it again.
    #[error("{resource} {id} was changed by someone else; read it again and retry with the new etag")]
    StaleEtag { resource: &'static str, id: String },
    /// The system is not in a state that allows the call.
    #[error("{message}")]
    FailedPrecondition { reason: &'static str, message: String },
    /// No such method or service.
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// Too many requests; retry after the delay.
    #[error("{message}")]
    ResourceExhausted { message: String, retry_after: Duration },
    /// A dependency is unreachable; retry after the delay.
    #[error("{message}")]
    Unavailable { message: String, retry_after: Duration },
    /// The transaction conflicted with a concurrent one (serialization
    /// failure, deadlock) and was rolled back: running it again can succeed.
    /// Stores retry it themselves a few times ([`Error::is_conflict`]);
    /// a caller sees UNAVAILABLE with a short retry delay.
    #[error("the change conflicted with a concurrent one; retry it")]
    Conflict,
    /// A bug or an unexpected failure: logged in full, reported to the client as INTERNAL.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

fn describe(violations: &[FieldViolation]) -> String {
    let parts: Vec<String> =
        violations.iter().map(|violation| format!("{}: {}", violation.field, violation.description)).collect();
    parts.join("; ")
}

impl Error {
    /// One wrong field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Error {
        Error::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    /// Whether the failed transaction can simply be run again.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict)
    }
}

/// Collects every field violation of a request before failing, so that a
/// caller learns about all of its mistakes at once. At most
/// [`MAX_VIOLATIONS`] are kept (the rest are counted), each field path and
/// description cut to a few hundred characters: a request of a million bad
/// entries gets an answer of bounded size.
#[derive(Debug, Default)]
pub struct Violations {
    kept: Vec<FieldViolation>,
    /// Violations beyond [`MAX_VIOLATIONS`], counted but not kept.
    more: usize,
}

impl Violations {
    pub fn new() -> Self {
        Violations::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        if self.kept.len() >= MAX_VIOLATIONS {
            self.more += 1;
            return;
        }
        self.kept.push(FieldViolation::new(
            bounded(field.into(), MAX_VIOLATION_TEXT),
            bounded(description.into(), MAX_VIOLATION_TEXT),
        ));
    }

    /// The entries of list field `field` when there are at most `max`, else
    /// none (and a violation): counts are checked before any entry is, so a
    /// request's work is bounded by the limits, not by what was sent.
    pub fn within<'a, T>(&mut self, field: &str, entries: &'a [T], max: usize) -> &'a [T] {
        if entries.len() > max {
            self.add(field, format!("must have at most {max} entries (got {})", entries.len()));
            return &[];
        }
        entries
    }

    /// `value` trimmed; a violation when it is not `min` to `max` characters long.
    pub fn text(&mut self, field: &str, value: &str, min: usize, max: usize) -> String {
        let value = value.trim();
        let length = value.chars().count();
        if length < min || length > max {
            self.add(field, format!("must be {min} to {max} characters (got {length})"));
        }
        value.to_string()
    }

    /// Whether nothing was wrong so far.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// `Ok(())` when nothing was wrong, else INVALID_ARGUMENT listing every violation.
    pub fn into_result(mut self) -> Result<(), Error> {
        if self.kept.is_empty() {
            return Ok(());
        }
        if self.more > 0 {
            self.kept.push(FieldViolation::new("", format!("and {} more violations not listed", self.more)));
        }
        Err(Error::InvalidArgument(self.kept))
    }
}

/// What a unique constraint means to a caller when a concurrent write took
/// the value first (SQLSTATE 23505), by the constraint's name: the reason
/// and the message the caller gets. A store usually checks first and says so
/// with more detail; this is what a lost race between check and insert gives.
const UNIQUE_CONSTRAINTS: &[(&str, &str, &str)] = &[
    (
        "contact_external_ids_pkey",
        "EXTERNAL_ID_TAKEN",
        "an external id of this contact was just claimed by another contact; look it up by that external id",
    ),
    (
        "organization_external_ids_pkey",
        "EXTERNAL_ID_TAKEN",
        "an external id of this organization was just claimed by another organization",
    ),
    ("api_keys_pkey", "ALREADY_EXISTS", "an API key with this id exists"),
];

/// What a foreign key means when the row it points to went away meanwhile
/// (SQLSTATE 23503), by the constraint's name.
const FOREIGN_KEYS: &[(&str, &str)] = &[
    ("relationships_contact_id_fkey", "the contact of this relationship was removed meanwhile"),
    ("relationships_other_contact_id_fkey", "the other contact of this relationship was removed meanwhile"),
    ("relationships_organization_id_fkey", "the organization of this relationship was removed meanwhile"),
    ("create_requests_contact_id_fkey", "the contact this request created was removed meanwhile"),
    ("contacts_merged_into_fkey", "the surviving contact of this merge was removed meanwhile"),
    ("organization_external_ids_organization_id_fkey", "the organization was removed meanwhile"),
];

/// SQLSTATE 23505 and 23503 as the caller should see them.
fn constraint_violation(code: &str, constraint: &str) -> Option<Error> {
    match code {
        "23505" => {
            let (reason, message) = UNIQUE_CONSTRAINTS
                .iter()
                .find(|(name, ..)| *name == constraint)
                .map(|(_, reason, message)| (*reason, *message))
                .unwrap_or((
                    "ALREADY_EXISTS",
                    "a value of this request that must be unique was just taken; read again",
                ));
            Some(Error::AlreadyExists { reason, message: message.to_string(), metadata: HashMap::new() })
        }
        "23503" => {
            let message = FOREIGN_KEYS
                .iter()
                .find(|(name, _)| *name == constraint)
                .map(|(_, message)| *message)
                .unwrap_or("a record this request refers to does not exist (any more)");
            Some(Error::FailedPrecondition { reason: "REFERENCE_MISSING", message: message.to_string() })
        }
        _ => None,
    }
}

/// SQLSTATEs by which the server says it is going away or cannot take the
/// connection now: class 08 (connection exception), 57P01 admin_shutdown
/// (a fast restart), 57P02 crash_shutdown (another backend crashed, or an
/// immediate restart), 57P03 cannot_connect_now (still starting) and 53300
/// too_many_connections. The statement did not run, or ran in a transaction
/// that did not commit, or committed without its reply reaching us; a caller
/// that gave its write a key (request id, external id) retries it safely, as
/// it would after a lost connection.
fn server_going_away(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

impl From<sqlx::Error> for Error {
    /// SQLSTATEs are mapped here and nowhere else.
    fn from(error: sqlx::Error) -> Self {
        let code = error.as_database_error().and_then(|db| db.code()).map(|code| code.into_owned());
        let constraint = error.as_database_error().and_then(|db| db.constraint()).unwrap_or_default();
        if let Some(mapped) = code.as_deref().and_then(|code| constraint_violation(code, constraint)) {
            tracing::debug!(%error, "constraint violation mapped for the caller");
            return mapped;
        }
        match (code.as_deref(), &error) {
            // serialization_failure, deadlock_detected: the transaction can simply be retried.
            (Some("40001" | "40P01"), _) => Error::Conflict,
            (Some(code), _) if server_going_away(code) => Error::Unavailable {
                message: "the database is restarting or refusing connections; retry shortly".into(),
                retry_after: Duration::from_secs(1),
            },
            (_, sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed) => Error::Unavailable {
                message: "the database is unavailable; retry shortly".into(),
                retry_after: Duration::from_secs(1),
            },
            _ => Error::Internal(anyhow::Error::new(error).context("database query failed")),
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        let mut details = ErrorDetails::new();
        let (code, reason, message) = match error {
            Error::InvalidArgument(violations) => {
                let message = format!("invalid argument: {}", describe(&violations));
                details.set_bad_request(violations);
                (Code::InvalidArgument, "INVALID_ARGUMENT", message)
            }
            error @ Error::NotFound { .. } => (Code::NotFound, "NOT_FOUND", error.to_string()),
            Error::AlreadyExists { reason, message, metadata } => {
                details.set_error_info(reason, ERROR_DOMAIN, metadata);
                return Status::with_error_details(Code::AlreadyExists, bounded(message, MAX_MESSAGE), details);
            }
            Error::StaleEtag { resource, ref id } => {
                let message = error.to_string();
                details.add_precondition_failure_violation("ETAG", format!("{resource}/{id}"), "the etag is stale");
                (Code::Aborted, "STALE_ETAG", message)
            }
            Error::FailedPrecondition { reason, message } => (Code::FailedPrecondition, reason, message),
            Error::Unimplemented(message) => (Code::Unimplemented, "UNIMPLEMENTED", message),
            Error::Unauthenticated(message) => (Code::Unauthenticated, "UNAUTHENTICATED", message),
            Error::PermissionDenied(message) => (Code::PermissionDenied, "PERMISSION_DENIED", message),
            Error::ResourceExhausted { message, retry_after } => {
                details.set_retry_info(Some(retry_after));
                (Code::ResourceExhausted, "RESOURCE_EXHAUSTED", message)
            }
            Error::Unavailable { message, retry_after } => {
                details.set_retry_info(Some(retry_after));
                (Code::Unavailable, "UNAVAILABLE", message)
            }
            error @ Error::Conflict => {
                details.set_retry_info(Some(Duration::from_millis(50)));
                (Code::Unavailable, "CONFLICT", error.to_string())
            }
            Error::Internal(cause) => {
                // The chain can hold SQL and internals: log it, never send it.
                tracing::error!(error = format!("{cause:#}"), "internal error");
                (Code::Internal, "INTERNAL", "internal error; the server logged the cause".to_string())
            }
        };
        details.set_error_info(reason, ERROR_DOMAIN, HashMap::new());
        Status::with_error_details(code, bounded(message, MAX_MESSAGE), details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_lists_every_field_violation() {
        let mut violations = Violations::new();
        violations.add("emails[0].address", "is not an email address");
        violations.add("given_name", "must not be empty");
        let status = Status::from(violations.into_result().unwrap_err());

        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("given_name: must not be empty"), "{}", status.message());
        let details = status.check_error_details().unwrap();
        let fields: Vec<&str> =
            details.bad_request().unwrap().field_violations.iter().map(|violation| violation.field.as_str()).collect();
        assert_eq!(fields, ["emails[0].address", "given_name"]);
        assert_eq!(details.error_info().unwrap().reason, "INVALID_ARGUMENT");
        assert_eq!(details.error_info().unwrap().domain, ERROR_DOMAIN);
    }

    #[test]
    fn errors_quote_a_bounded_prefix_of_what_the_caller_sent() {
        let huge = "k".repeat(256 * 1024);
        let mut violations = Violations::new();
        violations.add(format!("attributes[{huge:?}]"), format!("{huge} is not allowed"));
        for index in 0..10_000 {
            violations.add(format!("emails[{index}]"), "is not an email address");
        }
        let status = Status::from(violations.into_result().unwrap_err());
        assert!(status.message().len() <= MAX_MESSAGE, "{}", status.message().len());
        let details = status.check_error_details().unwrap();
        let listed = &details.bad_request().unwrap().field_violations;
        assert_eq!(listed.len(), MAX_VIOLATIONS + 1);
        assert!(listed[0].field.len() <= MAX_VIOLATION_TEXT);
        assert_eq!(listed[MAX_VIOLATIONS].description, format!("and {} more violations not listed", 10_000 - 49));
        // The whole status, details included, fits in a client's 16 KB of metadata.
        assert!(status.details().len() < 16 * 1024, "{}", status.details().len());

        assert_eq!(quote("short"), "\"short\"");
        let quoted = quote(&huge);
        assert!(quoted.len() < 100 && quoted.ends_with("(262144 characters)"), "{quoted}");
    }

    #[test]
    fn no_violations_is_ok() {
        assert!(Violations::new().into_result().is_ok());
    }

    #[test]
    fn retryable_errors_carry_retry_info() {
        let status = Status::from(Error::ResourceExhausted {
            message: "rate limit of key k1 exceeded".into(),
            retry_after: Duration::from_millis(250),
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
        let retry = status.check_error_details().unwrap().retry_info().cloned().unwrap();
        assert_eq!(retry.retry_delay, Some(Duration::from_millis(250)));
    }

    #[test]
    fn stale_etag_is_aborted_with_a_precondition_failure() {
        let status = Status::from(Error::StaleEtag { resource: "contact", id: "c1".into() });
        assert_eq!(status.code(), Code::Aborted);
        let details = status.check_error_details().unwrap();
        assert_eq!(details.precondition_failure().unwrap().violations[0].subject, "contact/c1");
        assert_eq!(details.error_info().unwrap().reason, "STALE_ETAG");
    }

    #[test]
    fn already_exists_keeps_its_reason_and_metadata() {
        let metadata = HashMap::from([("candidates".to_string(), "c1:0.97".to_string())]);
        let status = Status::from(Error::AlreadyExists {
            reason: "LIKELY_DUPLICATE",
            message: "a likely duplicate exists".into(),
            metadata,
        });
        assert_eq!(status.code(), Code::AlreadyExists);
        let info = status.check_error_details().unwrap().error_info().cloned().unwrap();
        assert_eq!(info.reason, "LIKELY_DUPLICATE");
        assert_eq!(info.metadata["candidates"], "c1:0.97");
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let cause = anyhow::anyhow!("relation \"contacts.secret_table\" does not exist").context("loading contact");
        let status = Status::from(Error::Internal(cause));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret_table"), "{}", status.message());
    }

    #[test]
    fn constraint_violations_are_named_by_their_constraint() {
        let taken = constraint_violation("23505", "contact_external_ids_pkey").unwrap();
        assert!(matches!(taken, Error::AlreadyExists { reason: "EXTERNAL_ID_TAKEN", .. }), "{taken:?}");
        let other = constraint_violation("23505", "some_other_key").unwrap();
        assert!(matches!(other, Error::AlreadyExists { reason: "ALREADY_EXISTS", .. }), "{other:?}");
        let gone = constraint_violation("23503", "relationships_contact_id_fkey").unwrap();
        assert_eq!(Status::from(gone).code(), Code::FailedPrecondition);
        assert!(constraint_violation("22021", "").is_none());
    }

    #[test]
    fn a_restarting_server_is_unavailable_not_internal() {
        for code in ["57P01", "57P02", "57P03", "53300", "08006", "08003"] {
            assert!(server_going_away(code), "{code}");
        }
        for code in ["57014", "23505", "40001", "XX000", "42P01"] {
            assert!(!server_going_away(code), "{code}");
        }
    }

    #[test]
    fn pool_timeouts_are_retryable_unavailable() {
        let status = Status::from(Error::from(sqlx::Error::PoolTimedOut));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.check_error_details().unwrap().retry_info().is_some());
    }
}
