//! Identity benchmarks: password hashing (logins per second per core), JWT verification.
//! Results and commands: `bench/auth/RESULTS.md`.

use basis_auth::jwt::KeySet;
use basis_auth::password::Hasher;
use basis_auth::role::Role;
use criterion::{Criterion, criterion_group, criterion_main};

fn jwt(c: &mut Criterion) {
    let keys = KeySet::parse(&KeySet::generate_spec("k1"), "https://basis.test", "basis")
        .expect("a key set");
    let (token, claims) = keys
        .issue("0123456789abcdef", Role::User, 1_000)
        .expect("a token");
    c.bench_function("jwt_verify_hs256", |b| {
        b.iter(|| keys.verify(std::hint::black_box(&token), claims.iat + 1))
    });
    c.bench_function("jwt_issue_hs256", |b| {
        b.iter(|| keys.issue("0123456789abcdef", Role::User, 1_000))
    });
}

fn argon2(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    // One permit: one hash at a time, so the rate is per core.
    let hasher = Hasher::new(basis_auth::password::HashParams::OWASP, 1).expect("a hasher");
    let hash = runtime
        .block_on(hasher.hash("velvet otter juggles nine lanterns".into()))
        .expect("a hash");
    let mut group = c.benchmark_group("argon2id_m19456_t2_p1");
    group.sample_size(20);
    group.bench_function("verify_one_login", |b| {
        b.to_async(&runtime).iter(|| {
            hasher.verify(
                Some(hash.clone()),
                "velvet otter juggles nine lanterns".into(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, jwt, argon2);
criterion_main!(benches);
