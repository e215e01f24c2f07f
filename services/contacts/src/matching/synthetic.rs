//! A labelled benchmark for duplicate detection: synthetic people arriving
//! one record at a time, some of them again under another form (typos,
//! nicknames, swapped names, missing and reformatted fields, transposed
//! digits, a new email), beside hard non-duplicates (household members
//! sharing a family name, address and landline; namesakes). Records go
//! through the same validation and normalisation as the API.
//!
//! [`evaluate`] decides each arriving record against the records before it,
//! as `CreateContact` does: candidates by blocking key, the best score, a
//! duplicate when it reaches the threshold.

use std::collections::{HashMap, HashSet};

use crm_platform::error::Violations;
use crm_proto::{common::v1 as common, contacts::v1 as pb};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};

use super::{Match, brings, keys, score};
use crate::{
    model::ContactData,
    validate::{self, Region},
};

const GIVEN: &[&str] = &[
    "Robert",
    "William",
    "Richard",
    "James",
    "John",
    "Margaret",
    "Elizabeth",
    "Katherine",
    "Michael",
    "Thomas",
    "Joseph",
    "Charles",
    "Christopher",
    "Daniel",
    "Matthew",
    "Anthony",
    "Andrew",
    "Edward",
    "David",
    "Steven",
    "Benjamin",
    "Samuel",
    "Alexander",
    "Patricia",
    "Jennifer",
    "Susan",
    "Deborah",
    "Rebecca",
    "Victoria",
    "Nicholas",
    "Gregory",
    "Timothy",
    "Kenneth",
    "Ronald",
    "Jessica",
    "Amanda",
    "Barbara",
    "Judith",
    "Theresa",
    "Pamela",
    "Laura",
    "Olivia",
    "Emily",
    "Sophia",
    "Chloe",
    "Grace",
    "Lucy",
    "Ruth",
    "Irene",
    "Agnes",
    "Oscar",
    "Felix",
    "Hugo",
    "Ivan",
    "Omar",
    "Yusuf",
    "Priya",
    "Aisha",
    "Mei",
    "Kenji",
    "Lars",
    "Ingrid",
    "Sven",
    "Marta",
    "Paulo",
    "Diego",
    "Lucia",
    "Carmen",
    "Tariq",
    "Nadia",
    "Fatima",
    "Leila",
    "Raj",
    "Anil",
    "Sanjay",
    "Deepa",
    "Chen",
    "Wei",
    "Hana",
    "Yuki",
    "Kofi",
    "Ama",
    "Zainab",
    "Emeka",
    "Tomasz",
    "Agata",
    "Piotr",
    "Zofia",
    "Henrik",
    "Astrid",
    "Brendan",
    "Siobhan",
    "Declan",
    "Aoife",
    "Gareth",
    "Rhys",
    "Bethan",
    "Callum",
    "Isla",
    "Fraser",
    "Morag",
];

const FAMILY: &[&str] = &[
    "Smith",
    "Jones",
    "Williams",
    "Taylor",
    "Brown",
    "Davies",
    "Evans",
    "Wilson",
    "Thomas",
    "Johnson",
    "Roberts",
    "Robinson",
    "Thompson",
    "Wright",
    "Walker",
    "White",
    "Edwards",
    "Hughes",
    "Green",
    "Hall",
    "Lewis",
    "Harris",
    "Clarke",
    "Patel",
    "Jackson",
    "Wood",
    "Turner",
    "Martin",
    "Cooper",
    "Hill",
    "Ward",
    "Morris",
    "Moore",
    "Clark",
    "Lee",
    "King",
    "Baker",
    "Harrison",
    "Morgan",
    "Allen",
    "James",
    "Scott",
    "Phillips",
    "Watson",
    "Davis",
    "Parker",
    "Price",
    "Bennett",
    "Young",
    "Griffiths",
    "Mitchell",
    "Kelly",
    "Cook",
    "Carter",
    "Richardson",
    "Bailey",
    "Collins",
    "Bell",
    "Shaw",
    "Murphy",
    "Miller",
    "Cox",
    "Richards",
    "Khan",
    "Marshall",
    "Anderson",
    "Simpson",
    "Ellis",
    "Adams",
    "Singh",
    "Begum",
    "Wilkinson",
    "Foster",
    "Chapman",
    "Powell",
    "Webb",
    "Rogers",
    "Gray",
    "Mason",
    "Ali",
    "Hunt",
    "Hussain",
    "Campbell",
    "Matthews",
    "Owen",
    "Palmer",
    "Holmes",
    "Mills",
    "Barnes",
    "Knight",
    "Lloyd",
    "Butler",
    "Russell",
    "Barker",
    "Fisher",
    "Stevens",
    "Jenkins",
    "Murray",
    "Dixon",
    "Harvey",
    "Nowak",
    "Kowalski",
    "Garcia",
    "Rodriguez",
    "Fernandez",
    "Lopez",
    "Gonzalez",
    "Rossi",
    "Russo",
    "Ferrari",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Hoffmann",
    "Nguyen",
    "Tran",
    "Wang",
    "Zhang",
    "Liu",
    "Chen",
    "Yamamoto",
    "Tanaka",
    "Sato",
    "Suzuki",
    "Kim",
    "Park",
    "Choi",
    "Okafor",
    "Mensah",
    "Osei",
    "Haddad",
    "Nasser",
    "Larsen",
    "Hansen",
    "Nielsen",
    "Johansson",
    "Karlsson",
    "O'Brien",
    "O'Connor",
    "McDonald",
    "MacLeod",
    "Fraser",
];

