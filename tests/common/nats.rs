//! Helpers of the NATS tests: the server URL, a stream of its own per test, reading a stream
//! back, and a TCP proxy the test can cut and restore between a client and the shared server.

use acts_as_distributed_nats::async_nats::jetstream::{self, stream::Stream};
use acts_as_distributed_nats::{StreamSpec, Subjects, parse_message_id};
use futures::StreamExt as _;
use std::collections::HashMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The environment variable with the NATS server URL (JetStream enabled).
pub const NATS_URL: &str = "TEST_NATS_URL";

/// The NATS URL, or `None` (with a note on the terminal) when `TEST_NATS_URL` is unset.
pub fn nats_url() -> Option<String> {
    match std::env::var(NATS_URL) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "note: skipping a NATS test (set {NATS_URL}, e.g. nats://127.0.0.1:4222)"
            );
            None
        }
    }
}

/// A unique name for this test's stream, subjects and source.
pub fn unique(what: &str) -> String {
    format!(
        "{what}_{}_{}",
        std::process::id(),
        uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .get(..8)
            .unwrap_or("x")
    )
}

/// A stream of its own for one test, deleted when the test ends (dropped).
pub struct TestStream {
    /// The stream's name.
    pub name: String,
    /// The subjects of this test (a unique prefix).
    pub subjects: Subjects,
    /// JetStream.
    pub js: jetstream::Context,
}

impl TestStream {
    /// A fresh stream for `url`, on a unique prefix, with the given spec changes.
    pub async fn new(url: &str, spec: impl FnOnce(StreamSpec) -> StreamSpec) -> Self {
        let client = acts_as_distributed_nats::async_nats::connect(url)
            .await
            .expect("connect to NATS");
        let js = jetstream::new(client);
        let name = unique("S").to_uppercase();
        let subjects = Subjects::prefix(unique("t"));
        spec(StreamSpec::new(name.clone(), &subjects))
            .ensure(&js)
            .await
            .expect("create the test stream");
        Self { name, subjects, js }
    }

    /// The stream.
    pub async fn stream(&self) -> Stream {
        self.js.get_stream(&self.name).await.expect("get stream")
    }

    /// How many messages the stream holds.
    pub async fn count(&self) -> u64 {
        let mut stream = self.stream().await;
        stream.info().await.expect("stream info").state.messages
    }

    /// Every message of the stream, in stream order: (stream sequence, message id, body).
    pub async fn messages(&self) -> Vec<(u64, String, Vec<u8>)> {
        let mut stream = self.stream().await;
        let state = stream.info().await.expect("stream info").state.clone();
        if state.messages == 0 {
            return Vec::new();
        }
        let stream = &stream;
        let mut out: Vec<(u64, String, Vec<u8>)> =
            futures::stream::iter(state.first_sequence..=state.last_sequence)
                .map(|seq| async move {
                    stream.get_raw_message(seq).await.ok().map(|m| {
                        let id = m
                            .headers
                            .get(acts_as_distributed_nats::async_nats::header::NATS_MESSAGE_ID)
                            .map(|v| v.as_str().to_owned())
                            .unwrap_or_default();
                        (seq, id, m.payload.to_vec())
                    })
                })
                .buffer_unordered(64)
                .filter_map(|m| async move { m })
                .collect()
                .await;
        out.sort_by_key(|m| m.0);
        out
    }

    /// The event ids of `source` in the stream, in stream order.
    pub async fn event_ids(&self, source: &str) -> Vec<i64> {
        self.messages()
            .await
            .iter()
            .filter_map(|(_, id, _)| parse_message_id(source, id))
            .collect()
    }

    /// Per object (type/id from the body), the event ids in stream order.
    pub async fn per_object(&self) -> HashMap<String, Vec<i64>> {
        let mut out: HashMap<String, Vec<i64>> = HashMap::new();
        for (_, _, body) in self.messages().await {
            let p = acts_as_distributed_nats::Payload::decode(&body).expect("payload");
            out.entry(format!("{}/{}", p.distributed_type, p.distributed_id))
                .or_default()
                .push(p.id);
        }
        out
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        let js = self.js.clone();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async { js.delete_stream(&name).await.ok() })
        })
        .join();
    }
}

/// A TCP proxy between clients and `upstream`, which the test cuts (every connection closed, new
/// ones refused) and restores.
pub struct Proxy {
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    cut: Arc<AtomicBool>,
    generation: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl Proxy {
    /// A proxy in front of `upstream` (`nats://host:port`).
    pub async fn start(upstream: &str) -> Self {
        let upstream = upstream
            .trim_start_matches("nats://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cut = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let (c, g, s) = (cut.clone(), generation.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = s.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((client, _)) = accepted else { continue };
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let token = g.lock().expect("generation").clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Self {
            url: format!("nats://127.0.0.1:{port}"),
            cut,
            generation,
            stop,
        }
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        let mut g = self.generation.lock().expect("generation");
        g.cancel();
        *g = CancellationToken::new();
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.generation.lock().expect("generation").cancel();
    }
}
