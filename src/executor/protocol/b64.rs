//! Standard base64 (with `=` padding) for the command in a request line:
//! the line must carry no control byte (Podman's detach keys).

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with `=` padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        let idx = |shift: u32| B64[((n >> shift) & 63) as usize] as char;
        s.push(idx(18));
        s.push(idx(12));
        s.push(if c.len() > 1 { idx(6) } else { '=' });
        s.push(if c.len() > 2 { idx(0) } else { '=' });
    }
    s
}

fn b64_value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// Decodes standard padded base64 (no whitespace, length a multiple of 4).
///
/// # Errors
/// A message naming the first problem.
pub fn base64_decode(s: &[u8]) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(4) {
        return Err(format!("base64 length {} is not a multiple of 4", s.len()));
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let last = s.len() / 4;
    for (i, q) in s.chunks(4).enumerate() {
        let pad = match (q[2], q[3]) {
            (b'=', b'=') => 2,
            (_, b'=') => 1,
            (b'=', _) => return Err("base64: '=' before a data character".into()),
            _ => 0,
        };
        if pad > 0 && i + 1 != last {
            return Err("base64: padding before the end".into());
        }
        let mut n = 0u32;
        for &c in &q[..4 - pad] {
            let v = b64_value(c).ok_or_else(|| format!("base64: bad character {c:#04x}"))?;
            n = (n << 6) | v;
        }
        n <<= 6 * pad as u32;
        out.push((n >> 16) as u8);
        if pad < 2 {
            out.push((n >> 8) as u8);
        }
        if pad < 1 {
            out.push(n as u8);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_vectors() {
        let v: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"\xff\xfe\x00", "//4A"),
        ];
        for (raw, enc) in v {
            assert_eq!(base64_encode(raw), enc);
            assert_eq!(base64_decode(enc.as_bytes()).unwrap(), raw);
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(base64_decode(base64_encode(&all).as_bytes()).unwrap(), all);
        for bad in ["Zg=", "Z===", "Zg==Zg==", "Zm9v\n", "Zm 9", "=Zm9", "Zm=v"] {
            assert!(base64_decode(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
