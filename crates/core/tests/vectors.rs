//! Our verifiers and signers against vectors signed by independent implementations (the `svix`
//! Python library and PyNaCl; see testdata/README.md).

use hookline_core::providers::{Provider, Request, Resend, Telnyx};
use hookline_core::signature::{ed25519, svix::SvixSecret};
use serde_json::Value;

fn load(path: &str) -> Value {
    let full = format!("{}/../../testdata/{path}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&full).expect(&full)).unwrap()
}

fn headers(case: &Value) -> Vec<(String, String)> {
    case["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

fn verdict(r: Result<(), hookline_core::SignatureError>) -> &'static str {
    match r {
        Ok(()) => "ok",
        Err(e) => e.reason(),
    }
}

#[test]
fn resend_vectors_from_the_svix_library() {
    let v = load("resend/vectors.json");
    let secrets: Vec<SvixSecret> = v["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| SvixSecret::parse(s.as_str().unwrap()).unwrap())
        .collect();
    let now = v["now"].as_i64().unwrap();
    let resend = Resend::new(secrets.clone(), v["tolerance_secs"].as_u64().unwrap());
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let h = headers(case);
        let body = case["body"].as_str().unwrap().as_bytes();
        let got = verdict(resend.verify(&Request::new(&h, body), now));
        assert_eq!(
            got,
            case["expect"].as_str().unwrap(),
            "case {}",
            case["name"]
        );
    }
    // Our signer produces exactly the library's signature for the same inputs.
    let valid = &cases[0];
    let h = headers(valid);
    let ours = secrets[0].sign(
        "msg_2mHn6fW1",
        now,
        valid["body"].as_str().unwrap().as_bytes(),
    );
    assert_eq!(
        Some(ours.as_str()),
        hookline_core::Headers::get(&h, "svix-signature")
    );
}

#[test]
fn resend_rejects_rotated_out_secret() {
    let v = load("resend/vectors.json");
    let only_current = vec![SvixSecret::parse(v["secrets"][0].as_str().unwrap()).unwrap()];
    let resend = Resend::new(only_current, 300);
    let case = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "rotated_previous_secret")
        .unwrap();
    let h = headers(case);
    let r = resend.verify(
        &Request::new(&h, case["body"].as_str().unwrap().as_bytes()),
        v["now"].as_i64().unwrap(),
    );
    assert_eq!(verdict(r), "mismatch");
}

#[test]
fn telnyx_vectors_from_pynacl() {
    let v = load("telnyx/vectors.json");
    let key = ed25519::parse_public_key(v["public_key"].as_str().unwrap()).unwrap();
    let key_bytes = key.to_bytes();
    let now = v["now"].as_i64().unwrap();
    let telnyx = Telnyx::new(vec![key], v["tolerance_secs"].as_u64().unwrap());
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 8);
    for case in cases {
        let h = headers(case);
        let body = case["body"].as_str().unwrap().as_bytes();
        let got = verdict(telnyx.verify(&Request::new(&h, body), now));
        assert_eq!(
            got,
            case["expect"].as_str().unwrap(),
            "case {}",
            case["name"]
        );
    }
    let seed =
        ed25519::parse_signing_key(v["signing_seed_for_tests_only"].as_str().unwrap()).unwrap();
    assert_eq!(seed.verifying_key().to_bytes(), key_bytes);
    let valid = &cases[0];
    let ours = ed25519::sign(&seed, now, valid["body"].as_str().unwrap().as_bytes());
    assert_eq!(
        ours,
        valid["headers"]["telnyx-signature-ed25519"]
            .as_str()
            .unwrap()
    );
}

#[test]
fn vector_bodies_decode() {
    for (file, provider) in [
        ("resend/vectors.json", "resend"),
        ("telnyx/vectors.json", "telnyx"),
    ] {
        let v = load(file);
        for case in v["cases"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["expect"] == "ok")
        {
            let h = headers(case);
            let ev = hookline_core::Providers::decoders()
                .decode(provider, &h, case["body"].as_str().unwrap().as_bytes())
                .unwrap();
            assert!(ev.status.is_some(), "{}", case["name"]);
        }
    }
}

