//! The operator endpoints seen from outside: a minimal HTTP/1.0 client, and polling until
//! an endpoint answers as expected.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a request may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How often [`wait_until`] asks again.
const POLL: Duration = Duration::from_millis(50);

/// A minimal HTTP/1.0 GET: status and body.
pub async fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let get = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(request(addr, path).as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        Ok(parse(&response))
    };
    tokio::time::timeout(TIMEOUT, get)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// A minimal HTTP/1.0 request with `headers` (`name: value` lines) and `body`: status and
/// body.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let response = Request::new(method, path).headers(headers).body(body);
    let response = response.send(addr).await?;
    Ok((response.status, response.body))
}

/// A request of the minimal HTTP/1.0 client, for the cases [`get`] and [`send`] do not
/// cover: another client address, the answer's headers.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    method: &'a str,
    path: &'a str,
    headers: &'a [&'a str],
    body: &'a str,
    from: Option<IpAddr>,
}

/// A whole answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code (0 when unreadable).
    pub status: u16,
    /// The headers, names in lower case, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Response {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, value)| value.as_str())
    }
}

impl<'a> Request<'a> {
    /// `method path`, no headers beyond `Host`, no body.
    pub fn new(method: &'a str, path: &'a str) -> Self {
        Self {
            method,
            path,
            headers: &[],
            body: "",
            from: None,
        }
    }

    /// With `headers` (`name: value` lines).
    pub fn headers(self, headers: &'a [&'a str]) -> Self {
        Self { headers, ..self }
    }

    /// With `body` (and its `Content-Length`).
    pub fn body(self, body: &'a str) -> Self {
        Self { body, ..self }
    }

    /// Sent from local address `from` (e.g. `127.0.0.2`: another client on loopback).
    pub fn from(self, from: IpAddr) -> Self {
        Self {
            from: Some(from),
            ..self
        }
    }

    /// Sends it to `addr` on a fresh connection and reads the whole answer (5 s at most).
    pub async fn send(&self, addr: SocketAddr) -> std::io::Result<Response> {
        let (method, path) = (self.method, self.path);
        let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n");
        for header in self.headers {
            head.push_str(header);
            head.push_str("\r\n");
        }
        let text = format!(
            "{head}Content-Length: {}\r\n\r\n{}",
            self.body.len(),
            self.body
        );
        let send = async {
            let mut stream = match self.from {
                None => tokio::net::TcpStream::connect(addr).await?,
                Some(from) => {
                    let socket = match from {
                        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
                    };
                    socket.bind(SocketAddr::new(from, 0))?;
                    socket.connect(addr).await?
                }
            };
            stream.write_all(text.as_bytes()).await?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await?;
            Ok(parse_whole(&String::from_utf8_lossy(&response)))
        };
        tokio::time::timeout(TIMEOUT, send)
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    }
}

/// [`get`] for callers without a runtime: blocks the thread.
pub fn get_blocking(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.write_all(request(addr, path).as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(parse(&response))
}

/// Asks `GET path` every 50 ms until `done(status, body)` holds, and returns that answer;
/// after `timeout`, the last answer as the error (status 0 when nothing answered).
pub async fn wait_until(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    done: impl Fn(u16, &str) -> bool,
) -> Result<(u16, String), (u16, String)> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (status, body) = get(addr, path).await.unwrap_or((0, String::new()));
        if done(status, &body) {
            return Ok((status, body));
        }
        if tokio::time::Instant::now() > deadline {
            return Err((status, body));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until `/readyz` answers 200 (see [`wait_until`]).
pub async fn wait_ready(addr: SocketAddr, timeout: Duration) -> Result<(), (u16, String)> {
    wait_until(addr, "/readyz", timeout, |status, _| status == 200)
        .await
        .map(drop)
}

fn request(addr: SocketAddr, path: &str) -> String {
    format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
}

/// Status (0 when unreadable), headers and body of a whole response.
fn parse_whole(response: &str) -> Response {
    let (status, body) = parse(response);
    let head = response
        .split_once("\r\n\r\n")
        .map_or(response, |(head, _)| head);
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body,
    }
}

/// Status (0 when unreadable) and body of a whole response.
fn parse(response: &str) -> (u16, String) {
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}
