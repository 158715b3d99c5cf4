//! The third-party MCP clients under tests/clients (installed by
//! tests/clients/setup.sh): where they are, and one bounded run of one.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// tests/clients.
pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// `rel` under tests/clients, or a failure that says how to install it.
pub fn installed(rel: &str) -> PathBuf {
    let path = clients_dir().join(rel);
    assert!(
        path.exists(),
        "{} is missing: the MCP test clients are not installed.\n\
         Run tests/clients/setup.sh (it installs the Python SDK venvs and the MCP \
         Inspector under tests/clients; tests/run.sh does this), then run the tests again.",
        path.display()
    );
    path
}

/// A finished client run.
pub struct ClientRun {
    /// Its exit status and output.
    pub out: Output,
    /// How long it took.
    pub took: Duration,
    /// The command line, for messages.
    pub what: String,
}

/// Runs `program args` in tests/clients in a process group of its own;
/// if it outlives `limit`, the group (the client and whatever it started,
/// e.g. npx's node children) is killed and the test fails with `logs()`.
pub async fn run(
    program: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    limit: Duration,
    logs: &dyn Fn() -> String,
) -> ClientRun {
    let what = format!(
        "{} {}",
        program
            .strip_prefix(clients_dir())
            .unwrap_or(program)
            .display(),
        args.join(" ")
    );
    let t = Instant::now();
    let child = tokio::process::Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(clients_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let pid = child.id().expect("child pid");
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(out) => {
            let out = out.unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
            let took = t.elapsed();
            eprintln!("{what} took {took:?} ({})", out.status);
            ClientRun { out, took, what }
        }
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            panic!(
                "{what} did not finish within {limit:?}: killed.\n{}",
                logs()
            );
        }
    }
}
