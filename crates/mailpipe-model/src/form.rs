//! Form bodies: `application/x-www-form-urlencoded` (Mandrill, legacy Mailgun) and the
//! named parts of `multipart/form-data` (legacy Mailgun events that attach a message).
//! Verification reads them to check signatures, normalization to read events: one reader
//! for both. Never panics on hostile input.

/// Decoded `key=value` pairs in order, `+` and percent escapes decoded. Invalid UTF-8 is
/// replaced (U+FFFD): providers send UTF-8, and a forger still needs the key.
pub fn urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The named parts of a `multipart/form-data` body as (name, content) pairs, in order.
/// `None` when the body is not multipart with this boundary. File parts (an attached
/// original message) are kept like any other; callers only read the names they know.
pub fn multipart_fields(body: &[u8], boundary: &str) -> Option<Vec<(String, Vec<u8>)>> {
    if boundary.is_empty() || boundary.len() > 200 {
        return None;
    }
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut fields = Vec::new();
    // Skip the preamble up to the first delimiter.
    let mut rest = &body[find(body, delimiter)? + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            return Some(fields); // closing delimiter
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let end = find(rest, delimiter)?;
        // The CRLF before a delimiter belongs to the delimiter, not to the part.
        let part = rest[..end].strip_suffix(b"\r\n")?;
        let header_end = find(part, b"\r\n\r\n")?;
        let headers = std::str::from_utf8(&part[..header_end]).ok()?;
        if let Some(name) = part_name(headers) {
            fields.push((name, part[header_end + 4..].to_vec()));
        }
        rest = &rest[end + delimiter.len()..];
    }
}

/// The `name` parameter of a part's `Content-Disposition: form-data` header.
fn part_name(headers: &str) -> Option<String> {
    let disposition = headers.split("\r\n").find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case("content-disposition")
            .then_some(value)
    })?;
    disposition.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        (key.trim() == "name").then(|| value.trim().trim_matches('"').to_string())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencoded_decodes_plus_and_percent() {
        let pairs = urlencoded_pairs(b"a=1+2&b=%7B%22x%22%3A1%7D&a=3");
        assert_eq!(
            pairs,
            [
                ("a".into(), "1 2".into()),
                ("b".into(), "{\"x\":1}".into()),
                ("a".into(), "3".into())
            ]
        );
    }

    #[test]
    fn multipart_text_fields_in_order() {
        let body = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\nabc\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"attachment-1\"; filename=\"m.eml\"\r\nContent-Type: message/rfc822\r\n\r\nline1\r\nline2\r\n\
--XyZ--\r\n";
        let fields = multipart_fields(body, "XyZ").unwrap();
        assert_eq!(fields[0], ("token".into(), b"abc".to_vec()));
        assert_eq!(
            fields[1],
            ("attachment-1".into(), b"line1\r\nline2".to_vec())
        );
        assert_eq!(fields.len(), 2);
    }

    #[test]
    fn broken_multipart_is_none_not_a_panic() {
        for body in [
            &b""[..],
            b"--b",
            b"--b\r\n",
            b"--b\r\nno headers end\r\n--b--",
            b"--b\r\n\r\n\r\n--b",
        ] {
            assert_eq!(multipart_fields(body, "b"), None, "{body:?}");
        }
        assert_eq!(multipart_fields(b"--\r\n", ""), None);
    }
}
