//! Codes stored before migration 0004, when every link's code was a column.
//!
//! The migration moved every code that SQL could classify: anything but seven letters and
//! digits is an alias. A code of exactly that shape may be a generated code (then nothing is
//! needed: it decodes to its id) or an alias of the same shape, which only the code book
//! can tell. The migration parks those codes in `links_pending_codes`; [`code_book`] settles
//! them at start, before the server answers anything, and then holds back the ids that
//! code-shaped aliases decode to (see `code.rs`). Settling is idempotent, so instances that
//! start together on one database do the same writes without harm.

use basis_store::{Store, links};

use super::code::{CODE_LEN, CodeBook};

/// Pending codes settled per transaction.
const BATCH: i64 = 5_000;

/// The code book for `key`, after settling pending codes and holding back the ids of
/// code-shaped aliases.
pub async fn code_book(store: &Store, key: u64) -> basis_store::Result<CodeBook> {
    let book = CodeBook::new(key);
    settle_pending(store, &book).await?;
    let aliases = links::aliases_of_length(store, CODE_LEN as i64).await?;
    Ok(book.holding(aliases.iter().map(|(_, alias)| alias.as_str())))
}

/// Gives each parked alias back to its link and forgets parked generated codes.
async fn settle_pending(store: &Store, book: &CodeBook) -> basis_store::Result<()> {
    loop {
        let batch = links::pending_codes(store, BATCH).await?;
        let Some(&(through, _)) = batch.last() else {
            return Ok(());
        };
        let total = batch.len();
        let aliases: Vec<(i64, String)> = batch
            .into_iter()
            .filter(|(id, code)| book.encode(*id as u64) != *code)
            .collect();
        tracing::info!(
            codes = total,
            aliases = aliases.len(),
            "settled codes stored before migration 0004"
        );
        links::settle_pending_codes(store, &aliases, through).await?;
    }
}
