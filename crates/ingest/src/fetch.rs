//! Documents a provider's verification needs from the network (SNS's signing certificates) and
//! the confirmations it asks for (SNS's `SubscribeURL`): fetched over HTTPS only, from URLs the
//! provider allowed, within a deadline, at most 64 KiB; documents cached by URL (a certificate
//! is fetched once a day, not once a request).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;

/// Largest document accepted (a certificate is about 2 KiB).
const MAX_BYTES: usize = 64 * 1024;

pub struct Fetcher {
    client: reqwest::Client,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Bytes, Instant)>>,
}

impl Fetcher {
    /// `roots`: PEM certificates trusted besides the public roots (a private CA, or a test's).
    pub fn new(roots: Option<&[u8]>, timeout: Duration, ttl: Duration) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .https_only(true)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = roots {
            for cert in reqwest::Certificate::from_pem_bundle(pem)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Self {
            client: builder.build()?,
            ttl,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The document at `url`, from the cache while it is fresh.
    pub async fn get(&self, url: &str) -> Result<Bytes, String> {
        if let Some((doc, at)) = self.cache.lock().expect("cache lock").get(url) {
            if at.elapsed() < self.ttl {
                return Ok(doc.clone());
            }
        }
        let doc = self.fetch(url).await?;
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.len() > 1024 {
            // Only allowed hosts' URLs get here; still, never grow without bound.
            cache.clear();
        }
        cache.insert(url.to_owned(), (doc.clone(), Instant::now()));
        Ok(doc)
    }

    /// GETs `url` once (a confirmation): any 2xx is success.
    pub async fn confirm(&self, url: &str) -> Result<(), String> {
        self.fetch(url).await.map(|_| ())
    }

    async fn fetch(&self, url: &str) -> Result<Bytes, String> {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BYTES as u64)
        {
            return Err(format!("{url} is larger than {MAX_BYTES} bytes"));
        }
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        if body.len() > MAX_BYTES {
            return Err(format!("{url} is larger than {MAX_BYTES} bytes"));
        }
        Ok(body)
    }
}
