//! A webhook sender for tests: posts correctly (or deliberately wrongly) signed requests to an
//! ingest base URL, as Telnyx and Resend would.

use std::time::Duration;

use crate::signing;

#[derive(Clone)]
pub struct WebhookClient {
    pub base: String,
    pub http: reqwest::Client,
}

impl WebhookClient {
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            base: base.into(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
        }
    }

    pub async fn post(
        &self,
        provider: &str,
        headers: &[(String, String)],
        body: &str,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}/webhooks/{provider}", self.base))
            .body(body.to_owned());
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send().await.expect("ingest answers")
    }

    /// A correctly signed Telnyx delivery webhook (`occurred_at` as RFC 3339).
    pub async fn post_telnyx_at(
        &self,
        event_id: &str,
        message_id: &str,
        status: &str,
        occurred_at: &str,
    ) -> reqwest::Response {
        let body = signing::telnyx_body(event_id, message_id, status, occurred_at);
        self.post(
            "telnyx",
            &signing::telnyx_headers(&body, signing::now()),
            &body,
        )
        .await
    }

    pub async fn post_telnyx(
        &self,
        event_id: &str,
        message_id: &str,
        status: &str,
    ) -> reqwest::Response {
        self.post_telnyx_at(
            event_id,
            message_id,
            status,
            "2026-11-23T10:00:00.000+00:00",
        )
        .await
    }

    /// A correctly signed Resend webhook of type `kind` (e.g. `email.delivered`).
    pub async fn post_resend_at(
        &self,
        event_id: &str,
        email_id: &str,
        kind: &str,
        created_at: &str,
    ) -> reqwest::Response {
        let body = signing::resend_body(kind, email_id, created_at);
        let headers =
            signing::resend_headers(signing::RESEND_SECRET, event_id, &body, signing::now());
        self.post("resend", &headers, &body).await
    }

    pub async fn post_resend(
        &self,
        event_id: &str,
        email_id: &str,
        kind: &str,
    ) -> reqwest::Response {
        self.post_resend_at(event_id, email_id, kind, "2026-11-23T10:00:00.000Z")
            .await
    }

    /// GET `path` and return its body (empty when ingest does not answer).
    pub async fn get_text(&self, path: &str) -> String {
        match self.http.get(format!("{}{path}", self.base)).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// GET `path` and return the status code (0 when ingest does not answer).
    pub async fn get_status(&self, path: &str) -> u16 {
        match self.http.get(format!("{}{path}", self.base)).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }
}