const NICKNAME_OF: &[(&str, &str)] = &[
    ("Robert", "Bob"),
    ("William", "Bill"),
    ("Richard", "Rick"),
    ("James", "Jim"),
    ("John", "Jack"),
    ("Margaret", "Peggy"),
    ("Elizabeth", "Liz"),
    ("Katherine", "Kate"),
    ("Michael", "Mike"),
    ("Thomas", "Tom"),
    ("Joseph", "Joe"),
    ("Charles", "Charlie"),
    ("Christopher", "Chris"),
    ("Daniel", "Dan"),
    ("Matthew", "Matt"),
    ("Anthony", "Tony"),
    ("Andrew", "Andy"),
    ("Edward", "Ted"),
    ("David", "Dave"),
    ("Steven", "Steve"),
    ("Benjamin", "Ben"),
    ("Samuel", "Sam"),
    ("Alexander", "Alex"),
    ("Patricia", "Trish"),
    ("Jennifer", "Jenny"),
    ("Susan", "Sue"),
    ("Deborah", "Debbie"),
    ("Rebecca", "Becky"),
    ("Victoria", "Vicky"),
    ("Nicholas", "Nick"),
    ("Gregory", "Greg"),
    ("Timothy", "Tim"),
    ("Kenneth", "Ken"),
    ("Ronald", "Ron"),
    ("Jessica", "Jess"),
    ("Amanda", "Mandy"),
    ("Barbara", "Barb"),
    ("Judith", "Judy"),
    ("Theresa", "Tess"),
    ("Pamela", "Pam"),
];

const STREETS: &[&str] = &[
    "High", "Station", "Church", "Park", "Victoria", "Green", "Manor", "Mill", "Kings", "Queens", "New", "School",
    "Grange", "Windsor", "York", "Albert", "Main", "Oak", "Maple", "Cedar", "Elm", "Pine", "Lake", "Hill", "River",
];

const SUFFIXES: &[(&str, &str)] =
    &[("Street", "St"), ("Road", "Rd"), ("Avenue", "Ave"), ("Lane", "Ln"), ("Drive", "Dr")];

const CITIES: &[(&str, &str, &[&str])] = &[
    ("New York", "NY", &["212", "646"]),
    ("San Francisco", "CA", &["415"]),
    ("Chicago", "IL", &["312", "773"]),
    ("Boston", "MA", &["617"]),
    ("Seattle", "WA", &["206"]),
    ("Denver", "CO", &["303"]),
    ("Atlanta", "GA", &["404"]),
    ("Houston", "TX", &["713"]),
    ("Miami", "FL", &["305"]),
    ("Portland", "OR", &["503"]),
];

const DOMAINS: &[&str] = &["example.com", "example.org", "example.net", "mail.example", "post.example"];

/// One generated record and the person it belongs to.
pub struct Labelled {
    pub entity: usize,
    pub contact: ContactData,
}

/// The raw fields of a person, before any variation.
#[derive(Clone)]
struct Person {
    given: String,
    family: String,
    email: Option<String>,
    phone: Option<String>,
    street: Option<(u32, usize, usize)>,
    city: usize,
    zip: String,
    birth: Option<(i32, i32, i32)>,
}

