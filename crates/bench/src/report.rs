//! The report: what a load result and the machine look like in the JSON, the medians of
//! interleaved rounds, and the printed table. Not the measurements themselves (one module each).

use serde_json::{json, Value};

use crate::durable;
use crate::loadgen::LoadResult;

pub fn median_f64(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The run with the median request rate.
pub fn median(mut runs: Vec<LoadResult>) -> LoadResult {
    runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    runs.swap_remove(runs.len() / 2)
}

/// The run with the median p99 latency.
pub fn median_p99(mut runs: Vec<LoadResult>) -> LoadResult {
    runs.sort_by(|a, b| a.percentile_ms(0.99).total_cmp(&b.percentile_ms(0.99)));
    runs.swap_remove(runs.len() / 2)
}

pub fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    json!({"cpus": std::thread::available_parallelism().map_or(0, |n| n.get()), "cpu_model": model})
}

fn f(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.is_nan() => "n/a".into(),
        Some(x) if x >= 100.0 => format!("{:.0}", x),
        Some(x) => format!("{x:.2}"),
        None if v.is_null() => "—".into(),
        None => v.to_string(),
    }
}

/// A load result as the JSON report shows it.
pub fn http(r: &LoadResult) -> Value {
    let [server, nats, generator] = r.cpu_us_per_request();
    json!({"req_per_s": r.rate().round(), "p50_ms": r.percentile_ms(0.5), "p99_ms": r.percentile_ms(0.99), "ok": r.ok, "failed": r.failed, "generator_cores": r.generator_cores(), "spent_all_requests": r.exhausted,
        "cpu_us_per_request": {"server": server, "nats_server": nats, "generator": generator}})
}

