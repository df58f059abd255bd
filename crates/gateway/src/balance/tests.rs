use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::*;

fn candidates(weights: &[u32]) -> Vec<Candidate> {
    weights
        .iter()
        .enumerate()
        .map(|(id, &weight)| Candidate {
            id,
            weight,
            in_flight: 0,
            latency_ns: 1_000_000.0,
        })
        .collect()
}

fn balancer(algorithm: Algorithm, weights: &[u32]) -> Balancer {
    let names: Vec<String> = (0..weights.len())
        .map(|i| format!("http://10.0.0.{i}:8080"))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    Balancer::new(algorithm, &names, weights)
}

#[test]
fn smooth_weighted_round_robin_gives_nginx_sequence_for_5_1_1() {
    let b = balancer(Algorithm::WeightedRoundRobin, &[5, 1, 1]);
    let cands = candidates(&[5, 1, 1]);
    let mut rng = SmallRng::seed_from_u64(1);
    let letters: String = (0..14)
        .map(|_| (b'a' + b.pick(&cands, 0, &mut rng).unwrap() as u8) as char)
        .collect();
    assert_eq!(letters, "aabacaaaabacaa");
}

#[test]
fn round_robin_visits_each_backend_in_turn() {
    let b = balancer(Algorithm::RoundRobin, &[1, 9, 1]);
    let cands = candidates(&[1, 9, 1]);
    let mut rng = SmallRng::seed_from_u64(1);
    let picks: Vec<usize> = (0..6)
        .map(|_| b.pick(&cands, 0, &mut rng).unwrap())
        .collect();
    assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
}

#[test]
fn least_conn_prefers_fewest_in_flight_per_weight() {
    let b = balancer(Algorithm::LeastConn, &[1, 4, 1]);
    let mut cands = candidates(&[1, 4, 1]);
    cands[0].in_flight = 2; // 2 per unit
    cands[1].in_flight = 4; // 1 per unit: the least loaded
    cands[2].in_flight = 3;
    let mut rng = SmallRng::seed_from_u64(1);
    assert_eq!(b.pick(&cands, 0, &mut rng), Some(1));
}

#[test]
fn an_empty_candidate_list_gives_no_backend() {
    let mut rng = SmallRng::seed_from_u64(1);
    for algorithm in [
        Algorithm::RoundRobin,
        Algorithm::P2cEwma,
        Algorithm::ConsistentHash,
    ] {
        assert_eq!(balancer(algorithm, &[1, 1]).pick(&[], 7, &mut rng), None);
    }
}

#[test]
fn p2c_ewma_steers_away_from_a_slow_backend() {
    let b = balancer(Algorithm::P2cEwma, &[1, 1, 1]);
    let mut cands = candidates(&[1, 1, 1]);
    cands[2].latency_ns = 50_000_000.0; // 50 ms against 1 ms
    let mut rng = SmallRng::seed_from_u64(7);
    let mut counts = [0u32; 3];
    for _ in 0..3000 {
        counts[b.pick(&cands, 0, &mut rng).unwrap()] += 1;
    }
    // The slow one is chosen only when both random draws are it, which P2C never does.
    assert_eq!(counts[2], 0, "{counts:?}");
    assert!(counts[0] > 1200 && counts[1] > 1200, "{counts:?}");
}

#[test]
fn p2c_ewma_moves_load_to_the_slow_backend_once_the_fast_ones_queue() {
    let b = balancer(Algorithm::P2cEwma, &[1, 1]);
    let mut cands = candidates(&[1, 1]);
    cands[1].latency_ns = 5_000_000.0; // 5x slower
    cands[0].in_flight = 10; // but the fast one has 10 queued
    let mut rng = SmallRng::seed_from_u64(3);
    assert_eq!(b.pick(&cands, 0, &mut rng), Some(1));
}

#[test]
fn random_two_prefers_the_less_loaded_of_its_two_draws() {
    let b = balancer(Algorithm::RandomTwo, &[1, 1]);
    let mut cands = candidates(&[1, 1]);
    cands[0].in_flight = 5;
    let mut rng = SmallRng::seed_from_u64(3);
    for _ in 0..100 {
        assert_eq!(b.pick(&cands, 0, &mut rng), Some(1));
    }
}

