//! HTTP/1.1 on a blocking `TcpStream`: one request per connection, read with limits on the head
//! and body and a deadline; responses with `Content-Length`, or chunked for event streams; always
//! `Connection: close`.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 16 * 1024;

/// A parsed request.
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body (empty without `Content-Length`).
    pub body: Vec<u8>,
}

impl Request {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Why no request could be read.
pub enum ReadError {
    /// The client closed the connection (or sent nothing) before a request began.
    Closed,
    /// The request is malformed or over a limit: answer with this status and message.
    Bad(u16, String),
}

/// Reads one request from `s`. The head must arrive within `timeout` and the body within another
/// `timeout`; `stop` is polled about every 200 ms so that a shutdown does not wait on slow clients.
pub fn read_request(
    s: &mut TcpStream,
    max_body: usize,
    timeout: Duration,
    stop: &dyn Fn() -> bool,
) -> Result<Request, ReadError> {
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let start = Instant::now();
    let head_end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p;
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadError::Bad(431, format!("the request head is larger than {MAX_HEAD} bytes")));
        }
        match fill(s, &mut buf, start, timeout, stop)? {
            0 if buf.is_empty() => return Err(ReadError::Closed),
            0 => return Err(ReadError::Bad(400, "the request head is truncated".into())),
            _ => {}
        }
    };
    if head_end > MAX_HEAD {
        return Err(ReadError::Bad(431, format!("the request head is larger than {MAX_HEAD} bytes")));
    }
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| ReadError::Bad(400, "the request head is not valid UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if !m.is_empty() && t.starts_with('/') => (m, t, v),
        _ => return Err(ReadError::Bad(400, "malformed request line".into())),
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(ReadError::Bad(505, format!("unsupported HTTP version '{version}'")));
    }
    let mut headers = Vec::new();
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            return Err(ReadError::Bad(400, "malformed header line".into()));
        };
        if k.is_empty() || k.contains([' ', '\t']) {
            return Err(ReadError::Bad(400, "malformed header name".into()));
        }
        headers.push((k.to_ascii_lowercase(), v.trim().to_owned()));
    }
    let mut req = Request {
        method: method.to_owned(),
        path: target.split(['?', '#']).next().unwrap_or("/").to_owned(),
        headers,
        body: Vec::new(),
    };
    if req.header("transfer-encoding").is_some() {
        return Err(ReadError::Bad(411, "chunked request bodies are not supported: send Content-Length".into()));
    }
    let len = match req.header("content-length") {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| ReadError::Bad(400, format!("bad Content-Length '{v}'")))?,
    };
    if len > max_body {
        return Err(ReadError::Bad(413, format!("the body has {len} bytes; the limit is {max_body} (--max-body)")));
    }
    if len > 0 && req.header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
        let _ = s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let mut body = buf.split_off(head_end + 4);
    let start = Instant::now();
    while body.len() < len {
        if fill(s, &mut body, start, timeout, stop)? == 0 {
            return Err(ReadError::Bad(400, format!("the body is truncated: {} of {len} bytes arrived", body.len())));
        }
    }
    body.truncate(len);
    req.body = body;
    Ok(req)
}

/// Reads what is available into `buf`; 0 at the end of the stream.
fn fill(s: &mut TcpStream, buf: &mut Vec<u8>, start: Instant, timeout: Duration, stop: &dyn Fn() -> bool) -> Result<usize, ReadError> {
    let mut chunk = [0u8; 8192];
    loop {
        match s.read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted) => {
                if stop() {
                    return Err(ReadError::Closed);
                }
                if start.elapsed() > timeout {
                    return if buf.is_empty() {
                        Err(ReadError::Closed)
                    } else {
                        Err(ReadError::Bad(408, format!("the request did not arrive within {} s", timeout.as_secs())))
                    };
                }
            }
            Err(_) => return Err(ReadError::Closed),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The reason phrase of a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Writes a whole response: status line, `headers`, `Content-Type`, `Content-Length`, body.
pub fn write_response(w: &mut impl Write, status: u16, content_type: &str, headers: &[(&str, String)], body: &[u8]) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\nConnection: close\r\n", reason(status));
    if !content_type.is_empty() {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut all = head.into_bytes();
    all.extend_from_slice(body);
    w.write_all(&all)?;
    w.flush()
}

/// A chunked response in progress (Server-Sent Events).
pub struct Chunked<'w, W: Write> {
    w: &'w mut W,
}

impl<'w, W: Write> Chunked<'w, W> {
    /// Writes the head of a 200 response with `content_type`, chunked.
    pub fn start(w: &'w mut W, content_type: &str, headers: &[(&str, String)]) -> io::Result<Self> {
        let mut head = format!("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: {content_type}\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        w.write_all(head.as_bytes())?;
        w.flush()?;
        Ok(Chunked { w })
    }

    /// Sends `data` as one chunk.
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let mut all = format!("{:x}\r\n", data.len()).into_bytes();
        all.extend_from_slice(data);
        all.extend_from_slice(b"\r\n");
        self.w.write_all(&all)?;
        self.w.flush()
    }

    /// Ends the body.
    pub fn finish(self) -> io::Result<()> {
        self.w.write_all(b"0\r\n\r\n")?;
        self.w.flush()
    }
}

/// Whether the peer of `s` has closed its side (or reset the connection), without blocking and
/// without consuming data.
pub fn peer_closed(s: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut b = [0u8; 1];
    // SAFETY: recv writes at most 1 byte into `b`, a valid 1-byte buffer; the descriptor is open
    // for the lifetime of `s`.
    let n = unsafe { libc::recv(s.as_raw_fd(), b.as_mut_ptr().cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    if n == 0 {
        return true;
    }
    if n < 0 {
        let e = io::Error::last_os_error();
        return !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted);
    }
    false
}

/// Closes `s` gracefully after a response: no more writes, then unread input is drained for a
/// moment, so that the client reads the response instead of a reset.
pub fn close(mut s: TcpStream) {
    let _ = s.shutdown(std::net::Shutdown::Write);
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut sink = [0u8; 4096];
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(500) {
        match s.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}
