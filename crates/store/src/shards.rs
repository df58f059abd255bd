//! Placing keys on shard databases, and what adding a database moves.
//!
//! Links are to be partitioned by their id over [`LOGICAL_SHARDS`] logical shards, which a
//! [`ShardMap`] assigns to the physical databases. A key's logical shard never changes
//! ([`logical_shard`]: a hash of the id, so sequential ids spread evenly); adding a
//! database only reassigns whole logical shards, the fewest that even the load out
//! ([`ShardMap::with_database_added`]), so about 1/N of the keys move, and the map says
//! exactly which.
//!
//! [`Placement`] puts the same question to the other classic schemes for comparison (what
//! `basis demo sharding` prints): ranges of ids (even, but every new id lands on the last
//! shard, and re-splitting moves most keys), the hash modulo the number of databases (even,
//! but going from N to N+1 moves about N/(N+1) of the keys), and a consistent-hash ring
//! with virtual nodes (about 1/N moves, with an uneven spread unless the ring is large).

/// Logical shards: enough that a map over a few dozen databases stays even within one
/// logical shard, few enough that a map is a small table.
pub const LOGICAL_SHARDS: u16 = 256;

/// A 64-bit mix of `key` (SplitMix64's finaliser): consecutive keys land far apart, and the
/// result is the same on every machine and in every release.
pub fn mix(key: u64) -> u64 {
    let mut z = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The logical shard of a link id.
pub fn logical_shard(id: u64) -> u16 {
    (mix(id) % u64::from(LOGICAL_SHARDS)) as u16
}

/// Which database holds each logical shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    /// `owner[s]`: the database (0-based) of logical shard `s`.
    owner: Vec<u16>,
    databases: u16,
}

impl ShardMap {
    /// The logical shards dealt out in turn over `databases` databases (at least one).
    pub fn even(databases: u16) -> Self {
        let databases = databases.max(1);
        Self {
            owner: (0..LOGICAL_SHARDS).map(|s| s % databases).collect(),
            databases,
        }
    }

    /// The map that gives logical shard `s` to database `owner[s]`, over `databases`
    /// databases. Refused, saying why, unless it names every one of the [`LOGICAL_SHARDS`]
    /// shards exactly once and only databases below `databases`.
    pub fn from_owners(owner: Vec<u16>, databases: u16) -> Result<Self, String> {
        if owner.len() != usize::from(LOGICAL_SHARDS) {
            return Err(format!(
                "the map covers {} of the {LOGICAL_SHARDS} logical shards",
                owner.len()
            ));
        }
        if let Some((shard, db)) = owner.iter().enumerate().find(|(_, db)| **db >= databases) {
            return Err(format!(
                "logical shard {shard} is mapped to database {db}, but there are only {databases}"
            ));
        }
        Ok(Self { owner, databases })
    }

    /// The database of each logical shard, by shard number.
    pub fn owners(&self) -> &[u16] {
        &self.owner
    }

    /// How many databases the map spans.
    pub fn databases(&self) -> u16 {
        self.databases
    }

    /// The database of logical shard `shard`.
    pub fn database_of_shard(&self, shard: u16) -> u16 {
        self.owner[usize::from(shard)]
    }

    /// The database holding link `id`.
    pub fn database_of(&self, id: u64) -> u16 {
        self.database_of_shard(logical_shard(id))
    }

    /// How many logical shards each database holds.
    pub fn shards_per_database(&self) -> Vec<u16> {
        let mut counts = vec![0; usize::from(self.databases)];
        for owner in &self.owner {
            counts[usize::from(*owner)] += 1;
        }
        counts
    }

