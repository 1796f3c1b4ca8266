//! The certificate herald makes for itself when the operator has none:
//! subject CN and SAN `server.hostname` (plus `localhost` and 127.0.0.1
//! for local clients), valid for one year, marked as herald's so that it
//! — and only it — is made again once expired.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, date_time_ymd};
use super::der::tlv;

/// Organization name that marks a certificate as herald's own.
pub const MARK: &str = "herald self-signed";
/// Validity of a generated certificate, in days.
pub const VALID_DAYS: i64 = 365;

/// A new certificate and key (PEM) for `hostname`, valid from a day
/// before `now_secs` (clock skew) for [`VALID_DAYS`].
pub fn generate(hostname: &str, now_secs: i64) -> Result<(String, String), String> {
    let mut names = vec![hostname.to_string()];
    for extra in ["localhost", "127.0.0.1"] {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(extra)) {
            names.push(extra.to_string());
        }
    }
    let mut params = CertificateParams::new(names).map_err(|e| format!("`server.hostname` `{hostname}` cannot be a certificate name: {e}"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, hostname);
    dn.push(DnType::OrganizationName, MARK);
    params.distinguished_name = dn;
    let today = now_secs.div_euclid(86_400);
    let ((by, bm, bd), (ay, am, ad)) = (civil(today - 1), civil(today + VALID_DAYS));
    params.not_before = date_time_ymd(by, bm, bd);
    params.not_after = date_time_ymd(ay, am, ad);
    let key = KeyPair::generate().map_err(|e| format!("cannot generate a key: {e}"))?;
    let cert = params.self_signed(&key).map_err(|e| format!("cannot generate a certificate: {e}"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Year, month, day of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
pub fn civil(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

/// Day count since 1970-01-01 of a civil date (`days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// What herald needs to know about a certificate on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// notAfter, seconds since the epoch.
    pub not_after: i64,
    /// Self-signed and carrying [`MARK`]: herald made it.
    pub herald_made: bool,
}

/// Reads notAfter and the issuer/subject of a DER certificate.
pub fn facts(der: &[u8]) -> Option<Facts> {
    let (_, cert, _) = tlv(der)?;
    let (_, tbs, _) = tlv(cert)?;
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xa0 {
        rest = after; // [0] version
    }
    let (_, _, rest) = tlv(rest)?; // serial
    let (_, _, rest) = tlv(rest)?; // signature algorithm
    let (_, issuer, rest) = tlv(rest)?;
    let (_, validity, rest) = tlv(rest)?;
    let (_, subject, _) = tlv(rest)?;
    let (_, _, after_not_before) = tlv(validity)?;
    let (tag, not_after, _) = tlv(after_not_before)?;
    let herald_made = issuer == subject && subject.windows(MARK.len()).any(|w| w == MARK.as_bytes());
    Some(Facts { not_after: time(tag, not_after)?, herald_made })
}

/// UTCTime (`YYMMDDHHMMSSZ`, tag 0x17) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`, tag 0x18) as seconds since the epoch.
fn time(tag: u8, bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i64 = text.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
        }
        0x18 => (text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    let field = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let days = days_from_civil(year, field(0)?, field(2)?);
    Some(days * 86_400 + field(4)? * 3600 + field(6)? * 60 + field(8)?)
}


#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn civil_dates() {
        let cases = [(0, (1970, 1, 1)), (-1, (1969, 12, 31)), (19_723, (2024, 1, 1)), (20_787, (2026, 11, 30)), (11_016, (2000, 2, 29))];
        for (days, want) in cases {
            assert_eq!(civil(days), want, "{days}");
            assert_eq!(days_from_civil(i64::from(want.0), i64::from(want.1), i64::from(want.2)), days);
        }
    }

    #[test]
    fn generated_certificate() {
        let now = 20_787 * 86_400 + 3600; // 2026-11-30 01:00 UTC
        let (pem, key) = generate("relay.example.net", now).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let f = facts(&der).unwrap();
        assert_eq!(f, Facts { not_after: (20_787 + VALID_DAYS) * 86_400, herald_made: true });
        let bytes = der.as_ref();
        assert!(bytes.windows(17).any(|w| w == b"relay.example.net"), "CN and SAN name the host");
        assert!(!bytes.windows(9).any(|w| w == b"rcgen sel"), "no rcgen default name");
    }

    #[test]
    fn times() {
        assert_eq!(time(0x17, b"261130010203Z"), Some(20_787 * 86_400 + 3723));
        assert_eq!(time(0x18, b"40960101000000Z"), Some(days_from_civil(4096, 1, 1) * 86_400));
        assert_eq!(time(0x17, b"991231235959Z"), Some(days_from_civil(1999, 12, 31) * 86_400 + 86_399));
        assert_eq!(time(0x17, b"nonsense"), None);
        assert_eq!(time(0x05, b"261130010203Z"), None);
    }
}
