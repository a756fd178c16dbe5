//! The reconciliation sweep against a local fake of Telnyx's and Resend's APIs: a message whose
//! final webhook never came is corrected through the normal pipeline, and 429 (Retry-After),
//! timeouts, 404, 500 and not-yet-final answers are handled and counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hookline_ops::reconcile::{ReconcileArgs, Reconciler};
use hookline_testkit::wait_until;

use crate::stack::Stack;
use crate::support::*;

#[derive(Default)]
struct FakeApi {
    requests: Mutex<HashMap<String, usize>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    unauthorized: AtomicUsize,
}

impl FakeApi {
    fn requests(&self, id: &str) -> usize {
        self.requests.lock().unwrap().get(id).copied().unwrap_or(0)
    }
}

/// Shared behaviour of both fake APIs, by message id.
async fn answer(
    api: &FakeApi,
    headers: &HeaderMap,
    id: &str,
    ok: impl Fn(&str) -> String,
) -> Response {
    let n = {
        let mut r = api.requests.lock().unwrap();
        let n = r.entry(id.to_owned()).or_default();
        *n += 1;
        *n
    };
    // A timed-out request's handler sleeps on after the client gave up on it, so the slow one
    // is left out of the concurrency count: it measures requests the client is waiting for.
    let counted = !id.ends_with("-slow");
    if counted {
        let now = api.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        api.max_in_flight.fetch_max(now, Ordering::SeqCst);
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    let response = if auth != Some("Bearer test-api-key") {
        api.unauthorized.fetch_add(1, Ordering::SeqCst);
        StatusCode::UNAUTHORIZED.into_response()
    } else {
        // Hold each request a moment so concurrency is observable.
        tokio::time::sleep(Duration::from_millis(100)).await;
        match id {
            i if i.ends_with("-429") && n == 1 => (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                "slow down",
            )
                .into_response(),
            i if i.ends_with("-slow") => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                ok("delivered").into_response()
            }
            i if i.ends_with("-404") => (
                StatusCode::NOT_FOUND,
                r#"{"errors":[{"code":"10005","title":"Resource not found"}]}"#,
            )
                .into_response(),
            i if i.ends_with("-500") => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            i if i.ends_with("-still") => ok("sent").into_response(),
            i if i.ends_with("-queued") => ok("queued").into_response(),
            _ => ok("final").into_response(),
        }
    };
    if counted {
        api.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
    response
}

fn fake_router(api: Arc<FakeApi>) -> Router {
    Router::new()
        .route(
            "/v2/messages/{id}",
            get(|State(api): State<Arc<FakeApi>>, headers: HeaderMap, Path(id): Path<String>| async move {
                let id2 = id.clone();
                answer(&api, &headers, &id, move |s| {
                    let status = if s == "final" { "delivered" } else { s };
                    serde_json::json!({"data": {
                        "record_type": "message", "id": id2, "direction": "outbound", "type": "SMS",
                        "to": [{"phone_number": "+13125550123", "status": status}],
                        "errors": [], "completed_at": "2026-11-23T10:05:00.000+00:00"
                    }})
                    .to_string()
                })
                .await
            }),
        )
        .route(
            "/emails/{id}",
            get(|State(api): State<Arc<FakeApi>>, headers: HeaderMap, Path(id): Path<String>| async move {
                let id2 = id.clone();
                answer(&api, &headers, &id, move |s| {
                    let last = if s == "final" { "bounced" } else { s };
                    serde_json::json!({"object": "email", "id": id2, "to": ["x@example.com"],
                        "created_at": "2026-11-23 10:00:00.000000+00", "last_event": last})
                    .to_string()
                })
                .await
            }),
        )
        .with_state(api)
}

#[tokio::test]
async fn the_sweep_corrects_lost_final_webhooks_through_the_pipeline() {
    let api = Arc::new(FakeApi::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = fake_router(api.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let stack = Stack::start(1, |_| {}).await;
    let pool = &stack.pool;
    let batch = new_batch(pool).await;
    let sms = [
        "sms-lost",
        "sms-429",
        "sms-slow",
        "sms-404",
        "sms-500",
        "sms-still",
        "sms-fresh",
    ];
    for m in sms {
        add_recipient(pool, &batch, "telnyx", m).await;
    }
    add_recipient(pool, &batch, "resend", "em-lost").await;
    // Eight more the API only knows as queued: enough lookups to fill the concurrency bound.
    for i in 0..8 {
        add_recipient(pool, &batch, "telnyx", &format!("sms-{i}-queued")).await;
    }
    // The 'sent' webhooks arrive; the final ones never do.
    let c = &stack.client;
    assert_eq!(
        c.post_telnyx_at("w1", "sms-lost", "sent", "2026-11-23T10:00:01Z")
            .await
            .status(),
        200
    );
    assert_eq!(
        c.post_telnyx_at("w2", "sms-429", "sent", "2026-11-23T10:00:01Z")
            .await
            .status(),
        200
    );
    assert_eq!(
        c.post_resend_at("w3", "em-lost", "email.sent", "2026-11-23T10:00:01Z")
            .await
            .status(),
        200
    );
    // sms-still: the API agrees it is only 'sent' — nothing to correct.
    assert_eq!(
        c.post_telnyx_at("w4", "sms-still", "sent", "2026-11-23T10:00:01Z")
            .await
            .status(),
        200
    );
    wait_until("4 webhooks applied", Duration::from_secs(20), || async {
        count(
            pool,
            "SELECT count(*) FROM recipients WHERE status = 'sent'",
        )
        .await
            == 4
    })
    .await;
    // Everything but sms-fresh has been stuck for two hours.
    sqlx::query("UPDATE recipients SET updated_at = now() - interval '2 hours' WHERE provider_message_id <> 'sms-fresh'")
        .execute(pool)
        .await
        .unwrap();

    let mut args = ReconcileArgs::for_api(&base);
    args.set("TELNYX_API_KEY", "test-api-key");
    args.set("RESEND_API_KEY", "test-api-key");
    args.concurrency = 3;
    args.set("HOOKLINE_RECONCILE_TELNYX_RATE", "1000");
    args.set("HOOKLINE_RECONCILE_RESEND_RATE", "1000");
    args.timeout_ms = 400;
    args.attempts = 2;
    let reconciler = Reconciler::new(args, pool.clone(), stack.js.clone()).unwrap();
    let report = reconciler.sweep().await.unwrap();
    println!("first sweep: {report:?}");
    assert_eq!(
        report.swept, 15,
        "every stuck recipient, not the fresh one: {report:?}"
    );
    assert_eq!(report.corrected, 3, "{report:?}");
    let unknown: Vec<(&str, u64)> = report
        .still_unknown
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        unknown,
        vec![
            ("http_error", 1),
            ("not_final", 9),
            ("not_found", 1),
            ("timeout", 1)
        ]
    );

    wait_until(
        "corrections applied by the worker",
        Duration::from_secs(20),
        || async {
            status(pool, "telnyx", "sms-lost").await == "delivered"
                && status(pool, "telnyx", "sms-429").await == "delivered"
                && status(pool, "resend", "em-lost").await == "bounced"
        },
    )
    .await;
    stack.wait_drained(Duration::from_secs(10)).await;
    assert_eq!(status(pool, "telnyx", "sms-still").await, "sent");
    assert_counters_match_recount(pool).await;
    let synthetic = count(
        pool,
        "SELECT count(*) FROM delivery_events WHERE event_id LIKE 'reconcile-%'",
    )
    .await;
    assert_eq!(synthetic, 3);

    assert_eq!(api.requests("sms-429"), 2, "retried once after Retry-After");
    assert_eq!(
        api.requests("sms-500"),
        2,
        "5xx retried up to the attempt limit"
    );
    assert_eq!(api.requests("sms-fresh"), 0, "not stuck long enough");
    assert!(
        (2..=3).contains(&api.max_in_flight.load(Ordering::SeqCst)),
        "concurrency used, and bounded at 3: {:?}",
        api.max_in_flight
    );
    assert_eq!(
        api.unauthorized.load(Ordering::SeqCst),
        0,
        "API key sent as a bearer token"
    );
    let m = &reconciler.metrics;
    assert_eq!(
        m.corrected
            .with_label_values(&["telnyx", "delivered"])
            .get(),
        2
    );
    assert_eq!(
        m.corrected.with_label_values(&["resend", "bounced"]).get(),
        1
    );
    assert_eq!(m.unknown.with_label_values(&["telnyx", "timeout"]).get(), 1);
    assert_eq!(m.swept.with_label_values(&["telnyx"]).get(), 14);

    // A second sweep only revisits what is still open, and corrects nothing twice.
    let again = reconciler.sweep().await.unwrap();
    assert_eq!((again.swept, again.corrected), (12, 0), "{again:?}");
    // Whatever it published (nothing, if right) has reached the database before counting.
    stack.wait_drained(Duration::from_secs(20)).await;
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM delivery_events WHERE event_id LIKE 'reconcile-%'"
        )
        .await,
        3
    );
}

