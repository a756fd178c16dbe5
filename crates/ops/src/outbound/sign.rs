//! Standard Webhooks signatures (standardwebhooks.com): `webhook-signature` is one `v1,<base64>`
//! per secret, space-separated, each an HMAC-SHA256 keyed with the secret's bytes over
//! `{webhook-id}.{webhook-timestamp}.{body}`. A secret is `whsec_` and the base64 of its key.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A signing key, decoded from its `whsec_` form.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let b64 = s
            .trim()
            .strip_prefix("whsec_")
            .ok_or("a signing secret starts with whsec_ (whsec_ and the base64 of its key)")?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("the part after whsec_ is not base64: {e}"))?;
        if key.len() < 24 {
            return Err(format!(
                "the key is {} bytes; use at least 24 (`openssl rand -base64 32`)",
                key.len()
            ));
        }
        Ok(Self(key))
    }
}

/// The `webhook-signature` value: a signature for each secret, in order, space-separated
/// (during a rotation the receiver accepts either).
pub fn signature(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| {
            let mut mac = Hmac::<Sha256>::new_from_slice(&s.0).expect("HMAC takes any key length");
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
            format!("v1,{sig}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specifications_example_signs_as_published() {
        // The reference libraries' test vector.
        let secret: Secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
        let sig = signature(
            &[secret],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn every_secret_signs_and_bad_secrets_say_why() {
        let a: Secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
        let b: Secret = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
            .parse()
            .unwrap();
        let both = signature(&[a.clone(), b], "id", 1, b"{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0],
            signature(std::slice::from_ref(&a), "id", 1, b"{}")
        );
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
        assert!("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
            .parse::<Secret>()
            .unwrap_err()
            .contains("whsec_"));
        assert!("whsec_!!".parse::<Secret>().unwrap_err().contains("base64"));
        assert!("whsec_AAAA".parse::<Secret>().unwrap_err().contains("24"));
        assert_eq!(format!("{a:?}"), "Secret(***)");
    }
}
