//! The shortener's rules, between the handlers (which parse and answer) and the store
//! (which holds the SQL): choosing a new link's id, sharing a plain link with `reuse`,
//! who may manage a link, keeping the link cache true after a change, and adding the
//! clicks not yet stored to what the database holds.

use basis_auth::role::Scope;
use basis_store::links::{self, CountedLink, LinkRow, LinkStats};

use super::code::{CODE_SPACE, ShortCode};
use super::domains::LinkDomain;
use super::link::{LinkChange, NewLink};
use crate::clock::day_of;
use crate::error::{ApiError, ApiResult};
use crate::identity::caller::Caller;
use crate::state::AppState;

/// What a create ended in.
#[derive(Debug)]
pub enum Creation {
    /// A new link, with its tags and title.
    Created(LinkRow, Vec<String>, Option<String>),
    /// With `reuse`: an existing plain link of the same owner to the same URL, with its
    /// human clicks so far.
    Reused(CountedLink),
}

/// Creates `link` for `owner_id`; with `reuse`, answers with an existing plain link to the
/// same URL instead when there is one (the caller has checked that `link` is plain).
pub async fn create(
    state: &AppState,
    owner_id: Option<String>,
    link: NewLink,
    reuse: bool,
) -> ApiResult<Creation> {
    // Every plain link is a reuse candidate, however it was made: the store indexes them all.
    if reuse
        && let Some(found) = reusable(
            state,
            link.long_url.as_str(),
            &owner_id,
            link.domain.as_deref(),
        )
        .await?
    {
        return Ok(Creation::Reused(found));
    }
    let password_hash = match link.password.clone() {
        Some(password) => Some(state.passwords.hash(password.into_string()).await?),
        None => None,
    };
    let generated = link.alias.is_none();
    let id = next_id(state, generated).await?;
    let row = link.into_row(id, state.clock.now_ms(), password_hash, owner_id);
    let tags: Vec<String> = link.tags.into_iter().map(|t| t.into_string()).collect();
    let title = link.title.map(|t| t.as_str().to_owned());
    if reuse {
        // The store looks again and inserts in one step; a link that a concurrent request
        // made since the look above is answered as that look would have answered it.
        while !links::insert_unless_reusable(&state.store, &row).await? {
            if let Some(found) =
                reusable(state, &row.long_url, &row.owner_id, row.domain.as_deref()).await?
            {
                return Ok(Creation::Reused(found));
            }
        }
    } else {
        let extras = links::Extras {
            tags: tags.iter().map(|t| (row.id, t.clone())).collect(),
            titles: title.iter().map(|t| (row.id, t.clone())).collect(),
        };
        links::insert_with(&state.store, std::slice::from_ref(&row), &extras)
            .await
            .map_err(|err| match (err, &row.alias) {
                (basis_store::Error::Conflict("alias"), Some(alias)) => {
                    ApiError::Conflict(format!("the alias '{alias}' is already taken"))
                }
                (other, _) => other.into(),
            })?;
    }
    // A negative entry for this code may be cached from before it existed.
    invalidate(state, &row).await;
    Ok(Creation::Created(row, tags, title))
}

/// Forgets the cached lookup of `row`'s code on its domain.
pub async fn invalidate(state: &AppState, row: &LinkRow) {
    let code = state.codes.code_of(row);
    state
        .link_cache
        .invalidate(&super::cache::key(&code, row.domain.as_deref()))
        .await;
}

/// The next free id; `generated` when the link will be reached by the code derived from it.
async fn next_id(state: &AppState, generated: bool) -> ApiResult<i64> {
    let id = loop {
        let id = state.ids.next_id().await?;
        // The generated code of a held id is an old alias's text: never hand it out.
        if !state.codes.is_held(id as u64) {
            break id;
        }
        tracing::info!(id, "skipped an id whose code is an old alias");
    };
    if generated && id as u64 >= CODE_SPACE {
        // 3.5 trillion links: longer codes would need a rule to tell them from aliases.
        return Err(ApiError::Internal(anyhow::anyhow!(
            "the 7-character code space is exhausted"
        )));
    }
    Ok(id)
}

/// The oldest plain link of `owner_id` to `long_url`, with its human clicks stored and not
/// yet stored, if there is one.
async fn reusable(
    state: &AppState,
    long_url: &str,
    owner_id: &Option<String>,
    domain: Option<&str>,
) -> ApiResult<Option<CountedLink>> {
    let (found, unstored) = state
        .clicks
        .read_with_unstored(
            || links::find_reusable(&state.store, long_url, owner_id.as_deref(), domain),
            |clicks, found| {
                found
                    .as_ref()
                    .map_or(0, |f| clicks.unflushed_humans(f.row.id))
            },
        )
        .await?;
    Ok(found.map(|found| CountedLink {
        clicks: found.clicks + unstored,
        ..found
    }))
}

