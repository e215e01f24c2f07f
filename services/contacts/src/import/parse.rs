//! Validating the rows of one message: the costly part on the role's side
//! (phone numbers, blocking keys), done in a task of its own as soon as the
//! message arrives.

use crm_platform::{Error, error::Violations};
use crm_proto::contacts::v1 as pb;

use crate::{
    model::ContactData,
    terms,
    validate::{self, Region},
};

/// A row as validated: its data and what its duplicate check probes (the
/// hashes of its blocking keys, as `contact_terms` holds them, each with
/// whether it is wide: `terms::probes`), or its failure.
pub struct Parsed {
    pub row_id: String,
    pub outcome: Result<(ContactData, Vec<(i64, bool)>), pb::ImportRowResult>,
}

/// A row's result with its outcome and nothing else yet.
pub fn outcome_result(row_id: &str, outcome: pb::ImportOutcome) -> pb::ImportRowResult {
    pb::ImportRowResult { row_id: row_id.to_string(), outcome: outcome as i32, ..Default::default() }
}

/// Validates the rows of one message and computes their blocking keys.
pub fn parse(rows: Vec<pb::ImportRow>, region: Region) -> Vec<Parsed> {
    rows.into_iter()
        .map(|row| {
            let mut violations = Violations::new();
            let data = match &row.contact {
                Some(contact) => validate::contact(&mut violations, "contact", contact, region),
                None => {
                    violations.add("contact", "is required");
                    ContactData::default()
                }
            };
            let outcome = match violations.into_result() {
                Ok(()) => {
                    let probes = terms::probes(&data);
                    Ok((data, probes))
                }
                Err(error) => {
                    let mut result = outcome_result(&row.row_id, pb::ImportOutcome::Failed);
                    if let Error::InvalidArgument(violations) = error {
                        result.invalid_fields = violations.iter().map(|violation| violation.field.clone()).collect();
                        result.error = violations
                            .iter()
                            .map(|violation| format!("{}: {}", violation.field, violation.description))
                            .collect::<Vec<_>>()
                            .join("; ");
                    }
                    Err(result)
                }
            };
            Parsed { row_id: row.row_id, outcome }
        })
        .collect()
}
