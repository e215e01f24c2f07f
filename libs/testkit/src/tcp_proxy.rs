//! A TCP proxy a test can cut and restore: the suite talks to the real
//! PostgreSQL through it, and a cut is an outage as the suite sees one
//! (every connection dropped, new ones refused at once).

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};

pub struct TcpProxy {
    address: SocketAddr,
    cut: Arc<AtomicBool>,
    /// Bumped at every cut: forwarding tasks of an older generation end.
    generation: watch::Sender<u64>,
    accepting: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Forwards connections made to [`TcpProxy::address`] to `target`.
    pub async fn start(target: SocketAddr) -> anyhow::Result<TcpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let accepting = {
            let (cut, generation) = (cut.clone(), generation.clone());
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    if cut.load(Ordering::Acquire) {
                        drop(client);
                        continue;
                    }
                    let mut ended = generation.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(target).await else { return };
                        let mut client = client;
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = ended.changed() => {}
                        }
                    });
                }
            })
        };
        Ok(TcpProxy { address, cut, generation, accepting })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Drops every connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        self.generation.send_modify(|generation| *generation += 1);
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::Release);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accepting.abort();
        self.generation.send_modify(|generation| *generation += 1);
    }
}
