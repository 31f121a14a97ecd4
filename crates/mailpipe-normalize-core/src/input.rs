//! What the normalizer sees of a verified request, and the form-body decoding some
//! providers need (Mandrill, legacy Mailgun).
//!
//! Borrowed, so the stage can build it from a decoded `mail.verified` record without
//! copying the body. Nothing Kafka-specific: the stage maps its record onto these fields.
//! The form reader itself is `mailpipe_model::form`, shared with verification.

use mailpipe_model::form;

/// One verified webhook request, as far as parsing needs it.
#[derive(Debug, Clone, Copy)]
pub struct ParseInput<'a> {
    /// Configured source (account/tenant) id; part of hashed event ids.
    pub source: &'a str,
    /// The receiver's request id (`mail.raw` record), copied onto every event.
    pub raw_request_id: &'a str,
    /// When the receiver got the request, UTC Unix milliseconds.
    pub received_at_ms: i64,
    /// Header names (any case), values byte for byte; credentials already stripped.
    pub headers: &'a [(String, Vec<u8>)],
    /// Raw query string without `?`. No parser reads it today (every provider puts its
    /// events in the body); it is here so one can without changing this type.
    pub query: &'a str,
    pub body: &'a [u8],
}

impl<'a> ParseInput<'a> {
    /// The first value of header `name` (case-insensitive) as trimmed UTF-8 text; `None`
    /// when absent, empty or not UTF-8. Verification already refused ambiguous repeats of
    /// the headers that matter.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        let value = self
            .headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))?;
        let text = std::str::from_utf8(&value.1).ok()?.trim();
        (!text.is_empty()).then_some(text)
    }

    /// The media type of `Content-Type`, lower-case, without parameters.
    pub fn media_type(&self) -> Option<String> {
        let content_type = self.header("content-type")?;
        let media = content_type.split(';').next().unwrap_or("").trim();
        Some(media.to_ascii_lowercase())
    }

    /// Parameter `name` of `Content-Type` (the multipart boundary), unquoted.
    fn content_type_parameter(&self, name: &str) -> Option<&'a str> {
        self.header("content-type")?
            .split(';')
            .skip(1)
            .find_map(|param| {
                let (key, value) = param.split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| value.trim().trim_matches('"'))
            })
    }

    /// The body's form fields in order: `multipart/form-data` text parts when the content
    /// type says so, else `application/x-www-form-urlencoded` pairs. Invalid UTF-8 inside
    /// values is replaced (U+FFFD) rather than refused: providers send UTF-8, and a single
    /// odd byte in a subject line should not dead-letter an event.
    pub(crate) fn form_fields(&self) -> Vec<(String, String)> {
        if self.media_type().as_deref() == Some("multipart/form-data") {
            if let Some(fields) = self
                .content_type_parameter("boundary")
                .and_then(|boundary| form::multipart_fields(self.body, boundary))
            {
                return fields
                    .into_iter()
                    .map(|(name, content)| (name, String::from_utf8_lossy(&content).into_owned()))
                    .collect();
            }
        }
        form::urlencoded_pairs(self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(headers: &'a [(String, Vec<u8>)], body: &'a [u8]) -> ParseInput<'a> {
        ParseInput {
            source: "s",
            raw_request_id: "r",
            received_at_ms: 0,
            headers,
            query: "",
            body,
        }
    }

    #[test]
    fn headers_ignore_case_and_content_type_parameters() {
        let headers = vec![
            (
                "Content-Type".to_string(),
                b"Multipart/Form-Data; boundary=\"b1\"".to_vec(),
            ),
            ("x-empty".to_string(), b"  ".to_vec()),
        ];
        let i = input(&headers, b"");
        assert_eq!(i.media_type().as_deref(), Some("multipart/form-data"));
        assert_eq!(i.content_type_parameter("BOUNDARY"), Some("b1"));
        assert_eq!(i.header("x-empty"), None);
        assert_eq!(i.header("absent"), None);
    }

    #[test]
    fn form_fields_from_urlencoded_and_multipart_bodies() {
        let plain = input(&[], b"event=delivered&recipient=a%40b.example&x=1+2");
        assert_eq!(
            plain.form_fields()[1],
            ("recipient".into(), "a@b.example".into())
        );
        assert_eq!(plain.form_fields()[2].1, "1 2");
        let headers = vec![(
            "content-type".to_string(),
            b"multipart/form-data; boundary=XY".to_vec(),
        )];
        let body = b"--XY\r\nContent-Disposition: form-data; name=\"event\"\r\n\r\nbounced\r\n--XY\r\nContent-Disposition: form-data; name=\"code\"\r\n\r\n550\r\n--XY--\r\n";
        let fields = input(&headers, body).form_fields();
        assert_eq!(
            fields,
            vec![
                ("event".into(), "bounced".into()),
                ("code".into(), "550".into())
            ]
        );
        // A broken multipart body falls back to urlencoded decoding instead of failing.
        assert!(!input(&headers, b"--XY\r\ngarbage").form_fields().is_empty());
    }
}
