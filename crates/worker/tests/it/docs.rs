//! The operations page tells the truth about metrics and alerts: every metric ingest and the
//! worker export is in its metrics table with the labels it has, every name in the table is
//! exported, and its alerts table lists exactly the alerts of `deploy/prometheus/alerts.yml`.

use std::collections::{BTreeMap, BTreeSet};

use hookline_testkit::workspace_root;

const PAGE: &str = "docs/operations.md";

fn page() -> String {
    std::fs::read_to_string(workspace_root().join(PAGE)).unwrap()
}

/// Every `webhook_*` metric the binaries export (ingest, worker, `hookline deliver`), with the label names its series carry
/// (histograms' `le` aside).
fn exported() -> BTreeMap<String, BTreeSet<String>> {
    let providers = ["telnyx", "resend"];
    let ingest = hookline_ingest::metrics::IngestMetrics::new(&providers);
    // Series made on first use (the rest are created at zero).
    ingest
        .response_duration
        .with_label_values(&["telnyx", "200"])
        .observe(0.1);
    ingest
        .queued
        .with_label_values(&["telnyx", "message.sent", "false"])
        .inc();
    let outbound = hookline_ops::outbound::OutboundMetrics::default();
    outbound.attempts.with_label_values(&["200"]).inc();
    let text = ingest.render()
        + &hookline_worker::metrics::WorkerMetrics::new(&providers).render()
        + &hookline_runtime::metrics_text(&outbound.registry);
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            found.entry(name.to_owned()).or_default();
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, _) = line.split_once(' ').unwrap();
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| found.contains_key(*b)))
            .unwrap_or(name);
        let set = found.entry(base.to_owned()).or_default();
        for pair in labels
            .trim_end_matches('}')
            .split(',')
            .filter(|p| !p.is_empty())
        {
            let key = pair.split('=').next().unwrap();
            if key != "le" {
                set.insert(key.to_owned());
            }
        }
    }
    found.retain(|name, _| name.starts_with("webhook_"));
    found
}

/// The metrics table: each row's names (first column) and labels (third).
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let mut rows = BTreeMap::new();
    for line in page().lines().filter(|l| l.starts_with("| `webhook_")) {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        let labels: BTreeSet<String> = cols[3]
            .split(',')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        for name in cols[1].split(',') {
            rows.insert(name.trim().trim_matches('`').to_owned(), labels.clone());
        }
    }
    rows
}

#[test]
fn every_metric_is_documented_with_its_labels_and_every_documented_one_exists() {
    let (exported, documented) = (exported(), documented());
    let names = |m: &BTreeMap<String, BTreeSet<String>>| m.keys().cloned().collect::<BTreeSet<_>>();
    let undocumented: Vec<_> = names(&exported)
        .difference(&names(&documented))
        .cloned()
        .collect();
    let missing: Vec<_> = names(&documented)
        .difference(&names(&exported))
        .cloned()
        .collect();
    assert!(
        undocumented.is_empty(),
        "exported but not in {PAGE}: {undocumented:?}"
    );
    assert!(
        missing.is_empty(),
        "in {PAGE} but not exported: {missing:?}"
    );
    for (name, labels) in &exported {
        // A labelled metric with no series yet shows no labels: only compare what is seen.
        if !labels.is_empty() {
            assert_eq!(&documented[name], labels, "{name}'s labels in {PAGE}");
        }
    }
}

#[test]
fn the_alerts_table_lists_exactly_the_shipped_alerts() {
    let rules =
        std::fs::read_to_string(workspace_root().join("deploy/prometheus/alerts.yml")).unwrap();
    let shipped: BTreeSet<String> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(str::to_owned)
        .collect();
    let listed: BTreeSet<String> = page()
        .lines()
        .filter_map(|l| l.strip_prefix("| `Webhook"))
        .map(|l| format!("Webhook{}", l.split('`').next().unwrap()))
        .collect();
    assert_eq!(shipped, listed, "{PAGE}'s alerts table against alerts.yml");
}

