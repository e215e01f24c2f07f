//! The flat columns a contact is read from and written to: what each
//! column of a file becomes (a [`Target`]), the headers that map by
//! themselves, and the overrides a migration team gives with `--map`.
//!
//! Target names are the API's field names: `given_name`, `emails` (a list
//! in one cell) or `emails[1]` (one item), `street`, `postal_code`… of the
//! first address or `addresses[2].postal_code` of another,
//! `attributes.KEY`, `consents.email`, `external_id`. `crm export` writes
//! exactly these names, so an export imports again without a mapping.

use std::{collections::HashMap, fmt};

/// What one column of a file becomes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    GivenName,
    FamilyName,
    DisplayName,
    /// Every email address, one cell (`a@x; b@y`, or a JSON array).
    Emails,
    /// One email address: `emails[N]`.
    Email(usize),
    /// Every phone number, one cell.
    Phones,
    /// One phone number: `phones[N]`.
    Phone(usize),
    /// An address's street lines, one per line of the cell.
    Street(usize),
    /// One street line: `addresses[N].lines[M]`.
    Line(usize, usize),
    Locality(usize),
    Region(usize),
    PostalCode(usize),
    Country(usize),
    /// physical or mailing.
    AddressType(usize),
    /// Every address but the first, a JSON array as `crm export` writes it.
    OtherAddresses,
    BirthDate,
    LifecycleStage,
    Owner,
    /// Every tag, one cell.
    Tags,
    /// Every attribute, a JSON object.
    Attributes,
    /// One attribute: `attributes.KEY`.
    Attribute(String),
    /// The row's id in the source system (under `--source`).
    ExternalId,
    /// Every external id, `source:id` items in one cell.
    ExternalIds,
    /// Every consent, a JSON array as `crm export` writes it.
    Consents,
    /// Consent for one channel (`consents.email`): yes/no, opted in/out.
    Consent(Channel),
    MaxContactsPerWeek,
}

/// An outbound channel a consent is given for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Email,
    Phone,
    Sms,
    Post,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::Email, Channel::Phone, Channel::Sms, Channel::Post];

    pub fn name(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Phone => "phone",
            Channel::Sms => "sms",
            Channel::Post => "post",
        }
    }

    pub fn parse(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|channel| channel.name() == name)
    }
}

/// The most items an indexed target may name (the API's own limit is 10).
const MAX_INDEX: usize = 9;

impl Target {
    /// Reads a target name (`emails[1]`, `addresses[0].postal_code`,
    /// `attributes.vip`); `None` when it names no field.
    pub fn parse(name: &str) -> Option<Target> {
        let name = name.trim();
        if let Some(key) = name.strip_prefix("attributes.") {
            return (!key.is_empty()).then(|| Target::Attribute(key.to_string()));
        }
        if let Some(channel) = name.strip_prefix("consents.") {
            return Channel::parse(channel).map(Target::Consent);
        }
        if let Some(rest) = name.strip_prefix("addresses[") {
            let (index, field) = rest.split_once("].")?;
            let index = small_index(index)?;
            if let Some(line) = field.strip_prefix("lines[").and_then(|line| line.strip_suffix(']')) {
                return Some(Target::Line(index, small_index(line)?));
            }
            return address_field(field, index);
        }
        if let Some((list, index)) = name.strip_suffix(']').and_then(|name| name.split_once('[')) {
            let index = small_index(index)?;
            return match list {
                "emails" => Some(Target::Email(index)),
                "phones" => Some(Target::Phone(index)),
                _ => None,
            };
        }
        if let Some(target) = address_field(name, 0) {
            return Some(target);
        }
        Some(match name {
            "given_name" => Target::GivenName,
            "family_name" => Target::FamilyName,
            "display_name" => Target::DisplayName,
            "emails" => Target::Emails,
            "phones" => Target::Phones,
            "birth_date" => Target::BirthDate,
            "lifecycle_stage" => Target::LifecycleStage,
            "owner" => Target::Owner,
            "tags" => Target::Tags,
            "attributes" => Target::Attributes,
            "external_id" => Target::ExternalId,
            "external_ids" => Target::ExternalIds,
            "consents" => Target::Consents,
            "other_addresses" => Target::OtherAddresses,
            "max_contacts_per_week" => Target::MaxContactsPerWeek,
            _ => return None,
        })
    }
}

