//! Search against the schema: the `search_words` vocabulary (kept by every
//! write, cleaned by merges and erasures), widening query words through it,
//! and reading contacts by their terms in `contact_terms` (see
//! `crate::search` for the ranking).

use std::collections::{BTreeSet, HashMap};

use crm_platform::Error;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{CONTACT_COLUMNS, ContactStore, LIVE, contact_record};
use crate::{
    model::{ContactData, ContactRecord},
    search::{self, MAX_EXPANSIONS, Query},
    terms,
};

/// Contacts read to rank one page: this many times the page, at most [`MAX_CANDIDATES`].
const CANDIDATES_PER_RESULT: i64 = 10;
const MAX_CANDIDATES: i64 = 500;
/// Contacts read for each term, at least.
const MIN_PER_TERM: i64 = 20;

/// The contacts to read for each of `terms` terms out of a budget.
fn per_term(budget: i64, terms: usize) -> i64 {
    (budget / terms.max(1) as i64).max(MIN_PER_TERM)
}

/// Adds words to the vocabulary (those it has already cost one index probe each).
pub(crate) async fn remember_words(conn: &mut PgConnection, words: &[&str]) -> Result<(), Error> {
    if words.is_empty() {
        return Ok(());
    }
    let mut sorted: Vec<&str> = words.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sqlx::query(
        "INSERT INTO search_words (word)
         SELECT w FROM unnest($1::text[]) WITH ORDINALITY AS t(w, n) ORDER BY n ON CONFLICT DO NOTHING",
    )
    .bind(&sorted)
    .execute(conn)
    .await?;
    Ok(())
}

/// Drops the words no live contact has any more (after a merge or an
/// erasure): the vocabulary must not keep a forgotten person's name.
pub(crate) async fn forget_unused_words(conn: &mut PgConnection, words: &BTreeSet<String>) -> Result<(), Error> {
    if words.is_empty() {
        return Ok(());
    }
    let (words, hashes): (Vec<&str>, Vec<i64>) =
        words.iter().map(|word| (word.as_str(), terms::hash(&terms::word_term(word)))).unzip();
    sqlx::query(
        "DELETE FROM search_words s USING unnest($1::text[], $2::bigint[]) AS u(word, term)
         WHERE s.word = u.word AND NOT EXISTS (SELECT 1 FROM contact_terms t WHERE t.term = u.term)",
    )
    .bind(&words)
    .bind(&hashes)
    .execute(conn)
    .await?;
    Ok(())
}

/// For each word, the stored words it may be a typo of or a prefix of, with
/// their trigram similarity to it (empty for an empty word).
async fn similar_words(conn: &mut PgConnection, words: &[&str]) -> Result<Vec<Vec<(String, f64)>>, Error> {
    let mut found = vec![Vec::new(); words.len()];
    if words.iter().all(|word| word.is_empty()) {
        return Ok(found);
    }
    let rows = sqlx::query(
        "SELECT t.n::int8 AS n, w.word, similarity(w.word, t.word)::float8 AS similarity
         FROM unnest($1::text[]) WITH ORDINALITY AS t(word, n)
         CROSS JOIN LATERAL (
             (SELECT word FROM search_words WHERE t.word <> '' AND word % t.word
              ORDER BY similarity(word, t.word) DESC, word LIMIT $2)
             UNION
             (SELECT word FROM search_words WHERE t.word <> '' AND word >= t.word AND word < t.word || chr(1114111)
              ORDER BY word LIMIT $2)
         ) w",
    )
    .bind(words)
    .bind(MAX_EXPANSIONS as i64)
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let at: i64 = row.try_get("n")?;
        if let Some(slot) = found.get_mut(at as usize - 1) {
            slot.push((row.try_get("word")?, row.try_get("similarity")?));
        }
    }
    Ok(found)
}

/// Widens the query's words through the vocabulary.
pub(crate) async fn plan(conn: &mut PgConnection, tokens: Vec<search::Token>) -> Result<Query, Error> {
    let skeleton = Query::new(tokens, &[]);
    let found = similar_words(conn, &skeleton.words()).await?;
    Ok(Query::new(skeleton.tokens, &found))
}