pub fn print_table(report: &Value) {
    let r = &report["results"];
    let i = &r["ingest"];
    let w = &r["worker"];
    let e = &r["end_to_end"];
    println!();
    println!(
        "hookline-bench {} — {} CPUs ({}){}",
        report["date"].as_str().unwrap_or(""),
        report["machine"]["cpus"],
        report["machine"]["cpu_model"].as_str().unwrap_or(""),
        if report["smoke"] == true {
            " — SMOKE, not a measurement"
        } else {
            ""
        }
    );
    println!("| measurement | value | ceiling / reference (same run) | ratio | target |");
    println!("|---|---|---|---|---|");
    let row = |v: &Value| {
        format!(
            "{} req/s, p50 {} ms, p99 {} ms",
            f(&v["req_per_s"]),
            f(&v["p50_ms"]),
            f(&v["p99_ms"])
        )
    };
    for (name, v) in r["verify"].as_object().into_iter().flatten() {
        let (reference, ratio) = match v["dalek_verify_us"].as_f64() {
            Some(d) => (
                format!("ed25519-dalek `verify` {d:.2} µs"),
                f(&json!(v["us_per_verify"].as_f64().unwrap_or(0.0) / d)),
            ),
            None => (String::new(), String::new()),
        };
        println!(
            "| {name}: verify one signature ({}) | {} µs | {reference} | {ratio} | |",
            v["scheme"].as_str().unwrap_or(""),
            f(&v["us_per_verify"])
        );
    }
    let mut generator = 0.0f64;
    for (name, p) in i["providers"].as_object().into_iter().flatten() {
        let scheme = p["scheme"].as_str().unwrap_or("");
        for k in [
            "bare_endpoint",
            "publish_endpoint",
            "ingest_saturated",
            "publish_endpoint_open",
            "ingest_open",
        ] {
            generator = generator.max(p[k]["generator_cores"].as_f64().unwrap_or(0.0));
        }
        println!(
            "| **{name}** ({scheme}): bare axum endpoint | {} | | | |",
            row(&p["bare_endpoint"])
        );
        println!(
            "| {name}: minimal publish endpoint (PubAck) | {} | | | |",
            row(&p["publish_endpoint"])
        );
        println!(
            "| {name}: ingest, saturated (verify + publish + PubAck) | {}, generator {} core | publish endpoint | {} | ≥ 0.90 |",
            row(&p["ingest_saturated"]),
            f(&p["ingest_saturated"]["generator_cores"]),
            f(&p["ratio_to_publish_endpoint"])
        );
        println!(
            "| | | bare endpoint | {} | |",
            f(&p["ratio_to_bare_endpoint"])
        );
        let cpu = |k: &str| {
            let c = &p[k]["cpu_us_per_request"];
            format!(
                "server {} + nats-server {} + generator {}",
                f(&c["server"]),
                f(&c["nats_server"]),
                f(&c["generator"])
            )
        };
        println!(
            "| {name}: CPU µs per request, saturated | ingest: {} | publish endpoint: {} | | |",
            cpu("ingest_saturated"),
            cpu("publish_endpoint")
        );
        println!(
            "| {name}: ingest at {} req/s (open loop) | {} | publish endpoint at that rate: p99 {} ms | p99 × {} | p99 ≤ 1.2 × |",
            f(&p["open_rate"]),
            row(&p["ingest_open"]),
            f(&p["publish_endpoint_open"]["p99_ms"]),
            f(&p["open_p99_ratio"])
        );
    }
    println!(
        "| load generator (one thread, pre-signed requests) | at most {} of one core in any HTTP run | | | < 1 (idle CPU left) |",
        f(&json!(generator))
    );
    durable::print_rows(&r["durable_acks"], f);
    let fl = &r["flood"];
    if fl.is_object() {
        println!(
            "| signed webhooks, no flood (closed loop, 16 connections) | {} | | | |",
            row(&fl["signed_without_flood"])
        );
        println!(
            "| signed webhooks through an unsigned flood ({} flood requests) | {}, {} failed | without the flood | {} (p99 × {}) | no failures, p99 < 2000 ms |",
            f(&fl["flood_requests"]),
            row(&fl["signed_with_flood"]),
            f(&fl["signed_with_flood"]["failed"]),
            f(&fl["throughput_ratio"]),
            f(&fl["p99_ratio"])
        );
    }
    println!(
        "| broker: raw publish, 4096 PubAcks in flight | {} msg/s | | | |",
        f(&r["broker"]["publish_msg_per_s"])
    );
    println!("| 1 worker into PostgreSQL | {} events/s | consume + bulk UPDATE {} | {} | ≥ 10,000; ≥ 0.40 |", f(&w["workers_1"]["events_per_s"]), f(&w["raw_ceiling_events_per_s"]), f(&w["ratio_to_raw"]));
    println!(
        "| | | one UPDATE per event {} | {} | ≥ 10 |",
        f(&w["naive_events_per_s"]),
        f(&w["ratio_to_naive"])
    );
    println!(
        "| 2 workers into PostgreSQL | {} events/s | | | ≥ 20,000 |",
        f(&w["workers_2"]["events_per_s"])
    );
    println!(
        "| 1 worker, the change feed on (outbox + relay) | {} events/s | the feed off {} | {} | ≥ 0.85 |",
        f(&w["workers_1"]["events_per_s"]),
        f(&w["workers_1_feed_off"]["events_per_s"]),
        f(&w["feed_on_to_off"])
    );
    println!(
        "| 1 worker, the outbox written but not relayed | {} events/s | the feed off | {} | |",
        f(&w["workers_1_outbox_no_relay"]["events_per_s"]),
        f(&w["outbox_no_relay_to_off"])
    );
    let l = &r["lifecycle"];
    if l.is_object() {
        println!(
            "| 1 worker, event log holding {} rows over {} days ({} bytes) | {} events/s | empty log, the faster of {} (before) and {} (after) | {} | ≥ 0.90 |",
            f(&l["log_rows"]),
            f(&l["log_days"]),
            f(&l["log_bytes"]),
            f(&l["full_log_events_per_s"]),
            f(&l["empty_log_before_events_per_s"]),
            f(&l["empty_log_after_events_per_s"]),
            f(&l["ratio_full_to_empty"])
        );
        println!(
            "| register {} recipients in one transaction, half with an early event, on that log | {} ms | empty log, the faster of {} and {} ms | {} | ≥ 0.90 |",
            f(&l["registered"]),
            f(&l["registration_full_log_ms"]),
            f(&l["registration_empty_log_before_ms"]),
            f(&l["registration_empty_log_after_ms"]),
            f(&l["registration_ratio_empty_to_full"])
        );
        println!(
            "| drop one day's partition ({} rows) while a worker writes | {} ms; longest worker stall {} ms | | | stall ≤ 1000 ms |",
            f(&l["drop_rows"]),
            f(&l["drop_partition_ms"]),
            f(&l["max_worker_stall_ms"])
        );
    }
    println!(
        "| end-to-end lag at {} events/s | p50 {} ms, p99 {} ms | | | p99 < 2000 ms |",
        f(&e["rate"]),
        f(&e["lag_p50_ms"]),
        f(&e["lag_p99_ms"])
    );
    println!(
        "| change feed lag at {} events/s (commit to PubAck) | p50 {} ms, p99 {} ms; {} changes | | | |",
        f(&e["rate"]),
        f(&e["feed_lag_p50_ms"]),
        f(&e["feed_lag_p99_ms"]),
        f(&e["changes_on_the_feed"])
    );
    println!(
        "| peak RSS | ingest {} MiB, worker {} MiB | | | < 50 MiB |",
        r["rss"]["ingest_peak_kib"].as_u64().unwrap_or(0) / 1024,
        r["rss"]["worker_peak_kib"].as_u64().unwrap_or(0) / 1024
    );
}
