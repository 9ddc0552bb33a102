//! The little of HTTP/1.1 the demo needs: parse a request head, encode a
//! response. No I/O here; the server feeds bytes in.

/// Largest request head accepted (request line plus headers).
pub const MAX_HEAD: usize = 16 * 1024;

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The query string (after `?`), if any.
    pub query: Option<String>,
    /// `HTTP/1.1` rather than `HTTP/1.0`.
    pub http11: bool,
    /// Header names lower-cased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Does the client want the connection kept open after the response?
    pub fn keep_alive(&self) -> bool {
        let tokens = |want: &str| {
            self.header("connection")
                .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(want)))
        };
        if self.http11 {
            !tokens("close")
        } else {
            tokens("keep-alive")
        }
    }

    /// Length of the body that follows the head.
    pub fn body_len(&self) -> Result<usize, &'static str> {
        if self.header("transfer-encoding").is_some() {
            return Err("chunked request bodies are not supported");
        }
        match self.header("content-length") {
            None => Ok(0),
            Some(v) => v.parse().map_err(|_| "bad Content-Length"),
        }
    }
}

/// Where the head ends in `buf`: the index just after the blank line
/// (`\r\n\r\n`, or bare `\n\n` from lenient clients).
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Parse a request head (everything up to and including the blank line).
pub fn parse_head(head: &[u8]) -> Result<Request, &'static str> {
    let text = std::str::from_utf8(head).map_err(|_| "request head is not UTF-8")?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let line = lines.next().ok_or("empty request")?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line");
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err("malformed method");
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err("unsupported HTTP version"),
    };
    if !target.starts_with('/') {
        return Err("request target must be an absolute path");
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.to_string(), None),
    };
    let mut headers = Vec::new();
    for l in lines {
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').ok_or("malformed header")?;
        if k.is_empty() || k.contains(char::is_whitespace) {
            return Err("malformed header name");
        }
        headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok(Request {
        method: method.to_string(),
        path,
        query,
        http11,
        headers,
    })
}

/// A response to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: String,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, body: String) -> Self {
        Response {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body,
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, content_type: &'static str, body: String) -> Self {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body,
        }
    }

    /// The bytes on the wire; `head_only` for HEAD requests.
    pub fn encode(&self, keep_alive: bool, head_only: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" },
        );
        for (k, v) in &self.headers {
            out.push_str(k);
            out.push_str(": ");
            out.push_str(v);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        if !head_only {
            out.push_str(&self.body);
        }
        out.into_bytes()
    }
}

/// The reason phrase of `status`.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_request_head() {
        let raw = b"GET /api/items?x=1 HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: Close\r\n\r\n";
        assert_eq!(head_end(raw), Some(raw.len()));
        let r = parse_head(raw).unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/api/items");
        assert_eq!(r.query.as_deref(), Some("x=1"));
        assert!(r.http11);
        assert_eq!(r.header("host"), Some("[::1]:8080"));
        assert!(!r.keep_alive());
        assert_eq!(r.body_len(), Ok(0));
    }

    #[test]
    fn keep_alive_follows_the_version() {
        let r = parse_head(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        assert!(r.keep_alive());
        let r = parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(!r.keep_alive());
        let r = parse_head(b"GET / HTTP/1.0\nConnection: keep-alive\n\n").unwrap();
        assert!(r.keep_alive());
    }

    #[test]
    fn head_end_needs_the_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nrest"), Some(16));
    }

    #[test]
    fn refuses_malformed_heads() {
        assert!(parse_head(b"GET /\r\n\r\n").is_err());
        assert!(parse_head(b"get / HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_head(b"GET / HTTP/2\r\n\r\n").is_err());
        assert!(parse_head(b"GET http://x/ HTTP/1.1\r\n\r\n").is_err());
        assert!(parse_head(b"GET / HTTP/1.1\r\nno-colon\r\n\r\n").is_err());
        let r = parse_head(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n").unwrap();
        assert!(r.body_len().is_err());
        let r = parse_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert!(r.body_len().is_err());
    }

    #[test]
    fn encodes_responses() {
        let r = Response::json(200, "{}".into());
        let wire = String::from_utf8(r.encode(false, false)).unwrap();
        assert_eq!(
            wire,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        );
        let wire = String::from_utf8(r.encode(true, true)).unwrap();
        assert!(wire.ends_with("Connection: keep-alive\r\n\r\n"));
    }
}
