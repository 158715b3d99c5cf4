//! The real server against MCP clients nobody here wrote: the official
//! Python SDK (1.x and 2.x, low-level session client, plus the 2.x
//! high-level stateless client) and the MCP Inspector CLI (TypeScript SDK).
//!
//! The clients are installed by `tests/clients/setup.sh` (tests/run.sh runs
//! it); a missing client fails the test with that instruction, it never
//! skips. Every client process runs in its own process group, bounded by
//! [`CLIENT_TIMEOUT`], and is killed (with its children) when it overruns.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::clients::installed;
use common::server::{ServerProcess, wait_for};
use pod_exec_mcp::podman::PodmanClient;
use serde_json::Value;

/// Upper bound for one client run; a hung client fails the test.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How soon a container must go once its session has ended.
const RELEASE_LIMIT: Duration = Duration::from_secs(10);

/// A finished client run.
struct Run {
    out: Output,
    took: Duration,
    what: String,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    /// Panics with everything needed to see why, unless it exited 0.
    fn assert_success(&self, server: &ServerProcess) {
        assert!(
            self.out.status.success(),
            "{} failed ({}) after {:?}\n--- stdout\n{}\n--- stderr\n{}\n--- server log\n{}",
            self.what,
            self.out.status,
            self.took,
            self.stdout(),
            self.stderr(),
            server.logs()
        );
    }
}

/// The bearer token the servers under test require.
const TOKEN: &str = "third-party-token-93b1c0d2e4f5a6";

/// Runs `program args` in tests/clients, in a process group of its own,
/// killing the group if it outlives [`CLIENT_TIMEOUT`].
async fn run_client(server: &ServerProcess, program: &Path, args: &[&str]) -> Run {
    run_client_env(server, program, args, &[]).await
}

/// [`run_client`] with extra environment.
async fn run_client_env(
    server: &ServerProcess,
    program: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Run {
    let logs = || format!("--- server log\n{}", server.logs());
    let r = common::clients::run(program, args, envs, CLIENT_TIMEOUT, &logs).await;
    Run {
        out: r.out,
        took: r.took,
        what: r.what,
    }
}

/// The last stdout line as JSON.
fn json_line(run: &Run) -> Value {
    let stdout = run.stdout();
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "{}: last stdout line is not JSON ({e}): {line:?}\n--- stderr\n{}",
            run.what,
            run.stderr()
        )
    })
}

async fn container_count(server: &ServerProcess, podman: &PodmanClient) -> usize {
    server.containers(podman).await.len()
}

async fn assert_no_containers_soon(server: &ServerProcess, podman: &PodmanClient, why: &str) {
    let t = Instant::now();
    wait_for(RELEASE_LIMIT, why, || async {
        container_count(server, podman).await == 0
    })
    .await;
    eprintln!("containers gone {:?} after the client exited", t.elapsed());
}

/// py_client.py under one venv: the whole scenario in one session, and
/// the session's container removed once the client has closed it. The
/// server requires a bearer token, which the SDK sends as a header; with a
/// wrong token the SDK reports the 401.
async fn python_low_level(venv: &str, major: &str) {
    let podman = common::live_podman().await;
    let python = installed(&format!("{venv}/bin/python"));
    let server = common::server::start(&[("POD_EXEC_AUTH_TOKEN", TOKEN)]);

    let wrong = format!("{TOKEN}-wrong");
    let refused = run_client_env(
        &server,
        &python,
        &["py_client.py", &server.url],
        &[("MCP_BEARER_TOKEN", &wrong)],
    )
    .await;
    assert!(!refused.out.status.success(), "{}", refused.stdout());
    // Its HTTP log (printed on failure) shows the server's answer.
    assert!(
        refused.stderr().contains("'POST 401'"),
        "{}",
        refused.stderr()
    );
    assert_eq!(container_count(&server, &podman).await, 0);

    let run = run_client_env(
        &server,
        &python,
        &["py_client.py", &server.url],
        &[("MCP_BEARER_TOKEN", TOKEN)],
    )
    .await;
    run.assert_success(&server);
    let summary = json_line(&run);
    eprintln!("{summary}");
    assert_eq!(summary["ok"], true, "{summary}");
    let version = summary["mcp_version"].as_str().unwrap_or_default();
    assert!(
        version.split('.').next() == Some(major) || (major == "2" && !version.starts_with("1.")),
        "{venv} has mcp {version}, expected {major}.x: re-run tests/clients/setup.sh"
    );
    assert!(
        summary["hostname"].as_str().is_some_and(|h| !h.is_empty()),
        "{summary}"
    );
    // The low-level client does the handshake: a session-era version.
    let pv = summary["protocol_version"].as_str().unwrap_or_default();
    assert!(
        pv.as_bytes().first() == Some(&b'2') && pv < "2026",
        "negotiated {pv:?}"
    );
    assert_eq!(summary["empty_command"]["isError"], true, "{summary}");

    // The SDK ends its session with DELETE on exit (seen in its HTTP log),
    // so the server releases the container now, not at idle expiry.
    assert_eq!(
        summary["sent_delete"], true,
        "the client sent no DELETE: {summary}"
    );
    // And the SDK accepted the answer (it takes only 200/204; rmcp's own
    // answer is 202, which the server rewrites).
    assert!(
        !run.stderr().contains("Session termination failed"),
        "{}",
        run.stderr()
    );
    assert_no_containers_soon(&server, &podman, "the session's container to be removed").await;
    let logs = server.logs();
    assert_eq!(logs.matches("session opened").count(), 1, "{logs}");
    assert!(
        logs.contains("why=\"closed\""),
        "session not ended by DELETE:\n{logs}"
    );
    assert_eq!(
        logs.matches("container created").count(),
        1,
        "one container per session:\n{logs}"
    );
}

