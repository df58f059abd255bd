//! `basis demo sharding`: a million link ids placed on four shard databases, then on five,
//! by each placement scheme: how even each spread is, how many keys the fifth database
//! makes move, and how many databases take the newest ids (where the writes go).

use basis_store::shards::{LOGICAL_SHARDS, Placement, ShardMap, compare};

/// Link ids placed.
const KEYS: u64 = 1_000_000;
/// Databases before one is added.
const FROM: u16 = 4;

/// The report, as printed.
pub fn report() -> String {
    let schemes = [
        ("range of ids", Placement::Range { keys: KEYS }),
        ("hash modulo databases", Placement::ModuloHash),
        (
            "consistent hash (160 points each)",
            Placement::ConsistentHash { vnodes: 160 },
        ),
        ("256 logical shards + map", Placement::LogicalShards),
    ];
    let to = FROM + 1;
    let mut out = format!(
        "{} link ids (1 to {KEYS}) on {FROM} shard databases, then on {to}\n\n\
         {:<34} {:>17} {:>17} {:>11} {:>16}\n",
        grouped(KEYS),
        "placement",
        format!("{FROM} dbs: min-max"),
        format!("{to} dbs: min-max"),
        "keys moved",
        "newest 10% on"
    );
    for (name, placement) in schemes {
        let c = compare(placement, KEYS, FROM);
        out.push_str(&format!(
            "{name:<34} {:>17} {:>17} {:>10.1}% {:>7} of {to} dbs\n",
            spread(&c.before),
            spread(&c.after),
            percent(c.moved),
            c.newest_on
        ));
    }
    let (_, moved) = ShardMap::even(FROM).with_database_added();
    out.push_str(&format!(
        "\nThe least any placement can move is the new database's share: 1/{to} = {:.1}%.\n\
         Logical shards move {} of {LOGICAL_SHARDS} whole shards, named by the map, to the new \
         database; every other key stays where it is.\n",
        100.0 / f64::from(to),
        moved.len()
    ));
    out
}

/// The smallest and largest database's share of the keys.
fn spread(counts: &[u64]) -> String {
    let (low, high) = (
        counts.iter().copied().min().unwrap_or(0),
        counts.iter().copied().max().unwrap_or(0),
    );
    format!("{:.1}%-{:.1}%", percent(low), percent(high))
}

/// `n` with thousands separated by commas.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn percent(count: u64) -> f64 {
    count as f64 * 100.0 / KEYS as f64
}