pub struct Generator {
    rng: StdRng,
    people: Vec<Person>,
    region: Region,
    /// Emails given out: a mailbox is one person's, however common their name.
    emails: HashSet<String>,
}

impl Generator {
    pub fn new(seed: u64) -> Generator {
        Generator {
            rng: StdRng::seed_from_u64(seed),
            people: Vec::new(),
            region: Region::parse("US").expect("US"),
            emails: HashSet::new(),
        }
    }

    /// The next arriving record: a new person, a household member of a known
    /// one, a namesake, or a known person again in another form.
    pub fn next_record(&mut self, duplicate_rate: f64) -> Labelled {
        if !self.people.is_empty() && self.rng.random_bool(duplicate_rate) {
            let entity = self.rng.random_range(0..self.people.len());
            let person = self.people[entity].clone();
            let contact = self.vary(&person);
            return Labelled { entity, contact };
        }
        let person = match self.rng.random_range(0..100) {
            0..15 if !self.people.is_empty() => self.household_member(),
            15..20 if !self.people.is_empty() => self.namesake(),
            _ => self.new_person(),
        };
        self.people.push(person.clone());
        let contact = self.normalise(&self.render(&person, &Variation::default()));
        Labelled { entity: self.people.len() - 1, contact }
    }

    fn phone(&mut self, city: usize) -> String {
        loop {
            let area = CITIES[city].2.choose(&mut self.rng).expect("area codes");
            let exchange = self.rng.random_range(201..999);
            let line = self.rng.random_range(0..10_000);
            let number = format!("+1{area}{exchange}{line:04}");
            if validate::phone_number(&number, self.region).is_ok() {
                return number;
            }
        }
    }

    fn new_person(&mut self) -> Person {
        let given = GIVEN.choose(&mut self.rng).expect("names").to_string();
        let family = FAMILY.choose(&mut self.rng).expect("names").to_string();
        let city = self.rng.random_range(0..CITIES.len());
        let email = self.rng.random_bool(0.85).then(|| {
            loop {
                let number = self.rng.random_range(1..999);
                let domain = DOMAINS.choose(&mut self.rng).expect("domains");
                let email =
                    format!("{}.{}{number}@{domain}", given.to_lowercase(), family.to_lowercase().replace('\'', ""));
                if self.emails.insert(email.clone()) {
                    break email;
                }
            }
        });
        let phone = self.rng.random_bool(0.8).then(|| self.phone(city));
        let street = self.rng.random_bool(0.8).then(|| {
            (
                self.rng.random_range(1..400),
                self.rng.random_range(0..STREETS.len()),
                self.rng.random_range(0..SUFFIXES.len()),
            )
        });
        let zip = format!("{:05}", 10_000 + city * 1000 + self.rng.random_range(0..40));
        let birth = self
            .rng
            .random_bool(0.7)
            .then(|| (self.rng.random_range(1940..2005), self.rng.random_range(1..13), self.rng.random_range(1..29)));
        Person { given, family, email, phone, street, city, zip, birth }
    }

    /// Same family name, address and often landline; a different person.
    fn household_member(&mut self) -> Person {
        let other = self.people.choose(&mut self.rng).expect("people").clone();
        let mut person = self.new_person();
        while person.given == other.given {
            person.given = GIVEN.choose(&mut self.rng).expect("names").to_string();
        }
        person.family = other.family.clone();
        person.street = other.street;
        person.city = other.city;
        person.zip = other.zip.clone();
        if self.rng.random_bool(0.5) {
            person.phone = other.phone.clone();
        }
        person
    }

    /// Same name as someone known; otherwise a different person.
    fn namesake(&mut self) -> Person {
        let other = self.people.choose(&mut self.rng).expect("people").clone();
        let mut person = self.new_person();
        person.given = other.given.clone();
        person.family = other.family.clone();
        person
    }

