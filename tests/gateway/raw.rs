//! Raw websocket clients for the hostile-client tests: ones that send headers of their
//! choice, never read (so never answer a ping), or read only until the gateway closes.

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A websocket with no reader task: nothing is read (no pong) until the test reads.
pub(crate) type Raw = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects to `/ws?user=<user>` at `addr` with extra `headers`.
pub(crate) async fn connect(addr: SocketAddr, user: &str, headers: &[(&str, &str)]) -> Raw {
    let mut request = format!("ws://{addr}/ws?user={user}")
        .into_client_request()
        .expect("request");
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(axum_header(name), value.parse().expect("header value"));
    }
    let (ws, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
        .await
        .expect("websocket connect");
    ws
}

fn axum_header(name: &str) -> tokio_tungstenite::tungstenite::http::HeaderName {
    name.parse().expect("header name")
}

/// How the gateway ended a connection: the JSON frames it sent, and the close code and
/// reason (`None` when the socket ended without a close frame).
#[derive(Debug, Default)]
pub(crate) struct Ended {
    /// Text frames received, parsed.
    pub frames: Vec<Value>,
    /// Pings received.
    pub pings: usize,
    /// Close code and reason.
    pub close: Option<(u16, String)>,
}

/// Reads `ws` until the gateway closes it, for up to `wait`; panics if it stays open.
pub(crate) async fn until_closed(ws: &mut Raw, wait: Duration) -> Ended {
    let mut ended = Ended::default();
    let read = async {
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Text(text)) => {
                    ended
                        .frames
                        .push(serde_json::from_str(&text).expect("JSON"));
                }
                Ok(Message::Ping(_)) => ended.pings += 1,
                Ok(Message::Close(close)) => {
                    ended.close = close.map(|c| (u16::from(c.code), c.reason.to_string()));
                    return;
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    };
    tokio::time::timeout(wait, read)
        .await
        .expect("the gateway closes the connection");
    ended
}

/// A websocket opened by hand on a plain TCP socket that the test never writes to again:
/// unlike a tungstenite client, it answers no ping. Returns the socket after the 101.
pub(crate) async fn silent(addr: SocketAddr, user: &str) -> TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /ws?user={user} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.expect("handshake");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).await.expect("handshake response");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tcp
}

/// Reads the (unmasked, short) server frames of a [`silent`] socket until it ends, for up
/// to `wait`: pings counted, the close frame's code and reason.
pub(crate) async fn silent_until_closed(tcp: &mut TcpStream, wait: Duration) -> Ended {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    tokio::time::timeout(wait, tcp.read_to_end(&mut bytes))
        .await
        .expect("the gateway closes the connection")
        .expect("read");
    let mut ended = Ended::default();
    let mut rest = bytes.as_slice();
    while let [first, len, tail @ ..] = rest {
        let len = usize::from(*len & 0x7f);
        let (payload, next) = tail.split_at(len.min(tail.len()));
        match first & 0x0f {
            0x9 => ended.pings += 1,
            0x8 if payload.len() >= 2 => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                let reason = String::from_utf8_lossy(&payload[2..]).into_owned();
                ended.close = Some((code, reason));
            }
            _ => {}
        }
        rest = next;
    }
    ended
}

/// Connects to `/ws?user=<user>` at `addr` from the local address `from` (any 127.x.y.z
/// reaches loopback): a second client address in one test.
pub(crate) async fn connect_from(
    addr: SocketAddr,
    from: std::net::IpAddr,
    user: &str,
) -> WebSocketStream<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind");
    let tcp = socket.connect(addr).await.expect("connect");
    let url = format!("ws://{addr}/ws?user={user}");
    let (ws, _) = tokio_tungstenite::client_async(url, tcp)
        .await
        .expect("websocket handshake");
    ws
}
