//! The request as verification sees it: a view of one `mail.raw` record (the stage builds
//! it from the Avro record by moving fields, no copying), with header look-ups that refuse
//! ambiguity.

use crate::outcome::Rejection;

/// One webhook request, as the receiver recorded it. `Debug` lists header names only:
/// values include credentials.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// The receiver's id of this request; redeliveries of the same record keep it, so a
    /// replay cache can tell a redelivery from a replay.
    pub request_id: String,
    /// When the receiver read the request (Unix milliseconds). Signed timestamps are
    /// compared with this, not with the verifier's clock: a verify stage that lags behind or
    /// re-reads `mail.raw` must judge freshness as of receipt.
    pub received_at_ms: i64,
    pub method: String,
    /// Path as received, still percent-encoded, without the query string.
    pub path: String,
    /// Raw query string without `?`.
    pub query: String,
    /// Header names lower-case (look-ups ignore case anyway), values byte for byte.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Request")
            .field("request_id", &self.request_id)
            .field("received_at_ms", &self.received_at_ms)
            .field("method", &self.method)
            .field("path", &self.path)
            .field("header_names", &names)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl Request {
    /// Receipt time in whole Unix seconds.
    pub fn received_at_secs(&self) -> i64 {
        self.received_at_ms.div_euclid(1000)
    }

    /// The single value of header `name`, if present. A repeated header is rejected: when
    /// two values disagree, picking one lets an intermediary choose what gets verified.
    pub(crate) fn header(&self, name: &str) -> Result<Option<&[u8]>, Rejection> {
        let mut found = None;
        for (key, value) in &self.headers {
            if key.eq_ignore_ascii_case(name) {
                if found.is_some() {
                    return Err(Rejection::malformed(format!("header {name} is repeated")));
                }
                found = Some(value.as_slice());
            }
        }
        Ok(found)
    }

    /// Header `name` as trimmed UTF-8 text; `None` when absent or empty.
    pub(crate) fn header_str(&self, name: &str) -> Result<Option<&str>, Rejection> {
        match self.header(name)? {
            None => Ok(None),
            Some(bytes) => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| Rejection::malformed(format!("header {name} is not UTF-8")))?
                    .trim();
                Ok((!text.is_empty()).then_some(text))
            }
        }
    }

    /// Header `name`, which the provider always sends: absent or empty is
    /// `missing_signature`.
    pub(crate) fn required_header(&self, name: &str) -> Result<&str, Rejection> {
        self.header_str(name)?
            .ok_or_else(|| Rejection::missing(&format!("header {name}")))
    }

    /// The media type of `Content-Type`, lower-case, without parameters.
    pub(crate) fn media_type(&self) -> Result<Option<String>, Rejection> {
        Ok(self.header_str("content-type")?.map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        }))
    }

    /// Parameter `name` of `Content-Type` (e.g. the multipart boundary), unquoted.
    pub(crate) fn content_type_parameter(&self, name: &str) -> Result<Option<String>, Rejection> {
        let Some(content_type) = self.header_str("content-type")? else {
            return Ok(None);
        };
        Ok(content_type.split(';').skip(1).find_map(|param| {
            let (key, value) = param.split_once('=')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().trim_matches('"').to_string())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Reason;

    fn with_headers(headers: &[(&str, &str)]) -> Request {
        Request {
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            ..Request::default()
        }
    }

    #[test]
    fn header_lookup_ignores_case_trims_and_refuses_repeats() {
        let r = with_headers(&[("X-Sig", " abc "), ("empty", "  ")]);
        assert_eq!(r.header_str("x-sig").unwrap(), Some("abc"));
        assert_eq!(r.header_str("empty").unwrap(), None);
        assert_eq!(
            r.required_header("empty").unwrap_err().reason,
            Reason::MissingSignature
        );
        let twice = with_headers(&[("x-sig", "a"), ("x-sig", "b")]);
        assert_eq!(
            twice.header("X-SIG").unwrap_err().reason,
            Reason::MalformedRequest
        );
        let binary = Request {
            headers: vec![("x-sig".into(), vec![0xff, 0xfe])],
            ..Request::default()
        };
        assert_eq!(
            binary.header_str("x-sig").unwrap_err().reason,
            Reason::MalformedRequest
        );
    }

    #[test]
    fn debug_shows_header_names_not_values() {
        let shown = format!("{:?}", with_headers(&[("authorization", "Basic c2VjcmV0")]));
        assert!(
            shown.contains("authorization") && !shown.contains("c2VjcmV0"),
            "{shown}"
        );
    }

    #[test]
    fn content_type_parts() {
        let r = with_headers(&[("content-type", "Multipart/Form-Data; boundary=\"xyz\"")]);
        assert_eq!(
            r.media_type().unwrap().as_deref(),
            Some("multipart/form-data")
        );
        assert_eq!(
            r.content_type_parameter("boundary").unwrap().as_deref(),
            Some("xyz")
        );
        assert_eq!(with_headers(&[]).media_type().unwrap(), None);
    }

    #[test]
    fn receipt_seconds_round_down_even_before_1970() {
        let at = |ms| {
            Request {
                received_at_ms: ms,
                ..Request::default()
            }
            .received_at_secs()
        };
        assert_eq!(at(1_600_112_502_999), 1_600_112_502);
        assert_eq!(at(-1), -1);
    }
}