    /// A known person again, under one to three variations, keeping at least
    /// one identifying detail (email, phone, birth date or street address).
    fn vary(&mut self, person: &Person) -> ContactData {
        for attempt in 0.. {
            let mut variation = Variation::default();
            for _ in 0..self.rng.random_range(1..=3) {
                match self.rng.random_range(0..13) {
                    0 => variation.typo_given = true,
                    1 => variation.typo_family = true,
                    2 => variation.nickname = true,
                    3 => variation.swap = true,
                    4 => variation.drop_email = true,
                    5 => variation.drop_phone = true,
                    6 => variation.drop_address = true,
                    7 => variation.drop_birth = true,
                    8 => variation.reformat_phone = true,
                    9 => variation.transpose_phone = true,
                    10 => variation.new_email = true,
                    11 => variation.abbreviate_street = true,
                    _ => variation.upper_email = true,
                }
            }
            let keeps_email = person.email.is_some() && !variation.drop_email && !variation.new_email;
            let keeps_phone = person.phone.is_some() && !variation.drop_phone;
            let keeps_birth = person.birth.is_some() && !variation.drop_birth;
            let keeps_street = person.street.is_some() && !variation.drop_address;
            // A person known by name and town only keeps one variation
            // that removes nothing.
            if !(keeps_email || keeps_phone || keeps_birth || keeps_street) && attempt < 20 {
                continue;
            }
            variation.seed = self.rng.random();
            let input = self.render(person, &variation);
            return self.normalise(&input);
        }
        unreachable!("the loop returns")
    }

    fn render(&self, person: &Person, variation: &Variation) -> pb::Contact {
        let mut rng = StdRng::seed_from_u64(variation.seed);
        let mut given = person.given.clone();
        let mut family = person.family.clone();
        if variation.nickname
            && let Some((_, nickname)) = NICKNAME_OF.iter().find(|(formal, _)| *formal == given)
        {
            given = nickname.to_string();
        }
        if variation.typo_given {
            given = typo(&given, &mut rng);
        }
        if variation.typo_family {
            family = typo(&family, &mut rng);
        }
        if variation.swap {
            std::mem::swap(&mut given, &mut family);
        }
        let mut emails = Vec::new();
        if let Some(email) = &person.email
            && !variation.drop_email
        {
            let address = if variation.new_email {
                format!(
                    "{}{}@{}",
                    person.given.to_lowercase(),
                    rng.random_range(1..99),
                    DOMAINS[rng.random_range(0..DOMAINS.len())]
                )
            } else if variation.upper_email {
                let (local, domain) = email.split_once('@').unwrap_or((email, ""));
                format!("{local}@{}", domain.to_uppercase())
            } else {
                email.clone()
            };
            emails.push(pb::Email { address, ..Default::default() });
        }
        let mut phones = Vec::new();
        if let Some(phone) = &person.phone
            && !variation.drop_phone
        {
            let mut digits: Vec<char> = phone[2..].chars().collect();
            if variation.transpose_phone {
                let at = rng.random_range(3..digits.len() - 1);
                digits.swap(at, at + 1);
                // A slip that makes an invalid number is refused at the door: not a duplicate case.
                if validate::phone_number(&format!("+1{}", digits.iter().collect::<String>()), self.region).is_err() {
                    digits.swap(at, at + 1);
                }
            }
            let national: String = digits.iter().collect();
            let number = if variation.reformat_phone {
                format!("({}) {}-{}", &national[..3], &national[3..6], &national[6..])
            } else {
                format!("+1{national}")
            };
            phones.push(pb::Phone { number, ..Default::default() });
        }
        let mut addresses = Vec::new();
        if !variation.drop_address {
            let (city, state, _) = CITIES[person.city];
            let lines = person
                .street
                .map(|(number, street, suffix)| {
                    let (long, short) = SUFFIXES[suffix];
                    let suffix = if variation.abbreviate_street { short } else { long };
                    vec![format!("{number} {} {suffix}", STREETS[street])]
                })
                .unwrap_or_default();
            addresses.push(common::PostalAddress {
                lines,
                locality: city.into(),
                region: state.into(),
                postal_code: person.zip.clone(),
                country_code: "us".into(),
                ..Default::default()
            });
        }
        let birth_date =
            person.birth.filter(|_| !variation.drop_birth).map(|(year, month, day)| common::Date { year, month, day });
        pb::Contact {
            given_name: given,
            family_name: family,
            emails,
            phones,
            addresses,
            birth_date,
            ..Default::default()
        }
    }

    fn normalise(&self, input: &pb::Contact) -> ContactData {
        let mut violations = Violations::new();
        let contact = validate::contact(&mut violations, "contact", input, self.region);
        assert!(violations.into_result().is_ok(), "the generator wrote an invalid contact: {input:?}");
        contact
    }
}