fn small_index(text: &str) -> Option<usize> {
    text.parse::<usize>().ok().filter(|index| *index <= MAX_INDEX)
}

fn address_field(field: &str, index: usize) -> Option<Target> {
    Some(match field {
        "street" => Target::Street(index),
        "locality" => Target::Locality(index),
        "region" => Target::Region(index),
        "postal_code" => Target::PostalCode(index),
        "country_code" => Target::Country(index),
        "address_type" => Target::AddressType(index),
        _ => return None,
    })
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let address = |f: &mut fmt::Formatter<'_>, index: usize, field: &str| {
            if index == 0 { write!(f, "{field}") } else { write!(f, "addresses[{index}].{field}") }
        };
        match self {
            Target::GivenName => write!(f, "given_name"),
            Target::FamilyName => write!(f, "family_name"),
            Target::DisplayName => write!(f, "display_name"),
            Target::Emails => write!(f, "emails"),
            Target::Email(index) => write!(f, "emails[{index}]"),
            Target::Phones => write!(f, "phones"),
            Target::Phone(index) => write!(f, "phones[{index}]"),
            Target::Street(index) => address(f, *index, "street"),
            Target::Line(index, line) => write!(f, "addresses[{index}].lines[{line}]"),
            Target::Locality(index) => address(f, *index, "locality"),
            Target::Region(index) => address(f, *index, "region"),
            Target::PostalCode(index) => address(f, *index, "postal_code"),
            Target::Country(index) => address(f, *index, "country_code"),
            Target::AddressType(index) => address(f, *index, "address_type"),
            Target::OtherAddresses => write!(f, "other_addresses"),
            Target::BirthDate => write!(f, "birth_date"),
            Target::LifecycleStage => write!(f, "lifecycle_stage"),
            Target::Owner => write!(f, "owner"),
            Target::Tags => write!(f, "tags"),
            Target::Attributes => write!(f, "attributes"),
            Target::Attribute(key) => write!(f, "attributes.{key}"),
            Target::ExternalId => write!(f, "external_id"),
            Target::ExternalIds => write!(f, "external_ids"),
            Target::Consents => write!(f, "consents"),
            Target::Consent(channel) => write!(f, "consents.{}", channel.name()),
            Target::MaxContactsPerWeek => write!(f, "max_contacts_per_week"),
        }
    }
}

/// The fields a file's columns can become: a contact's ([`Target`]) or an
/// interaction's.
pub trait Field: Clone + Eq + std::hash::Hash + fmt::Display {
    /// The field a name names (`emails[1]`, `attributes.vip`), if any.
    fn parse(name: &str) -> Option<Self>;
    /// What a header, [`normalise`]d, commonly means.
    fn alias(normalised: &str) -> Option<Alias<Self>>;
    /// Whether the field holds the row's id in the source system.
    fn is_row_id(&self) -> bool;
    /// What the rows are, in messages ("a contact field").
    const WHAT: &'static str;
}

/// What a header means when no override says otherwise.
pub enum Alias<T> {
    Fixed(T),
    /// The next item of a list (named by the `&str`) not yet taken by an
    /// earlier column: `Email` then `Email 2` become `emails[0]`, `emails[1]`.
    Next(&'static str, fn(usize) -> T),
}

impl Field for Target {
    fn parse(name: &str) -> Option<Target> {
        Target::parse(name)
    }

    fn alias(normalised: &str) -> Option<Alias<Target>> {
        alias(normalised)
    }

    fn is_row_id(&self) -> bool {
        *self == Target::ExternalId
    }

