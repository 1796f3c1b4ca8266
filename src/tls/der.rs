//! The one piece of DER the relay reads by hand: a tag-length-value,
//! used to find a certificate's expiry and the size of a DKIM key.

/// One DER tag-length-value: (tag, content, what follows).
pub fn tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *data.first()?;
    let first = *data.get(1)?;
    let (len, start) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *data.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = start.checked_add(len)?;
    Some((tag, data.get(start..end)?, data.get(end..)?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn tag_length_values() {
        let cases: &[(&[u8], Option<(u8, &[u8], &[u8])>)] = &[
            (&[0x30, 0x02, 0xaa, 0xbb, 0xcc], Some((0x30, &[0xaa, 0xbb], &[0xcc]))),
            (&[0x02, 0x81, 0x01, 0x07], Some((0x02, &[0x07], &[]))),
            (&[0x30, 0x05, 0x01], None),
            (&[0x30, 0x80], None),
            (&[0x30], None),
        ];
        for (data, want) in cases {
            assert_eq!(super::tlv(data), *want, "{data:02x?}");
        }
    }
}
