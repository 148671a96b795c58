//! A tiny HTTP/1.1 server for `/metrics` and `/health` of `spillway serve`, on std's
//! `TcpListener`: one accept thread hands connections to [`HTTP_WORKERS`] worker threads
//! through a queue of [`HTTP_QUEUE_MAX`]; when the queue is full the connection is answered
//! 503 at once. One request per connection (`Connection: close`), GET and HEAD only.
//!
//! Boundary: the server knows nothing about jobs; a [`Handler`] maps a path to a response.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{EngineError, Result};

/// Threads answering requests.
pub const HTTP_WORKERS: usize = 2;
/// Accepted connections waiting for a worker; more are answered 503.
pub const HTTP_QUEUE_MAX: usize = 16;
/// Largest request head read (request line and headers).
pub const REQUEST_BYTES_MAX: usize = 8192;
/// Read and write timeout of a connection.
pub const HTTP_IO_TIMEOUT_MS: u64 = 2000;
/// How often the idle accept loop checks whether to stop.
const ACCEPT_POLL_MS: u64 = 20;

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// Answers a GET of a path (without its query string).
pub type Handler = Arc<dyn Fn(&str) -> Response + Send + Sync>;

/// A running server; stops (and joins its threads) when dropped.
pub struct HttpServer {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl HttpServer {
    /// Listens on `address` and serves `handler` until dropped.
    pub fn start(address: SocketAddr, handler: Handler) -> Result<HttpServer> {
        let listener = TcpListener::bind(address).map_err(|e| {
            EngineError::io(
                format!(
                    "cannot listen on {address} for /metrics and /health (is another process \
                     using it? set [http] address in the configuration)"
                ),
                e,
            )
        })?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| EngineError::io("cannot read the HTTP listener's address", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| EngineError::io("cannot set up the HTTP listener", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = sync_channel::<TcpStream>(HTTP_QUEUE_MAX);
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::with_capacity(HTTP_WORKERS + 1);
        for i in 0..HTTP_WORKERS {
            let rx = rx.clone();
            let handler = handler.clone();
            let t = std::thread::Builder::new()
                .name(format!("spillway-http-{i}"))
                .spawn(move || worker(&rx, &handler))
                .map_err(|e| EngineError::io("cannot start an HTTP thread", e))?;
            threads.push(t);
        }
        let s = stop.clone();
        let t = std::thread::Builder::new()
            .name("spillway-http-accept".into())
            .spawn(move || {
                while !s.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((stream, _)) => match tx.try_send(stream) {
                            Ok(()) => {}
                            Err(TrySendError::Full(stream)) => {
                                let busy = Response::text(503, "busy: too many requests\n");
                                let _ = respond(stream, &busy, false);
                            }
                            Err(TrySendError::Disconnected(_)) => break,
                        },
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(ACCEPT_POLL_MS));
                        }
                        Err(e) => {
                            tracing::warn!("HTTP server: accept failed: {e}");
                            std::thread::sleep(Duration::from_millis(ACCEPT_POLL_MS));
                        }
                    }
                }
                // Dropping `tx` ends the workers once the queue is drained.
            })
            .map_err(|e| EngineError::io("cannot start the HTTP accept thread", e))?;
        threads.push(t);
        Ok(HttpServer {
            local_addr,
            stop,
            threads,
        })
    }

    /// The address it listens on (the port is chosen by the system when given as 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn worker(rx: &Mutex<Receiver<TcpStream>>, handler: &Handler) {
    loop {
        let next = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(stream) = next else { return };
        if let Err(e) = serve_connection(stream, handler) {
            tracing::debug!("HTTP server: connection failed: {e}");
        }
    }
}

/// The method and path of a request head (None while it is incomplete).
fn parse_request_line(head: &[u8]) -> Option<(&str, &str)> {
    let end = head.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&head[..end]).ok()?;
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let path = target.split('?').next().unwrap_or(target);
    Some((method, path))
}

fn serve_connection(mut stream: TcpStream, handler: &Handler) -> std::io::Result<()> {
    let timeout = Some(Duration::from_millis(HTTP_IO_TIMEOUT_MS));
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() >= REQUEST_BYTES_MAX {
            let r = Response::text(431, "request head too large\n");
            return respond(stream, &r, false);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let response = match parse_request_line(&head) {
        None => (Response::text(400, "bad request\n"), false),
        Some(("GET", path)) => (handler(path), false),
        Some(("HEAD", path)) => (handler(path), true),
        Some(_) => (Response::text(405, "only GET and HEAD\n"), false),
    };
    respond(stream, &response.0, response.1)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

fn respond(mut stream: TcpStream, r: &Response, head_only: bool) -> std::io::Result<()> {
    stream.set_write_timeout(Some(Duration::from_millis(HTTP_IO_TIMEOUT_MS)))?;
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(r.body.as_bytes())?;
    }
    stream.flush()
}

/// A blocking GET of `path` from `address` (tests and `spillway` itself): the status and
/// the body.
pub fn get(address: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let timeout = Duration::from_millis(HTTP_IO_TIMEOUT_MS);
    let mut stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let bad = || std::io::Error::new(ErrorKind::InvalidData, "not an HTTP response");
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let body = text.split_once("\r\n\r\n").ok_or_else(bad)?.1.to_string();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> HttpServer {
        let handler: Handler = Arc::new(|path| match path {
            "/hello" => Response::text(200, "hi\n"),
            _ => Response::text(404, format!("no {path}\n")),
        });
        let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}"));
        HttpServer::start(any_port, handler).unwrap_or_else(|e| panic!("{e}"))
    }

    fn raw(address: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(address).unwrap_or_else(|e| panic!("{e}"));
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap_or_else(|e| panic!("{e}"));
        s.write_all(request).unwrap_or_else(|e| panic!("{e}"));
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text
    }

    #[test]
    fn routes_get_and_strips_the_query_string() {
        let s = server();
        let got = get(s.local_addr(), "/hello?x=1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, (200, "hi\n".to_string()));
        let got = get(s.local_addr(), "/nope").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, (404, "no /nope\n".to_string()));
    }

    #[test]
    fn head_has_no_body_and_other_methods_are_refused() {
        let s = server();
        let text = raw(s.local_addr(), b"HEAD /hello HTTP/1.1\r\n\r\n");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Length: 3\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
        let text = raw(s.local_addr(), b"POST /hello HTTP/1.1\r\n\r\n");
        assert!(text.starts_with("HTTP/1.1 405 "), "{text}");
        let text = raw(s.local_addr(), b"\x01\x02\r\n\r\n");
        assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    }

    #[test]
    fn an_oversized_request_head_is_refused() {
        let s = server();
        let mut request = b"GET /hello HTTP/1.1\r\nX: ".to_vec();
        request.resize(REQUEST_BYTES_MAX, b'a'); // all of it read: no reset on close
        let text = raw(s.local_addr(), &request);
        assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
    }

    #[test]
    fn a_taken_address_is_a_clear_error() {
        let s = server();
        let handler: Handler = Arc::new(|_| Response::text(200, ""));
        match HttpServer::start(s.local_addr(), handler) {
            Ok(_) => panic!("a second server bound {}", s.local_addr()),
            Err(e) => assert!(e.to_string().contains("cannot listen on"), "{e}"),
        }
    }
}