/// The two example sources in `examples/` and a templated one in `testdata/generic/` (SHA-512,
/// `{timestamp}`/`{header:…}` template, millisecond timestamps), against vectors signed by
/// Python's `hmac` module: verdicts, and the decoded fields of every valid case.
#[test]
fn generic_example_sources_verify_and_decode_independent_vectors() {
    use hookline_core::providers::{parse_sources, GenericSource};
    for (example, dir) in [
        ("github-style", "examples"),
        ("respondio-style", "examples"),
        ("templated", "testdata/generic"),
    ] {
        let toml_path = format!("{}/../../{dir}/{example}.toml", env!("CARGO_MANIFEST_DIR"));
        let config = parse_sources(&std::fs::read_to_string(&toml_path).unwrap()).unwrap();
        let v = load(&format!("generic/{example}.json"));
        let secret = v["secret"].as_str().unwrap().as_bytes().to_vec();
        let source = GenericSource::new(&config[0], vec![secret]).unwrap();
        let now = v["now"].as_i64().unwrap();
        let cases = v["cases"].as_array().unwrap();
        assert!(cases.len() >= 5, "{example}");
        for case in cases {
            let name = format!("{example}/{}", case["name"]);
            let h = headers(case);
            let body = case["body"].as_str().unwrap().as_bytes();
            assert_eq!(
                verdict(source.verify(&Request::new(&h, body), now)),
                case["expect"].as_str().unwrap(),
                "{name}"
            );
            let want = &case["decoded"];
            if want.is_null() {
                continue;
            }
            let ev = source.decode(&h, body).unwrap();
            assert_eq!(ev.provider, source.name(), "{name}");
            assert_eq!(ev.event_id, want["event_id"].as_str().unwrap(), "{name}");
            assert_eq!(
                ev.message_id,
                want["message_id"].as_str().unwrap(),
                "{name}"
            );
            assert_eq!(
                ev.status.map(|s| s.as_str()),
                want["status"].as_str(),
                "{name}"
            );
            assert_eq!(
                ev.engagement.map(|e| e.as_str()),
                want["engagement"].as_str(),
                "{name}"
            );
            assert_eq!(
                ev.error_code.as_deref(),
                want["error_code"].as_str(),
                "{name}"
            );
            assert_eq!(
                ev.error_description.as_deref(),
                want["error_description"].as_str(),
                "{name}"
            );
        }
    }
}

/// Signatures where Ed25519 verifiers disagree (small-order and mixed-order `R`, non-canonical
/// `s`, small-order and non-canonical keys), with libsodium's verdicts: ours must be the same.
#[test]
fn ed25519_edge_cases_get_libsodiums_verdicts() {
    let b64 = |v: &Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    };
    let v = load("ed25519/edge_cases.json");
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let key: [u8; 32] = b64(&case["public_key"]).try_into().unwrap();
        let sig: [u8; 64] = b64(&case["signature"]).try_into().unwrap();
        let message = case["message"].as_str().unwrap().as_bytes();
        let ours = match ed25519::PublicKey::from_bytes(key) {
            Ok(key) if key.verify(&[message], &sig) => "ok",
            _ => "rejected",
        };
        assert_eq!(ours, case["libsodium"], "case {}", case["name"]);
        if case["name"] == "identity_r" {
            // The case is a real disagreement: ed25519-dalek's plain `verify` accepts it.
            use ed25519_dalek::Verifier as _;
            let dalek = ed25519_dalek::VerifyingKey::from_bytes(&key).unwrap();
            assert!(dalek
                .verify(message, &ed25519_dalek::Signature::from_bytes(&sig))
                .is_ok());
        }
    }
}

/// On genuine signatures and every single-bit change of one, our verifier and ed25519-dalek's
/// `verify_strict` agree, over many keys and message lengths; the message split into parts
/// hashes as the whole.
#[test]
fn ed25519_agrees_with_dalek_verify_strict() {
    use ed25519_dalek::Signer as _;
    let mut flips = 0;
    for n in 0..24u8 {
        let signing =
            ed25519_dalek::SigningKey::from_bytes(&[n.wrapping_mul(37).wrapping_add(1); 32]);
        let ours = ed25519::PublicKey::from_bytes(signing.verifying_key().to_bytes()).unwrap();
        let message: Vec<u8> = (0..(n as usize * 53))
            .map(|i| (i * 7 + n as usize) as u8)
            .collect();
        let sig = signing.sign(&message).to_bytes();
        let (head, tail) = message.split_at(message.len() / 3);
        assert!(ours.verify(&[head, b"", tail], &sig));
        for bit in (0..512).step_by(7) {
            let mut bad = sig;
            bad[bit / 8] ^= 1 << (bit % 8);
            let strict = signing
                .verifying_key()
                .verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&bad))
                .is_ok();
            assert_eq!(ours.verify(&[&message], &bad), strict, "key {n}, bit {bit}");
            assert!(!strict);
            flips += 1;
        }
    }
    assert!(flips > 1000);
}