#[test]
fn consistent_hash_moves_about_one_nth_of_100_000_keys_when_a_backend_is_added() {
    let before = balancer(Algorithm::ConsistentHash, &[1, 1, 1, 1]);
    let after = balancer(Algorithm::ConsistentHash, &[1, 1, 1, 1, 1]);
    let (c4, c5) = (candidates(&[1; 4]), candidates(&[1; 5]));
    let mut rng = SmallRng::seed_from_u64(1);
    let mut moved = 0;
    for k in 0..100_000u64 {
        let key = stable_hash(format!("client-{k}").as_bytes());
        let (old, new) = (
            before.pick(&c4, key, &mut rng).unwrap(),
            after.pick(&c5, key, &mut rng).unwrap(),
        );
        if old != new {
            // A key that moves goes to the new backend, never between old ones.
            assert_eq!(new, 4, "key {k} moved from {old} to {new}");
            moved += 1;
        }
    }
    let share = f64::from(moved) / 100_000.0;
    assert!(
        (0.15..=0.25).contains(&share),
        "moved share {share}, ideal 0.20"
    );
}

#[test]
fn consistent_hash_sends_an_ejected_backends_keys_elsewhere_and_only_those() {
    let b = balancer(Algorithm::ConsistentHash, &[1, 1, 1]);
    let all = candidates(&[1, 1, 1]);
    let without_1: Vec<Candidate> = all.iter().copied().filter(|c| c.id != 1).collect();
    let mut rng = SmallRng::seed_from_u64(1);
    for k in 0..10_000u64 {
        let key = stable_hash(&k.to_le_bytes());
        let full = b.pick(&all, key, &mut rng).unwrap();
        let reduced = b.pick(&without_1, key, &mut rng).unwrap();
        if full != 1 {
            assert_eq!(full, reduced);
        }
    }
}

#[test]
fn consistent_hash_shares_follow_weights() {
    let b = balancer(Algorithm::ConsistentHash, &[3, 1]);
    let cands = candidates(&[3, 1]);
    let mut rng = SmallRng::seed_from_u64(1);
    let heavy = (0..40_000u64)
        .filter(|k| b.pick(&cands, stable_hash(&k.to_le_bytes()), &mut rng) == Some(0))
        .count();
    let share = heavy as f64 / 40_000.0;
    assert!((0.70..=0.80).contains(&share), "heavy share {share}");
}

proptest! {
    #[test]
    fn every_algorithm_returns_one_of_the_candidates(
        weights in proptest::collection::vec(1u32..10, 1..8),
        in_flight in proptest::collection::vec(0u32..20, 8),
        mask in 1u32..256,
        key: u64,
        seed: u64,
    ) {
        let mut cands: Vec<Candidate> = candidates(&weights)
            .into_iter()
            .filter(|c| mask & (1 << c.id) != 0)
            .collect();
        for c in &mut cands {
            c.in_flight = in_flight[c.id];
        }
        let mut rng = SmallRng::seed_from_u64(seed);
        for algorithm in [
            Algorithm::RoundRobin, Algorithm::WeightedRoundRobin, Algorithm::LeastConn,
            Algorithm::IpHash, Algorithm::ConsistentHash, Algorithm::RandomTwo, Algorithm::P2cEwma,
        ] {
            let picked = balancer(algorithm, &weights).pick(&cands, key, &mut rng);
            match picked {
                None => prop_assert!(cands.is_empty()),
                Some(id) => prop_assert!(cands.iter().any(|c| c.id == id)),
            }
        }
    }

    #[test]
    fn ip_hash_keeps_a_client_on_its_backend(ip: u32, n in 2usize..10) {
        let b = balancer(Algorithm::IpHash, &vec![1; n]);
        let cands = candidates(&vec![1; n]);
        let mut rng = SmallRng::seed_from_u64(1);
        let key = stable_hash(&ip.to_be_bytes());
        let first = b.pick(&cands, key, &mut rng);
        for _ in 0..5 {
            prop_assert_eq!(b.pick(&cands, key, &mut rng), first);
        }
        // Another backend going away does not move this client.
        let chosen = first.unwrap();
        let other = (chosen + 1) % n;
        let fewer: Vec<Candidate> = cands.iter().copied().filter(|c| c.id != other).collect();
        prop_assert_eq!(b.pick(&fewer, key, &mut rng), first);
    }

    #[test]
    fn smooth_weighted_round_robin_serves_exact_weights_per_cycle(
        weights in proptest::collection::vec(1u32..8, 1..6),
    ) {
        let b = balancer(Algorithm::WeightedRoundRobin, &weights);
        let cands = candidates(&weights);
        let mut rng = SmallRng::seed_from_u64(1);
        let cycle: u32 = weights.iter().sum();
        let mut counts = vec![0u32; weights.len()];
        for _ in 0..cycle {
            counts[b.pick(&cands, 0, &mut rng).unwrap()] += 1;
        }
        prop_assert_eq!(counts, weights);
    }
}
