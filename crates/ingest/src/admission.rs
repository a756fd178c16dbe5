//! Who gets ingest's scarce resources (request slots and body memory) before anything has proved
//! who sent the request. A source address that has sent correctly signed webhooks recently is
//! **trusted**: it uses the whole budget. Any other source is **unknown**: it shares half of the
//! slots and half of the body memory with every other unknown source, may hold only a few
//! requests at once, and loses its turn for a while once its failures (bad signatures, stalled
//! or oversized bodies) outrun a small budget. So a flood of unsigned requests, however genuine
//! its headers look, can never take the half of the capacity that real providers use.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::IngestError;

/// The admission settings.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Webhook requests handled at once.
    pub max_requests: usize,
    /// Body bytes held at once (declared length, or the body limit for a chunked body).
    pub max_body_bytes_total: usize,
    /// Requests an unknown source may have in flight at once.
    pub per_source: u32,
    /// Failures an unknown source may accumulate (a bucket refilled at `failure_rate` per s).
    pub failure_burst: f64,
    pub failure_rate: f64,
    /// How long a source stays trusted after its last correctly signed request.
    pub trusted_for: Duration,
    pub retry_after_secs: u64,
}

/// How a source stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Trusted,
    Unknown,
}

struct Source {
    inflight: u32,
    tokens: f64,
    refilled: Instant,
    verified_at: Option<Instant>,
}

/// Sources remembered at most (beyond it, idle ones are forgotten).
const MAX_SOURCES: usize = 100_000;

pub struct Admission {
    budget: Budget,
    sources: Mutex<HashMap<IpAddr, Source>>,
    /// Every request takes a slot here ...
    slots: Semaphore,
    /// ... and an unknown source's also one here (half as many).
    unknown_slots: Semaphore,
    /// Body memory in KiB, the same way.
    kib: Semaphore,
    unknown_kib: Semaphore,
}

/// What an admitted request holds; released when it is dropped, however the request ends.
pub struct Admitted<'a> {
    admission: &'a Admission,
    ip: IpAddr,
    pub standing: Standing,
    _slot: SemaphorePermit<'a>,
    _unknown_slot: Option<SemaphorePermit<'a>>,
    _kib: SemaphorePermit<'a>,
    _unknown_kib: Option<SemaphorePermit<'a>>,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let mut sources = self.admission.lock();
        if let Some(s) = sources.get_mut(&self.ip) {
            s.inflight = s.inflight.saturating_sub(1);
        }
    }
}

fn kib(bytes: usize) -> u32 {
    bytes.div_ceil(1024).clamp(1, u32::MAX as usize) as u32
}

