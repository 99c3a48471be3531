//! Signed policy values: what `offpath policy push` puts in the fleet's policy bucket and
//! what a moderator accepts from it.
//!
//! nats-server checks a client's publish permission on a message's subject only, never on
//! the reply subject of its requests or on a consumer's delivery subject. Any role that may
//! send a JetStream API request or pull from a consumer can therefore make the server
//! publish on `$KV.offpath-policies.policies`, both to the moderators' subscription and
//! into the bucket's stream (seen from outside on nats-server 2.9.10 and 2.15 with the
//! reviewer, transport and moderator credentials). So the subject a value arrives on says
//! nothing about who wrote it: a moderator puts a value in force only when it is signed by a
//! key it was configured to trust (`--policy-signers`), and never when it was signed before
//! the newest value it has seen (a replayed old value cannot roll the fleet back).
//!
//! The value is the policy file's text behind one comment line, so it stays a readable TOML
//! file (`nats kv get` shows it):
//!
//! ```text
//! # offpath-policy-signature v1 <signer> <signed_at_ms> <signature>
//! <the policy file's text>
//! ```
//!
//! `signer` is an nkey operator public key (`O…`), `signature` the Ed25519 signature,
//! base64url without padding, of `offpath-policy-v1\n<signer>\n<signed_at_ms>\n<text>`. An
//! empty text is the operator's "no fleet policy" (`offpath policy clear`): moderators go
//! back to their `--policies` files.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::{KeyPair, KeyPairType};

/// What the first line of a signed value starts with.
pub const SIGNATURE_LINE: &str = "# offpath-policy-signature v1 ";
/// The domain separator in front of what is signed (a signature over a policy can never be
/// taken for a signature over anything else made with the same key).
const DOMAIN: &str = "offpath-policy-v1";

/// Why a bucket value is not put in force. [`Refusal::reason`] is the metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No signature line: written by something other than `offpath policy push` (a
    /// redirected reply, a hand-made `nats kv put`, a delete marker).
    #[error("the value is not signed")]
    Unsigned,
    /// A signature line that cannot be read.
    #[error("the signature line is malformed: {0}")]
    Malformed(&'static str),
    /// Signed by a key this moderator does not trust.
    #[error("signed by a key that is not among --policy-signers")]
    UntrustedSigner,
    /// The signature does not match the text.
    #[error("the signature does not match the value")]
    BadSignature,
    /// Validly signed, but earlier than the newest value seen: a replay of an old value.
    #[error("signed at {signed_at_ms}, before the newest value seen ({in_force_ms})")]
    Stale {
        /// When the refused value was signed.
        signed_at_ms: u64,
        /// When the value in force was signed.
        in_force_ms: u64,
    },
}

impl Refusal {
    /// The `reason` label of the refusal counter.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Unsigned => "unsigned",
            Refusal::Malformed(_) => "malformed",
            Refusal::UntrustedSigner => "untrusted_signer",
            Refusal::BadSignature => "bad_signature",
            Refusal::Stale { .. } => "stale",
        }
    }

    /// Every reason, to touch each series at start.
    pub const REASONS: [&'static str; 5] = [
        "unsigned",
        "malformed",
        "untrusted_signer",
        "bad_signature",
        "stale",
    ];
}

/// A value whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signer's public key.
    pub signer: String,
    /// When it was signed (milliseconds since the epoch, by the signer's clock).
    pub signed_at_ms: u64,
    /// The policy file's text; empty: no fleet policy.
    pub text: String,
}

/// A problem with a signing or public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not an nkey of the right kind.
    #[error("{0}")]
    Invalid(String),
}

/// The public keys a moderator trusts to sign policies (several at once: rotation).
#[derive(Clone, Default)]
pub struct Signers {
    keys: Vec<(String, KeyPair)>,
}

impl std::fmt::Debug for Signers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|(k, _)| k))
            .finish()
    }
}

