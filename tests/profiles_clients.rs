//! Profile tools and prompts through a client nobody here wrote: the MCP
//! Inspector CLI (TypeScript SDK) lists and calls `execute_git` /
//! `describe_git` of a user profile and gets the prompts.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::server::{self, ServerProcess};
use serde_json::Value;

fn inspector() -> PathBuf {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/node_modules/.bin/mcp-inspector");
    assert!(
        path.exists(),
        "{} is missing: run tests/clients/setup.sh (tests/run.sh does this)",
        path.display()
    );
    path
}

/// Runs the Inspector CLI with `args` after the connection flags; it must
/// succeed and print one JSON document.
async fn inspector_json(server: &ServerProcess, args: &[&str]) -> Value {
    let mut cmd = tokio::process::Command::new(inspector());
    cmd.args(["--cli", server.url.as_str(), "--transport", "http"])
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("inspector {args:?} did not finish within 60 s"))
        .expect("run the inspector");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "inspector {args:?} failed: {stdout}\n{}\n--- server log\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.logs()
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[tokio::test]
async fn inspector_cli_uses_profile_tools_and_prompts() {
    let _podman = common::live_podman().await;
    let dir = std::env::temp_dir().join(common::unique("pem-prof-insp"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("profiles.yaml");
    std::fs::write(&file, "profiles:\n  dev:\n    tools:\n      git: {}\n").expect("write");
    let s = server::start(&[
        ("POD_EXEC_PROFILES", "dev"),
        ("POD_EXEC_PROFILES_FILE", file.to_str().expect("path")),
        ("POD_EXEC_IDLE_TIMEOUT", "3"),
    ]);

    let list = inspector_json(&s, &["--method", "tools/list"]).await;
    let tools = list["tools"].as_array().expect("tools");
    let exec = tools
        .iter()
        .find(|t| t["name"] == "execute_git")
        .unwrap_or_else(|| panic!("no execute_git in {list}"));
    assert_eq!(
        exec["inputSchema"]["required"],
        serde_json::json!(["command"]),
        "{exec}"
    );
    assert!(
        exec["outputSchema"]["properties"]["command"].is_object(),
        "{exec}"
    );
    assert!(tools.iter().any(|t| t["name"] == "describe_git"));

    let r = inspector_json(
        &s,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "execute_git",
            "--tool-arg",
            "command=--version",
        ],
    )
    .await;
    let sc = &r["structuredContent"];
    assert!(
        sc["output"]
            .as_str()
            .is_some_and(|o| o.starts_with("git version")),
        "{r}"
    );
    assert_eq!(sc["retval"], 0);
    assert_eq!(sc["command"], "git --version");

    let r = inspector_json(
        &s,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "execute_git",
            "--tool-arg",
            "command=--version | sh",
        ],
    )
    .await;
    assert_eq!(r["isError"], true, "{r}");
    assert!(r.to_string().contains("strict mode"), "{r}");

    let p = inspector_json(&s, &["--method", "prompts/list"]).await;
    let names: Vec<&str> = p["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .filter_map(|x| x["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "explore_repository",
            "run_test_suite",
            "diagnose_build_failure"
        ]
    );
    let g = inspector_json(
        &s,
        &[
            "--method",
            "prompts/get",
            "--prompt-name",
            "run_test_suite",
            "--prompt-args",
            "path=/work/app",
        ],
    )
    .await;
    assert!(g.to_string().contains("/work/app"), "{g}");
}
