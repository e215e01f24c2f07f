//! Profiles, activity, merges, tombstones and the computed features.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use crm_platform::Error;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::features::{
    self, Activity, Analytics, Computed, FeatureDoc, Inputs, Invoice, Problem, Profile, Revenue, Rollups,
};

/// Where events about each of `ids` go: the survivor of a merged contact,
/// nowhere (`None`) for a contact that is gone, else the contact itself.
pub async fn resolve(tx: &mut PgConnection, ids: &[Uuid]) -> Result<HashMap<Uuid, Option<Uuid>>, Error> {
    let mut resolved: HashMap<Uuid, Option<Uuid>> = ids.iter().map(|id| (*id, Some(*id))).collect();
    if ids.is_empty() {
        return Ok(resolved);
    }
    // Only the ids redirected or gone come back: the others are themselves.
    let changed: Vec<(Uuid, Option<Uuid>)> = sqlx::query_as(
        "SELECT i.id, CASE WHEN g.contact_id IS NULL THEN coalesce(r.survivor_id, i.id) END
         FROM (SELECT DISTINCT id FROM unnest($1::uuid[]) AS id) AS i
         LEFT JOIN redirects r ON r.loser_id = i.id
         LEFT JOIN gone g ON g.contact_id = coalesce(r.survivor_id, i.id)
         WHERE r.loser_id IS NOT NULL OR g.contact_id IS NOT NULL",
    )
    .bind(ids)
    .fetch_all(&mut *tx)
    .await?;
    resolved.extend(changed);
    Ok(resolved)
}

/// Stores what the contacts feed says of each contact (unless it is gone),
/// in one statement however many: an import's burst of `ContactCreated`
/// costs one round trip, not one a contact. A contact named twice keeps the
/// later profile, as applying them one by one would.
pub async fn save_profiles(tx: &mut PgConnection, profiles: &[(Uuid, Profile)]) -> Result<(), Error> {
    let mut seen = HashSet::new();
    let mut ids = Vec::with_capacity(profiles.len());
    let mut data = Vec::with_capacity(profiles.len());
    for (contact_id, profile) in profiles.iter().rev().filter(|(contact_id, _)| seen.insert(*contact_id)) {
        ids.push(*contact_id);
        data.push(sqlx::types::Json(profile));
    }
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO profiles (contact_id, data)
         SELECT p.contact_id, p.data FROM unnest($1::uuid[], $2::jsonb[]) AS p(contact_id, data)
         WHERE NOT EXISTS (SELECT 1 FROM gone g WHERE g.contact_id = p.contact_id)
         ON CONFLICT (contact_id) DO UPDATE SET data = excluded.data, updated_at = now()",
    )
    .bind(&ids)
    .bind(&data)
    .execute(tx)
    .await?;
    Ok(())
}