impl Signers {
    /// Reads operator public keys (`O…`, as `offpath policy keygen` prints them).
    pub fn parse<S: AsRef<str>>(keys: &[S]) -> Result<Self, KeyError> {
        let keys = keys
            .iter()
            .map(|key| {
                let key = key.as_ref().trim();
                let pair = KeyPair::from_public_key(key).map_err(|err| {
                    KeyError::Invalid(format!("{key:?} is not an nkey public key: {err}"))
                })?;
                if pair.key_pair_type() != KeyPairType::Operator {
                    return Err(KeyError::Invalid(format!(
                        "{key:?} is not an operator key (O…): `offpath policy keygen` makes one"
                    )));
                }
                Ok((key.to_string(), pair))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { keys })
    }

    /// Whether no key is trusted (then no bucket value is ever put in force).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks `value`'s signature against these keys, and that it was not signed before
    /// `in_force_ms` (the newest signed value seen; the same value again is not a change).
    pub fn verify(&self, value: &[u8], in_force_ms: Option<u64>) -> Result<Verified, Refusal> {
        let value = std::str::from_utf8(value).map_err(|_| Refusal::Unsigned)?;
        let rest = value
            .strip_prefix(SIGNATURE_LINE)
            .ok_or(Refusal::Unsigned)?;
        let (line, text) = rest.split_once('\n').unwrap_or((rest, ""));
        let mut fields = line.split(' ');
        let (Some(signer), Some(at), Some(signature), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(Refusal::Malformed(
                "expected <signer> <signed_at_ms> <signature>",
            ));
        };
        let signed_at_ms: u64 = at.parse().map_err(|_| Refusal::Malformed("signed_at_ms"))?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| Refusal::Malformed("signature is not base64url"))?;
        let (_, key) = self
            .keys
            .iter()
            .find(|(k, _)| k == signer)
            .ok_or(Refusal::UntrustedSigner)?;
        key.verify(&signed_bytes(signer, signed_at_ms, text), &signature)
            .map_err(|_| Refusal::BadSignature)?;
        if let Some(in_force_ms) = in_force_ms
            && signed_at_ms < in_force_ms
        {
            return Err(Refusal::Stale {
                signed_at_ms,
                in_force_ms,
            });
        }
        Ok(Verified {
            signer: signer.to_string(),
            signed_at_ms,
            text: text.to_string(),
        })
    }
}

/// The time a value says it was signed, unchecked (`None`: no readable signature line). For
/// a signer choosing a time after the last value's; never for trusting a value.
pub fn signed_at(value: &[u8]) -> Option<u64> {
    let rest = std::str::from_utf8(value)
        .ok()?
        .strip_prefix(SIGNATURE_LINE)?;
    rest.split(['\n', ' ']).nth(1)?.parse().ok()
}

/// A policy signing key (the operator's: keep it off service hosts).
pub struct SigningKey(KeyPair);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.0.public_key())
    }
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Self {
        Self(KeyPair::new_operator())
    }

    /// Reads a seed (`SO…`, the first non-empty line of a key file).
    pub fn from_seed(seed: &str) -> Result<Self, KeyError> {
        let seed = seed.lines().map(str::trim).find(|l| !l.is_empty());
        let pair = seed
            .and_then(|s| KeyPair::from_seed(s).ok())
            .ok_or_else(|| KeyError::Invalid("not an nkey seed (SO…)".into()))?;
        if pair.key_pair_type() != KeyPairType::Operator {
            return Err(KeyError::Invalid(
                "not an operator seed (SO…): `offpath policy keygen` makes one".into(),
            ));
        }
        Ok(Self(pair))
    }

    /// The seed, to store (0600).
    pub fn seed(&self) -> String {
        self.0
            .seed()
            .expect("a generated or parsed key pair has its seed")
    }

    /// The public key moderators are given (`--policy-signers`).
    pub fn public_key(&self) -> String {
        self.0.public_key()
    }

    /// The bucket value for `text`, signed at `signed_at_ms`.
    pub fn sign(&self, text: &str, signed_at_ms: u64) -> String {
        let signer = self.public_key();
        let signature = self
            .0
            .sign(&signed_bytes(&signer, signed_at_ms, text))
            .expect("a key pair with its seed signs");
        format!(
            "{SIGNATURE_LINE}{signer} {signed_at_ms} {}\n{text}",
            URL_SAFE_NO_PAD.encode(signature)
        )
    }
}