    /// The map with one more database, which takes its even share of logical shards from
    /// the databases holding the most (each gives up what it holds beyond its new share);
    /// every other shard stays where it is. Returns the new map and the shards that move.
    pub fn with_database_added(&self) -> (Self, Vec<u16>) {
        let databases = self.databases + 1;
        let newcomer = self.databases;
        let total = LOGICAL_SHARDS;
        // Shares of the new map: the first `total % databases` databases hold one more.
        let share = |db: u16| total / databases + u16::from(db < total % databases);
        let mut held = self.shards_per_database();
        held.push(0);
        let mut owner = self.owner.clone();
        let mut moved = Vec::new();
        // Walk the shards from the highest number down, so the lowest stay put; take a
        // shard when its database holds more than its share and the newcomer less.
        for shard in (0..total).rev() {
            let from = owner[usize::from(shard)];
            if held[usize::from(newcomer)] >= share(newcomer) {
                break;
            }
            if held[usize::from(from)] > share(from) {
                held[usize::from(from)] -= 1;
                held[usize::from(newcomer)] += 1;
                owner[usize::from(shard)] = newcomer;
                moved.push(shard);
            }
        }
        moved.reverse();
        (Self { owner, databases }, moved)
    }
}

/// A way of placing keys on databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Contiguous ranges of ids, split evenly over the id space `1..=keys`.
    Range {
        /// The highest id the ranges cover.
        keys: u64,
    },
    /// The hash of the id modulo the number of databases.
    ModuloHash,
    /// A ring with `vnodes` points per database; a key goes to the first point at or after
    /// its hash.
    ConsistentHash {
        /// Points per database.
        vnodes: u16,
    },
    /// [`LOGICAL_SHARDS`] logical shards and a [`ShardMap`]; an added database takes its
    /// share from the others ([`ShardMap::with_database_added`]).
    LogicalShards,
}

/// Where a [`Placement`] puts ids over a given number of databases: each scheme with the
/// state it decides by.
#[derive(Debug, Clone)]
pub enum Placer {
    /// Ranges `width` ids wide, the last one open-ended.
    Range {
        /// Ids per range.
        width: u64,
        /// How many databases (ranges).
        databases: u16,
    },
    /// The hash modulo `databases`.
    ModuloHash {
        /// How many databases.
        databases: u16,
    },
    /// A ring of points, sorted by position, each naming its database.
    ConsistentHash {
        /// `(position, database)`, ascending by position.
        ring: Vec<(u64, u16)>,
    },
    /// Logical shards placed by a map.
    LogicalShards(ShardMap),
}

impl Placer {
    /// `placement` over `databases` databases (logical shards: the even map).
    pub fn new(placement: Placement, databases: u16) -> Self {
        let databases = databases.max(1);
        match placement {
            Placement::Range { keys } => Self::Range {
                width: keys.div_ceil(u64::from(databases)).max(1),
                databases,
            },
            Placement::ModuloHash => Self::ModuloHash { databases },
            Placement::ConsistentHash { vnodes } => {
                // At least one point per database, so the ring is never empty.
                let vnodes = vnodes.max(1);
                let mut ring: Vec<(u64, u16)> = (0..databases)
                    .flat_map(|db| {
                        (0..vnodes).map(move |v| (mix((u64::from(db) << 32) | u64::from(v)), db))
                    })
                    .collect();
                ring.sort_unstable();
                Self::ConsistentHash { ring }
            }
            Placement::LogicalShards => Self::LogicalShards(ShardMap::even(databases)),
        }
    }

    /// The database of `id`.
    pub fn database_of(&self, id: u64) -> u16 {
        match self {
            Self::Range { width, databases } => {
                (id.saturating_sub(1) / width).min(u64::from(*databases) - 1) as u16
            }
            Self::ModuloHash { databases } => (mix(id) % u64::from(*databases)) as u16,
            Self::ConsistentHash { ring } => {
                let point = mix(id);
                let at = ring.partition_point(|(position, _)| *position < point);
                ring[at % ring.len()].1
            }
            Self::LogicalShards(map) => map.database_of(id),
        }
    }
}

