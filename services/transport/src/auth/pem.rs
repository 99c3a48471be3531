//! What a `--token-public-key-file` must be before `jsonwebtoken` reads it: one PEM block
//! labelled `PUBLIC KEY` (or `RSA PUBLIC KEY`), and for RSA a modulus of at least
//! [`MIN_RSA_BITS`]. `jsonwebtoken` itself also takes a private key or a certificate and a
//! 1024-bit modulus; a private key on the gateway is a key in the wrong place (it can mint
//! tokens), and a short modulus can be factored.

use base64::Engine;

/// Smallest RSA modulus accepted (NIST SP 800-131A: 1024-bit RSA is disallowed for
/// signatures; 2048 is the floor).
pub(crate) const MIN_RSA_BITS: usize = 2048;

/// The labels of a public key's PEM block: SubjectPublicKeyInfo and PKCS#1.
const SPKI: &str = "PUBLIC KEY";
const PKCS1: &str = "RSA PUBLIC KEY";

/// The DER of the single public-key PEM block in `pem`, and whether it is PKCS#1 (bare RSA),
/// or why it is not acceptable.
pub(crate) fn public_der(pem: &[u8]) -> Result<(Vec<u8>, bool), String> {
    let text = std::str::from_utf8(pem).map_err(|_| "not PEM text".to_string())?;
    let mut labels = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("-----BEGIN "))
        .map(|rest| rest.trim_end_matches('-').trim());
    let label = labels.next().ok_or("no PEM block")?;
    if labels.next().is_some() {
        return Err("more than one PEM block; give one key per file".into());
    }
    if label != SPKI && label != PKCS1 {
        return Err(format!(
            "a {label:?} block, not a public key (\"{SPKI}\" or \"{PKCS1}\")"
        ));
    }
    let body: String = text
        .lines()
        .map(str::trim)
        .skip_while(|line| !line.starts_with("-----BEGIN "))
        .skip(1)
        .take_while(|line| !line.starts_with("-----END "))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|err| format!("PEM body: {err}"))?;
    Ok((der, label == PKCS1))
}

/// The size in bits of an RSA public key's modulus (`der` as [`public_der`] returns it).
pub(crate) fn rsa_modulus_bits(der: &[u8], pkcs1: bool) -> Option<usize> {
    let mut key = der;
    if !pkcs1 {
        // SubjectPublicKeyInfo: SEQUENCE { SEQUENCE algorithm, BIT STRING key }.
        let (spki, _) = tlv(der, 0x30)?;
        let (_, rest) = tlv(spki, 0x30)?;
        let (bits, _) = tlv(rest, 0x03)?;
        key = bits.get(1..)?; // the unused-bits byte
    }
    // RSAPublicKey: SEQUENCE { INTEGER modulus, INTEGER exponent }.
    let (rsa, _) = tlv(key, 0x30)?;
    let (modulus, _) = tlv(rsa, 0x02)?;
    let start = modulus.iter().position(|&b| b != 0)?;
    let digits = &modulus[start..];
    Some(digits.len() * 8 - digits[0].leading_zeros() as usize)
}

/// One DER element of type `tag` at the start of `input`: its content and what follows.
fn tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&len, mut rest) = rest.split_first()?;
    let len = if len < 0x80 {
        usize::from(len)
    } else {
        let count = usize::from(len & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (bytes, after) = rest.split_at_checked(count)?;
        rest = after;
        bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
    };
    rest.split_at_checked(len)
}