/// Outputs that cost a lot once encoded (a million NULs; 1 GiB of random
/// bytes) reach the SDK as normal, truncated results: every event stays
/// under its 1 MiB limit.
async fn python_big_output(venv: &str) {
    let _podman = common::live_podman().await;
    let python = installed(&format!("{venv}/bin/python"));
    let server = common::server::start(&[]);
    let run = run_client(
        &server,
        &python,
        &["py_client.py", "--big-output", &server.url],
    )
    .await;
    run.assert_success(&server);
    let summary = json_line(&run);
    eprintln!("{summary}");
    assert_eq!(summary["ok"], true, "{summary}");
}

#[tokio::test]
async fn python_sdk_1x_gets_big_outputs() {
    python_big_output(".venv-mcp1").await;
}

#[tokio::test]
async fn python_sdk_2x_gets_big_outputs() {
    python_big_output(".venv-mcp2").await;
}

#[tokio::test]
async fn python_sdk_1x_low_level_client() {
    python_low_level(".venv-mcp1", "1").await;
}

#[tokio::test]
async fn python_sdk_2x_low_level_client() {
    python_low_level(".venv-mcp2", "2").await;
}

/// The 2.x high-level `Client(url)` goes stateless (2026-07-28): no session,
/// so each call runs in a one-shot container that is removed afterwards.
#[tokio::test]
async fn python_sdk_2x_stateless_client() {
    let podman = common::live_podman().await;
    let python = installed(".venv-mcp2/bin/python");
    let server = common::server::start(&[]);

    let run = run_client(
        &server,
        &python,
        &["py_client.py", "--stateless", &server.url],
    )
    .await;
    run.assert_success(&server);
    let summary = json_line(&run);
    eprintln!("{summary}");
    assert_eq!(summary["protocol_version"], "2026-07-28", "{summary}");
    let hostnames: Vec<&str> = summary["hostnames"]
        .as_array()
        .expect("hostnames")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(hostnames.len(), 3, "{summary}");
    assert!(
        hostnames[0] != hostnames[1] && hostnames[1] != hostnames[2],
        "stateless calls shared a container: {summary}"
    );
    assert_eq!(summary["file_persisted"], false, "{summary}");

    assert_eq!(
        container_count(&server, &podman).await,
        0,
        "one-shot containers left behind"
    );
    let logs = server.logs();
    assert!(
        !logs.contains("session opened"),
        "a stateless client opened a session:\n{logs}"
    );
    assert_eq!(logs.matches("one-shot call done").count(), 4, "{logs}");
}

fn inspector() -> PathBuf {
    installed("node_modules/.bin/mcp-inspector")
}

/// Runs the Inspector CLI against the server with `args` after the
/// connection flags; it must succeed and print one JSON document.
async fn inspector_json(server: &ServerProcess, inspector: &Path, args: &[&str]) -> (Run, Value) {
    let header = format!("Authorization: Bearer {TOKEN}");
    let mut all = vec![
        "--cli",
        server.url.as_str(),
        "--transport",
        "http",
        "--header",
        header.as_str(),
    ];
    all.extend_from_slice(args);
    let run = run_client(server, inspector, &all).await;
    run.assert_success(server);
    let result: Value = serde_json::from_str(&run.stdout())
        .unwrap_or_else(|e| panic!("inspector output is not JSON ({e}):\n{}", run.stdout()));
    (run, result)
}

