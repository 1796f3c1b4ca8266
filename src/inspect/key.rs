//! Reading a published DKIM key record: its `p=` and the RSA modulus
//! length, so a short key can be named as the cause (RFC 8301 §3.2:
//! verifiers must not accept keys under 1024 bits).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use crate::tls::der::tlv;

/// The least RSA key length receivers accept (RFC 8301).
pub const MIN_RSA_BITS: u32 = 1024;

/// The `p=` value of a key record (whitespace removed); `Some("")` for a
/// revoked key, `None` when the record has no `p=` tag.
pub fn p_tag(record: &str) -> Option<String> {
    record.split(';').find_map(|tag| {
        let (k, v) = tag.split_once('=')?;
        (k.trim() == "p").then(|| v.chars().filter(|c| !c.is_whitespace()).collect())
    })
}

/// The RSA modulus length of a base64 public key, SubjectPublicKeyInfo or
/// bare PKCS#1 `RSAPublicKey`; `None` when it is neither.
pub fn rsa_bits(p: &str) -> Option<u32> {
    let der = B64.decode(p.as_bytes()).ok()?;
    let (tag, outer, _) = tlv(&der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, first, rest) = tlv(outer)?;
    let rsa_key = match tag {
        0x02 => outer, // PKCS#1: SEQUENCE { INTEGER n, INTEGER e }
        0x30 => {
            let _ = first; // AlgorithmIdentifier
            let (tag, bits, _) = tlv(rest)?;
            if tag != 0x03 || bits.first() != Some(&0) {
                return None;
            }
            let (tag, seq, _) = tlv(&bits[1..])?;
            if tag != 0x30 {
                return None;
            }
            seq
        }
        _ => return None,
    };
    let (tag, n, _) = tlv(rsa_key)?;
    if tag != 0x02 {
        return None;
    }
    let n = &n[n.iter().position(|&b| b != 0)?..];
    Some(n.len() as u32 * 8 - n[0].leading_zeros())
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_tags() {
        let cases = [
            ("v=DKIM1; k=rsa; p=MIIB IjAN", Some("MIIBIjAN")),
            ("v=DKIM1; k=rsa; p=", Some("")),
            ("v=DKIM1; k=rsa", None),
            ("v=DKIM1;p=abc;t=s", Some("abc")),
        ];
        for (record, want) in cases {
            assert_eq!(p_tag(record).as_deref(), want, "{record}");
        }
    }

    #[test]
    fn key_lengths() {
        let spki = crate::dkim::public_key_b64(&crate::dkim::generate_rsa().unwrap()).unwrap();
        // PKCS#1 RSAPublicKey with a 512-bit modulus (top byte 0xC1) and e = 3.
        let mut n = vec![0x00, 0xc1];
        n.extend([0x55; 63]);
        let mut pkcs1 = vec![0x30, 0x46, 0x02, 0x41];
        pkcs1.extend(&n);
        pkcs1.extend([0x02, 0x01, 0x03]);
        let small = B64.encode(&pkcs1);
        let cases: Vec<(&str, Option<u32>)> = vec![(&spki, Some(2048)), (&small, Some(512)), ("", None), ("bm9wZQ==", None), ("!!", None)];
        for (p, want) in cases {
            assert_eq!(rsa_bits(p), want, "{p}");
        }
    }
}