    const WHAT: &'static str = "a contact field; see `crm import contacts --help` for the names";
}

/// A header as aliases are looked up: lower case, letters and digits only
/// (`E-mail` and `e_mail` are `email`).
pub fn normalise(header: &str) -> String {
    header.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

/// The headers legacy CRMs, spreadsheets and billing systems use, normalised.
fn alias(normalised: &str) -> Option<Alias<Target>> {
    use Alias::*;
    #[allow(non_snake_case)]
    let (NextEmail, NextPhone, NextLine) =
        (Next("email", Target::Email), Next("phone", Target::Phone), Next("line", |line| Target::Line(0, line)));
    Some(match normalised {
        "firstname" | "first" | "givenname" | "given" | "forename" | "fname" | "christianname" => {
            Fixed(Target::GivenName)
        }
        "lastname" | "last" | "surname" | "familyname" | "family" | "lname" => Fixed(Target::FamilyName),
        "name" | "fullname" | "displayname" | "contactname" | "contact" => Fixed(Target::DisplayName),
        "email" | "emailaddress" | "mail" | "email1" | "email2" | "email3" | "primaryemail" | "secondaryemail"
        | "workemail" | "personalemail" | "otheremail" => NextEmail,
        "phone" | "phonenumber" | "telephone" | "tel" | "phone1" | "phone2" | "phone3" | "mobile" | "mobilephone"
        | "mobilenumber" | "cell" | "cellphone" | "homephone" | "workphone" | "businessphone" => NextPhone,
        "address" | "street" | "streetaddress" | "address1" | "addressline1" | "street1" | "address2"
        | "addressline2" | "street2" | "address3" | "addressline3" | "streetnumber" | "housenumber" => NextLine,
        "city" | "town" | "locality" | "suburb" => Fixed(Target::Locality(0)),
        "state" | "region" | "province" | "county" => Fixed(Target::Region(0)),
        "zip" | "zipcode" | "postcode" | "postalcode" | "postal" | "plz" => Fixed(Target::PostalCode(0)),
        "country" | "countrycode" => Fixed(Target::Country(0)),
        "dob" | "birthdate" | "dateofbirth" | "birthday" | "born" => Fixed(Target::BirthDate),
        "stage" | "lifecyclestage" | "lifecycle" => Fixed(Target::LifecycleStage),
        "owner" | "accountmanager" | "accountowner" | "salesrep" | "contactowner" => Fixed(Target::Owner),
        "tags" | "labels" | "tag" => Fixed(Target::Tags),
        "id" | "externalid" | "recordid" | "customerid" | "contactid" | "legacyid" | "customernumber" => {
            Fixed(Target::ExternalId)
        }
        "emailoptin" | "emailconsent" | "marketingemails" => Fixed(Target::Consent(Channel::Email)),
        "smsoptin" | "smsconsent" => Fixed(Target::Consent(Channel::Sms)),
        "phoneoptin" | "phoneconsent" => Fixed(Target::Consent(Channel::Phone)),
        "postoptin" | "postconsent" | "mailoptin" => Fixed(Target::Consent(Channel::Post)),
        "maxcontactsperweek" => Fixed(Target::MaxContactsPerWeek),
        _ => return None,
    })
}

/// What one column of the file becomes, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Column<T = Target> {
    pub header: String,
    pub target: Option<T>,
    pub why: Why,
}

/// Why a column maps as it does.
#[derive(Clone, Debug, PartialEq)]
pub enum Why {
    /// The header is a field's name.
    FieldName,
    /// The header is a common name for the field.
    Alias,
    /// `--map` or the mapping file said so.
    Given,
    /// `--map` said to leave it out.
    IgnoredAsGiven,
    /// No field has that name.
    Unknown,
    /// An earlier column already fills the field.
    Taken(String),
}

/// The columns of a file and what each becomes.
#[derive(Clone, Debug, PartialEq)]
pub struct Mapping<T = Target> {
    pub columns: Vec<Column<T>>,
}

/// Overrides: header (exact, or as normalised) to target, `None` to ignore.
#[derive(Clone, Debug)]
pub struct Overrides<T = Target>(Vec<(String, Option<T>)>);

impl<T> Default for Overrides<T> {
    fn default() -> Self {
        Overrides(Vec::new())
    }
}

impl<T: Field> Overrides<T> {
    /// Reads `Header=target` items separated by commas (`--map`) or lines
    /// (a mapping file; `#` starts a comment); `Header=` or `Header=-`
    /// leaves the column out.
    pub fn parse(text: &str) -> Result<Overrides<T>, String> {
        let mut overrides = Vec::new();
        for item in text.split([',', '\n']).map(str::trim).filter(|item| !item.is_empty() && !item.starts_with('#')) {
            let (header, target) = item
                .rsplit_once('=')
                .ok_or_else(|| format!("{item:?} is not Header=field (for example 'Tel=phones[0]')"))?;
            let target = match target.trim() {
                "" | "-" => None,
                name => Some(
                    T::parse(name)
                        .ok_or_else(|| format!("{name:?} (for column {:?}) is not {}", header.trim(), T::WHAT))?,
                ),
            };
            overrides.push((header.trim().to_string(), target));
        }
        Ok(Overrides(overrides))
    }

