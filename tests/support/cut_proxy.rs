//! A raw TCP proxy in front of the fake Kong that cuts connections mid-body: for the next `cuts`
//! audit requests it answers `200` with a `Content-Length` larger than the body it sends, then
//! closes. Everything else is forwarded (one request per connection).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct CutProxy {
    pub addr: SocketAddr,
    cuts_left: Arc<AtomicUsize>,
    /// Connections cut so far.
    pub cut: Arc<AtomicUsize>,
}

impl CutProxy {
    pub async fn start(upstream: SocketAddr, cuts: usize) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cuts_left = Arc::new(AtomicUsize::new(cuts));
        let cut = Arc::new(AtomicUsize::new(0));
        let (left, done) = (cuts_left.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else { return };
                let (left, done) = (left.clone(), done.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, upstream, left, done).await;
                });
            }
        });
        CutProxy { addr, cuts_left, cut }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn cuts(&self) -> usize {
        self.cut.load(Ordering::SeqCst)
    }
}

async fn serve(mut conn: TcpStream, upstream: SocketAddr, left: Arc<AtomicUsize>, done: Arc<AtomicUsize>) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let audit = text.starts_with("GET /audit/");
    if audit && left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        done.fetch_add(1, Ordering::SeqCst);
        conn.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: 100000\r\n\r\n{\"data\":[{\"request_id\":\"cut-mid",
        )
        .await?;
        conn.flush().await?;
        return Ok(());
    }
    // Forward with `Connection: close`, so the upstream's answer ends at EOF.
    let mut lines: Vec<&str> = text
        .trim_end_matches("\r\n\r\n")
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("connection: close");
    let request = format!("{}\r\n\r\n", lines.join("\r\n"));
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer).await?;
    conn.write_all(&answer).await?;
    conn.flush().await
}