#[derive(Default)]
struct Variation {
    seed: u64,
    typo_given: bool,
    typo_family: bool,
    nickname: bool,
    swap: bool,
    drop_email: bool,
    drop_phone: bool,
    drop_address: bool,
    drop_birth: bool,
    reformat_phone: bool,
    transpose_phone: bool,
    new_email: bool,
    abbreviate_street: bool,
    upper_email: bool,
}

/// One keyboard slip: a letter dropped, doubled, replaced or two swapped.
fn typo(name: &str, rng: &mut StdRng) -> String {
    let mut chars: Vec<char> = name.chars().collect();
    if chars.len() < 4 {
        return name.to_string();
    }
    let at = rng.random_range(1..chars.len() - 1);
    match rng.random_range(0..4) {
        0 => {
            chars.remove(at);
        }
        1 => chars.insert(at, chars[at]),
        2 => chars[at] = (b'a' + rng.random_range(0..26u8)) as char,
        _ => chars.swap(at, at + 1),
    }
    chars.into_iter().collect()
}

/// Precision, recall and F1 of deciding each record against the ones before it.
#[derive(Debug)]
pub struct Quality {
    pub records: usize,
    pub duplicates: usize,
    pub true_positives: usize,
    pub false_positives: usize,
    pub false_negatives: usize,
    pub blocking_recall: f64,
}

impl Quality {
    pub fn precision(&self) -> f64 {
        self.true_positives as f64 / (self.true_positives + self.false_positives).max(1) as f64
    }
    pub fn recall(&self) -> f64 {
        self.true_positives as f64 / (self.true_positives + self.false_negatives).max(1) as f64
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) }
    }
}

/// Decides each record against the records before it, in order:
/// `decided(position, candidates, best)` with the candidates sharing a
/// blocking key and the best-scoring one of them.
pub fn decide_in_order(records: &[Labelled], mut decided: impl FnMut(usize, &HashSet<usize>, Option<(usize, Match)>)) {
    let mut index: HashMap<String, Vec<usize>> = HashMap::new();
    for (position, record) in records.iter().enumerate() {
        let record_keys = keys(&record.contact);
        // As the store reads them: a wide key held by more than MAX_BLOCK brings none.
        let candidates: HashSet<usize> = record_keys
            .iter()
            .filter_map(|key| index.get(key).filter(|holders| brings(key, holders.len())))
            .flatten()
            .copied()
            .collect();
        let best = candidates
            .iter()
            .map(|&candidate| (candidate, score(&record.contact, &records[candidate].contact)))
            .max_by(|a, b| a.1.score.total_cmp(&b.1.score));
        decided(position, &candidates, best);
        for key in record_keys {
            index.entry(key).or_default().push(position);
        }
    }
}

pub fn evaluate(records: &[Labelled], threshold: f64) -> Quality {
    let mut seen_entities = HashSet::new();
    let mut quality = Quality {
        records: records.len(),
        duplicates: 0,
        true_positives: 0,
        false_positives: 0,
        false_negatives: 0,
        blocking_recall: 0.0,
    };
    let mut blocked = 0;
    decide_in_order(records, |position, candidates, best| {
        let record = &records[position];
        let is_duplicate = seen_entities.contains(&record.entity);
        if is_duplicate {
            quality.duplicates += 1;
            if candidates.iter().any(|&candidate| records[candidate].entity == record.entity) {
                blocked += 1;
            }
        }
        match best {
            Some((candidate, found)) if found.score >= threshold => {
                if records[candidate].entity == record.entity {
                    quality.true_positives += 1;
                } else {
                    quality.false_positives += 1;
                    if is_duplicate {
                        quality.false_negatives += 1;
                    }
                }
            }
            _ if is_duplicate => quality.false_negatives += 1,
            _ => {}
        }
        seen_entities.insert(record.entity);
    });
    quality.blocking_recall = blocked as f64 / quality.duplicates.max(1) as f64;
    quality
}

