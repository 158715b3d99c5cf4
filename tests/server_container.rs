//! The server as its users deploy it: in a container, talking to the host's
//! Podman through a mounted socket, with no podman binary inside. The image
//! is built from the repository's Dockerfile through the project's own
//! client (`build_image`): its `prebuilt` target on the debootstrapped base
//! with the test build of the binary (the default target's cargo stage
//! needs a Rust image from a registry). It runs as uid 10001, has no
//! podman; with the rootful socket it needs the socket's group (`--group-add 0`
//! for systemd's 0660 root:root podman.socket).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::mcp::{connect_with_token, run};
use common::server::wait_for;
use common::{ContainerGuard, live_podman, unique};
use pod_exec_mcp::podman::{BuildOptions, ContainerSpec, Endpoint, Mount, Namespace, PodmanClient};
use rmcp::ServiceExt;

const BASE: &str = "localhost/debian-bootstrap:bookworm";
const IMAGE: &str = "localhost/pod-exec-mcp-server-test:latest";

/// A tar context: the repository's Dockerfile and the test build of the
/// binary, which its `prebuilt` stage copies in (PREBUILT).
fn context() -> Bytes {
    let binary = std::fs::read(env!("CARGO_BIN_EXE_pod_exec_mcp")).expect("read the test binary");
    let dockerfile = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile"))
        .expect("read the Dockerfile");
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data, mode) in [
        ("Dockerfile", dockerfile, 0o644),
        ("pod_exec_mcp", binary, 0o755),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        tar.append_data(&mut header, name, data.as_slice())
            .expect("tar entry");
    }
    Bytes::from(tar.into_inner().expect("tar"))
}

