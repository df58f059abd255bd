//! Id blocks: unique numeric ids without a round trip per id.
//!
//! A sequence lives in one row of `id_sequences`. An instance leases a block of `size` ids
//! with a single atomic `UPDATE … RETURNING` and hands them out from memory until the block
//! runs dry. Any number of instances can share one database: each lease is a row update, so
//! two instances never receive overlapping blocks. Ids left in a block when an instance stops
//! are skipped, never reused, which is harmless for a key space of trillions.

use tokio::sync::Mutex;

use crate::{Result, Store, on_pool};

/// Hands out unique ids of one sequence, leasing them from the database in blocks.
#[derive(Debug)]
pub struct IdBlocks {
    store: Store,
    sequence: &'static str,
    size: i64,
    /// `[next, end)` of the current block. An async mutex because refilling awaits the
    /// database; concurrent callers queue behind one refill instead of leasing many blocks.
    block: Mutex<(i64, i64)>,
}

impl IdBlocks {
    /// Ids of `sequence`, leased `size` at a time.
    pub fn new(store: Store, sequence: &'static str, size: u32) -> Self {
        Self {
            store,
            sequence,
            size: i64::from(size.max(1)),
            block: Mutex::new((0, 0)),
        }
    }

    /// The next unused id of the sequence.
    pub async fn next_id(&self) -> Result<i64> {
        let mut block = self.block.lock().await;
        if block.0 >= block.1 {
            let end = self.lease().await?;
            *block = (end - self.size, end);
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }

    /// Leases the next block and returns its exclusive end.
    async fn lease(&self) -> Result<i64> {
        let end: i64 = on_pool!(self.store, write, pool => {
            sqlx::query_scalar(
                "UPDATE id_sequences SET next_value = next_value + $1 WHERE name = $2 \
                 RETURNING next_value",
            )
            .bind(self.size)
            .bind(self.sequence)
            .fetch_one(pool)
            .await
        })?;
        tracing::debug!(sequence = self.sequence, end, "leased an id block");
        Ok(end)
    }
}