impl Admission {
    pub fn new(budget: Budget) -> Self {
        let total_kib = kib(budget.max_body_bytes_total) as usize;
        Self {
            slots: Semaphore::new(budget.max_requests),
            unknown_slots: Semaphore::new((budget.max_requests / 2).max(1)),
            kib: Semaphore::new(total_kib),
            unknown_kib: Semaphore::new((total_kib / 2).max(1)),
            sources: Mutex::new(HashMap::new()),
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Source>> {
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a request from `ip` that will hold up to `body_bytes` of body, or says why not.
    pub fn admit(&self, ip: IpAddr, body_bytes: usize) -> Result<Admitted<'_>, IngestError> {
        let now = Instant::now();
        let standing = {
            let mut sources = self.lock();
            if sources.len() >= MAX_SOURCES && !sources.contains_key(&ip) {
                // Forget idle unknown sources, never the trusted: a spray across many addresses
                // (an IPv6 /64 is plenty) must not make ingest forget its providers.
                let trusted_for = self.budget.trusted_for;
                sources.retain(|_, s| {
                    s.inflight > 0
                        || s.verified_at
                            .is_some_and(|t| now.duration_since(t) < trusted_for)
                });
            }
            let s = sources.entry(ip).or_insert(Source {
                inflight: 0,
                tokens: self.budget.failure_burst,
                refilled: now,
                verified_at: None,
            });
            let trusted = s
                .verified_at
                .is_some_and(|t| now.duration_since(t) < self.budget.trusted_for);
            if !trusted {
                let elapsed = now.duration_since(s.refilled).as_secs_f64();
                s.tokens =
                    (s.tokens + elapsed * self.budget.failure_rate).min(self.budget.failure_burst);
                s.refilled = now;
                if s.tokens < 1.0 {
                    return Err(IngestError::SourceRejected {
                        retry_after_secs: self.budget.retry_after_secs,
                    });
                }
                if s.inflight >= self.budget.per_source {
                    return Err(IngestError::SourceBusy {
                        retry_after_secs: self.budget.retry_after_secs,
                    });
                }
            }
            s.inflight += 1;
            if trusted {
                Standing::Trusted
            } else {
                Standing::Unknown
            }
        };
        // From here on, a refusal must give the source's count back: `Admitted` does that, so
        // build the pieces and let a partial one drop.
        let release = |e: IngestError| {
            if let Some(s) = self.lock().get_mut(&ip) {
                s.inflight = s.inflight.saturating_sub(1);
            }
            e
        };
        let overloaded = || IngestError::Overloaded {
            retry_after_secs: self.budget.retry_after_secs,
        };
        let unknown = standing == Standing::Unknown;
        let unknown_slot = match unknown {
            true => Some(
                self.unknown_slots
                    .try_acquire()
                    .map_err(|_| release(overloaded()))?,
            ),
            false => None,
        };
        let slot = self
            .slots
            .try_acquire()
            .map_err(|_| release(overloaded()))?;
        let need = kib(body_bytes);
        let memory = || IngestError::MemoryBudget {
            retry_after_secs: self.budget.retry_after_secs,
        };
        let unknown_kib = match unknown {
            true => Some(
                self.unknown_kib
                    .try_acquire_many(need)
                    .map_err(|_| release(memory()))?,
            ),
            false => None,
        };
        let kib = self
            .kib
            .try_acquire_many(need)
            .map_err(|_| release(memory()))?;
        Ok(Admitted {
            admission: self,
            ip,
            standing,
            _slot: slot,
            _unknown_slot: unknown_slot,
            _kib: kib,
            _unknown_kib: unknown_kib,
        })
    }

    /// A request from `ip` failed in a way only an unsigned client's would: a bad signature, a
    /// stalled or oversized body. Costs the source one unit of its failure budget.
    pub fn failed(&self, ip: IpAddr) {
        if let Some(s) = self.lock().get_mut(&ip) {
            s.tokens = (s.tokens - 1.0).max(0.0);
        }
    }

    /// A correctly signed request came from `ip`: it is trusted for `trusted_for`.
    pub fn verified(&self, ip: IpAddr) {
        if let Some(s) = self.lock().get_mut(&ip) {
            s.verified_at = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> Budget {
        Budget {
            max_requests: 8,
            max_body_bytes_total: 8 * 1024,
            per_source: 3,
            failure_burst: 2.0,
            failure_rate: 0.0,
            trusted_for: Duration::from_secs(60),
            retry_after_secs: 1,
        }
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
    }

    #[test]
    fn unknown_sources_share_half_and_trusted_ones_keep_the_rest() {
        let a = Admission::new(budget());
        // Two unknown sources take the unknown half (4 slots) between them.
        let held: Vec<_> = [1, 1, 1, 2]
            .iter()
            .map(|n| a.admit(ip(*n), 100).unwrap())
            .collect();
        assert!(matches!(
            a.admit(ip(1), 100),
            Err(IngestError::SourceBusy { .. })
        ));
        assert!(matches!(
            a.admit(ip(3), 100),
            Err(IngestError::Overloaded { .. })
        ));
        // A source with a verified request behind it still gets in, up to the whole budget.
        let first = a.admit(ip(9), 100);
        assert!(first.is_err(), "unknown at first: the unknown half is full");
        {
            // Verified once (e.g. before the flood): trusted from then on.
            a.lock().get_mut(&ip(9)).unwrap().verified_at = Some(Instant::now());
        }
        let trusted: Vec<_> = (0..4).map(|_| a.admit(ip(9), 100).unwrap()).collect();
        assert!(trusted.iter().all(|t| t.standing == Standing::Trusted));
        assert!(matches!(
            a.admit(ip(9), 100),
            Err(IngestError::Overloaded { .. })
        ));
        drop(held);
        drop(trusted);
        assert!(a.admit(ip(3), 100).is_ok(), "everything was given back");
    }

    #[test]
    fn body_memory_is_budgeted_and_failures_shut_a_source_out() {
        let a = Admission::new(budget());
        let big = a.admit(ip(1), 4 * 1024).unwrap();
        assert!(matches!(
            a.admit(ip(2), 1),
            Err(IngestError::MemoryBudget { .. })
        ));
        drop(big);
        a.failed(ip(1));
        a.failed(ip(1));
        assert!(matches!(
            a.admit(ip(1), 1),
            Err(IngestError::SourceRejected { .. })
        ));
        assert!(a.admit(ip(2), 1).is_ok(), "other sources are not affected");
    }

    #[test]
    fn a_spray_across_many_ipv6_addresses_never_forgets_a_trusted_provider() {
        let a = Admission::new(budget());
        let provider = IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]);
        drop(a.admit(provider, 100).unwrap());
        a.verified(provider);
        // More one-off addresses from one /64 than the table holds, each sending one request.
        for n in 0..(MAX_SOURCES as u32 + 10) {
            let sprayed = IpAddr::from([0x2001, 0xdb8, 0xbad, 0, 0, 0, (n >> 16) as u16, n as u16]);
            drop(a.admit(sprayed, 100).unwrap());
            a.failed(sprayed);
        }
        assert!(a.lock().len() <= MAX_SOURCES, "the table stays bounded");
        let genuine = a.admit(provider, 100).unwrap();
        assert_eq!(
            genuine.standing,
            Standing::Trusted,
            "still trusted after the spray"
        );
    }
}
