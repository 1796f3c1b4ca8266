//! DKIM: the keys the relay holds and the signatures it makes.
//!
//! RSA-2048 with rsa-sha256, relaxed/relaxed (RFC 6376), aws-lc-rs as the
//! one crypto provider. Which fields `h=` lists is chosen per message
//! ([`headers::choose`]): the recommended ones present, From and the other
//! fields no MTA adds over-signed, absent fields an MTA may add never.

pub mod headers;
mod keys;
mod pool;

pub use keys::{KeyStore, StoredKey};
pub use pool::SignPool;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use mail_auth::common::crypto::{Algorithm, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::{Canonicalization, DkimSigner};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;

/// Generates an RSA-2048 key; returns it as PKCS#8 DER.
pub fn generate_rsa() -> Result<Vec<u8>, String> {
    use aws_lc_rs::encoding::AsDer;
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|e| format!("RSA key generation failed: {e}"))?;
    let der = pair.as_der().map_err(|e| format!("RSA key encoding failed: {e}"))?;
    Ok(der.as_ref().to_vec())
}

/// The public half of a PKCS#8 RSA key, as base64 SubjectPublicKeyInfo
/// (what `p=` carries).
pub fn public_key_b64(pkcs8: &[u8]) -> Result<String, String> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::KeyPair;
    let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(pkcs8).map_err(|e| format!("stored key is unreadable: {e}"))?;
    let spki = pair.public_key().as_der().map_err(|e| format!("public key encoding failed: {e}"))?;
    Ok(B64.encode(spki.as_ref()))
}

/// The TXT record value publishing a public key.
pub fn txt_value(public_b64: &str) -> String {
    format!("v=DKIM1; k=rsa; p={public_b64}")
}

/// Splits a TXT value into character-strings of at most 255 bytes
/// (RFC 1035 §3.3.14); resolvers join them back.
pub fn split_txt(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        let mut cut = rest.len().min(255);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(rest[..cut].to_string());
        rest = &rest[cut..];
    }
    out
}

/// A parsed RSA key shared by every signature made with it (mail-auth's
/// signer owns its key, and the `h=` list changes per message).
struct SharedKey(Arc<RsaKey<Sha256>>);

impl SigningKey for SharedKey {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

/// A ready-to-use signing identity: domain, selector and private key.
#[derive(Clone)]
pub struct Signer {
    pub domain: String,
    pub selector: String,
    key: Arc<RsaKey<Sha256>>,
}

impl Signer {
    pub fn new(domain: &str, selector: &str, pkcs8: &[u8]) -> Result<Self, String> {
        let key = RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.to_vec())))
            .map_err(|e| format!("stored key for {selector}._domainkey.{domain} is unusable: {e}"))?;
        Ok(Self { domain: domain.to_string(), selector: selector.to_string(), key: Arc::new(key) })
    }

    /// Signs the message given as consecutive chunks; returns the
    /// `DKIM-Signature:` field, CRLF-terminated. `h=` is chosen from the
    /// fields the chunks hold ([`headers::choose`]). CPU-bound (~1 ms):
    /// call it off the I/O threads.
    /// Each chunk must end on a header-field boundary until the one that
    /// holds the blank line.
    pub fn sign(&self, chunks: &[&[u8]]) -> Result<String, String> {
        // mail-auth's chained reader takes the body from the last chunk it
        // opened, so a trailing empty chunk would hide the body.
        let parts: Vec<&[u8]> = chunks.iter().copied().filter(|c| !c.is_empty()).collect();
        let mut present = Vec::new();
        for part in &parts {
            let names = headers::field_names(part);
            let ends_header = part.starts_with(b"\r\n") || memchr::memmem::find(part, b"\r\n\r\n").is_some();
            present.extend(names);
            if ends_header {
                break;
            }
        }
        let h = headers::choose(present.iter().map(String::as_str));
        let signer = DkimSigner::from_key(SharedKey(self.key.clone()))
            .domain(&self.domain)
            .selector(&self.selector)
            .headers(h.iter().map(String::as_str))
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed);
        let signature = signer.sign_chained(parts).map_err(|e| format!("DKIM signing failed: {e}"))?;
        Ok(signature.to_header())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_strings_are_at_most_255_bytes() {
        let cases = [(0usize, 0usize), (10, 1), (255, 1), (256, 2), (510, 2), (511, 3)];
        for (len, parts) in cases {
            let value = "a".repeat(len);
            let split = split_txt(&value);
            assert_eq!(split.len(), parts, "{len}");
            assert!(split.iter().all(|s| s.len() <= 255));
            assert_eq!(split.concat(), value);
        }
    }

    #[test]
    fn signs_with_a_generated_key() {
        let key = generate_rsa().unwrap();
        let public = public_key_b64(&key).unwrap();
        assert!(public.len() > 350, "2048-bit SPKI is ~392 base64 chars");
        let signer = Signer::new("example.net", "s1", &key).unwrap();
        let header = signer.sign(&[b"From: a@example.net\r\nSubject: x\r\n\r\n", b"body\r\n"]).unwrap();
        assert!(header.starts_with("DKIM-Signature: "), "{header}");
        for tag in ["d=example.net", "s=s1", "a=rsa-sha256", "c=relaxed/relaxed", "h=Subject:From:From:Subject"] {
            assert!(header.replace(['\r', '\n', '\t', ' '], "").contains(&tag.replace(' ', "")), "{tag} missing in {header}");
        }
        assert!(header.ends_with("\r\n"));
    }
}
