//! Free-text search, the part that needs no database: a query as the terms
//! that may answer it ([`Query`]), and how well a contact answers it
//! ([`Query::score`]).
//!
//! A query is a list of tokens. An email address, a domain or a phone
//! number is one exact term (`e:`, `d:`, `p:`). Any other word is widened
//! by the store to the stored name words it may stand for: itself, the
//! words it is a typo of (trigram similarity), the words it begins
//! (type-ahead), and the formal name of a nickname ("bob" -> "robert"),
//! each with a weight. A contact scores the mean over the tokens of its best
//! weight for each: 1 when every word is found as typed, less for typos,
//! prefixes and partial matches.
//!
//! Two words or more are looked up by their pairs (`n2:` terms), so "john
//! smith" reads the few contacts named both, not every John and every Smith;
//! single words fill the page when pairs find too few.

use crate::{matching::names, terms};

/// Query tokens considered, at most.
pub const MAX_TOKENS: usize = 6;

/// Stored words one query word may stand for, at most.
pub const MAX_EXPANSIONS: usize = 8;

/// Weights of the ways a stored word can answer a query word.
pub const EXACT: f64 = 1.0;
pub const NICKNAME: f64 = 0.9;
pub const PREFIX: f64 = 0.8;
/// A typo scores its trigram similarity times this.
pub const TYPO: f64 = 0.9;
/// Trigram similarity from which a stored word is a typo of the query word.
pub const MIN_SIMILARITY: f64 = 0.4;

/// One part of a query.
#[derive(Clone, Debug, PartialEq)]
pub enum Token {
    /// A word of a name, to be widened.
    Word(String),
    /// An email, domain or phone, found only as written (normalised).
    Exact(String),
}

/// A stored word a query word may stand for, and how well.
#[derive(Clone, Debug, PartialEq)]
pub struct Expansion {
    pub word: String,
    pub weight: f64,
}

/// A parsed query with each word's expansions.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub tokens: Vec<Token>,
    /// Per token, in order: its expansions (empty for an exact token).
    pub expansions: Vec<Vec<Expansion>>,
    /// Per token, in order: the hashes of the terms that answer it, with their weights (for [`Query::score`]).
    answers: Vec<Vec<(i64, f64)>>,
}

/// Splits a query into tokens. `phone` is the query as an E.164 number when it reads as one.
pub fn tokens(text: &str, phone: Option<&str>) -> Vec<Token> {
    if let Some(e164) = phone {
        return vec![Token::Exact(crate::matching::phone_key(e164))];
    }
    let mut tokens = Vec::new();
    for chunk in text.split_whitespace() {
        let lower = chunk.to_lowercase();
        if lower.contains('@') && lower.len() > 2 {
            tokens.push(Token::Exact(crate::matching::email_key(&lower)));
        } else if looks_like_domain(&lower) {
            tokens.push(Token::Exact(terms::domain_term(&lower)));
        } else {
            tokens.extend(terms::split(chunk).into_iter().map(Token::Word));
        }
    }
    tokens.dedup();
    tokens.truncate(MAX_TOKENS);
    tokens
}

/// `apollo.example`, `mail.co.uk`: labels of letters, digits and hyphens joined by dots.
fn looks_like_domain(text: &str) -> bool {
    let labels: Vec<&str> = text.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| !label.is_empty() && label.chars().all(|c| c.is_alphanumeric() || c == '-'))
        && labels.last().is_some_and(|tld| tld.chars().any(char::is_alphabetic))
}

impl Query {
    /// The query with the expansions the vocabulary gave for each word
    /// (`found[i]`: stored words similar to or starting with word `i`, with
    /// their trigram similarity); the word itself and its formal name are
    /// always among them.
    pub fn new(tokens: Vec<Token>, found: &[Vec<(String, f64)>]) -> Query {
        let expansions = tokens
            .iter()
            .enumerate()
            .map(|(at, token)| match token {
                Token::Exact(_) => Vec::new(),
                Token::Word(word) => expand(word, found.get(at).map(Vec::as_slice).unwrap_or_default()),
            })
            .collect::<Vec<Vec<Expansion>>>();
        let answers = tokens
            .iter()
            .zip(&expansions)
            .map(|(token, expansions)| match token {
                Token::Exact(term) => vec![(terms::hash(term), EXACT)],
                Token::Word(_) => expansions
                    .iter()
                    .map(|expansion| (terms::hash(&terms::word_term(&expansion.word)), expansion.weight))
                    .collect(),
            })
            .collect();
        Query { tokens, expansions, answers }
    }

    /// The words of the query (what the vocabulary is asked about).
    pub fn words(&self) -> Vec<&str> {
        self.tokens
            .iter()
            .map(|token| match token {
                Token::Word(word) => word.as_str(),
                Token::Exact(_) => "",
            })
            .collect()
    }

    /// The terms of contacts answering every token: exact terms, and the
    /// pairs of any two words' expansions (all tokens must be words or exact;
    /// one word alone is looked up by its word terms).
    pub fn pair_terms(&self) -> Vec<String> {
        let mut found: Vec<String> = Vec::new();
        let words: Vec<&Vec<Expansion>> = self.expansions.iter().filter(|expansions| !expansions.is_empty()).collect();
        if words.len() >= 2 {
            for (at, first) in words.iter().enumerate() {
                for second in &words[at + 1..] {
                    for a in first.iter() {
                        for b in second.iter() {
                            found.push(terms::pair_term(&a.word, &b.word));
                        }
                    }
                }
            }
        }
        found.extend(self.exact_terms());
        dedup(found)
    }

