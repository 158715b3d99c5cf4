//! Podman going away in the middle of a call, as a restart of its service
//! does: the server reaches the real Podman through a socket proxy that
//! this test can cut (every connection dropped, the socket gone, so new
//! connections are refused) and bring back. The call in flight must end
//! with a clear error, well before its deadline; nothing it started may
//! run on (a retry would run it twice); the next call, once Podman is
//! back, must work in the same sandbox, its files intact.
//!
//! Runs in both modes: with the executor (the default) and with
//! `POD_EXEC_EXECUTOR=off` (tests/run.sh runs it again that way).

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::live_podman;
use common::mcp::{call_args, connect, run};
use common::server;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

/// A unix-socket proxy in front of the real Podman socket.
struct Proxy {
    path: PathBuf,
    upstream: PathBuf,
    /// Cancelling it ends the listener and every proxied connection.
    up: Mutex<CancellationToken>,
}

impl Proxy {
    fn new(upstream: PathBuf) -> Arc<Proxy> {
        let path = std::env::temp_dir().join(format!("pem-proxy-{}.sock", common::unique("p")));
        let p = Arc::new(Proxy {
            path,
            upstream,
            up: Mutex::new(CancellationToken::new()),
        });
        p.clone().serve();
        p
    }

    /// Binds the socket and forwards until the next `cut`.
    fn serve(self: Arc<Self>) {
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).expect("bind the proxy socket");
        let stop = self.up.lock().unwrap().clone();
        let upstream = self.upstream.clone();
        tokio::spawn(async move {
            loop {
                let (mut down, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    a = listener.accept() => match a { Ok(c) => c, Err(_) => return },
                };
                let stop = stop.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut up) = UnixStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                    }
                });
            }
        });
    }

    /// Podman "stops": every connection is dropped and the socket removed.
    fn cut(&self) {
        self.up.lock().unwrap().cancel();
        let _ = std::fs::remove_file(&self.path);
    }

    /// Podman is back.
    fn resume(self: &Arc<Self>) {
        *self.up.lock().unwrap() = CancellationToken::new();
        self.clone().serve();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.up.lock().unwrap().cancel();
        let _ = std::fs::remove_file(&self.path);
    }
}

fn real_socket() -> PathBuf {
    let host = std::env::var("CONTAINER_HOST").unwrap_or_default();
    match host.strip_prefix("unix://") {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "this test proxies a unix:// CONTAINER_HOST, got {host:?}\n\n{}",
            common::HOW_TO_START
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_away_mid_call_gives_an_error_kills_the_call_and_recovers() {
    let _podman = live_podman().await;
    let proxy = Proxy::new(real_socket());
    let host = format!("unix://{}", proxy.path.display());
    let srv = server::start(&[("CONTAINER_HOST", host.as_str())]);
    let client = connect(&srv.url).await;
    assert_eq!(
        run(&client, "echo kept > /work/before; echo ok")
            .await
            .output,
        "ok\n"
    );

    // A call that would write a file after 6 s, if it were left running.
    let t = Instant::now();
    let call = {
        let client = &client;
        async move {
            let r = call_args(
                client,
                serde_json::json!({
                    "command": "sleep 6; echo ran > /work/after",
                    "timeout": 60,
                }),
            )
            .await;
            (r, t.elapsed())
        }
    };
    let outage = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        proxy.cut();
        tokio::time::sleep(Duration::from_secs(2)).await;
        proxy.resume();
    };
    let ((r, took), ()) = tokio::join!(call, outage);
    assert_eq!(
        r.is_error,
        Some(true),
        "the call survived the outage? {r:?}"
    );
    let text = format!("{:?}", r.content);
    // It ends when the connection breaks, not at its deadline (60 s).
    assert!(took < Duration::from_secs(5), "the call waited {took:?}");
    assert!(text.contains("cut off"), "{text}");
    eprintln!("error after {took:?}: {text}");

    // Podman is back: the same sandbox serves, its files intact.
    let r = run(&client, "cat /work/before").await;
    assert_eq!(r.output, "kept\n", "{r:?}");
    // And what the failed call started did not go on to write its file.
    let wait = Duration::from_secs(9).saturating_sub(t.elapsed());
    tokio::time::sleep(wait).await;
    let r = run(
        &client,
        "test -e /work/after && echo ran-anyway || echo absent; \
         ps -eo args | grep -c '^sleep 6$'",
    )
    .await;
    assert_eq!(r.output, "absent\n0\n", "{}", srv.logs());
    client.cancel().await.expect("close");
}
