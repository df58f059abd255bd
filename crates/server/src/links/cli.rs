//! `basis links import` and `basis links export`: the shortener's operator commands,
//! writing and reading through the store with the server's own rules (codes, URL policy,
//! domains).

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use basis_store::Store;
use basis_store::ids::IdBlocks;

use super::code::CodeBook;
use super::domains::Domains;
use super::dump::{self, Format};
use super::import::{self, Report, Source};
use super::input::UrlPolicy;
use crate::Config;

/// What the server's link rules need, built from the configuration.
struct Rules {
    policy: UrlPolicy,
    domains: Domains,
    base_url: String,
}

fn rules(config: &Config) -> anyhow::Result<Rules> {
    let base_url = config.base_url_for(config.listen);
    let blocked_hosts = match &config.host_blocklist {
        Some(path) => UrlPolicy::read_blocklist(path)
            .with_context(|| format!("cannot read the host blocklist {}", path.display()))?,
        None => Default::default(),
    };
    Ok(Rules {
        policy: UrlPolicy {
            max_len: config.max_url_length,
            own_origin: base_url.clone(),
            blocked_hosts,
        },
        domains: Domains::new(
            &base_url,
            &config.domains,
            config.unknown_domain_redirect.as_ref(),
        )?,
        base_url: base_url.as_str().trim_end_matches('/').to_owned(),
    })
}

async fn code_book(store: &Store) -> anyhow::Result<CodeBook> {
    let key = store
        .setting_or_init("code_key", || format!("{:016x}", rand::random::<u64>()))
        .await?;
    let key = u64::from_str_radix(&key, 16).context("the stored code_key is not a hex number")?;
    Ok(super::legacy::code_book(store, key).await?)
}

/// The id of the account `who` names (an id or an email).
async fn owner_id(store: &Store, who: &str) -> anyhow::Result<String> {
    if let Some(user) = basis_store::users::find(store, who).await? {
        return Ok(user.id);
    }
    match basis_store::users::find_by_email(store, &who.to_lowercase()).await? {
        Some(user) => Ok(user.id),
        None => anyhow::bail!("no account has the id or email {who:?}"),
    }
}

/// Imports the export `file` of `source` as links of `owner` on `domain`: the file is
/// checked whole first (a fault is an error naming its line, and nothing is written);
/// progress goes to standard error.
pub async fn import_file(
    config: &Config,
    source: Source,
    file: &Path,
    owner: &str,
    domain: Option<&str>,
    now_ms: i64,
) -> anyhow::Result<Report> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let text = String::from_utf8(bytes).map_err(|err| {
        let line = 1 + err.as_bytes()[..err.utf8_error().valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        anyhow::anyhow!("{}: line {line}: not UTF-8 text", file.display())
    })?;
    let rules = rules(config)?;
    let domain = domain
        .map(|d| rules.domains.parse(d))
        .transpose()
        .map_err(|why| anyhow::anyhow!("--domain {why}"))?
        .flatten();
    let items = import::parse(source, &text, &rules.policy)
        .map_err(|err| anyhow::anyhow!("{}: {err}; nothing was imported", file.display()))?;
    let store = crate::open_store(config).await?;
    let result = async {
        let owner = owner_id(&store, owner).await?;
        let codes = code_book(&store).await?;
        let ids = IdBlocks::new(store.clone(), "links", 1000);
        let target = import::Target {
            store: &store,
            codes: &codes,
            ids: &ids,
        };
        let report = import::write(
            target,
            &owner,
            domain.as_deref(),
            now_ms,
            items,
            |done, total| {
                // A plain progress line, rewritten in place.
                eprint!("\rimported {done}/{total} links");
                let _ = std::io::stderr().flush();
            },
        )
        .await?;
        eprintln!();
        Ok::<_, anyhow::Error>(report)
    }
    .await;
    store.close().await;
    result
}

/// Writes every link of `owner` with its click totals to `out`, in `format`.
pub async fn export_links(
    config: &Config,
    owner: &str,
    format: Format,
    out: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<usize> {
    let rules = rules(config)?;
    let store = crate::open_store(config).await?;
    let result = async {
        let owner = owner_id(&store, owner).await?;
        let codes = code_book(&store).await?;
        let source = dump::Source {
            store: &store,
            codes: &codes,
            domains: &rules.domains,
            base_url: &rules.base_url,
        };
        let (mut after, mut first, mut written, mut count) = (None, true, false, 0);
        loop {
            let (links, next) = dump::page(source, &owner, after, &|_| 0).await?;
            count += links.len();
            let (text, now_written) = dump::render(format, &links, first, next.is_none(), written);
            out.write_all(text.as_bytes())?;
            (first, written) = (false, now_written);
            match next {
                Some(position) => after = Some(position),
                None => break,
            }
        }
        out.flush()?;
        Ok::<_, anyhow::Error>(count)
    }
    .await;
    store.close().await;
    result
}
