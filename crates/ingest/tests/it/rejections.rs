//! Bad input gets a clear 4xx and is not stored.

use hookline_testkit::signing::{self, RESEND_SECRET};
use serde_json::Value;

use crate::harness::Ingest;

/// (what the case is, request headers, body)
type Case = (&'static str, Vec<(String, String)>, String);

async fn status_and_error(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn bad_stale_and_missing_signatures_are_401_and_not_stored() {
    let ingest = Ingest::start().await;
    let now = signing::now();
    let body = signing::resend_body("email.delivered", "em-1", "2026-11-23T10:00:00Z");
    let other = "whsec_c29tZWJvZHktZWxzZSdzLXNpZ25pbmctc2VjcmV0ISE=";
    let cases: Vec<Case> = vec![
        (
            "resend unknown secret",
            signing::resend_headers(other, "m1", &body, now),
            body.clone(),
        ),
        (
            "resend tampered body",
            signing::resend_headers(RESEND_SECRET, "m2", &body, now),
            body.replace("em-1", "em-2"),
        ),
        (
            "resend stale",
            signing::resend_headers(RESEND_SECRET, "m3", &body, now - 301),
            body.clone(),
        ),
        (
            "resend future",
            signing::resend_headers(RESEND_SECRET, "m4", &body, now + 301),
            body.clone(),
        ),
        ("resend no headers", vec![], body.clone()),
    ];
    for (name, headers, body) in cases {
        let (status, error) =
            status_and_error(ingest.client.post("resend", &headers, &body).await).await;
        assert_eq!(status, 401, "{name}");
        assert!(error.starts_with("signature rejected"), "{name}: {error}");
    }
    let tbody = signing::telnyx_body("ev", "msg", "delivered", "2026-11-23T10:00:00Z");
    let tcases: Vec<Case> = vec![
        (
            "telnyx tampered",
            signing::telnyx_headers(&tbody, now),
            tbody.replace("delivered", "sent"),
        ),
        (
            "telnyx stale",
            signing::telnyx_headers(&tbody, now - 301),
            tbody.clone(),
        ),
        ("telnyx no headers", vec![], tbody.clone()),
        (
            "telnyx garbage signature",
            vec![
                ("telnyx-signature-ed25519".into(), "bm9wZQ==".into()),
                ("telnyx-timestamp".into(), now.to_string()),
            ],
            tbody.clone(),
        ),
    ];
    for (name, headers, body) in tcases {
        assert_eq!(
            ingest.client.post("telnyx", &headers, &body).await.status(),
            401,
            "{name}"
        );
    }
    assert_eq!(ingest.stored_messages().await, 0);
}

/// The independent vectors (svix library, PyNaCl) were signed on 2026-11-20: over HTTP, today, even
/// the valid ones are stale.
#[tokio::test]
async fn old_vectors_are_refused_as_stale_over_http() {
    let ingest = Ingest::start().await;
    for (file, provider) in [
        ("resend/vectors.json", "resend"),
        ("telnyx/vectors.json", "telnyx"),
    ] {
        let path = hookline_testkit::workspace_root()
            .join("testdata")
            .join(file);
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for case in v["cases"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["expect"] == "ok")
        {
            let headers: Vec<(String, String)> = case["headers"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            let r = ingest
                .client
                .post(provider, &headers, case["body"].as_str().unwrap())
                .await;
            assert_eq!(r.status(), 401, "{provider} {}", case["name"]);
        }
    }
    assert_eq!(ingest.stored_messages().await, 0);
}

#[tokio::test]
async fn unknown_or_unconfigured_provider_is_404() {
    let ingest =
        Ingest::start_with(|c| c.provider_keys.values.set_var("TELNYX_PUBLIC_KEY", vec![])).await;
    let body = signing::telnyx_body("ev", "msg", "delivered", "2026-11-23T10:00:00Z");
    let h = signing::telnyx_headers(&body, signing::now());
    assert_eq!(
        ingest.client.post("telnyx", &h, &body).await.status(),
        404,
        "not configured"
    );
    let (status, error) = status_and_error(ingest.client.post("mailgun", &h, &body).await).await;
    assert_eq!((status, error.as_str()), (404, "unknown provider"));
    assert_eq!(ingest.stored_messages().await, 0);
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let ingest = Ingest::start().await;
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(64 * 1024));
    let h = signing::resend_headers(RESEND_SECRET, "big", &big, signing::now());
    let (status, error) = status_and_error(ingest.client.post("resend", &h, &big).await).await;
    assert_eq!(status, 413);
    assert!(error.contains("65536"), "{error}");
    // Just under the limit is fine.
    let fits = format!(
        "{{\"type\":\"email.sent\",\"p\":\"{}\"}}",
        "x".repeat(60 * 1024)
    );
    let h = signing::resend_headers(RESEND_SECRET, "fits", &fits, signing::now());
    assert_eq!(ingest.client.post("resend", &h, &fits).await.status(), 200);
    assert_eq!(ingest.stored_messages().await, 1);
}