    /// The terms of contacts answering at least one token.
    pub fn any_terms(&self) -> Vec<String> {
        let mut found: Vec<String> =
            self.expansions.iter().flatten().map(|expansion| terms::word_term(&expansion.word)).collect();
        found.extend(self.exact_terms());
        dedup(found)
    }

    /// The exact tokens that are blocking keys (emails, phones).
    pub fn key_terms(&self) -> Vec<String> {
        self.exact().filter(|term| is_key(term)).collect()
    }

    /// The exact tokens that are search terms (domains).
    fn exact_terms(&self) -> impl Iterator<Item = String> + '_ {
        self.exact().filter(|term| !is_key(term))
    }

    fn exact(&self) -> impl Iterator<Item = String> + '_ {
        self.tokens.iter().filter_map(|token| match token {
            Token::Exact(term) => Some(term.clone()),
            Token::Word(_) => None,
        })
    }

    /// How well a contact with these terms and keys (their hashes, as
    /// stored) answers the query, 0 to 1.
    pub fn score(&self, contact_terms: &[i64]) -> f64 {
        if self.tokens.is_empty() {
            return 0.0;
        }
        let total: f64 = self
            .answers
            .iter()
            .map(|answers| {
                let held = answers.iter().filter(|(term, _)| contact_terms.contains(term));
                held.map(|(_, weight)| *weight).fold(0.0, f64::max)
            })
            .sum();
        total / self.tokens.len() as f64
    }
}

/// A word's expansions: itself, its formal name, and what the vocabulary
/// found (prefixes of it, typos of it), best first, at most [`MAX_EXPANSIONS`].
fn expand(word: &str, found: &[(String, f64)]) -> Vec<Expansion> {
    let mut expansions = vec![Expansion { word: word.to_string(), weight: EXACT }];
    let formal = names::formal(word);
    if formal != word {
        expansions.push(Expansion { word: formal.to_string(), weight: NICKNAME });
    }
    for (stored, similarity) in found {
        let weight = if stored.starts_with(word) {
            PREFIX.max(similarity * TYPO)
        } else if *similarity >= MIN_SIMILARITY {
            similarity * TYPO
        } else {
            continue;
        };
        if !expansions.iter().any(|known| known.word == *stored) {
            expansions.push(Expansion { word: stored.clone(), weight });
        }
    }
    expansions.sort_by(|a, b| b.weight.total_cmp(&a.weight).then_with(|| a.word.cmp(&b.word)));
    expansions.truncate(MAX_EXPANSIONS);
    expansions
}

/// Emails and phones are blocking keys, not search terms (see `crate::terms`).
fn is_key(term: &str) -> bool {
    term.starts_with("e:") || term.starts_with("p:")
}

fn dedup(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items.dedup();
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_domains_and_phones_are_exact_and_words_are_split() {
        assert_eq!(
            tokens("Margaret@APOLLO.example apollo.example O'Hara-Smith", None),
            [
                Token::Exact("e:margaret@apollo.example".into()),
                Token::Exact("d:apollo.example".into()),
                Token::Word("ohara".into()),
                Token::Word("smith".into()),
            ]
        );
        assert_eq!(tokens("201 555 0123", Some("+12015550123")), [Token::Exact("p:+12015550123".into())]);
        assert_eq!(tokens("a b c d e f g h", None).len(), 0, "one-letter words say nothing");
        assert_eq!(tokens("ab cd ef gh ij kl mn", None).len(), MAX_TOKENS);
    }

    #[test]
    fn exact_words_rank_above_nicknames_prefixes_and_typos() {
        let query = Query::new(
            tokens("bob smith", None),
            &[vec![("bobby".into(), 0.5)], vec![("smyth".into(), 0.5), ("smithers".into(), 0.45)]],
        );
        let words: Vec<&str> = query.expansions[0].iter().map(|e| e.word.as_str()).collect();
        assert_eq!(words, ["bob", "robert", "bobby"]);
        let exact = query.score(&terms::hashes(&["w:bob", "w:smith"]));
        let formal = query.score(&terms::hashes(&["w:robert", "w:smith"]));
        let typo = query.score(&terms::hashes(&["w:bob", "w:smyth"]));
        let half = query.score(&terms::hashes(&["w:bob", "w:jones"]));
        assert_eq!(exact, 1.0);
        assert!(exact > formal && formal > typo && typo > half, "{exact} {formal} {typo} {half}");
        assert!(query.pair_terms().contains(&"n2:robert smyth".to_string()));
        assert!(query.any_terms().contains(&"w:smithers".to_string()));
        let mixed = Query::new(tokens("ada@example.com example.com", None), &[]);
        assert_eq!(mixed.key_terms(), ["e:ada@example.com"]);
        assert_eq!(mixed.any_terms(), ["d:example.com"]);
    }

    #[test]
    fn weak_similarities_are_not_typos() {
        let query = Query::new(tokens("hamilton", None), &[vec![("hampton".into(), 0.3)]]);
        assert_eq!(query.expansions[0].len(), 1);
    }
}