/// Twilio's Messages API: the account in the path, HTTP basic auth, a status callback's shape
/// for the answer. A recipient whose final callback never came is corrected through the
/// pipeline, timed by the API's `date_updated`.
#[tokio::test]
async fn twilio_lookups_name_the_account_and_authenticate_with_basic_auth() {
    /// What the fake API was asked: the path after `Accounts/`, and the authorization.
    type Asked = Arc<Mutex<Vec<(String, Option<String>)>>>;
    let asked: Asked = Arc::default();
    let seen = asked.clone();
    let app = Router::new().route(
        "/2010-04-01/Accounts/{account}/Messages/{file}",
        get(
            move |Path((account, file)): Path<(String, String)>, headers: HeaderMap| {
                let seen = seen.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    seen.lock()
                        .unwrap()
                        .push((format!("{account}/{file}"), auth.clone()));
                    // base64("AC0123:token-1")
                    if auth.as_deref() != Some("Basic QUMwMTIzOnRva2VuLTE=") {
                        return StatusCode::UNAUTHORIZED.into_response();
                    }
                    let sid = file.trim_end_matches(".json");
                    serde_json::json!({"sid": sid, "account_sid": account, "status": "delivered",
                    "error_code": null, "error_message": null, "to": "+13125550123",
                    "date_updated": "Fri, 20 Nov 2026 10:00:05 +0000"})
                    .to_string()
                    .into_response()
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let stack = Stack::start(1, |_| {}).await;
    let pool = &stack.pool;
    let batch = new_batch(pool).await;
    add_recipient(pool, &batch, "twilio", "SMlost").await;
    sqlx::query("UPDATE recipients SET updated_at = now() - interval '2 hours'")
        .execute(pool)
        .await
        .unwrap();
    let mut args = ReconcileArgs::for_api(&base);
    args.set("TWILIO_API_CREDENTIALS", "AC0123:token-1");
    args.set("HOOKLINE_RECONCILE_TWILIO_RATE", "1000");
    let reconciler = Reconciler::new(args, pool.clone(), stack.js.clone()).unwrap();
    let report = reconciler.sweep().await.unwrap();
    assert_eq!((report.swept, report.corrected), (1, 1), "{report:?}");
    assert_eq!(
        *asked.lock().unwrap(),
        vec![(
            "AC0123/SMlost.json".to_owned(),
            Some("Basic QUMwMTIzOnRva2VuLTE=".to_owned())
        )]
    );
    wait_until(
        "the correction applied",
        Duration::from_secs(20),
        || async { status(pool, "twilio", "SMlost").await == "delivered" },
    )
    .await;
    let at: String = sqlx::query_scalar(
        "SELECT to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM delivery_events WHERE provider = 'twilio'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(at, "2026-11-20 10:00:05", "the API's date_updated");
    assert_counters_match_recount(pool).await;
}