/// Folds `losers` into `survivor`: their activity moves, their profiles and
/// features go, and events naming them later apply to the survivor (earlier
/// redirects to a loser are re-pointed: never a chain).
pub async fn merge(tx: &mut PgConnection, survivor: Uuid, losers: &[Uuid]) -> Result<(), Error> {
    let losers: Vec<Uuid> = losers.iter().copied().filter(|loser| *loser != survivor).collect();
    for table in ["activity", "invoices", "problems", "relationships"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE {table} SET contact_id = $1 WHERE contact_id = ANY($2)")))
            .bind(survivor)
            .bind(&losers)
            .execute(&mut *tx)
            .await?;
    }
    // Who referred a loser referred the survivor; links between the merged go (as in contacts).
    sqlx::query("UPDATE relationships SET target_id = $1 WHERE kind = 'referred_by' AND target_id = ANY($2)")
        .bind(survivor)
        .bind(&losers)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM relationships WHERE contact_id = target_id").execute(&mut *tx).await?;
    // A loser's analytics go; the survivor's stand until the next computation.
    for table in ["profiles", "features", "rfm_scores", "clv_values"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE contact_id = ANY($1)")))
            .bind(&losers)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("UPDATE redirects SET survivor_id = $1 WHERE survivor_id = ANY($2)")
        .bind(survivor)
        .bind(&losers)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO redirects (loser_id, survivor_id) SELECT l, $1 FROM unnest($2::uuid[]) AS l
         ON CONFLICT (loser_id) DO UPDATE SET survivor_id = excluded.survivor_id",
    )
    .bind(survivor)
    .bind(&losers)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// `contact_id` is no more (`reason`: erased or deleted): everything the role
/// holds of it goes, and later events about it are dropped.
pub async fn forget(tx: &mut PgConnection, contact_id: Uuid, reason: &str) -> Result<(), Error> {
    for table in ["profiles", "activity", "invoices", "problems", "features", "rfm_scores", "clv_values"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE contact_id = $1")))
            .bind(contact_id)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM relationships WHERE contact_id = $1 OR (kind = 'referred_by' AND target_id = $1)")
        .bind(contact_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO gone (contact_id, reason) VALUES ($1, $2) ON CONFLICT (contact_id) DO NOTHING")
        .bind(contact_id)
        .bind(reason)
        .execute(tx)
        .await?;
    Ok(())
}

/// Stores interactions (by contact, already resolved); one stored twice is
/// kept once. Returns the ones that were new.
pub async fn record_activity(
    tx: &mut PgConnection,
    rows: Vec<(Uuid, Activity)>,
) -> Result<Vec<(Uuid, Activity)>, Error> {
    if rows.is_empty() {
        return Ok(rows);
    }
    let contacts: Vec<Uuid> = rows.iter().map(|(contact, _)| *contact).collect();
    let ids: Vec<Uuid> = rows.iter().map(|(_, row)| row.interaction_id).collect();
    let times: Vec<DateTime<Utc>> = rows.iter().map(|(_, row)| row.occurred_at).collect();
    let kinds: Vec<&str> = rows.iter().map(|(_, row)| row.kind.as_str()).collect();
    let channels: Vec<&str> = rows.iter().map(|(_, row)| row.channel.as_str()).collect();
    let currencies: Vec<&str> = rows.iter().map(|(_, row)| row.currency.as_str()).collect();
    let amounts: Vec<i64> = rows.iter().map(|(_, row)| row.amount).collect();
    let sentiments: Vec<Option<f64>> = rows.iter().map(|(_, row)| row.sentiment).collect();
    // Text arrays cannot nest in unnest: SKUs travel as one text per row.
    let skus: Vec<String> = rows.iter().map(|(_, row)| row.skus.join("\u{1f}")).collect();
    let mut new: HashSet<(Uuid, Uuid)> = sqlx::query_as(
        "INSERT INTO activity (contact_id, interaction_id, occurred_at, kind, channel, currency, amount, sentiment, skus)
         SELECT c, i, o, k, ch, cu, a, s, CASE WHEN sk = '' THEN '{}'::text[] ELSE string_to_array(sk, chr(31)) END
         FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::bigint[],
                     $8::float8[], $9::text[]) AS t(c, i, o, k, ch, cu, a, s, sk)
         ON CONFLICT (contact_id, interaction_id) DO NOTHING
         RETURNING contact_id, interaction_id",
    )
    .bind(&contacts)
    .bind(&ids)
    .bind(&times)
    .bind(&kinds)
    .bind(&channels)
    .bind(&currencies)
    .bind(&amounts)
    .bind(&sentiments)
    .bind(&skus)
    .fetch_all(tx)
    .await?
    .into_iter()
    .collect();
    // One named twice in a burst is new once.
    Ok(rows.into_iter().filter(|(contact, row)| new.remove(&(*contact, row.interaction_id))).collect())
}

/// Recomputes the features of `contacts` at `now` (under their locks), stores
/// them, and returns them. A contact the role knows nothing of has no row.
pub async fn recompute(
    tx: &mut PgConnection,
    contacts: &[Uuid],
    now: DateTime<Utc>,
) -> Result<Vec<(Uuid, Computed)>, Error> {
    let mut contacts: Vec<Uuid> = contacts.to_vec();
    contacts.sort_unstable();
    contacts.dedup();
    if contacts.is_empty() {
        return Ok(Vec::new());
    }
    super::lock_contacts(tx, &contacts).await?;
    let mut stored = inputs(tx, &contacts, now).await?;
    let mut computed = Vec::new();
    for contact in &contacts {
        let rows = stored.activity.remove(contact).unwrap_or_default();
        let invoices = stored.invoices.remove(contact).unwrap_or_default();
        let problems = stored.problems.remove(contact).unwrap_or_default();
        let profile = stored.profiles.get(contact);
        let rollups = stored.rollups.remove(contact);
        let analytics = stored.analytics.remove(contact);
        if profile.is_none()
            && rows.is_empty()
            && invoices.is_empty()
            && problems.is_empty()
            && rollups.is_none()
            && analytics.is_none()
        {
            continue;
        }
        let inputs = Inputs {
            profile,
            activity: &rows,
            invoices: &invoices,
            problems: &problems,
            rollups: rollups.as_ref(),
            analytics: analytics.as_ref(),
        };
        computed.push((*contact, features::compute_all(inputs, now)));
    }
    let known: HashSet<Uuid> = computed.iter().map(|(contact, _)| *contact).collect();
    let nothing: Vec<Uuid> = contacts.iter().copied().filter(|contact| !known.contains(contact)).collect();
    sqlx::query("DELETE FROM features WHERE contact_id = ANY($1)").bind(&nothing).execute(&mut *tx).await?;
    store(tx, &computed, now).await?;
    Ok(computed)
}

/// New interactions applied to stored features ([`apply_activity`]).
#[derive(Default)]
pub struct Applied {
    /// The features, applied to and stored.
    pub computed: Vec<(Uuid, Computed)>,
    /// For each of those contacts, the features the interactions may have
    /// changed (segments reading none of them keep their decisions).
    pub moved: HashMap<Uuid, HashSet<&'static str>>,
    /// The contacts whose features could not be applied to: recompute them.
    pub stale: Vec<Uuid>,
}

/// Applies new interactions (by contact, already resolved and stored) to the
/// stored features of their contacts (the caller holds their locks,
/// [`super::lock_contacts`], taken with the burst's others), where those are
/// current at `now`, and stores them; the others (no features yet, due to
/// change by time, stored by an older catalogue) are left to recompute. A
/// burst costs a read and a write per contact instead of reading back
/// everything each contact ever did.
pub async fn apply_activity(
    tx: &mut PgConnection,
    rows: &[(Uuid, Activity)],
    now: DateTime<Utc>,
) -> Result<Applied, Error> {
    let mut by_contact: HashMap<Uuid, Vec<&Activity>> = HashMap::new();
    for (contact, row) in rows {
        by_contact.entry(*contact).or_default().push(row);
    }
    let contacts: Vec<Uuid> = by_contact.keys().copied().collect();
    let stored = current_docs(tx, &contacts, now).await?;
    let mut applied = Applied::default();
    let done = crate::parallel::map(stored, |(contact, doc, next_change)| {
        let mut computed = features::computed_from_bytes(&doc, next_change)?;
        let rows = by_contact.get(&contact).map(Vec::as_slice).unwrap_or_default();
        if !rows.iter().all(|row| features::apply(&mut computed, row, now)) {
            return None;
        }
        let moved: HashSet<&'static str> = rows.iter().flat_map(|row| features::moved_by(row, now)).collect();
        Some((contact, computed, moved))
    });
    for (contact, computed, moved) in done.into_iter().flatten() {
        applied.moved.insert(contact, moved);
        applied.computed.push((contact, computed));
    }
    applied.stale = contacts.into_iter().filter(|contact| !applied.moved.contains_key(contact)).collect();
    store(tx, &applied.computed, now).await?;
    Ok(applied)
}

/// The stored documents of `contacts` that are current at `now` (not due
/// to change by time), with their next change.
async fn current_docs(
    tx: &mut PgConnection,
    contacts: &[Uuid],
    now: DateTime<Utc>,
) -> Result<Vec<(Uuid, Vec<u8>, Option<DateTime<Utc>>)>, Error> {
    Ok(sqlx::query_as(
        "SELECT contact_id, doc, next_change_at FROM features
         WHERE contact_id = ANY($1) AND (next_change_at IS NULL OR next_change_at > $2)",
    )
    .bind(contacts)
    .bind(now)
    .fetch_all(tx)
    .await?)
}

/// How many contacts have a features document.
pub async fn documents(pool: &sqlx::PgPool) -> Result<usize, Error> {
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM features").fetch_one(pool).await?;
    Ok(count as usize)
}

/// What [`apply_analytics`] did with one page of contacts.
#[derive(Default)]
pub struct AnalyticsPage {
    /// The last contact of the page; `None`: no contact was left after the one asked.
    pub last: Option<Uuid>,
    /// How many contacts the page held.
    pub seen: usize,
    /// The contacts whose documents changed, each with the features asked
    /// for (`read`: those the segments reading analytics read).
    pub changed: Vec<(Uuid, FeatureDoc)>,
    /// For each of those contacts, the features that changed (the analytics ones).
    pub moved: HashMap<Uuid, HashSet<&'static str>>,
}

/// Brings the analytics features ([`features::ANALYTICS_FEATURES`]) of the
/// next `limit` contacts marked by a computation (`analytics_dirty`) after
/// `after` (in id order) to what the stored RFM scores and lifetime values
/// say, under their locks, and unmarks them: a document that already says
/// it is only read (the five features, the rest stepped over), one that
/// does not gets the five spliced into its stored text
/// ([`features::patched_bytes`]: the rest is neither parsed nor written
/// anew) and answers the features in `read`; one due to change by time is
/// left to the schedule's recompute (it reads the stored analytics), one
/// stored by an older catalogue is made due now; a contact with no document
/// (merged or erased since: their marks are left to this, as a merge or an
/// erasure taking them would wait on a page that waits on its document) is
/// only unmarked. After a computation the documents follow without
/// recomputing any (marking them due for the schedule's full recompute took
/// 170 s at a million, and the recomputes hours). The caller holds
/// [`super::analytics::lock_against_refresh`].
pub async fn apply_analytics(
    tx: &mut PgConnection,
    after: Uuid,
    limit: i64,
    read: &[String],
    now: DateTime<Utc>,
) -> Result<AnalyticsPage, Error> {
    // Unmarked at once (one statement): only saves and pages touch the
    // marks, and the caller's lock keeps saves out until this commits.
    let mut page: Vec<Uuid> = sqlx::query_scalar(
        "DELETE FROM analytics_dirty WHERE contact_id IN
             (SELECT contact_id FROM analytics_dirty WHERE contact_id > $1 ORDER BY contact_id LIMIT $2)
         RETURNING contact_id",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    page.sort_unstable();
    let Some(last) = page.last().copied() else { return Ok(AnalyticsPage::default()) };
    super::lock_contacts(tx, &page).await?;
    let stored = current_docs(tx, &page, now).await?;
    let analytics = analytics(tx, &page).await?;
    let wanted: Vec<String> = features::ANALYTICS_FEATURES.map(String::from).to_vec();
    enum Outcome {
        Unchanged,
        Patched(Uuid, Vec<u8>, FeatureDoc),
        Stale(Uuid),
    }
    let outcomes = crate::parallel::map(stored, |(contact, doc, _)| {
        let mut target = FeatureDoc::new();
        features::set_analytics(&mut target, analytics.get(&contact).cloned().unwrap_or_default());
        if features::doc_from_bytes_only(&doc, &wanted) == target {
            return Outcome::Unchanged;
        }
        match features::patched_bytes(&doc, &target) {
            Some(patched) => {
                let features =
                    if read.is_empty() { FeatureDoc::new() } else { features::doc_from_bytes_only(&patched, read) };
                Outcome::Patched(contact, patched, features)
            }
            None => Outcome::Stale(contact),
        }
    });
    let (mut ids, mut docs, mut stale) = (Vec::new(), Vec::new(), Vec::new());
    let mut done = AnalyticsPage { last: Some(last), seen: page.len(), ..Default::default() };
    let moved: HashSet<&'static str> = features::ANALYTICS_FEATURES.into_iter().collect();
    for outcome in outcomes {
        match outcome {
            Outcome::Unchanged => {}
            Outcome::Patched(contact, patched, features) => {
                ids.push(contact);
                docs.push(patched);
                done.moved.insert(contact, moved.clone());
                done.changed.push((contact, features));
            }
            Outcome::Stale(contact) => stale.push(contact),
        }
    }
    if !stale.is_empty() {
        sqlx::query("UPDATE features SET next_change_at = $2 WHERE contact_id = ANY($1)")
            .bind(&stale)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    if !ids.is_empty() {
        sqlx::query(
            "UPDATE features SET doc = t.d, computed_at = $3 FROM unnest($1::uuid[], $2::bytea[]) AS t(c, d)
             WHERE contact_id = t.c",
        )
        .bind(&ids)
        .bind(&docs)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    Ok(done)
}

/// Writes computed features.
async fn store(tx: &mut PgConnection, computed: &[(Uuid, Computed)], now: DateTime<Utc>) -> Result<(), Error> {
    if computed.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = computed.iter().map(|(contact, _)| *contact).collect();
    let docs: Vec<Vec<u8>> = crate::parallel::map(computed.iter().collect(), |(_, c)| features::doc_to_bytes(c));
    let next: Vec<Option<DateTime<Utc>>> = computed.iter().map(|(_, c)| c.next_change).collect();
    sqlx::query(
        "INSERT INTO features (contact_id, doc, computed_at, next_change_at)
         SELECT c, d, $4, n FROM unnest($1::uuid[], $2::bytea[], $3::timestamptz[]) AS t(c, d, n)
         ON CONFLICT (contact_id) DO UPDATE SET doc = excluded.doc, computed_at = excluded.computed_at,
             next_change_at = excluded.next_change_at",
    )
    .bind(&ids)
    .bind(&docs)
    .bind(&next)
    .bind(now)
    .execute(tx)
    .await?;
    Ok(())
}

/// What is stored of some contacts, by contact.
#[derive(Default)]
struct Stored {
    profiles: HashMap<Uuid, Profile>,
    activity: HashMap<Uuid, Vec<Activity>>,
    invoices: HashMap<Uuid, Vec<Invoice>>,
    problems: HashMap<Uuid, Vec<Problem>>,
    rollups: HashMap<Uuid, Rollups>,
    analytics: HashMap<Uuid, Analytics>,
}

/// The profiles of `contacts` the contacts feed has told the role about.
pub async fn profiles(conn: &mut PgConnection, contacts: &[Uuid]) -> Result<HashMap<Uuid, Profile>, Error> {
    let mut profiles = HashMap::new();
    for row in sqlx::query("SELECT contact_id, data FROM profiles WHERE contact_id = ANY($1)")
        .bind(contacts)
        .fetch_all(conn)
        .await?
    {
        let profile: Profile = serde_json::from_value(row.try_get("data")?)
            .map_err(|error| Error::Internal(anyhow::Error::new(error).context("reading a stored profile")))?;
        profiles.insert(row.try_get::<Uuid, _>("contact_id")?, profile);
    }
    Ok(profiles)
}

/// The profiles, activity, invoices and problems of `contacts`.
async fn inputs(tx: &mut PgConnection, contacts: &[Uuid], now: DateTime<Utc>) -> Result<Stored, Error> {
    let profiles = profiles(tx, contacts).await?;
    let mut activity: HashMap<Uuid, Vec<Activity>> = HashMap::new();
    for row in sqlx::query(
        "SELECT contact_id, interaction_id, occurred_at, kind, channel, currency, amount, sentiment, skus
         FROM activity WHERE contact_id = ANY($1)",
    )
    .bind(contacts)
    .fetch_all(&mut *tx)
    .await?
    {
        activity.entry(row.try_get("contact_id")?).or_default().push(Activity {
            interaction_id: row.try_get("interaction_id")?,
            occurred_at: row.try_get("occurred_at")?,
            kind: row.try_get("kind")?,
            channel: row.try_get("channel")?,
            currency: row.try_get("currency")?,
            amount: row.try_get("amount")?,
            sentiment: row.try_get("sentiment")?,
            skus: row.try_get("skus")?,
        });
    }
    let mut invoices: HashMap<Uuid, Vec<Invoice>> = HashMap::new();
    for row in sqlx::query(
        "SELECT contact_id, invoice_id, currency, amount, status, paid_late FROM invoices WHERE contact_id = ANY($1)",
    )
    .bind(contacts)
    .fetch_all(&mut *tx)
    .await?
    {
        invoices.entry(row.try_get("contact_id")?).or_default().push(Invoice {
            invoice_id: row.try_get("invoice_id")?,
            currency: row.try_get("currency")?,
            amount: row.try_get("amount")?,
            status: row.try_get("status")?,
            paid_late: row.try_get("paid_late")?,
        });
    }
    let mut problems: HashMap<Uuid, Vec<Problem>> = HashMap::new();
    for row in sqlx::query("SELECT contact_id, detected_at, problem FROM problems WHERE contact_id = ANY($1)")
        .bind(contacts)
        .fetch_all(&mut *tx)
        .await?
    {
        problems
            .entry(row.try_get("contact_id")?)
            .or_default()
            .push(Problem { detected_at: row.try_get("detected_at")?, problem: row.try_get("problem")? });
    }
    let rollups = rollups(tx, contacts, now).await?;
    let analytics = analytics(tx, contacts).await?;
    Ok(Stored { profiles, activity, invoices, problems, rollups, analytics })
}

/// What the last RFM computation and lifetime-value fit said of `contacts`
/// (one statement: it runs with every recompute).
async fn analytics(tx: &mut PgConnection, contacts: &[Uuid]) -> Result<HashMap<Uuid, Analytics>, Error> {
    let mut found: HashMap<Uuid, Analytics> = HashMap::new();
    for row in sqlx::query(
        "SELECT c.id, r.recency_score, r.frequency_score, r.monetary_score, r.rfm_group, v.predicted_value
         FROM unnest($1::uuid[]) AS c(id)
         LEFT JOIN rfm_scores r ON r.contact_id = c.id
         LEFT JOIN clv_values v ON v.contact_id = c.id
         WHERE r.contact_id IS NOT NULL OR v.contact_id IS NOT NULL",
    )
    .bind(contacts)
    .fetch_all(&mut *tx)
    .await?
    {
        let group: Option<String> = row.try_get("rfm_group")?;
        let rfm = match group {
            Some(group) => {
                let scores: [i32; 3] =
                    [row.try_get("recency_score")?, row.try_get("frequency_score")?, row.try_get("monetary_score")?];
                Some((scores.map(i64::from), group))
            }
            None => None,
        };
        found.insert(row.try_get("id")?, Analytics { rfm, predicted_value: row.try_get("predicted_value")? });
    }
    Ok(found)
}

/// What `contacts`' features read of others: their referees' revenue, and
/// their organization's contacts and revenue (each organization's computed once).
async fn rollups(
    tx: &mut PgConnection,
    contacts: &[Uuid],
    now: DateTime<Utc>,
) -> Result<HashMap<Uuid, Rollups>, Error> {
    let referred: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT target_id, contact_id FROM relationships WHERE kind = 'referred_by' AND target_id = ANY($1)",
    )
    .bind(contacts)
    .fetch_all(&mut *tx)
    .await?;
    let employers: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT DISTINCT ON (contact_id) contact_id, target_id FROM relationships
         WHERE kind = 'employee_of' AND contact_id = ANY($1) ORDER BY contact_id, target_id",
    )
    .bind(contacts)
    .fetch_all(&mut *tx)
    .await?;
    if referred.is_empty() && employers.is_empty() {
        return Ok(HashMap::new());
    }
    let organizations: Vec<Uuid> = employers.iter().map(|(_, organization)| *organization).collect();
    let staff: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT DISTINCT target_id, contact_id FROM relationships WHERE kind = 'employee_of' AND target_id = ANY($1)",
    )
    .bind(&organizations)
    .fetch_all(&mut *tx)
    .await?;
    let mut others: Vec<Uuid> =
        referred.iter().map(|(_, referee)| *referee).chain(staff.iter().map(|(_, member)| *member)).collect();
    others.sort_unstable();
    others.dedup();
    let mut purchases: HashMap<Uuid, Vec<Activity>> = HashMap::new();
    for row in sqlx::query(
        "SELECT contact_id, interaction_id, occurred_at, currency, amount FROM activity
         WHERE contact_id = ANY($1) AND kind = 'purchase' AND occurred_at > $2",
    )
    .bind(&others)
    .bind(now - chrono::Duration::days(365))
    .fetch_all(&mut *tx)
    .await?
    {
        purchases.entry(row.try_get("contact_id")?).or_default().push(Activity {
            interaction_id: row.try_get("interaction_id")?,
            occurred_at: row.try_get("occurred_at")?,
            kind: "purchase".into(),
            channel: String::new(),
            currency: row.try_get("currency")?,
            amount: row.try_get("amount")?,
            sentiment: None,
            skus: Vec::new(),
        });
    }
    let of = |members: &mut dyn Iterator<Item = &Uuid>| {
        Revenue::of(members.flat_map(|member| purchases.get(member).into_iter().flatten()), now)
    };
    let mut by_organization: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for (organization, member) in &staff {
        by_organization.entry(*organization).or_default().push(*member);
    }
    let organization_facts: HashMap<Uuid, (i64, Revenue)> = by_organization
        .iter()
        .map(|(organization, members)| (*organization, (members.len() as i64, of(&mut members.iter()))))
        .collect();
    let mut found: HashMap<Uuid, Rollups> = HashMap::new();
    let mut referees: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for (referrer, referee) in &referred {
        referees.entry(*referrer).or_default().push(*referee);
    }
    for (referrer, referees) in referees {
        let rollup = found.entry(referrer).or_default();
        rollup.referrals = referees.len() as i64;
        rollup.referred_revenue = of(&mut referees.iter());
    }
    for (contact, organization) in employers {
        if let Some((members, revenue)) = organization_facts.get(&organization) {
            found.entry(contact).or_default().organization = Some((organization, *members, revenue.clone()));
        }
    }
    Ok(found)
}

/// The contacts whose features read `contacts`': who referred them, and
/// their organizations' other contacts. A change of `contacts` recomputes these too.
pub async fn dependents(tx: &mut PgConnection, contacts: &[Uuid]) -> Result<Vec<Uuid>, Error> {
    if contacts.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_scalar(
        "SELECT target_id FROM relationships WHERE kind = 'referred_by' AND contact_id = ANY($1)
         UNION
         SELECT staff.contact_id FROM relationships mine
           JOIN relationships staff ON staff.kind = 'employee_of' AND staff.target_id = mine.target_id
          WHERE mine.kind = 'employee_of' AND mine.contact_id = ANY($1)",
    )
    .bind(contacts)
    .fetch_all(tx)
    .await?)
}

/// A relationship as the contacts feed tells it (`kind`: referred_by or employee_of).
pub async fn relationship_changed(
    tx: &mut PgConnection,
    relationship_id: Uuid,
    contact_id: Uuid,
    kind: &str,
    target_id: Uuid,
    removed: bool,
) -> Result<(), Error> {
    if removed {
        sqlx::query("DELETE FROM relationships WHERE relationship_id = $1").bind(relationship_id).execute(tx).await?;
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO relationships (relationship_id, contact_id, kind, target_id) SELECT $1, $2, $3, $4
         WHERE NOT EXISTS (SELECT 1 FROM gone WHERE contact_id = $2 OR contact_id = $4)
         ON CONFLICT (relationship_id) DO UPDATE SET contact_id = excluded.contact_id, kind = excluded.kind, target_id = excluded.target_id",
    )
    .bind(relationship_id)
    .bind(contact_id)
    .bind(kind)
    .bind(target_id)
    .execute(tx)
    .await?;
    Ok(())
}

/// An invoice issued to `contact_id` (resolved), open until paid or overdue.
pub async fn invoice_issued(
    tx: &mut PgConnection,
    contact_id: Uuid,
    invoice: &Invoice,
    due_date: Option<chrono::NaiveDate>,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO invoices (contact_id, invoice_id, currency, amount, due_date, status) VALUES ($1, $2, $3, $4, $5, 'open')
         ON CONFLICT (contact_id, invoice_id) DO NOTHING",
    )
    .bind(contact_id)
    .bind(invoice.invoice_id)
    .bind(&invoice.currency)
    .bind(invoice.amount)
    .bind(due_date)
    .execute(tx)
    .await?;
    Ok(())
}