    pub fn extend(&mut self, other: Overrides<T>) {
        self.0.extend(other.0);
    }

    fn find(&self, header: &str) -> Option<&Option<T>> {
        let exact = self.0.iter().rev().find(|(given, _)| given == header);
        let loose = || self.0.iter().rev().find(|(given, _)| normalise(given) == normalise(header));
        exact.or_else(loose).map(|(_, target)| target)
    }

    /// Overrides that name no column of `headers`: a typo the team must hear about.
    pub fn unused(&self, headers: &[String]) -> Vec<String> {
        self.0
            .iter()
            .filter(|(given, _)| !headers.iter().any(|header| header == given || normalise(header) == normalise(given)))
            .map(|(given, _)| given.clone())
            .collect()
    }
}

impl<T: Field> Mapping<T> {
    /// What each of `headers` becomes: an override first, then a field's
    /// own name, then a common alias; the first column to claim a field
    /// keeps it.
    pub fn new(headers: &[String], overrides: &Overrides<T>) -> Mapping<T> {
        let mut claimed: HashMap<T, String> = HashMap::new();
        let mut counters: HashMap<&'static str, usize> = HashMap::new();
        let mut columns = Vec::with_capacity(headers.len());
        for header in headers {
            let (target, why) = match overrides.find(header) {
                Some(Some(target)) => (Some(target.clone()), Why::Given),
                Some(None) => (None, Why::IgnoredAsGiven),
                None => match T::parse(header) {
                    Some(target) => (Some(target), Why::FieldName),
                    None => match T::alias(&normalise(header)) {
                        Some(Alias::Fixed(target)) => (Some(target), Why::Alias),
                        Some(Alias::Next(list, make)) => {
                            (Some(next(counters.entry(list).or_default(), &claimed, make)), Why::Alias)
                        }
                        None => (None, Why::Unknown),
                    },
                },
            };
            let column = match target {
                Some(target) if claimed.contains_key(&target) => {
                    Column { header: header.clone(), target: None, why: Why::Taken(claimed[&target].clone()) }
                }
                Some(target) => {
                    claimed.insert(target.clone(), header.clone());
                    Column { header: header.clone(), target: Some(target), why }
                }
                None => Column { header: header.clone(), target: None, why },
            };
            columns.push(column);
        }
        Mapping { columns }
    }

    /// Whether any column gives the rows their ids in the source system.
    pub fn has_external_id(&self) -> bool {
        self.columns.iter().any(|column| column.target.as_ref().is_some_and(T::is_row_id))
    }

