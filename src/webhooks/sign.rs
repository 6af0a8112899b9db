//! Standard Webhooks 1.0 signing: `v1,` + base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}`
//! under the key a `whsec_` secret carries (base64 after the prefix).

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// The prefix of every secret.
pub const PREFIX: &str = "whsec_";

/// A fresh secret: `whsec_` + base64 of 24 random bytes (192 bits, as Svix issues them).
pub fn new_secret() -> SecretString {
    let mut key = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut key);
    format!("{PREFIX}{}", STANDARD.encode(key)).into()
}

/// The signature of one message under one secret (`v1,<base64>`); `None` for a secret that is
/// not `whsec_` + base64 (never one snapgate issued).
pub fn signature(secret: &SecretString, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = STANDARD
        .decode(secret.expose_secret().strip_prefix(PREFIX)?)
        .ok()?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The `webhook-signature` header: one signature per secret, space-separated (during a
/// rotation's grace period the new secret's and the old one's).
pub fn header(secrets: &[SecretString], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .filter_map(|s| signature(s, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of the Standard Webhooks reference implementations' test suites.
    #[test]
    fn signs_the_standard_webhooks_reference_example() {
        let secret = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let sig = signature(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(
            sig.as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }

    #[test]
    fn new_secrets_are_whsec_and_differ() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.expose_secret().starts_with("whsec_"));
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(signature(&a, "id", 1, b"{}").is_some());
    }

    #[test]
    fn a_rotated_endpoint_gets_both_signatures() {
        let (a, b) = (new_secret(), new_secret());
        let h = header(&[a.clone(), b.clone()], "id", 5, b"{}");
        let parts: Vec<&str> = h.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(Some(parts[0].to_owned()), signature(&a, "id", 5, b"{}"));
        assert_eq!(Some(parts[1].to_owned()), signature(&b, "id", 5, b"{}"));
    }
}