fn signed_bytes(signer: &str, signed_at_ms: u64, text: &str) -> Vec<u8> {
    format!("{DOMAIN}\n{signer}\n{signed_at_ms}\n{text}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "default = \"chat\"\n[policies.chat]\n";

    fn trusting(key: &SigningKey) -> Signers {
        Signers::parse(&[key.public_key()]).expect("an operator key")
    }

    /// A value signed by a trusted key verifies and gives back its text exactly.
    #[test]
    fn a_signed_value_verifies() {
        let key = SigningKey::generate();
        let value = key.sign(TEXT, 7);
        let verified = trusting(&key).verify(value.as_bytes(), None).unwrap();
        assert_eq!(verified.text, TEXT);
        assert_eq!(verified.signed_at_ms, 7);
        assert!(value.starts_with(SIGNATURE_LINE));
    }

    /// What an attacker can make the server write is refused, each with its reason: no
    /// signature, another key, a changed text, a changed time, a replay, a malformed line.
    #[test]
    fn everything_else_is_refused() {
        let key = SigningKey::generate();
        let other = SigningKey::generate();
        let signers = trusting(&key);
        let value = key.sign(TEXT, 10);
        let reason = |v: &str, in_force| signers.verify(v.as_bytes(), in_force).unwrap_err();
        assert_eq!(reason(TEXT, None), Refusal::Unsigned);
        assert_eq!(reason("{\"type\":\"io.nats\"}", None), Refusal::Unsigned);
        assert_eq!(
            reason(&other.sign(TEXT, 10), None),
            Refusal::UntrustedSigner
        );
        let changed = value.replace("chat\"\n[", "evil\"\n[");
        assert_eq!(reason(&changed, None), Refusal::BadSignature);
        let retimed = value.replace(" 10 ", " 11 ");
        assert_eq!(reason(&retimed, None), Refusal::BadSignature);
        assert_eq!(reason(&value, Some(11)).reason(), "stale");
        assert!(signers.verify(value.as_bytes(), Some(10)).is_ok());
        let cut = format!("{SIGNATURE_LINE}{} 10\n{TEXT}", key.public_key());
        assert_eq!(reason(&cut, None).reason(), "malformed");
        assert_eq!(
            signers.verify(&[0xff, 0xfe], None).unwrap_err(),
            Refusal::Unsigned
        );
    }

    /// Only operator keys are accepted as signers or seeds; a seed file round-trips.
    #[test]
    fn keys_are_operator_nkeys() {
        let user = KeyPair::new_user();
        assert!(Signers::parse(&[user.public_key()]).is_err());
        assert!(Signers::parse(&["not a key"]).is_err());
        assert!(SigningKey::from_seed(&user.seed().unwrap()).is_err());
        let key = SigningKey::generate();
        let again = SigningKey::from_seed(&format!("\n{}\n", key.seed())).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        assert!(format!("{key:?}").starts_with("SigningKey(O"));
    }

    /// `signed_at` reads the time of a signed value, and nothing from anything else.
    #[test]
    fn signed_at_reads_the_time() {
        let key = SigningKey::generate();
        assert_eq!(signed_at(key.sign(TEXT, 42).as_bytes()), Some(42));
        assert_eq!(signed_at(TEXT.as_bytes()), None);
        assert_eq!(signed_at(b"\xff"), None);
    }

    /// The empty text (`offpath policy clear`) is signed like any other.
    #[test]
    fn clearing_is_signed_too() {
        let key = SigningKey::generate();
        let verified = trusting(&key)
            .verify(key.sign("", 3).as_bytes(), None)
            .unwrap();
        assert_eq!(verified.text, "");
    }
}
