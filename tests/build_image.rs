//! `pod_exec_mcp build-image` and `pod_exec_mcp_build` against the real
//! Podman: a build from the embedded Containerfile, run by a copy of the
//! binary outside the source tree, gives an image in which every tool the
//! sessions promise resolves; failed builds (a RUN that fails, a base that
//! cannot be had) exit non-zero with Podman's error.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bytes::Bytes;
use common::{create, live_podman, sandbox_spec, sh, unique};
use pod_exec_mcp::podman::{BuildOptions, PodmanClient};

/// Tools the session image must hold (issue 10), as commands.
const TOOLS: &[&str] = &[
    "bash", "git", "curl", "rg", "jq", "ps", "sed", "grep", "gawk", "find", "xargs", "ls", "tar",
    "gzip", "zip", "unzip", "less", "file", "diff", "patch", "ip", "ping", "dig", "nc", "python3",
    "make", "timeout",
];

const BASE: &str = "localhost/debian-bootstrap:bookworm";

/// Removes the image `tag` on drop, also when the test fails.
struct ImageGuard(String);

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let tag = std::mem::take(&mut self.0);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let Ok(endpoint) = pod_exec_mcp::podman::Endpoint::from_env() else {
                    return;
                };
                if let Err(e) = PodmanClient::new(endpoint).remove_image(&tag).await {
                    eprintln!("cleanup: could not remove image {tag}: {e}");
                }
            });
        })
        .join();
    }
}

/// A copy of `bin` in a fresh directory outside the source tree.
fn installed_copy(bin: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(unique("pem-install"));
    std::fs::create_dir_all(dir.join("bin")).expect("install dir");
    let name = Path::new(bin).file_name().expect("binary name");
    let dest = dir.join("bin").join(name);
    std::fs::copy(bin, &dest).expect("copy the binary");
    (dir, dest)
}

fn run_in(dir: &Path, bin: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()))
}