    /// The table `--show-mapping` prints.
    pub fn describe(&self) -> String {
        let width = self.columns.iter().map(|column| column.header.chars().count()).max().unwrap_or(0).max(6);
        let mut text = format!("{:<width$}  becomes\n", "column");
        for column in &self.columns {
            let becomes = match (&column.target, &column.why) {
                (Some(target), Why::Given) => format!("{target} (as mapped)"),
                (Some(target), _) => target.to_string(),
                (None, Why::IgnoredAsGiven) => "ignored (as mapped)".to_string(),
                (None, Why::Taken(by)) => format!("ignored: column {by:?} already fills that field"),
                (None, _) => format!(
                    "ignored: no field of that name (keep it with --map '{}=attributes.{}')",
                    column.header,
                    normalise(&column.header)
                ),
            };
            text.push_str(&format!("{:<width$}  {becomes}\n", column.header));
        }
        if !self.has_external_id() {
            text.push_str(
                "no column gives the rows' ids in the source system: each row's id is derived from its content, \
                 so a rerun finds the rows it already imported\n",
            );
        }
        text
    }
}

/// The next index of an indexed target that no column has claimed.
fn next<T: Field>(counter: &mut usize, claimed: &HashMap<T, String>, make: fn(usize) -> T) -> T {
    while claimed.contains_key(&make(*counter)) && *counter < MAX_INDEX {
        *counter += 1;
    }
    let target = make(*counter);
    *counter += 1;
    target
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    fn targets(mapping: &Mapping) -> Vec<String> {
        mapping
            .columns
            .iter()
            .map(|column| column.target.as_ref().map(ToString::to_string).unwrap_or_else(|| "-".into()))
            .collect()
    }

    #[test]
    fn a_messy_legacy_header_maps_by_itself() {
        let mapping = Mapping::new(
            &headers(&[
                "Customer ID",
                "First Name",
                "SURNAME",
                "E-mail",
                "Phone",
                "Mobile",
                "Address 1",
                "Address 2",
                "Town",
                "Zip",
                "Country",
                "D.O.B.",
                "Notes",
                "Email 2",
            ]),
            &Overrides::default(),
        );
        assert_eq!(
            targets(&mapping),
            [
                "external_id",
                "given_name",
                "family_name",
                "emails[0]",
                "phones[0]",
                "phones[1]",
                "addresses[0].lines[0]",
                "addresses[0].lines[1]",
                "locality",
                "postal_code",
                "country_code",
                "birth_date",
                "-",
                "emails[1]"
            ]
        );
        assert_eq!(mapping.columns[12].why, Why::Unknown);
    }

    #[test]
    fn overrides_win_and_the_first_column_keeps_a_field() {
        let overrides = Overrides::parse("Given=given_name, Tel=phones[0],Notes=attributes.notes,Phone=-").unwrap();
        let mapping = Mapping::new(&headers(&["Given", "Tel", "Phone", "Notes", "name", "Full Name"]), &overrides);
        assert_eq!(targets(&mapping), ["given_name", "phones[0]", "-", "attributes.notes", "display_name", "-"]);
        assert_eq!(mapping.columns[2].why, Why::IgnoredAsGiven);
        assert_eq!(mapping.columns[5].why, Why::Taken("name".into()));
        assert_eq!(overrides.unused(&headers(&["Given"])), ["Tel", "Notes", "Phone"]);
    }

    #[test]
    fn every_target_reads_back_its_own_name() {
        let all = [
            Target::GivenName,
            Target::Email(3),
            Target::Phones,
            Target::Street(0),
            Target::Street(2),
            Target::Line(1, 2),
            Target::PostalCode(0),
            Target::Country(4),
            Target::AddressType(0),
            Target::AddressType(1),
            Target::Attribute("vip level".into()),
            Target::Consent(Channel::Sms),
            Target::ExternalIds,
            Target::MaxContactsPerWeek,
        ];
        for target in all {
            assert_eq!(Target::parse(&target.to_string()), Some(target.clone()), "{target}");
        }
        assert_eq!(Target::parse("emails[10]"), None);
        assert_eq!(Target::parse("addresses[0].planet"), None);
        assert!(Overrides::<Target>::parse("Tel=telephone").unwrap_err().contains("not a contact field"));
        assert!(Overrides::<Target>::parse("Tel").unwrap_err().contains("Header=field"));
    }
}
