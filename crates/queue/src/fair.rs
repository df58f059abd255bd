//! Sharing one claim's limit among several queues (the SQL engines' `claim_from`).

/// Takes up to `limit` items from `heads` (each queue's ready jobs, best first) round-robin:
/// the first of each queue in the order given, then the second of each, and so on. Each
/// item comes with the index of its queue.
pub(crate) fn round_robin<T>(heads: Vec<Vec<T>>, limit: usize) -> Vec<(usize, T)> {
    let mut heads: Vec<_> = heads.into_iter().map(Vec::into_iter).collect();
    let mut picked = Vec::with_capacity(limit.min(heads.iter().map(|h| h.len()).sum()));
    while picked.len() < limit {
        let before = picked.len();
        for (queue, head) in heads.iter_mut().enumerate() {
            if picked.len() == limit {
                break;
            }
            if let Some(item) = head.next() {
                picked.push((queue, item));
            }
        }
        if picked.len() == before {
            break;
        }
    }
    picked
}

/// The queues a claim of `limit` jobs over `queues` asks: each once, in the order first
/// named; `None` when there is nothing to claim (no queue, or a limit of 0).
pub(crate) fn to_claim(queues: &[String], limit: usize) -> Option<Vec<&str>> {
    let queues = distinct(queues);
    (!queues.is_empty() && limit > 0).then_some(queues)
}

/// `queues` without repeats, first occurrence kept: a queue named twice must not have its
/// jobs claimed twice in one go.
fn distinct(queues: &[String]) -> Vec<&str> {
    let mut seen = std::collections::HashSet::new();
    queues
        .iter()
        .map(String::as_str)
        .filter(|q| seen.insert(*q))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_queue_with_items_gets_one_before_any_gets_a_second() {
        let heads = vec![
            vec!["a1", "a2", "a3", "a4"],
            vec![],
            vec!["c1"],
            vec!["d1", "d2"],
        ];
        let picked: Vec<_> = round_robin(heads, 5).into_iter().map(|(_, x)| x).collect();
        assert_eq!(picked, ["a1", "c1", "d1", "a2", "d2"]);
    }

    #[test]
    fn a_small_limit_goes_to_the_earlier_queues_and_a_large_one_takes_everything() {
        let heads = || vec![vec![1, 2], vec![3], vec![4]];
        assert_eq!(round_robin(heads(), 2), [(0, 1), (1, 3)]);
        assert_eq!(round_robin(heads(), 99), [(0, 1), (1, 3), (2, 4), (0, 2)]);
        assert!(round_robin(heads(), 0).is_empty());
    }

    #[test]
    fn repeated_queue_names_are_claimed_from_once() {
        let queues = ["a", "b", "a", "c", "b"].map(String::from);
        assert_eq!(distinct(&queues), ["a", "b", "c"]);
    }

    #[test]
    fn no_queue_or_a_zero_limit_is_nothing_to_claim() {
        let queues = ["a", "a"].map(String::from);
        assert_eq!(to_claim(&queues, 3), Some(vec!["a"]));
        assert_eq!(to_claim(&queues, 0), None);
        assert_eq!(to_claim(&[], 3), None);
    }
}