/// The build's first step is `FROM base` (whatever the step count).
fn first_step_is_from(stdout: &str, base: &str) -> bool {
    stdout
        .lines()
        .any(|l| l.starts_with("STEP 1/") && l.ends_with(&format!(": FROM {base}")))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn builds_the_session_image_with_every_tool_from_outside_the_tree() {
    let podman = live_podman().await;
    let (dir, bin) = installed_copy(env!("CARGO_BIN_EXE_pod_exec_mcp"));
    assert!(!dir.starts_with(env!("CARGO_MANIFEST_DIR")));
    let tag = format!("localhost/{}:test", unique("pem-build-image"));
    let _guard = ImageGuard(tag.clone());

    let out = run_in(&dir, &bin, &["build-image", "--base", BASE, "--tag", &tag]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "build failed: {stderr}\n{stdout}");
    assert!(first_step_is_from(&stdout, BASE), "{stdout}");
    assert!(stdout.contains("apt-get install"), "{stdout}");
    assert!(
        stdout.contains(&format!("Successfully tagged {tag}")),
        "{stdout}"
    );
    assert!(stderr.contains(&format!("built {tag}")), "{stderr}");
    assert!(podman.image_exists(&tag).await.expect("exists"));

    let mut spec = sandbox_spec("build-image");
    spec.image = tag.clone();
    let c = create(&podman, &spec).await;
    podman.start_container(&c.id).await.expect("start");
    let script = TOOLS
        .iter()
        .map(|t| format!("command -v {t} >/dev/null || echo missing: {t};"))
        .collect::<String>()
        + " test -s /etc/ssl/certs/ca-certificates.crt || echo missing: ca-certificates; pwd";
    let r = sh(&podman, &c.id, &script).await;
    assert_eq!(
        text(&r.stream(pod_exec_mcp::podman::StreamKind::Stdout)),
        "/work\n"
    );
    assert_eq!(r.exit_code, 0);
    drop(c);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_failing_run_exits_non_zero_with_podmans_error() {
    let podman = live_podman().await;
    // A base without a shell: the Containerfile's first RUN fails.
    let base = format!("localhost/{}:scratch", unique("pem-build-noshell"));
    let _base_guard = ImageGuard(base.clone());
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("Containerfile", &b"FROM scratch\nCOPY hello /hello\n"[..]),
        ("hello", b"hi\n"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, data).expect("tar");
    }
    podman
        .build_image(
            Bytes::from(tar.into_inner().expect("tar")),
            &BuildOptions {
                tag: base.clone(),
                dockerfile: "Containerfile".into(),
                ..Default::default()
            },
        )
        .await
        .expect("build the shell-less base");

    let tag = format!("localhost/{}:test", unique("pem-build-fail"));
    let _guard = ImageGuard(tag.clone());
    // The second command name, same behaviour.
    let out = Command::new(env!("CARGO_BIN_EXE_pod_exec_mcp_build"))
        .args(["--base", &base, "--tag", &tag, "--build-arg", "UNUSED=1"])
        .output()
        .expect("run pod_exec_mcp_build");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stderr}\n{stdout}");
    assert!(first_step_is_from(&stdout, &base), "{stdout}");
    assert!(
        stderr.contains("image build failed: building at STEP \"RUN apt-get update"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(!podman.image_exists(&tag).await.expect("exists"));

    // A base Podman cannot find or pull (no registry here).
    let out = Command::new(env!("CARGO_BIN_EXE_pod_exec_mcp"))
        .args(["build-image", "--base", "localhost/pem-no-such-base:none"])
        .args(["--tag", &tag])
        .output()
        .expect("run pod_exec_mcp build-image");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("pod_exec_mcp build-image: image build failed: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("localhost/pem-no-such-base:none"),
        "{stderr}"
    );

    // Bad arguments: a usage error, nothing built.
    let out = Command::new(env!("CARGO_BIN_EXE_pod_exec_mcp"))
        .args(["build-image", "--build-arg", "no-equals-sign"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("expected KEY=VALUE"));
}

/// Where images/k8s/build.sh leaves the Kubernetes CLIs it gathered.
fn k8s_bin_dir() -> PathBuf {
    let dir = std::env::var_os("POD_EXEC_K8S_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/k8s-image"))
        .join("context/bin");
    assert!(
        dir.join("kubectl").is_file(),
        "{} has no kubectl: run images/k8s/build.sh (tests/run.sh does) first",
        dir.display()
    );
    dir
}

#[tokio::test]
async fn k8s_profile_builds_the_k8s_image_from_a_bin_dir() {
    let podman = live_podman().await;
    let bins = k8s_bin_dir();
    let (dir, bin) = installed_copy(env!("CARGO_BIN_EXE_pod_exec_mcp"));
    let tag = format!("localhost/{}:test", unique("pem-build-k8s"));
    let _guard = ImageGuard(tag.clone());
    let base = common::image();

    let bins_s = bins.to_str().expect("utf-8");
    let out = run_in(
        &dir,
        &bin,
        &[
            "build-image",
            "--profile",
            "k8s",
            "--bin-dir",
            bins_s,
            "--base",
            &base,
            "--tag",
            &tag,
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "build failed: {stderr}\n{stdout}");
    assert!(stdout.contains(&format!("FROM {base}")), "{stdout}");
    assert!(stderr.contains(&format!("built {tag}")), "{stderr}");

    let mut spec = sandbox_spec("build-image-k8s");
    spec.image = tag.clone();
    let c = create(&podman, &spec).await;
    podman.start_container(&c.id).await.expect("start");
    let mut script = String::from("kubectl version --client >/dev/null && echo kubectl-ok;");
    for t in ["helm", "istioctl", "argocd"] {
        if bins.join(t).is_file() {
            script.push_str(&format!(" command -v {t} >/dev/null && echo {t}-ok;"));
        }
    }
    let r = sh(&podman, &c.id, &script).await;
    let got = text(&r.stream(pod_exec_mcp::podman::StreamKind::Stdout));
    assert!(got.starts_with("kubectl-ok\n"), "{got}");
    assert_eq!(got.lines().count(), script.matches("-ok;").count(), "{got}");
    drop(c);

    // Without --bin-dir, or one with no kubectl: one line, exit 1.
    let out = run_in(&dir, &bin, &["build-image", "--profile", "k8s"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("--profile k8s needs --bin-dir"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let empty = dir.join("empty-bin");
    std::fs::create_dir_all(&empty).expect("dir");
    let out = run_in(
        &dir,
        &bin,
        &[
            "build-image",
            "--profile",
            "k8s",
            "--bin-dir",
            empty.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("has no kubectl"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