/// The providers whose vectors share one format (testdata/<name>/vectors.json, each made by its
/// folder's `make_vectors.py`): settings by variable, and per case the URL called, headers, body,
/// the verdict and, where given, the status (or engagement) the event decodes to.
#[test]
fn provider_vectors_from_independent_implementations() {
    use hookline_core::providers::{built_in, Values, RECEIVED_AT};
    for name in ["postmark", "twilio", "sendgrid", "mailgun", "ses"] {
        let v = load(&format!("{name}/vectors.json"));
        let b = built_in(name).unwrap();
        let mut values = Values::new();
        for (var, list) in v["settings"].as_object().unwrap() {
            let var: &'static str = Box::leak(var.clone().into_boxed_str());
            let list = list.as_array().unwrap();
            values.set_var(
                var,
                list.iter().map(|s| s.as_str().unwrap().into()).collect(),
            );
        }
        let now = v["now"].as_i64().unwrap();
        let provider = b
            .configure(&values, v["tolerance_secs"].as_u64().unwrap())
            .unwrap()
            .unwrap();
        let cases = v["cases"].as_array().unwrap();
        assert!(cases.len() >= 10, "{name}");
        for case in cases {
            let what = format!("{name} case {}", case["name"]);
            let mut h = headers(case);
            let body = case["body"].as_str().unwrap().as_bytes();
            let url = case["url"].as_str().unwrap();
            assert_eq!(
                verdict(verify_fetching(&*provider, &v, &h, body, url, now)),
                case["expect"].as_str().unwrap(),
                "{what}"
            );
            // What each event decodes to: `status` for a request of one event, `statuses`
            // for one the provider splits into several.
            let (parts, wants): (Vec<Vec<u8>>, Vec<&str>) =
                match (case["status"].as_str(), case["statuses"].as_array()) {
                    (Some(want), _) => (vec![body.to_vec()], vec![want]),
                    (None, Some(wants)) => (
                        provider.split(body).expect(&what),
                        wants.iter().map(|w| w.as_str().unwrap()).collect(),
                    ),
                    (None, None) => continue,
                };
            assert_eq!(parts.len(), wants.len(), "{what}");
            h.push((RECEIVED_AT.into(), (now * 1000).to_string()));
            for (part, want) in parts.iter().zip(wants) {
                let event = provider.decode(&h, part).expect(&what);
                let got = event
                    .status
                    .map(|s| s.as_str())
                    .or(event.engagement.map(|e| e.as_str()))
                    .unwrap_or("");
                assert_eq!(got, want, "{what}: {}", event.event_id);
                assert!(!event.unmapped, "{what}");
                let envelope = provider.envelope(&h, part);
                let id = Some(event.event_id.as_str());
                assert_eq!(envelope.event_id.as_deref(), id, "{what}");
            }
        }
        // The signer signs as the independent implementation does.
        for (var, value) in v["signing"].as_object().into_iter().flatten() {
            let var: &'static str = Box::leak(var.clone().into_boxed_str());
            values.set_var(var, vec![value.as_str().unwrap().into()]);
        }
        let signer = b.signer(&values).unwrap();
        let first = &cases[0];
        let body = first["body"].as_str().unwrap().as_bytes();
        let url = first["url"].as_str().unwrap();
        let (signed_body, ours) = signer.request(url, "", body, now);
        assert_eq!(
            verdict(verify_fetching(
                &*provider,
                &v,
                &ours,
                &signed_body,
                url,
                now
            )),
            "ok",
            "{name} signer"
        );
        let theirs = headers(first);
        // Equal bytes only from deterministic schemes: ECDSA signatures are randomized, a
        // Mailgun token and an SNS message id are random.
        let deterministic = !["sendgrid", "mailgun", "ses"].contains(&name);
        for (k, v) in ours.iter().filter(|_| deterministic) {
            if let Some((_, t)) = theirs.iter().find(|(tk, _)| tk.eq_ignore_ascii_case(k)) {
                assert_eq!(v, t, "{name} signer's {k}");
            }
        }
    }
}

/// Verifies as ingest does: the document the provider names (a signing certificate) is taken
/// from the vectors' `certificates`, as if fetched from its URL.
fn verify_fetching(
    provider: &dyn hookline_core::Provider,
    v: &Value,
    headers: &Vec<(String, String)>,
    body: &[u8],
    url: &str,
    now: i64,
) -> Result<(), hookline_core::SignatureError> {
    let bare = Request {
        headers,
        body,
        url,
        fetched: None,
    };
    let fetched = provider.fetch_url(&bare)?.map(|u| {
        v["certificates"][u.as_str()]
            .as_str()
            .expect(&u)
            .as_bytes()
            .to_vec()
    });
    provider.verify(
        &Request {
            fetched: fetched.as_deref(),
            ..bare
        },
        now,
    )
}