/// An open invoice passed its due date.
pub async fn invoice_overdue(tx: &mut PgConnection, contact_id: Uuid, invoice_id: Uuid) -> Result<(), Error> {
    sqlx::query("UPDATE invoices SET status = 'overdue' WHERE contact_id = $1 AND invoice_id = $2 AND status = 'open'")
        .bind(contact_id)
        .bind(invoice_id)
        .execute(tx)
        .await?;
    Ok(())
}

/// A payment settled an invoice on `paid_on`: late when after its due date or while overdue.
pub async fn invoice_paid(
    tx: &mut PgConnection,
    contact_id: Uuid,
    invoice_id: Uuid,
    paid_on: chrono::NaiveDate,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE invoices SET status = 'paid', paid_late = (status = 'overdue' OR (due_date IS NOT NULL AND $3 > due_date))
         WHERE contact_id = $1 AND invoice_id = $2 AND status <> 'paid'",
    )
    .bind(contact_id)
    .bind(invoice_id)
    .bind(paid_on)
    .execute(tx)
    .await?;
    Ok(())
}

/// A recurring problem detected for `contact_id` at `detected_at`.
pub async fn problem_detected(
    tx: &mut PgConnection,
    contact_id: Uuid,
    detected_at: DateTime<Utc>,
    problem: &str,
) -> Result<(), Error> {
    sqlx::query("INSERT INTO problems (contact_id, detected_at, problem) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(contact_id)
        .bind(detected_at)
        .bind(problem)
        .execute(tx)
        .await?;
    Ok(())
}

/// A contact's stored features (a merged contact's id reads its survivor's).
pub async fn load(
    conn: &mut PgConnection,
    contact_id: Uuid,
) -> Result<Option<(Uuid, FeatureDoc, DateTime<Utc>, Option<DateTime<Utc>>)>, Error> {
    let row = sqlx::query(
        "SELECT contact_id, doc, computed_at, next_change_at FROM features
         WHERE contact_id = coalesce((SELECT survivor_id FROM redirects WHERE loser_id = $1), $1)",
    )
    .bind(contact_id)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let doc: Vec<u8> = row.try_get("doc")?;
    Ok(Some((
        row.try_get("contact_id")?,
        features::doc_from_bytes(&doc),
        row.try_get("computed_at")?,
        row.try_get("next_change_at")?,
    )))
}