/// Every `Hookline-*` header the docs name is one hookline writes (`headers.rs`, its one home),
/// and every one it writes is documented.
#[test]
fn every_header_the_docs_name_is_written_and_every_written_one_documented() {
    let root = workspace_root();
    let mut docs = std::fs::read_to_string(root.join("README.md")).unwrap();
    for page in std::fs::read_dir(root.join("docs")).unwrap() {
        docs += &std::fs::read_to_string(page.unwrap().path()).unwrap();
    }
    let code = std::fs::read_to_string(root.join("crates/jetstream/src/headers.rs")).unwrap();
    let names = |text: &str, quoted: bool| -> BTreeSet<String> {
        text.match_indices("Hookline-")
            .map(|(i, _)| {
                text[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect::<String>()
            })
            .filter(|n| !n.ends_with('-') || !quoted)
            .map(|n| n.trim_end_matches('-').to_owned())
            .collect()
    };
    let (written, named) = (names(&code, true), names(&docs, false));
    // `Hookline-Dlq-` is the prefix of the dead-letter headers: `-Detail` etc. name them.
    // (And `Hookline-*` is all of them.)
    let named: BTreeSet<String> = named
        .into_iter()
        .filter(|n| n != "Hookline-Dlq" && n != "Hookline")
        .collect();
    let unknown: Vec<_> = named.difference(&written).collect();
    assert!(
        unknown.is_empty(),
        "headers the docs name that hookline never writes: {unknown:?}"
    );
    let documented = |h: &String| {
        named.contains(h) || docs.contains(&format!("`-{}`", h.trim_start_matches("Hookline-Dlq-")))
    };
    let undocumented: Vec<_> = written
        .iter()
        .filter(|h| *h != "Hookline-Dlq" && !documented(h))
        .collect();
    assert!(
        undocumented.is_empty(),
        "headers hookline writes that the docs never name: {undocumented:?}"
    );
}

/// Every link between the README and the docs pages reaches a page that exists and, with an
/// `#anchor`, a heading of that page (GitHub's slugs: lower case, spaces to `-`, punctuation
/// dropped).
#[test]
fn every_link_between_the_pages_reaches_its_heading() {
    let root = workspace_root();
    let slug = |heading: &str| -> String {
        heading
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect()
    };
    let anchors = |path: &std::path::Path| -> BTreeSet<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with('#'))
            .map(|l| slug(l.trim_start_matches('#')))
            .collect()
    };
    let mut pages = vec![
        root.join("README.md"),
        root.join("TESTS.md"),
        root.join("CHANGELOG.md"),
    ];
    for page in std::fs::read_dir(root.join("docs")).unwrap() {
        pages.push(page.unwrap().path());
    }
    let mut broken = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for (i, _) in text.match_indices("](") {
            let target: String = text[i + 2..].chars().take_while(|c| *c != ')').collect();
            // Links to pages and headings only (not URLs, not `[s]B + [k](−A)` in a formula).
            if target.starts_with("http") || !(target.contains(".md") || target.starts_with('#')) {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let path = if file.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(file)
            };
            if !path.exists() {
                broken.push(format!("{}: {target} (no such file)", page.display()));
            } else if !anchor.is_empty()
                && path.extension().is_some_and(|e| e == "md")
                && !anchors(&path).contains(anchor)
            {
                broken.push(format!("{}: {target} (no such heading)", page.display()));
            }
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

/// Every worker reports the same cluster-wide figures (the consumer's counts, the oldest
/// unstored event's age), so every shipped query of them takes `max()`: a `sum()` over workers
/// would count the backlog once per worker.
#[test]
fn cluster_wide_gauges_are_read_with_max_everywhere() {
    let root = workspace_root();
    let shipped = [
        "deploy/prometheus/alerts.yml",
        "deploy/kubernetes/optional/prometheus-rule.yaml",
        "grafana/dashboards/hookline.json",
    ];
    for file in shipped {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for gauge in [
            "webhook_queue_depth",
            "webhook_ack_pending",
            "webhook_processing_lag_seconds",
        ] {
            for (i, _) in text.match_indices(gauge) {
                assert!(
                    text[..i].ends_with("max("),
                    "{file}: {gauge} read without max() at byte {i}"
                );
            }
        }
    }
}
