//! Duplicate organizations: "ACME, Inc." and "Acme Incorporated" are one
//! company. An organization's name is compared without its legal form,
//! punctuation, case or accents ([`name_key`]); two organizations are
//! likely one when they share a web domain, or that name with no domain
//! telling them apart ([`likely_same`]).

use super::names;
use crate::model::OrganizationData;

/// Legal forms and their abbreviations, dropped from a name before it is
/// compared (English, French, German, Dutch, Nordic, Iberian, Italian,
/// Australian forms; extend as the customer base needs).
const LEGAL_FORMS: &[&str] = &[
    "inc",
    "incorporated",
    "corp",
    "corporation",
    "co",
    "company",
    "ltd",
    "limited",
    "llc",
    "llp",
    "lp",
    "plc",
    "pty",
    "gmbh",
    "ag",
    "kg",
    "ug",
    "sa",
    "sas",
    "sarl",
    "sl",
    "srl",
    "spa",
    "bv",
    "nv",
    "ab",
    "as",
    "asa",
    "oy",
    "oyj",
    "aps",
    "the",
];

/// The name as organizations are compared by: words folded to lower-case
/// ASCII letters and digits, "&" read as "and", legal forms dropped; empty
/// when nothing else is left.
pub fn name_key(name: &str) -> String {
    let spaced: String = name
        .chars()
        .map(|c| match c {
            '&' | '+' => ' ',
            '.' | '\'' | '’' => '\0',
            c if c.is_alphanumeric() => c,
            _ => ' ',
        })
        .filter(|c| *c != '\0')
        .collect();
    spaced
        .split_whitespace()
        .map(names::fold_with_digits)
        .filter(|word| !word.is_empty() && word != "and" && !LEGAL_FORMS.contains(&word.as_str()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why two organizations are likely one, strongest first; empty when they
/// are not: the same domain, or the same name key with no two different
/// domains (two companies of one name on different domains are two).
pub fn likely_same(a: &OrganizationData, b: &OrganizationData) -> Vec<&'static str> {
    let same_domain = !a.domain.is_empty() && a.domain == b.domain;
    let key = name_key(&a.name);
    let same_name = !key.is_empty() && key == name_key(&b.name);
    let domains_differ = !a.domain.is_empty() && !b.domain.is_empty() && a.domain != b.domain;
    let mut reasons = Vec::new();
    if same_domain {
        reasons.push("domain_exact");
    }
    if same_name && !domains_differ {
        reasons.push("name_exact");
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    fn organization(name: &str, domain: &str) -> OrganizationData {
        OrganizationData { name: name.into(), domain: domain.into(), ..Default::default() }
    }

    #[test]
    fn legal_forms_punctuation_case_and_accents_do_not_tell_companies_apart() {
        assert_eq!(name_key("ACME, Inc."), "acme");
        assert_eq!(name_key("Acme Incorporated"), "acme");
        assert_eq!(name_key("The Acme Company Ltd"), "acme");
        assert_eq!(name_key("Müller & Söhne GmbH"), "muller sohne");
        assert_eq!(name_key("Muller and Sohne"), "muller sohne");
        assert_eq!(name_key("O'Brien Plumbing Pty Ltd"), "obrien plumbing");
        assert_eq!(name_key("Inc."), "", "nothing but a legal form");
        assert_ne!(name_key("Acme Rockets"), name_key("Acme"));
        assert_eq!(name_key("3M Company"), "3m", "digits are part of a name");
        assert_ne!(name_key("Acme 2 Ltd"), name_key("Acme Ltd"));
    }

    #[test]
    fn a_shared_domain_or_name_makes_a_likely_duplicate_unless_the_domains_differ() {
        let acme = organization("ACME, Inc.", "acme.example");
        assert_eq!(
            likely_same(&acme, &organization("Acme Incorporated", "acme.example")),
            ["domain_exact", "name_exact"]
        );
        assert_eq!(likely_same(&acme, &organization("Acme Incorporated", "")), ["name_exact"]);
        assert_eq!(likely_same(&acme, &organization("A.C.M.E. Holdings", "acme.example")), ["domain_exact"]);
        assert!(
            likely_same(&acme, &organization("Acme Ltd", "acme-uk.example")).is_empty(),
            "two companies of one name"
        );
        assert!(likely_same(&organization("Inc", ""), &organization("Inc.", "")).is_empty(), "no name to go on");
    }
}
