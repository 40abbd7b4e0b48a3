//! A TCP proxy on loopback that a test can freeze, to play a network that goes silent: once
//! frozen, the open connections stop forwarding in both directions (their sockets stay open, as
//! a blackholed route leaves them) and new connections are accepted and never answered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A proxy from a loopback port to `upstream`, frozen by [`freeze`](Self::freeze) or right
/// after forwarding the client's next write after the one that contains its trigger. With a
/// statement's text as the trigger, that is its execution on PostgreSQL, whose clients send the
/// text (Parse) and its execution (Bind, Execute) in two writes: the server runs the statement,
/// and its answer never reaches the client.
pub struct FreezeProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    frozen: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl FreezeProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr, trigger: Option<&'static [u8]>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let frozen = Arc::new(AtomicBool::new(false));
        let f = frozen.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((client, _)) = listener.accept().await {
                if f.load(Ordering::SeqCst) {
                    held.push(client); // accepted, never answered
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                tokio::spawn(pipe(client, server, f.clone(), trigger));
            }
        });
        Self { addr, frozen, task }
    }

    /// Stops every connection from forwarding, from now on.
    #[allow(dead_code)]
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// Whether it is frozen.
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::SeqCst)
    }
}

impl Drop for FreezeProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(
    client: TcpStream,
    server: TcpStream,
    frozen: Arc<AtomicBool>,
    trigger: Option<&'static [u8]>,
) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        forward(client_read, server_write, frozen.clone(), trigger),
        forward(server_read, client_write, frozen, None),
    );
}

/// Copies `from` to `to` until either closes, or holds both open forever once frozen (after
/// forwarding the chunk that holds `trigger`, if one does).
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
    trigger: Option<&'static [u8]>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut armed = false;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if frozen.load(Ordering::SeqCst) {
            break;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        if armed {
            frozen.store(true, Ordering::SeqCst);
        }
        armed |= trigger.is_some_and(|t| buf[..n].windows(t.len()).any(|w| w == t));
    }
    if frozen.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    let _ = to.shutdown().await;
}