/// The Inspector CLI (TypeScript SDK) calls the tool, sending the bearer
/// token with `--header` (without it, the call fails with the 401). It
/// closes its transport without DELETE, so its session — and container —
/// stays until idle expiry; a short POD_EXEC_IDLE_TIMEOUT shows that it is
/// reclaimed.
#[tokio::test]
async fn inspector_cli_tools_call() {
    let podman = common::live_podman().await;
    let inspector = inspector();
    let server = common::server::start(&[
        ("POD_EXEC_IDLE_TIMEOUT", "3"),
        ("POD_EXEC_AUTH_TOKEN", TOKEN),
    ]);

    let refused = run_client(
        &server,
        &inspector,
        &[
            "--cli",
            &server.url,
            "--transport",
            "http",
            "--method",
            "tools/list",
        ],
    )
    .await;
    assert!(!refused.out.status.success(), "{}", refused.stdout());
    // It prints the 401's body ("unauthorized").
    let said = format!("{}{}", refused.stdout(), refused.stderr());
    assert!(
        said.contains("401") || said.contains("unauthorized"),
        "{}\n{}",
        refused.stdout(),
        refused.stderr()
    );

    let (run, result) = inspector_json(
        &server,
        &inspector,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "shell_exec",
            "--tool-arg",
            "command=echo hi from inspector",
        ],
    )
    .await;
    assert_eq!(result["isError"], false, "{result}");
    assert_eq!(
        result["structuredContent"]["output"], "hi from inspector\n",
        "{result}"
    );
    assert_eq!(result["structuredContent"]["retval"], 0, "{result}");
    // Its schema validator (Ajv) knows every format the output schema uses.
    assert!(!run.stderr().contains("unknown format"), "{}", run.stderr());
    let text = result["content"][0]["text"].as_str().expect("text content");
    let from_text: Value = serde_json::from_str(text).expect("text content is the JSON");
    assert_eq!(from_text, result["structuredContent"]);

    // No DELETE from the Inspector: the session outlives the process.
    let logs = server.logs();
    assert_eq!(logs.matches("session opened").count(), 1, "{logs}");
    assert!(
        !logs.contains("session ended"),
        "the Inspector now ends its session:\n{logs}"
    );
    assert_eq!(container_count(&server, &podman).await, 1, "{logs}");
    // Idle expiry (3 s) reclaims it.
    let t = Instant::now();
    wait_for(
        Duration::from_secs(15),
        "idle expiry to remove the container",
        || async { container_count(&server, &podman).await == 0 },
    )
    .await;
    eprintln!(
        "abandoned session's container removed {:?} after the client exited",
        t.elapsed()
    );
    assert!(server.logs().contains("why=\"idle\""), "{}", server.logs());
}

/// tools/list through the Inspector: the tool and both schemas; listing
/// creates no container.
#[tokio::test]
async fn inspector_cli_tools_list() {
    let podman = common::live_podman().await;
    let inspector = inspector();
    let server = common::server::start(&[("POD_EXEC_AUTH_TOKEN", TOKEN)]);

    let (_run, result) = inspector_json(&server, &inspector, &["--method", "tools/list"]).await;
    let tools = result["tools"].as_array().expect("tools");
    let tool = tools
        .iter()
        .find(|t| t["name"] == "shell_exec")
        .unwrap_or_else(|| panic!("shell_exec not listed: {result}"));
    assert_eq!(
        tool["inputSchema"]["required"],
        serde_json::json!(["command"]),
        "{tool}"
    );
    let required = tool["outputSchema"]["required"]
        .as_array()
        .expect("outputSchema.required");
    assert!(required.contains(&"output".into()) && required.contains(&"retval".into()));
    // Annotations as a TypeScript client reads them (camelCase).
    let a = &tool["annotations"];
    assert_eq!(a["readOnlyHint"], false, "{tool}");
    assert_eq!(a["destructiveHint"], true, "{tool}");
    assert_eq!(a["idempotentHint"], false, "{tool}");
    assert_eq!(a["openWorldHint"], true, "{tool}");
    assert_eq!(
        container_count(&server, &podman).await,
        0,
        "tools/list created a container"
    );
}