/// What placing ids `1..=keys` over `from` databases, then over `from + 1`, gives.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Keys per database before.
    pub before: Vec<u64>,
    /// Keys per database after.
    pub after: Vec<u64>,
    /// Keys whose database changed.
    pub moved: u64,
    /// How many databases the newest tenth of the ids (the ones being written now) is on,
    /// after.
    pub newest_on: usize,
}

/// Places ids `1..=keys` with `placement` over `from` and `from + 1` databases.
pub fn compare(placement: Placement, keys: u64, from: u16) -> Comparison {
    let (before_placer, after_placer) = match placement {
        // Growing the map moves whole logical shards to the newcomer, nothing else.
        Placement::LogicalShards => {
            let map = ShardMap::even(from);
            let (grown, _) = map.with_database_added();
            (Placer::LogicalShards(map), Placer::LogicalShards(grown))
        }
        _ => (
            Placer::new(placement, from),
            Placer::new(placement, from + 1),
        ),
    };
    let mut before = vec![0; usize::from(from)];
    let mut after = vec![0; usize::from(from) + 1];
    let mut moved = 0;
    let newest_from = keys - keys / 10;
    let mut newest = vec![false; usize::from(from) + 1];
    for id in 1..=keys {
        let (old, new) = (before_placer.database_of(id), after_placer.database_of(id));
        before[usize::from(old)] += 1;
        after[usize::from(new)] += 1;
        moved += u64::from(old != new);
        if id > newest_from {
            newest[usize::from(new)] = true;
        }
    }
    Comparison {
        before,
        after,
        moved,
        newest_on: newest.iter().filter(|on| **on).count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_a_database_moves_only_its_share_of_logical_shards_and_keeps_the_map_even() {
        for databases in 1..=20u16 {
            let map = ShardMap::even(databases);
            let (grown, moved) = map.with_database_added();
            let counts = grown.shards_per_database();
            let (low, high) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
            assert!(high - low <= 1, "{databases}+1: {counts:?}");
            // Exactly the newcomer's shards moved, and only to the newcomer.
            assert_eq!(moved.len(), usize::from(counts[usize::from(databases)]));
            for shard in 0..LOGICAL_SHARDS {
                let (was, is) = (map.database_of_shard(shard), grown.database_of_shard(shard));
                assert_eq!(was != is, moved.contains(&shard), "shard {shard}");
                assert!(was == is || is == databases);
            }
        }
    }

    #[test]
    fn a_keys_logical_shard_never_depends_on_the_number_of_databases() {
        let shards: Vec<u16> = (1..=10u64).map(logical_shard).collect();
        // Fixed forever: the map, not the hash, is what changes.
        assert_eq!(shards, (1..=10u64).map(logical_shard).collect::<Vec<_>>());
        assert!(shards.iter().all(|s| *s < LOGICAL_SHARDS));
        assert_eq!(mix(0), 0xe220_a839_7b1d_cdaf, "SplitMix64's first output");
    }

    #[test]
    fn the_schemes_move_what_their_theory_says_from_four_databases_to_five() {
        let keys = 100_000;
        let share = |c: &Comparison| c.moved as f64 / keys as f64;
        let logical = compare(Placement::LogicalShards, keys, 4);
        assert!((0.17..0.23).contains(&share(&logical)), "{logical:?}");
        let modulo = compare(Placement::ModuloHash, keys, 4);
        assert!((0.77..0.83).contains(&share(&modulo)), "{modulo:?}");
        let ring = compare(Placement::ConsistentHash { vnodes: 160 }, keys, 4);
        assert!((0.12..0.28).contains(&share(&ring)), "{ring:?}");
        let range = compare(Placement::Range { keys }, keys, 4);
        // Ranges re-split evenly keep only the overlap of old and new ranges.
        assert!(share(&range) > 0.45, "{range:?}");
        assert_eq!(range.newest_on, 1, "every new id lands on the last range");
        assert_eq!(logical.newest_on, 5);
        assert_eq!(logical.before.iter().sum::<u64>(), keys);
        assert_eq!(logical.after.iter().sum::<u64>(), keys);
    }
}
