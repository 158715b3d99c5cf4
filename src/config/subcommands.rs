//! Arguments beside the server's own: how ssh:// endpoints are reached
//! (flattened into the server's and build-image's), and the build-image
//! subcommand.

use std::path::PathBuf;

use clap::Parser;

use super::values::endpoint_of;
use crate::podman::{Endpoint, EndpointError};

// ---- ssh:// endpoints (issue 10) ---------------------------------------------

/// Options for a CONTAINER_HOST=ssh://... endpoint, which the system's ssh
/// client forwards (podman's remote client reads the same CONTAINER_SSHKEY).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SshArgs {
    /// Private key for ssh:// (only this key is offered); default: the ssh
    /// agent and ssh's default keys.
    #[arg(
        long = "container-sshkey",
        env = "CONTAINER_SSHKEY",
        value_name = "FILE"
    )]
    pub key: Option<PathBuf>,

    /// known_hosts file for ssh:// host keys (default: ssh's own,
    /// ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts).
    #[arg(
        long = "ssh-known-hosts",
        env = "POD_EXEC_SSH_KNOWN_HOSTS",
        value_name = "FILE"
    )]
    pub known_hosts: Option<PathBuf>,

    /// Accept any ssh host key (a warning is logged): only for hosts whose
    /// key cannot be known in advance, on a network you trust.
    #[arg(long = "ssh-insecure-host-key", env = "POD_EXEC_SSH_INSECURE_HOST_KEY", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure_host_key: bool,
}

impl SshArgs {
    /// What the ssh forward runs with.
    pub fn options(&self) -> crate::podman::ssh::SshOptions {
        crate::podman::ssh::SshOptions {
            key: self.key.clone(),
            known_hosts: self.known_hosts.clone(),
            insecure_host_key: self.insecure_host_key,
            program: None,
        }
    }
}

// ---- `pod_exec_mcp build-image` (issue 10) -----------------------------------

/// `pod_exec_mcp build-image` (also `pod_exec_mcp_build`): builds the
/// session image through the Podman API from the Containerfile embedded in
/// the binary.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "pod_exec_mcp build-image",
    version,
    about = "Build the session image through the Podman API (no podman CLI needed)"
)]
pub struct BuildImageArgs {
    /// Podman API address: unix:///path/podman.sock, tcp://host:port or
    /// ssh://user@host[:port]/path/podman.sock (default as for the server).
    #[arg(long, env = "CONTAINER_HOST")]
    pub container_host: Option<String>,

    /// How ssh:// endpoints are reached.
    #[command(flatten)]
    pub ssh: SshArgs,

    /// Tag of the image built (default: the server's POD_EXEC_IMAGE
    /// default, or localhost/pod_exec_mcp_k8s:latest with --profile k8s).
    #[arg(long)]
    pub tag: Option<String>,

    /// Which image: `session` (images/Containerfile) or `k8s` (the session
    /// image plus the Kubernetes CLIs from --bin-dir; images/k8s/).
    #[arg(long, default_value = "session", value_parser = ["session", "k8s"])]
    pub profile: String,

    /// With --profile k8s: a directory of static binaries (kubectl, and
    /// helm, istioctl, argocd when there) copied to /usr/local/bin;
    /// images/k8s/build.sh gathers them into target/k8s-image/context/bin.
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,

    /// Base image (the Containerfile's BASE argument); it must be present
    /// in that Podman or pullable by it.
    #[arg(long)]
    pub base: Option<String>,

    /// A build argument, KEY=VALUE; may be repeated.
    #[arg(long = "build-arg", value_name = "KEY=VALUE", value_parser = parse_build_arg)]
    pub build_args: Vec<(String, String)>,
}

impl BuildImageArgs {
    /// The Podman endpoint, as [`Config::endpoint`] picks it.
    ///
    /// # Errors
    /// CONTAINER_HOST names a form the client cannot use.
    pub fn endpoint(&self) -> Result<Endpoint, EndpointError> {
        endpoint_of(self.container_host.as_deref())
    }
}

pub(super) fn parse_build_arg(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains(char::is_whitespace) => {
            Ok((k.to_owned(), v.to_owned()))
        }
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}