/// Loads the link `code` names on `domain` for a caller who wants to use `scope` on it,
/// with its stored human clicks: 404 if unknown, 401 if owned and the caller is anonymous,
/// 403 if owned by someone else or the API key lacks the scope. Handlers call it before
/// they look at a request's body, so a stranger learns nothing from a 400.
pub async fn managed(
    state: &AppState,
    caller: &Caller,
    (code, domain): (&str, &LinkDomain),
    scope: Scope,
) -> ApiResult<CountedLink> {
    let code = ShortCode::parse(code).ok_or(ApiError::NotFound)?;
    let key = state.codes.key_of(code.as_str());
    let link = links::find_counted_in(&state.store, key, domain.lookup())
        .await?
        .filter(|link| domain.admits(link.row.domain.as_deref()))
        .ok_or(ApiError::NotFound)?;
    caller.may_manage(link.row.owner_id.as_deref())?;
    caller.require_scope(scope)?;
    Ok(link)
}

/// A link the caller may manage with `scope`, with all its human clicks (stored and not).
pub async fn find_managed(
    state: &AppState,
    caller: &Caller,
    link: (&str, &LinkDomain),
    scope: Scope,
) -> ApiResult<CountedLink> {
    let (link, unstored) = state
        .clicks
        .read_with_unstored(
            || managed(state, caller, link, scope),
            |clicks, link| clicks.unflushed_humans(link.row.id),
        )
        .await?;
    Ok(CountedLink {
        clicks: link.clicks + unstored,
        ..link
    })
}

/// Applies `change` to `link` (from [`managed`] with [`Scope::LinksWrite`]); answers the
/// changed link with all its human clicks.
pub async fn change(
    state: &AppState,
    link: CountedLink,
    change: LinkChange,
) -> ApiResult<CountedLink> {
    let CountedLink { row, clicks } = link;
    let password_hash = match &change.password {
        Some(Some(password)) => Some(state.passwords.hash(password.clone().into_string()).await?),
        _ => None,
    };
    // A password, expiry or click limit takes the link out of reuse (the store looks for
    // plain links only), and clearing them all puts it back.
    let update = change.applied_to(&row, password_hash);
    if !links::update(&state.store, row.id, &update).await? {
        return Err(ApiError::NotFound);
    }
    if let Some(tags) = &change.tags {
        let tags: Vec<String> = tags.iter().map(|t| t.as_str().to_owned()).collect();
        links::set_tags(&state.store, row.id, &tags).await?;
    }
    if let Some(title) = &change.title {
        links::set_title(&state.store, row.id, title.as_ref().map(|t| t.as_str())).await?;
    }
    invalidate(state, &row).await;
    let row = LinkRow {
        long_url: update.long_url,
        expires_at: update.expires_at,
        max_clicks: update.max_clicks,
        redirect_type: update.redirect_type,
        password_hash: update.password_hash,
        rules: update.rules,
        ..row
    };
    state.clicks.settle_or_warn().await;
    let unstored = state.clicks.unflushed_humans(row.id);
    Ok(CountedLink {
        row,
        clicks: clicks + unstored,
    })
}

/// The tags (by name) and title of link `id`.
pub async fn extras_of(state: &AppState, id: i64) -> ApiResult<(Vec<String>, Option<String>)> {
    let tags = links::tags_of(&state.store, &[id])
        .await?
        .into_iter()
        .map(|(_, tag)| tag)
        .collect();
    let title = links::titles_of(&state.store, &[id])
        .await?
        .pop()
        .map(|(_, t)| t);
    Ok((tags, title))
}

/// Deletes the link `code` names on `domain`, for a caller allowed to.
pub async fn remove(state: &AppState, caller: &Caller, link: (&str, &LinkDomain)) -> ApiResult<()> {
    let row = managed(state, caller, link, Scope::LinksWrite).await?.row;
    if !links::delete(&state.store, row.id, state.clock.now_ms()).await? {
        return Err(ApiError::NotFound);
    }
    invalidate(state, &row).await;
    Ok(())
}

/// A link's analytics, stored and not yet stored together.
#[derive(Debug)]
pub struct Analytics {
    /// The link, with all its human clicks.
    pub link: CountedLink,
    /// Its aggregates over the asked days (newest first) and its top `top` referrers.
    pub stats: LinkStats,
}

/// The analytics of the link `code` names on its domain over the last `days` days (1–366), with its
/// `top` most frequent referrers.
pub async fn analytics(
    state: &AppState,
    caller: &Caller,
    link: (&str, &LinkDomain),
    days: i64,
    top: usize,
) -> ApiResult<Analytics> {
    // More referrers are read than shown, so a host with unstored clicks can still rank.
    let read_top = top as i64 * 4;
    let ((link, mut stats), unstored) = state
        .clicks
        .read_with_unstored(
            || async {
                let link = managed(state, caller, link, Scope::LinksRead).await?;
                let stored = links::stats(&state.store, link.row.id, days, read_top).await?;
                Ok::<_, ApiError>((link, stored))
            },
            |clicks, (link, _)| clicks.unflushed(link.row.id),
        )
        .await?;
    let mut link = link;
    if let Some(unstored) = unstored {
        link.clicks += unstored.humans;
        stats.add(&unstored);
    }
    let today = day_of(state.clock.now_ms());
    stats.days.retain(|(day, _, _)| *day > today - days);
    stats.referrers.truncate(top);
    Ok(Analytics { link, stats })
}