/// `count` records, a quarter of them duplicates, from a fixed seed.
pub fn corpus(seed: u64, count: usize) -> Vec<Labelled> {
    let mut generator = Generator::new(seed);
    (0..count).map(|_| generator.next_record(0.25)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::DEFAULT_THRESHOLD;

    /// The figures docs/contacts.md reports:
    /// `cargo test -p crm-contacts --release duplicate_detection -- --nocapture`.
    #[test]
    fn duplicate_detection_meets_its_precision_and_recall() {
        for seed in [1, 2, 3] {
            let records = corpus(seed, 20_000);
            let quality = evaluate(&records, DEFAULT_THRESHOLD);
            println!(
                "seed {seed}: {} records, {} duplicates: precision {:.4}, recall {:.4}, F1 {:.4} \
                 (tp {}, fp {}, fn {}; blocking recall {:.4})",
                quality.records,
                quality.duplicates,
                quality.precision(),
                quality.recall(),
                quality.f1(),
                quality.true_positives,
                quality.false_positives,
                quality.false_negatives,
                quality.blocking_recall,
            );
            assert!(quality.duplicates > 4_000, "{quality:?}");
            assert!(quality.precision() >= 0.99, "seed {seed}: {quality:?}");
            assert!(quality.f1() >= 0.98, "seed {seed}: {quality:?}");
        }
    }

    /// Where false flags come from in a big base without planted duplicates,
    /// as `crm bench --contacts 1000000` loads it:
    /// `cargo test -p crm-contacts --release false_flags_at_scale -- --ignored --nocapture`.
    #[test]
    #[ignore = "a diagnosis at scale, minutes long"]
    fn false_flags_at_scale() {
        let count: usize = std::env::var("RECORDS").ok().and_then(|n| n.parse().ok()).unwrap_or(300_000);
        let mut generator = Generator::new(42);
        let records: Vec<Labelled> = (0..count).map(|_| generator.next_record(0.0)).collect();
        let mut patterns: HashMap<String, usize> = HashMap::new();
        let mut flagged = 0;
        let mut compared = 0;
        decide_in_order(&records, |_, candidates, best| {
            compared += candidates.len();
            if let Some((_, found)) = best.filter(|(_, found)| found.score >= DEFAULT_THRESHOLD) {
                flagged += 1;
                let mut reasons: Vec<&str> = found.reasons.iter().map(|(reason, _)| *reason).collect();
                reasons.sort();
                *patterns.entry(reasons.join(" ")).or_default() += 1;
            }
        });
        println!("{count} records, {flagged} flagged, {:.1} candidates a record", compared as f64 / count as f64);
        let mut patterns: Vec<_> = patterns.into_iter().collect();
        patterns.sort_by_key(|pattern| std::cmp::Reverse(pattern.1));
        for (pattern, n) in patterns.iter().take(25) {
            println!("{n:>7} {pattern}");
        }
    }

    #[test]
    fn the_generator_varies_people_and_labels_them() {
        let records = corpus(7, 500);
        let entities: HashSet<usize> = records.iter().map(|record| record.entity).collect();
        assert!(entities.len() < records.len() && entities.len() > records.len() / 2);
    }
}

/// What each kind of blocking key costs in a big base: the candidates it
/// brings a record, as the store reads them (a key held by more than
/// `MAX_BLOCK` brings none, another at most `MAX_FAN_OUT`):
/// `RECORDS=1000000 cargo test -p crm-contacts --release candidates_by_kind -- --ignored --nocapture`.
#[cfg(test)]
mod fan_out {
    use std::collections::HashMap;

    use super::*;

    #[test]
    #[ignore = "a diagnosis at scale"]
    fn candidates_by_kind() {
        let count: usize = std::env::var("RECORDS").ok().and_then(|n| n.parse().ok()).unwrap_or(100_000);
        let mut generator = Generator::new(42);
        let mut holders: HashMap<String, usize> = HashMap::new();
        let mut brought: HashMap<String, usize> = HashMap::new();
        for _ in 0..count {
            let record = generator.next_record(0.0);
            for key in keys(&record.contact) {
                let held = holders.entry(key.clone()).or_default();
                if brings(&key, *held) {
                    let kind = key.split(':').next().unwrap_or_default().to_string();
                    *brought.entry(kind).or_default() += *held;
                }
                *held += 1;
            }
        }
        let mut brought: Vec<_> = brought.into_iter().collect();
        brought.sort();
        for (kind, candidates) in brought {
            println!("{kind:>3}: {:.2} candidates a record", candidates as f64 / count as f64);
        }
    }
}
