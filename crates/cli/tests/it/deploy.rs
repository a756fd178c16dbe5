//! The deployment files are valid and agree with the binaries: `docker-compose config` accepts the
//! compose file, `kubernetes-validate --strict` the manifests, `nats-server -t` the cluster config;
//! every environment variable they set is one the binary reads, and every probe and scrape port is
//! the one the binary listens on.

use std::collections::BTreeSet;
use std::process::Command;

use clap::CommandFactory;
use hookline_testkit::workspace_root;
use serde_yaml::Value;

/// Environment variables a binary reads: its clap `env` names, plus `RUST_LOG` (log filter).
fn env_names(binary: &str) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = ["RUST_LOG".to_owned()].into();
    let from = |cmd: clap::Command| -> Vec<String> {
        cmd.get_arguments()
            .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
            .collect()
    };
    match binary {
        "hookline-ingest" => names.extend(from(hookline_ingest::IngestConfig::command())),
        "hookline-worker" => names.extend(from(hookline_worker::WorkerConfig::command())),
        "hookline" => {
            for sub in ["migrate", "streams", "probe"] {
                let out = Command::new(env!("CARGO_BIN_EXE_hookline"))
                    .args([sub, "--help"])
                    .output()
                    .unwrap();
                let help = String::from_utf8_lossy(&out.stdout).into_owned();
                names.extend(
                    help.split("[env: ")
                        .skip(1)
                        .map(|r| r.split(['=', ']']).next().unwrap().to_owned()),
                );
            }
        }
        other => panic!("unknown binary {other}"),
    }
    names
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap()
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/test.sh installs it)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn compose_file_is_valid_and_matches_the_binaries() {
    let root = workspace_root();
    // The resolved form: anchors merged, variables substituted.
    let resolved = run_ok(
        Command::new("docker-compose")
            .args(["-f", "docker-compose.yml", "config"])
            .current_dir(&root)
            .env("TELNYX_PUBLIC_KEY", "test-key")
            .env("RESEND_WEBHOOK_SECRET", "whsec_dGVzdA=="),
    );
    let doc: Value = serde_yaml::from_str(&resolved).unwrap();
    let services = doc["services"].as_mapping().unwrap();
    for want in [
        "nats",
        "postgres",
        "migrate",
        "streams",
        "ingest",
        "worker",
        "prometheus",
        "grafana",
    ] {
        assert!(services.contains_key(want), "service {want}");
    }
    // NATS: a pinned image, with the config file that makes every PubAck follow an fsync.
    let nats = &services["nats"];
    assert_pinned_nats_image(nats["image"].as_str().unwrap());
    let nats_args: Vec<&str> = nats["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let conf_at = nats_args.iter().position(|a| *a == "-c").expect("nats -c");
    let mounts = serde_yaml::to_string(&nats["volumes"]).unwrap();
    assert!(
        mounts.contains("deploy/nats/jetstream-durable.conf")
            && mounts.contains(nats_args[conf_at + 1]),
        "nats mounts deploy/nats/jetstream-durable.conf where -c reads it: {mounts}"
    );
    let durable = std::fs::read_to_string(root.join("deploy/nats/jetstream-durable.conf")).unwrap();
    assert!(
        durable.lines().any(|l| l.trim() == "sync_interval: always"),
        "deploy/nats/jetstream-durable.conf: sync_interval: always"
    );
    let mut checked = 0;
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        if svc["image"].as_str() != Some("hookline:latest") {
            continue;
        }
        let command: Vec<&str> = svc["command"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let accepted = env_names(command[0]);
        for key in svc["environment"].as_mapping().unwrap().keys() {
            let key = key.as_str().unwrap();
            assert!(
                accepted.contains(key),
                "{name}: {} does not read {key}",
                command[0]
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 4, "migrate, streams, ingest, worker");

    let ingest = &services["ingest"];
    let listen = port_of(ingest["environment"]["HOOKLINE_LISTEN"].as_str().unwrap());
    assert_eq!(
        ingest["ports"][0]["target"].as_u64(),
        Some(u64::from(listen))
    );
    let probe = ingest["healthcheck"]["test"][3].as_str().unwrap();
    assert_eq!(port_of(probe.trim_end_matches("/readyz")), listen);
    let worker = &services["worker"];
    let wport = port_of(
        worker["environment"]["HOOKLINE_WORKER_LISTEN"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(
        port_of(
            worker["healthcheck"]["test"][3]
                .as_str()
                .unwrap()
                .trim_end_matches("/healthz")
        ),
        wport
    );
    assert!(
        worker.get("container_name").is_none() && worker.get("ports").is_none(),
        "worker must scale"
    );
    let prom: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("deploy/prometheus/prometheus-compose.yml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        prom["scrape_configs"][1]["dns_sd_configs"][0]["port"].as_u64(),
        Some(u64::from(wport))
    );
    assert_eq!(
        port_of(
            prom["scrape_configs"][0]["static_configs"][0]["targets"][0]
                .as_str()
                .unwrap()
        ),
        listen
    );
    run_ok(
        Command::new("promtool")
            .args(["check", "config", "prometheus-compose.yml"])
            .current_dir(root.join("deploy/prometheus")),
    );
}

#[test]
fn kubernetes_manifests_are_valid_and_match_the_binaries() {
    let root = workspace_root();
    let deploy = root.join("deploy");
    let kustomization: Value =
        serde_yaml::from_str(&std::fs::read_to_string(deploy.join("kustomization.yaml")).unwrap())
            .unwrap();
    let files: Vec<String> = kustomization["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let validator = root.join(".venv/bin/kubernetes-validate");
    let mut cmd = Command::new(&validator);
    cmd.arg("--strict")
        .args(files.iter().map(|f| deploy.join(f)));
    run_ok(&mut cmd);

    let docs: Vec<Value> = files
        .iter()
        .flat_map(|f| yaml_docs(&deploy.join(f)))
        .collect();
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind}/{name}"))
            .clone()
    };
    let keys = |d: &Value, field: &str| -> Vec<String> {
        d[field]
            .as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect()
    };
    let config_keys = keys(&find("ConfigMap", "hookline-config"), "data");
    let secret_keys = keys(&find("Secret", "hookline-secrets"), "stringData");
    let env_of = |c: &Value| -> Vec<String> {
        c["env"]
            .as_sequence()
            .map(|s| {
                s.iter()
                    .map(|e| e["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut containers = 0;
    for deployment in ["hookline-ingest", "hookline-worker"] {
        let d = find("Deployment", deployment);
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        let binary = c["command"][0].as_str().unwrap();
        let accepted = env_names(binary);
        let mut used = env_of(c);
        used.extend(config_keys.iter().cloned());
        if binary == "hookline-ingest" {
            used.extend(secret_keys.iter().cloned());
        }
        for key in &used {
            assert!(
                accepted.contains(key),
                "{deployment}: {binary} does not read {key}"
            );
        }
        let listen_var = if binary == "hookline-ingest" {
            "HOOKLINE_LISTEN"
        } else {
            "HOOKLINE_WORKER_LISTEN"
        };
        let listen = c["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|e| e["name"] == listen_var)
            .unwrap()["value"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            c["ports"][0]["containerPort"].as_u64(),
            Some(u64::from(port_of(&listen))),
            "{deployment}"
        );
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(
            find("HorizontalPodAutoscaler", deployment)["spec"]["scaleTargetRef"]["name"],
            deployment
        );
        find("PodDisruptionBudget", deployment);
        containers += 1;
    }
    assert_eq!(containers, 2);
    let nats = find("StatefulSet", "nats");
    assert_eq!(nats["spec"]["replicas"].as_u64(), Some(3));
    assert_eq!(
        find("ConfigMap", "hookline-config")["data"]["HOOKLINE_STREAM_REPLICAS"],
        "3"
    );
    assert_eq!(
        find("ConfigMap", "hookline-config")["data"]["HOOKLINE_STREAMS"],
        "check",
        "the migrate Job owns the streams"
    );

    // Only workers and the migrate Job hold the database URL.
    let ingest = find("Deployment", "hookline-ingest");
    assert!(!serde_yaml::to_string(&ingest)
        .unwrap()
        .contains("hookline-database"));
    assert!(!secret_keys.contains(&"DATABASE_URL".to_owned()));

    // Ingest drains before SIGTERM, and its grace period covers drain and shutdown deadline.
    let pod = &ingest["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let drain = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap();
    let deadline_ms: u64 = env_value(c, "HOOKLINE_SHUTDOWN_DEADLINE_MS")
        .parse()
        .unwrap();
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() > drain + deadline_ms / 1000);

    // Workers at their most never hold more connections than PostgreSQL's default 100 allows
    // with room for the migrate Job and operators.
    let worker = find("Deployment", "hookline-worker");
    let pool: u64 = env_value(
        &worker["spec"]["template"]["spec"]["containers"][0],
        "HOOKLINE_DB_POOL_SIZE",
    )
    .parse()
    .unwrap();
    let max_workers = find("HorizontalPodAutoscaler", "hookline-worker")["spec"]["maxReplicas"]
        .as_u64()
        .unwrap();
    assert!(max_workers * pool <= 90, "{max_workers} × {pool}");

    // The migrate Job is named by release, so each release's runs once.
    let version = env!("CARGO_PKG_VERSION");
    let job = docs
        .iter()
        .find(|d| d["kind"] == "Job")
        .expect("the migrate Job");
    assert_eq!(
        job["metadata"]["name"].as_str().unwrap(),
        format!("hookline-migrate-{}", version.replace('.', "-"))
    );
    let job_pod = &job["spec"]["template"]["spec"];
    let accepted = env_names("hookline");
    for c in job_pod["initContainers"]
        .as_sequence()
        .unwrap()
        .iter()
        .chain(job_pod["containers"].as_sequence().unwrap())
    {
        assert_eq!(c["image"].as_str().unwrap(), format!("hookline:{version}"));
        // Its own settings; the shared ConfigMap also carries the services' settings.
        for key in env_of(c) {
            assert!(
                accepted.contains(&key),
                "the Job: hookline does not read {key}"
            );
        }
    }

    // Pod Security "restricted", every pod and container.
    let mut pods = 0;
    for d in &docs {
        let Some(pod) = d["spec"]["template"]["spec"].as_mapping() else {
            continue;
        };
        let pod = Value::Mapping(pod.clone());
        let what = d["metadata"]["name"].as_str().unwrap();
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{what}"
        );
        let all = pod["containers"]
            .as_sequence()
            .unwrap()
            .iter()
            .chain(pod["initContainers"].as_sequence().into_iter().flatten());
        for c in all {
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
            assert_eq!(sc["capabilities"]["drop"][0], "ALL", "{what}");
        }
        pods += 1;
    }
    assert_eq!(pods, 4, "ingest, worker, NATS, the migrate Job");

    // Who reaches NATS and PostgreSQL: the labels the NetworkPolicies select on.
    let label = |d: &Value, key: &str| d["spec"]["template"]["metadata"]["labels"][key] == "true";
    for d in [&ingest, &worker, job] {
        assert!(
            label(d, "hookline.io/nats-client"),
            "{:?}",
            d["metadata"]["name"]
        );
    }
    assert!(
        label(&worker, "hookline.io/database-client") && label(job, "hookline.io/database-client")
    );
    assert!(!label(&ingest, "hookline.io/database-client"));
    let ingest_egress = serde_yaml::to_string(&find("NetworkPolicy", "ingest-egress")).unwrap();
    assert!(
        !ingest_egress.contains("5432"),
        "ingest never reaches PostgreSQL"
    );
    let nats_policy = find("NetworkPolicy", "nats-clients-only");
    assert_eq!(
        nats_policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
            ["hookline.io/nats-client"],
        "true"
    );

    // The NATS config parses as nats-server sees it, with the accounts file and the passwords
    // the StatefulSet mounts and injects.
    let generated = &kustomization["configMapGenerator"][0];
    assert_eq!(generated["name"], "nats-accounts");
    let accounts = deploy.join(generated["files"][0].as_str().unwrap());
    let volumes = serde_yaml::to_string(&nats["spec"]["template"]["spec"]["volumes"]).unwrap();
    assert!(volumes.contains("nats-accounts") && volumes.contains("nats-config"));
    let conf = find("ConfigMap", "nats-config")["data"]["nats.conf"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(conf.contains("include ./hookline-accounts.conf"));
    // Durable acks: every PubAck follows an fsync, on a pinned image, one server per node.
    assert!(
        conf.lines().any(|l| l.trim() == "sync_interval: always"),
        "nats.conf: sync_interval: always"
    );
    let nats_pod = &nats["spec"]["template"]["spec"];
    assert_pinned_nats_image(nats_pod["containers"][0]["image"].as_str().unwrap());
    let spread = nats_pod["topologySpreadConstraints"]
        .as_sequence()
        .expect("NATS topologySpreadConstraints");
    assert!(
        spread
            .iter()
            .any(|c| c["topologyKey"] == "kubernetes.io/hostname"
                && c["whenUnsatisfiable"] == "DoNotSchedule"
                && c["labelSelector"]["matchLabels"]["app"] == "nats"),
        "NATS servers spread over nodes: {spread:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("nats.conf"), conf).unwrap();
    std::fs::copy(&accounts, dir.path().join("hookline-accounts.conf")).unwrap();
    let nats_server = std::env::var("HOOKLINE_NATS_SERVER")
        .map(|p| root.join(p))
        .unwrap_or_else(|_| root.join(".venv/bin/nats-server"));
    let users = keys(&find("Secret", "hookline-nats-users"), "stringData");
    let mut cmd = Command::new(nats_server);
    cmd.arg("-t")
        .arg("-c")
        .arg(dir.path().join("nats.conf"))
        .env("POD_NAME", "nats-0");
    for user in &users {
        cmd.env(user, "test-password");
    }
    run_ok(&mut cmd);

    // Optional manifests (CRDs, so no schema here): they name what exists.
    let optional = deploy.join("kubernetes/optional");
    let keda = &yaml_docs(&optional.join("keda-worker-scaler.yaml"))[0];
    assert_eq!(keda["spec"]["scaleTargetRef"]["name"], "hookline-worker");
    let trigger = &keda["spec"]["triggers"][0];
    assert_eq!(trigger["type"], "nats-jetstream");
    assert_eq!(trigger["metadata"]["stream"], "WEBHOOKS");
    assert_eq!(trigger["metadata"]["consumer"], "hookline-worker");
    assert_eq!(trigger["metadata"]["account"], "HOOKLINE");
    assert!(keda["spec"]["maxReplicaCount"].as_u64().unwrap() * pool <= 90);
    let rule = &yaml_docs(&optional.join("prometheus-rule.yaml"))[0];
    let alerts = &yaml_docs(&deploy.join("prometheus/alerts.yml"))[0];
    assert_eq!(
        rule["spec"]["groups"], alerts["groups"],
        "the PrometheusRule holds alerts.yml's rules"
    );
    let monitor = &yaml_docs(&optional.join("pod-monitor.yaml"))[0];
    assert_eq!(
        monitor["spec"]["jobLabel"], "app",
        "job names the alerts expect"
    );
}

/// A NATS image pinned to one release (`nats:2.12.15-alpine`; not `nats:2.12-alpine`, `nats:2` or
/// `nats:latest`), of 2.12 or later.
fn assert_pinned_nats_image(image: &str) {
    let tag = image
        .strip_prefix("nats:")
        .unwrap_or_else(|| panic!("{image}: not nats:TAG"));
    let version: Vec<u32> = tag
        .split(['-', '@'])
        .next()
        .unwrap()
        .split('.')
        .map(|n| {
            n.parse()
                .unwrap_or_else(|_| panic!("{image}: not a release tag"))
        })
        .collect();
    assert_eq!(version.len(), 3, "{image}: a floating tag");
    assert!(
        (version[0], version[1]) >= (2, 12),
        "{image}: older than 2.12"
    );
}

fn yaml_docs(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .collect()
}

fn env_value(container: &Value, name: &str) -> String {
    container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{name}"))["value"]
        .as_str()
        .unwrap()
        .to_owned()
}

use serde::Deserialize as _;