/// The browsers and countries of link `link_id`'s logged visits over the last `days` days
/// (today included), the `top` largest of each, bots counted apart; `None` while the visit
/// log is off. The caller has found the link through [`managed`] (as [`analytics`] does).
pub async fn visit_breakdown(
    state: &AppState,
    link_id: i64,
    days: i64,
    top: usize,
) -> ApiResult<Option<links::VisitBreakdown>> {
    if !state.clicks.logs_visits() {
        return Ok(None);
    }
    let first_day = day_of(state.clock.now_ms()) - days + 1;
    let found =
        links::visit_breakdown(&state.store, link_id, first_day * 86_400_000, top as i64).await?;
    Ok(Some(found))
}

/// Links inserted per transaction by [`create_many`].
pub const BULK_CHUNK: usize = 1000;

/// Creates each of `links` for `owner_id`, as far as each can be: one answer per link, in
/// order, either the new row with its tags or why that link was not made (409 for an
/// alias taken before or earlier in the same list). The links go in one transaction per
/// [`BULK_CHUNK`]; should a chunk meet an alias taken since the look (a concurrent create),
/// that chunk is inserted link by link so that only the link that collides fails.
pub async fn create_many(
    state: &AppState,
    owner_id: &str,
    links: Vec<NewLink>,
) -> ApiResult<Vec<ApiResult<Made>>> {
    // Aliases are unique per domain: `(domain, alias)` pairs, looked up domain by domain.
    let mut asked: std::collections::BTreeMap<Option<&str>, Vec<&str>> = Default::default();
    for link in &links {
        if let Some(alias) = &link.alias {
            asked
                .entry(link.domain.as_deref())
                .or_default()
                .push(alias.as_str());
        }
    }
    let mut taken: std::collections::HashSet<(Option<String>, String)> = Default::default();
    for (domain, aliases) in asked {
        for alias in links::taken_aliases(&state.store, &aliases, domain).await? {
            taken.insert((domain.map(str::to_owned), alias));
        }
    }
    let now = state.clock.now_ms();
    let mut answers: Vec<ApiResult<Made>> = Vec::with_capacity(links.len());
    for link in links {
        if let Some(alias) = &link.alias
            && !taken.insert((link.domain.clone(), alias.as_str().to_owned()))
        {
            answers.push(Err(ApiError::Conflict(format!(
                "the alias '{}' is already taken",
                alias.as_str()
            ))));
            continue;
        }
        let password_hash = match link.password.clone() {
            Some(password) => Some(state.passwords.hash(password.into_string()).await?),
            None => None,
        };
        let id = next_id(state, link.alias.is_none()).await?;
        let row = link.into_row(id, now, password_hash, Some(owner_id.to_owned()));
        let tags = link.tags.into_iter().map(|t| t.into_string()).collect();
        let title = link.title.map(|t| t.as_str().to_owned());
        answers.push(Ok(Made { row, tags, title }));
    }
    let made: Vec<usize> = (0..answers.len()).filter(|i| answers[*i].is_ok()).collect();
    for chunk in made.chunks(BULK_CHUNK) {
        let made_here: Vec<&Made> = chunk.iter().map(|i| made_row(&answers[*i])).collect();
        let rows: Vec<LinkRow> = made_here.iter().map(|m| m.row.clone()).collect();
        match links::insert_with(&state.store, &rows, &Made::extras(&made_here)).await {
            Ok(()) => {}
            Err(basis_store::Error::Conflict("alias")) => {
                for i in chunk {
                    let made = made_row(&answers[*i]);
                    let extras = Made::extras(&[made]);
                    let row = &made.row;
                    match links::insert_with(&state.store, std::slice::from_ref(row), &extras).await
                    {
                        Ok(()) => {}
                        Err(basis_store::Error::Conflict("alias")) => {
                            let alias = row.alias.clone().unwrap_or_default();
                            answers[*i] = Err(ApiError::Conflict(format!(
                                "the alias '{alias}' is already taken"
                            )));
                        }
                        Err(other) => return Err(other.into()),
                    }
                }
            }
            Err(other) => return Err(other.into()),
        }
    }
    for made in answers.iter().flatten() {
        // A negative entry for this code may be cached from before it existed.
        invalidate(state, &made.row).await;
    }
    Ok(answers)
}

/// A link made by [`create_many`].
#[derive(Debug)]
pub struct Made {
    /// The stored row.
    pub row: LinkRow,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its title.
    pub title: Option<String>,
}

impl Made {
    fn extras(made: &[&Made]) -> links::Extras {
        links::Extras {
            tags: made
                .iter()
                .flat_map(|m| m.tags.iter().map(|t| (m.row.id, t.clone())))
                .collect(),
            titles: made
                .iter()
                .filter_map(|m| m.title.clone().map(|t| (m.row.id, t)))
                .collect(),
        }
    }
}

/// An answer [`create_many`] knows to be a success.
fn made_row(answer: &ApiResult<Made>) -> &Made {
    match answer {
        Ok(made) => made,
        Err(_) => unreachable!("only successes are inserted"),
    }
}