/// Builds the Dockerfile's `prebuilt` target (local base image, the test
/// binary) as `tag`, through the libpod build endpoint.
async fn build_server_image(podman: &PodmanClient, tag: &str) {
    let report = podman
        .build_image(
            context(),
            &BuildOptions {
                tag: tag.into(),
                dockerfile: "Dockerfile".into(),
                build_args: BTreeMap::from([
                    ("BASE_IMAGE".to_owned(), BASE.to_owned()),
                    ("PREBUILT".to_owned(), "pod_exec_mcp".to_owned()),
                ]),
                target: Some("prebuilt".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("build the server image from the Dockerfile: {e}"));
    assert!(report.image_id.is_some(), "{report:?}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The instance label of the managed container whose id starts with
/// `hostname` (Podman's default hostname is the short id).
async fn instance_of(podman: &PodmanClient, hostname: &str) -> String {
    podman
        .list_containers(&["pod-exec-mcp.managed=true"])
        .await
        .expect("list")
        .into_iter()
        .find(|c| c.id.starts_with(hostname))
        .and_then(|c| c.labels.get("pod-exec-mcp.instance").cloned())
        .unwrap_or_else(|| panic!("no managed container with hostname {hostname}"))
}

/// Waits (10 s at most) until container `id` no longer runs.
async fn wait_exited(podman: &PodmanClient, id: &str, what: &str) {
    wait_for(Duration::from_secs(10), what, || async {
        podman
            .inspect_container(id)
            .await
            .map(|i| !i.state.running)
            .unwrap_or(true)
    })
    .await;
}

/// The token the containerized server requires.
const TOKEN: &str = "server-container-token-4c2a81f0";

/// The server container: host networking (the test reaches it on
/// 127.0.0.1), the host's socket mounted, labelled for cleanup.
fn server_spec(socket: &std::path::Path, port: u16) -> ContainerSpec {
    let mut spec = ContainerSpec {
        name: Some(unique("pem-server")),
        image: IMAGE.into(),
        netns: Some(Namespace {
            nsmode: "host".into(),
        }),
        mounts: vec![Mount {
            destination: "/run/podman/podman.sock".into(),
            kind: "bind".into(),
            source: socket.display().to_string(),
            options: vec!["rw".into()],
        }],
        ..Default::default()
    };
    spec.labels
        .insert("pod-exec-mcp.managed".into(), "true".into());
    spec.labels
        .insert("pod-exec-mcp.test".into(), "server-container".into());
    for (k, v) in [
        (
            "CONTAINER_HOST",
            "unix:///run/podman/podman.sock".to_owned(),
        ),
        ("MCP_PORT", port.to_string()),
        ("POD_EXEC_IMAGE", common::image()),
    ] {
        spec.env.insert(k.into(), v);
    }
    spec
}

/// Managed containers of `instance` on `podman`.
async fn count_of(podman: &PodmanClient, instance: &str) -> usize {
    let label = format!("pod-exec-mcp.instance={instance}");
    podman
        .list_containers(&["pod-exec-mcp.managed=true", label.as_str()])
        .await
        .expect("list")
        .len()
}

/// `podman stop`: SIGTERM to the server container, which must exit 0
/// (having removed its session containers).
async fn stop_server(podman: &PodmanClient, id: &str) {
    podman.kill_container(id, "TERM").await.expect("SIGTERM");
    wait_exited(podman, id, "the server container exits").await;
    let info = podman.inspect_container(id).await.expect("inspect");
    assert_eq!(info.state.exit_code, 0, "clean exit");
}

/// Creates and starts the server container `spec` and waits (up to
/// `limit`) until an MCP client with the token gets through on `port`.
async fn start_and_wait(
    podman: &PodmanClient,
    spec: &ContainerSpec,
    port: u16,
    limit: Duration,
) -> (ContainerGuard, String) {
    let id = podman.create_container(spec).await.expect("create");
    let server = ContainerGuard::new(id, podman.endpoint().clone());
    podman.start_container(&server.id).await.expect("start");
    let url = format!("http://127.0.0.1:{port}/mcp");
    wait_for(limit, "the containerized server answers", || async {
        let transport = rmcp::transport::StreamableHttpClientTransport::from_config(
            rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
                url.clone(),
            )
            .auth_header(TOKEN),
        );
        match rmcp::model::ClientConfig::default().serve(transport).await {
            Ok(c) => {
                let _ = c.cancel().await;
                true
            }
            Err(_) => false,
        }
    })
    .await;
    (server, url)
}

/// The real, effective, saved and fs uids of host process `pid`, and its
/// status text (for messages).
fn host_uids(pid: i64) -> (Vec<String>, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    let uids = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    (uids, status)
}

#[tokio::test]
async fn server_in_a_container_with_the_host_socket_mounted() {
    let podman = live_podman().await;
    let Endpoint::Unix(socket) = podman.endpoint().clone() else {
        panic!("this test mounts a unix:// CONTAINER_HOST into the server container");
    };

    build_server_image(&podman, IMAGE).await;

    // The image's own user is not root, and it has no podman.
    let probe = ContainerSpec {
        name: Some(unique("pem-server-probe")),
        image: IMAGE.into(),
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
        command: vec![
            "id -u; id -g; command -v podman || echo no-podman; \
             test -s /etc/ssl/certs/ca-certificates.crt && echo ca-ok"
                .into(),
        ],
        netns: Some(Namespace {
            nsmode: "none".into(),
        }),
        labels: [
            ("pod-exec-mcp.managed".to_owned(), "true".to_owned()),
            (
                "pod-exec-mcp.test".to_owned(),
                "server-container".to_owned(),
            ),
        ]
        .into(),
        ..Default::default()
    };
    let probe = podman.create_container(&probe).await.expect("create probe");
    let probe = ContainerGuard::new(probe, podman.endpoint().clone());
    podman
        .start_container(&probe.id)
        .await
        .expect("start probe");
    wait_exited(&podman, &probe.id, "the probe exits").await;
    let (stdout, stderr) = podman.container_logs(&probe.id).await.expect("logs");
    assert_eq!(stdout, "10001\n10001\nno-podman\nca-ok\n", "{stderr}");
    drop(probe);

    let port = free_port();
    let spec_with = |env: &[(&str, String)]| {
        let mut spec = server_spec(&socket, port);
        for (k, v) in env {
            spec.env.insert((*k).into(), v.clone());
        }
        spec
    };

    // The image listens on 0.0.0.0: without a token it must not serve.
    let open = podman
        .create_container(&spec_with(&[]))
        .await
        .expect("create");
    let open = ContainerGuard::new(open, podman.endpoint().clone());
    podman.start_container(&open.id).await.expect("start");
    wait_exited(&podman, &open.id, "the tokenless server container exits").await;
    let info = podman.inspect_container(&open.id).await.expect("inspect");
    assert_ne!(info.state.exit_code, 0, "a tokenless server exited 0");
    let (_, stderr) = podman.container_logs(&open.id).await.expect("logs");
    assert!(
        stderr.contains("refusing to serve 0.0.0.0:") && stderr.contains("POD_EXEC_AUTH_TOKEN"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    drop(open);

    // As the image's user (10001) the rootful socket (0600 root) is out of
    // reach: start-up says so in one line.
    let denied = podman
        .create_container(&spec_with(&[("POD_EXEC_AUTH_TOKEN", TOKEN.to_owned())]))
        .await
        .expect("create");
    let denied = ContainerGuard::new(denied, podman.endpoint().clone());
    podman.start_container(&denied.id).await.expect("start");
    wait_exited(&podman, &denied.id, "the non-root server container exits").await;
    let (_, stderr) = podman.container_logs(&denied.id).await.expect("logs");
    assert!(
        stderr.contains("cannot reach the Podman API at unix:///run/podman/podman.sock")
            && stderr.contains("Permission denied"),
        "{stderr}"
    );
    drop(denied);

    // The documented run for the rootful socket as systemd's podman.socket
    // makes it (0660, group root): the image's user with the socket's
    // group, `--group-add 0`; it stays uid 10001.
    let _mode = SocketMode::set(&socket, 0o660);
    let mut spec = spec_with(&[("POD_EXEC_AUTH_TOKEN", TOKEN.to_owned())]);
    spec.groups = vec!["0".into()];
    let (server, url) = start_and_wait(&podman, &spec, port, Duration::from_secs(15)).await;

    // The server process is the image's user, not root.
    let info = podman.inspect_container(&server.id).await.expect("inspect");
    let (uids, status) = host_uids(info.state.pid);
    assert_eq!(uids, vec!["10001"; 4], "the server runs as 10001: {status}");

    let client = connect_with_token(&url, TOKEN).await;
    let r = run(&client, "echo from-sibling; hostname").await;
    let hostname = r.output.strip_prefix("from-sibling\n").map(str::trim);
    let hostname = hostname.unwrap_or_else(|| panic!("{r:?}"));
    // The session's container is a sibling on the host's Podman, owned by
    // the containerized server's instance.
    let instance = instance_of(&podman, hostname).await;
    assert_eq!(count_of(&podman, &instance).await, 1);

    // `podman stop`: SIGTERM to the server, which removes its containers.
    stop_server(&podman, &server.id).await;
    assert_eq!(
        count_of(&podman, &instance).await,
        0,
        "its session container is gone"
    );
    drop(client);
    drop(server);
    let _ = podman.remove_image(IMAGE).await;
}

/// Sets a socket's mode for a while (as systemd's podman.socket makes it),
/// restoring the service's own when dropped.
struct SocketMode {
    path: std::path::PathBuf,
    was: std::fs::Permissions,
}

impl SocketMode {
    fn set(path: &std::path::Path, mode: u32) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let was = std::fs::metadata(path).expect("socket").permissions();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        SocketMode {
            path: path.to_owned(),
            was,
        }
    }
}

impl Drop for SocketMode {
    fn drop(&mut self) {
        let _ = std::fs::set_permissions(&self.path, self.was.clone());
    }
}

/// The image of the rootless variant (its own tag: the tests run in
/// parallel and each removes its image at the end).
const IMAGE_ROOTLESS: &str = "localhost/pod-exec-mcp-server-test:rootless";

/// The server container run as a non-root user with that user's rootless
/// socket mounted (`tests/rootless-env.sh` sets the user up): its sessions
/// are containers of the user's Podman.
#[tokio::test]
async fn server_in_a_container_as_a_user_with_the_users_rootless_socket() {
    use std::os::unix::fs::MetadataExt;
    let podman = live_podman().await;
    let host = std::env::var("POD_EXEC_ROOTLESS_HOST").unwrap_or_else(|_| {
        panic!(
            "POD_EXEC_ROOTLESS_HOST is not set: as root run\n\n    eval \"$(tests/podman-env.sh)\" && eval \"$(tests/rootless-env.sh)\"\n\nthen the tests again from that shell"
        )
    });
    let user_podman = PodmanClient::new(Endpoint::parse(&host).expect("POD_EXEC_ROOTLESS_HOST"));
    assert!(
        user_podman
            .info()
            .await
            .expect("the rootless Podman answers")
            .rootless,
        "{host} is not rootless"
    );
    let socket = std::path::PathBuf::from(host.trim_start_matches("unix://"));
    let meta = std::fs::metadata(&socket).expect("the user's socket");
    let (uid, gid) = (meta.uid(), meta.gid());
    assert_ne!(uid, 0);

    build_server_image(&podman, IMAGE_ROOTLESS).await;

    let port = free_port();
    let mut spec = server_spec(&socket, port);
    spec.image = IMAGE_ROOTLESS.into();
    spec.user = Some(format!("{uid}:{gid}"));
    spec.env
        .insert("POD_EXEC_AUTH_TOKEN".into(), TOKEN.to_owned());
    let (server, url) = start_and_wait(&podman, &spec, port, Duration::from_secs(20)).await;

    // The server process is the user on the host, and has no podman.
    let inspect = podman.inspect_container(&server.id).await.expect("inspect");
    let (uids, status) = host_uids(inspect.state.pid);
    assert_eq!(uids.first(), Some(&uid.to_string()), "{status}");
    let r = common::sh(
        &podman,
        &server.id,
        "id -u; command -v podman || echo no-podman",
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&r.stream(pod_exec_mcp::podman::StreamKind::Stdout)),
        format!("{uid}\nno-podman\n")
    );

    let client = connect_with_token(&url, TOKEN).await;
    let r = run(&client, "id -u; hostname").await;
    let hostname = r.output.strip_prefix("0\n").map(str::trim);
    let hostname = hostname.unwrap_or_else(|| panic!("{r:?}"));
    // The session's container is on the user's Podman, not the test's.
    let instance = instance_of(&user_podman, hostname).await;
    assert_eq!(count_of(&user_podman, &instance).await, 1);

    stop_server(&podman, &server.id).await;
    assert_eq!(
        count_of(&user_podman, &instance).await,
        0,
        "its session container is gone"
    );
    drop(client);
    drop(server);
    let _ = podman.remove_image(IMAGE_ROOTLESS).await;
}
