//! The fuzz smoke that runs in the normal suite (on stable, in about a second):
//!
//! 1. every input in `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` (seeds, and every
//!    input a libFuzzer run ever crashed on) goes through the same harness libFuzzer uses;
//! 2. genuine seeds built here, then thousands of random mutations of them (proptest), do too.
//!
//! `HOOKLINE_WRITE_FUZZ_SEEDS=1 cargo test -p hookline-core --test fuzz_corpus` rewrites the
//! checked-in `seed-*` files from (2).

use std::path::{Path, PathBuf};

use hookline_core::fuzz::{self, ED25519_SEED, NOW, SVIX_SECRET};
use hookline_core::providers::samples;
use hookline_core::signature::{ed25519, svix};
use proptest::prelude::*;

type Harness = fn(&[u8]);

const TARGETS: [(&str, Harness); 5] = [
    ("svix_signature", fuzz::svix_signature),
    ("ed25519_signature", fuzz::ed25519_signature),
    ("payloads", fuzz::payloads),
    ("keys", fuzz::keys),
    ("sources_config", fuzz::sources_config),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Genuine inputs for each target, shaped the way its harness splits them.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let telnyx = samples::telnyx_body("ev-1", "msg-1", "delivered", "2026-11-23T10:00:00Z");
    let telnyx_failed =
        samples::telnyx_body("ev-2", "msg-1", "delivery_failed", "2026-11-23T10:00:01Z");
    let resend = samples::resend_body("email.bounced", "em-1", "2026-11-23T10:00:00Z");
    let resend_click = samples::resend_body("email.clicked", "em-1", "2026-11-23T10:00:00Z");
    match target {
        "svix_signature" => {
            let secret = svix::SvixSecret::parse(SVIX_SECRET).unwrap();
            let sig = secret.sign("msg_seed", NOW, resend.as_bytes());
            vec![
                format!("msg_seed\n{NOW}\n{sig}\n{resend}").into_bytes(),
                format!("msg_seed\n{NOW}\nv1,AAAA v2,x {sig}\n{resend}").into_bytes(),
            ]
        }
        "ed25519_signature" => {
            let key = ed25519::parse_signing_key(ED25519_SEED).unwrap();
            let sig = ed25519::sign(&key, NOW, telnyx.as_bytes());
            vec![format!("{NOW}\n{sig}\n{telnyx}").into_bytes()]
        }
        "payloads" => vec![
            format!("msg_seed\n{telnyx}").into_bytes(),
            format!("msg_seed\n{telnyx_failed}").into_bytes(),
            format!("msg_seed\n{resend}").into_bytes(),
            format!("msg_seed\n{resend_click}").into_bytes(),
        ],
        "sources_config" => ["github-style", "respondio-style"]
            .iter()
            .map(|e| {
                let path = format!("{}/../../examples/{e}.toml", env!("CARGO_MANIFEST_DIR"));
                let mut data = std::fs::read(path).unwrap();
                data.push(0);
                data.extend_from_slice(br#"{"message":{"id":"m","status":"delivered","updated_at":"2026-11-23T10:00:00Z"}}"#);
                data
            })
            .collect(),
        "keys" => vec![
            SVIX_SECRET.as_bytes().to_vec(),
            ED25519_SEED.as_bytes().to_vec(),
        ],
        _ => unreachable!(),
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    out.sort();
    out
}

#[test]
fn checked_in_corpus_and_regressions_pass_every_harness() {
    let write = std::env::var_os("HOOKLINE_WRITE_FUZZ_SEEDS").is_some();
    let mut replayed = 0;
    for (target, harness) in TARGETS {
        let corpus = fuzz_dir().join("corpus").join(target);
        if write {
            std::fs::create_dir_all(&corpus).unwrap();
            for (i, seed) in seeds(target).iter().enumerate() {
                std::fs::write(corpus.join(format!("seed-{i}")), seed).unwrap();
            }
        }
        let mut seen = 0;
        for dir in [corpus, fuzz_dir().join("regressions").join(target)] {
            for file in files(&dir) {
                let data = std::fs::read(&file).unwrap();
                let outcome = std::panic::catch_unwind(|| harness(&data));
                assert!(outcome.is_ok(), "{} fails its harness", file.display());
                seen += 1;
            }
        }
        assert!(seen > 0, "no corpus checked in for {target}");
        replayed += seen;
    }
    println!("replayed {replayed} corpus and regression inputs");
}

/// A random edit of a genuine input: flip, insert or delete bytes, or splice a newline in.
fn mutate(mut data: Vec<u8>, edits: &[(u16, u8, u8)]) -> Vec<u8> {
    for &(at, op, byte) in edits {
        let at = at as usize % (data.len() + 1);
        match op % 4 {
            0 if at < data.len() => data[at] ^= 1 << (byte % 8),
            1 => data.insert(at, byte),
            2 if at < data.len() => {
                data.remove(at);
            }
            _ => data.insert(at, b'\n'),
        }
    }
    data
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_seeds_pass_every_harness(
        which in 0usize..TARGETS.len(),
        seed in 0usize..4,
        edits in prop::collection::vec((any::<u16>(), any::<u8>(), any::<u8>()), 0..6),
    ) {
        let (target, harness) = TARGETS[which];
        let seeds = seeds(target);
        harness(&mutate(seeds[seed % seeds.len()].clone(), &edits));
    }

    #[test]
    fn random_bytes_pass_every_harness(data in prop::collection::vec(any::<u8>(), 0..512)) {
        for (_, harness) in TARGETS {
            harness(&data);
        }
    }
}
