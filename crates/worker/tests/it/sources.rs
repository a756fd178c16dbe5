//! Generic signed sources from configuration alone: the two example files, signed requests over
//! HTTP through ingest, decoded by the worker into delivery state — no code for either source.

use std::time::Duration;

use hookline_core::providers::{parse_sources, GenericSource};
use hookline_core::Headers as _;
use hookline_testkit::{wait_until, workspace_root};

use crate::stack::Stack;
use crate::support::*;

pub(crate) const GITHUB_SECRET: &str = "e2e-github-style-secret";
const RESPONDIO_KEY: &str = "e2e-respondio-style-key";

/// The example's source with our test secret, for signing requests as the source would.
pub(crate) fn signer(example: &str, secret: &str) -> GenericSource {
    let text = std::fs::read_to_string(workspace_root().join("examples").join(example)).unwrap();
    GenericSource::new(
        &parse_sources(&text).unwrap()[0],
        vec![secret.as_bytes().to_vec()],
    )
    .unwrap()
}

pub(crate) fn signed(
    source: &GenericSource,
    secret: &str,
    mut headers: Vec<(String, String)>,
    body: &str,
) -> Vec<(String, String)> {
    let sig = source
        .sign(secret.as_bytes(), &headers, "", body.as_bytes())
        .unwrap();
    headers.push((source.signature_headers().0.to_owned(), sig));
    headers
}

#[tokio::test]
async fn example_sources_work_from_configuration_alone() {
    // Both examples in one file, as an operator would combine them.
    let dir = tempfile::tempdir().unwrap();
    let combined = dir.path().join("sources.toml");
    let text: String = ["github-style.toml", "respondio-style.toml"]
        .iter()
        .map(|f| std::fs::read_to_string(workspace_root().join("examples").join(f)).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&combined, text).unwrap();
    // Each test runs in its own process (nextest), so the secrets' variables are ours alone.
    std::env::set_var("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET);
    std::env::set_var("RESPONDIO_SIGNING_KEY", format!("old-key,{RESPONDIO_KEY}"));
    let file = combined.clone();
    let stack = Stack::start_tuned(
        1,
        |c| c.sources_file = Some(combined),
        |w| w.sources_file = Some(file),
    )
    .await;
    let pool = &stack.pool;
    let batch = new_batch(pool).await;
    for (p, m) in [
        ("github", "gh-1"),
        ("github", "gh-2"),
        ("respondio", "900001"),
    ] {
        add_recipient(pool, &batch, p, m).await;
    }

    let gh = signer("github-style.toml", GITHUB_SECRET);
    let gh_post = |delivery: &str, message: &str, status: &str, second: u32| {
        let body = format!(
            r#"{{"action":"status","message":{{"id":"{message}","status":"{status}","updated_at":"2026-11-23T10:00:{second:02}Z"}}}}"#
        );
        let headers = vec![
            ("X-GitHub-Delivery".to_owned(), delivery.to_owned()),
            ("X-GitHub-Event".to_owned(), "message_status".to_owned()),
        ];
        (signed(&gh, GITHUB_SECRET, headers, &body), body)
    };
    let c = &stack.client;
    for (d, m, s, t) in [
        ("d1", "gh-1", "sent", 1),
        ("d2", "gh-1", "delivered", 3),
        ("d3", "gh-1", "read", 9),
        ("d4", "gh-2", "failed", 2),
    ] {
        let (h, b) = gh_post(d, m, s, t);
        assert_eq!(c.post("github", &h, &b).await.status(), 200, "{d}");
    }
    // The same request, retried by the source: stored once.
    let (h, b) = gh_post("d2", "gh-1", "delivered", 3);
    assert_eq!(c.post("github", &h, &b).await.status(), 200);
    // A wrong secret is refused like any bad signature.
    let wrong = signer("github-style.toml", "not-the-secret");
    let (_, b) = gh_post("d5", "gh-2", "delivered", 4);
    let h = signed(
        &wrong,
        "not-the-secret",
        vec![("X-GitHub-Delivery".into(), "d5".into())],
        &b,
    );
    assert_eq!(c.post("github", &h, &b).await.status(), 401);

    let rio = signer("respondio-style.toml", RESPONDIO_KEY);
    let body = format!(
        r#"{{"event_type":"message.status","event_id":"rio-1","message":{{"messageId":900001,"status":{{"value":"delivered","timestamp":{}}}}}}}"#,
        1_795_400_000
    );
    let h = signed(&rio, RESPONDIO_KEY, Vec::new(), &body);
    assert!(h.get("x-webhook-signature").is_some());
    assert_eq!(c.post("respondio", &h, &body).await.status(), 200);

    wait_until(
        "5 distinct events stored",
        Duration::from_secs(20),
        || async { count(pool, "SELECT count(*) FROM delivery_events").await == 5 },
    )
    .await;
    stack.wait_drained(Duration::from_secs(10)).await;
    let gh1 = state(pool, "github", "gh-1").await;
    assert_eq!(gh1[0].as_deref(), Some("delivered"), "{gh1:?}");
    assert_eq!(status(pool, "github", "gh-2").await, "failed");
    assert_eq!(status(pool, "respondio", "900001").await, "delivered");
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM recipients WHERE provider = 'github' AND opened_at IS NOT NULL"
        )
        .await,
        1,
        "`read` mapped to opened"
    );
    let subjects = count(pool, "SELECT count(*) FROM delivery_events WHERE provider = 'github' AND event_type = 'message_status'").await;
    assert_eq!(subjects, 4);
    assert_counters_match_recount(pool).await;
}