/// Live contacts holding any of `wanted`, with the hashes of all their
/// terms, at most `per_term` for each term (so one common word cannot crowd
/// the others out), skipping `seen`.
async fn holders(
    conn: &mut PgConnection,
    wanted: &[String],
    seen: &[Uuid],
    per_term: i64,
) -> Result<Vec<(Uuid, Vec<i64>)>, Error> {
    if wanted.is_empty() || per_term <= 0 {
        return Ok(Vec::new());
    }
    let rows: Vec<(Uuid, Vec<i64>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT c.id, c.terms FROM contacts c
         WHERE c.id IN (
             SELECT h.contact_id FROM unnest($1::bigint[]) AS w(term)
             CROSS JOIN LATERAL (SELECT contact_id FROM contact_terms t WHERE t.term = w.term LIMIT $3) h)
           AND {LIVE} AND c.id <> ALL($2)"
    )))
    .bind(terms::hashes(wanted))
    .bind(seen)
    .bind(per_term)
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// The live contacts whose names look like `data`'s (typos, nicknames), for
/// a duplicate check beyond the blocking keys: pairs of the widened given
/// and family names.
pub(crate) async fn similar_names(conn: &mut PgConnection, data: &ContactData, limit: i64) -> Result<Vec<Uuid>, Error> {
    let given = terms::split(&data.given_name);
    let family = terms::split(&data.family_name);
    let (Some(given), Some(family)) = (given.first(), family.first()) else { return Ok(Vec::new()) };
    let tokens = vec![search::Token::Word(given.clone()), search::Token::Word(family.clone())];
    let query = plan(conn, tokens).await?;
    let found = holders(conn, &query.pair_terms(), &[], limit).await?;
    Ok(found.into_iter().map(|(id, _)| id).take(limit as usize).collect())
}

impl ContactStore {
    /// Free-text search over names, emails, domains and phones (see
    /// `crate::search`), plus contacts related to organizations whose name
    /// matches; best first.
    pub async fn search(
        &self,
        tokens: Vec<search::Token>,
        text: &str,
        limit: i64,
    ) -> Result<Vec<(ContactRecord, f64)>, Error> {
        let mut conn = self.pool.acquire().await?;
        let query = plan(&mut conn, tokens).await?;
        let budget = (limit * CANDIDATES_PER_RESULT).min(MAX_CANDIDATES);
        let exact: Vec<String> = query.key_terms().into_iter().chain(query.pair_terms()).collect();
        let mut candidates = holders(&mut conn, &exact, &[], per_term(budget, exact.len())).await?;
        if (candidates.len() as i64) < limit {
            let seen: Vec<Uuid> = candidates.iter().map(|(id, _)| *id).collect();
            let any = query.any_terms();
            candidates.extend(holders(&mut conn, &any, &seen, per_term(budget, any.len())).await?);
        }
        let mut scores: HashMap<Uuid, f64> =
            candidates.iter().map(|(id, contact_terms)| (*id, query.score(contact_terms))).collect();
        scores.retain(|_, score| *score > 0.0);
        for (id, score) in self.related_to_organizations(&mut conn, text, limit).await? {
            let entry = scores.entry(id).or_insert(score);
            *entry = entry.max(score);
        }
        let mut ranked: Vec<(Uuid, f64)> = scores.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(limit as usize);

        let ids: Vec<Uuid> = ranked.iter().map(|(id, _)| *id).collect();
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {CONTACT_COLUMNS} FROM contacts c WHERE c.id = ANY($1)")))
                .bind(&ids)
                .fetch_all(&mut *conn)
                .await?;
        let mut records: HashMap<Uuid, ContactRecord> = HashMap::new();
        for row in &rows {
            let record = contact_record(row)?;
            records.insert(record.meta.id, record);
        }
        Ok(ranked.into_iter().filter_map(|(id, score)| records.remove(&id).map(|record| (record, score))).collect())
    }

    /// Live contacts related to the organizations whose names look most like
    /// `text`, scored by that similarity.
    async fn related_to_organizations(
        &self,
        conn: &mut PgConnection,
        text: &str,
        limit: i64,
    ) -> Result<Vec<(Uuid, f64)>, Error> {
        let rows: Vec<(Uuid, f64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT c.id, o.score FROM (
                 SELECT o.id, similarity(lower(o.name), $1)::float8 AS score FROM organizations o
                 WHERE lower(o.name) % $1 AND o.delete_time IS NULL ORDER BY score DESC LIMIT 10) o
             JOIN relationships r ON r.organization_id = o.id
             JOIN contacts c ON c.id = r.contact_id
             WHERE {LIVE} ORDER BY o.score DESC, c.id LIMIT $2"
        )))
        .bind(text.to_lowercase())
        .bind(limit)
        .fetch_all(conn)
        .await?;
        Ok(rows)
    }
}
