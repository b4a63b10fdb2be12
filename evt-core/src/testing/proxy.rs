//! A TCP proxy that breaks a connection at a chosen moment, to test what a provider does when its
//! connection dies in the middle of an operation.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Whether the bytes a server sent since a request hold its whole answer (e.g. PostgreSQL's
/// `ReadyForQuery`, or one whole MongoDB message).
pub type Answered = fn(&[u8]) -> bool;

/// Where to break the connection that carries the next request containing a needle.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// Pass the request on, let the server answer in full, and close instead of passing the
    /// answer back: the operation happened, the client cannot know.
    AfterAnswer(Answered),
    /// Close instead of passing the request on: the operation never happened.
    BeforeRequest,
}

#[derive(Default)]
struct Shared {
    armed: Mutex<Option<(Vec<u8>, Cut)>>,
    cuts: AtomicUsize,
    refuse: AtomicBool,
}

/// A proxy on a loopback port in front of a server (`upstream`), passing bytes both ways until
/// told to break one connection.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use evt_core::testing::CutProxy;
/// let proxy = CutProxy::start("127.0.0.1:5432".parse().unwrap()).await?;
/// // connect the client under test to `proxy.local_addr()`, then:
/// proxy.cut_after_answer(b"my-aggregate-id", |answer: &[u8]| !answer.is_empty());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct CutProxy {
    local: SocketAddr,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for CutProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CutProxy")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl CutProxy {
    /// Listens on a free loopback port and forwards each connection to `upstream`. The proxy
    /// runs until the runtime ends.
    pub async fn start(upstream: SocketAddr) -> io::Result<CutProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let proxy = CutProxy {
            local: listener.local_addr()?,
            shared: Arc::default(),
        };
        let shared = proxy.shared.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if shared.refuse.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees its connection closed
                }
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        pump(client, server, shared).await;
                    }
                });
            }
        });
        Ok(proxy)
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next request containing `needle` reaches the server, which answers in full
    /// (`answered` tells when), and then its connection is closed without passing the answer on.
    pub fn cut_after_answer(&self, needle: &[u8], answered: Answered) {
        self.arm(needle, Cut::AfterAnswer(answered));
    }

    /// The next request containing `needle` never reaches the server: its connection is closed
    /// instead.
    pub fn cut_before_request(&self, needle: &[u8]) {
        self.arm(needle, Cut::BeforeRequest);
    }

    fn arm(&self, needle: &[u8], cut: Cut) {
        *self
            .shared
            .armed
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((needle.to_vec(), cut));
    }

    /// From now on (`true`) or no longer (`false`), close new connections at once, as a server
    /// that is down would.
    pub fn refuse_connections(&self, refuse: bool) {
        self.shared.refuse.store(refuse, Ordering::SeqCst);
    }

    /// How many connections were broken so far.
    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(Ordering::SeqCst)
    }
}

/// Passes bytes both ways until either side closes or an armed cut fires.
async fn pump(client: TcpStream, server: TcpStream, shared: Arc<Shared>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // The cut this connection fired, if any: set before the request goes on, so the answer
    // cannot slip through first.
    let fired: Arc<Mutex<Option<Cut>>> = Arc::default();
    let closed = Arc::new(AtomicBool::new(false));
    let upstream = {
        let (fired, shared) = (fired.clone(), shared.clone());
        async move {
            let mut buffer = vec![0; 64 * 1024];
            loop {
                let n = match client_read.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let chunk = &buffer[..n];
                let cut = {
                    let mut armed = shared.armed.lock().unwrap_or_else(PoisonError::into_inner);
                    match &*armed {
                        Some((needle, _))
                            if chunk.windows(needle.len().max(1)).any(|w| w == needle) =>
                        {
                            armed.take().map(|(_, cut)| cut)
                        }
                        _ => None,
                    }
                };
                if let Some(cut) = cut {
                    *fired.lock().unwrap_or_else(PoisonError::into_inner) = Some(cut);
                    if let Cut::BeforeRequest = cut {
                        shared.cuts.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                }
                if server_write.write_all(chunk).await.is_err() {
                    return;
                }
            }
        }
    };
    let downstream = {
        let (fired, shared, closed) = (fired.clone(), shared.clone(), closed.clone());
        async move {
            let mut buffer = vec![0; 64 * 1024];
            let mut held = Vec::new();
            loop {
                let n = match server_read.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let cut = *fired.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(Cut::AfterAnswer(answered)) = cut {
                    held.extend_from_slice(&buffer[..n]);
                    if answered(&held) {
                        shared.cuts.fetch_add(1, Ordering::SeqCst);
                        closed.store(true, Ordering::SeqCst);
                        return;
                    }
                    continue;
                }
                if client_write.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
            }
        }
    };
    // Whichever way ends first, both sockets close when this returns.
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}
