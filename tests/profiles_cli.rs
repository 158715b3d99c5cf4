//! A user-declared CLI profile (POD_EXEC_PROFILES_FILE) end to end: the
//! real server and Podman, the session image's own `git` and `jq` exposed
//! as execute_/describe_ tools; tools appear only with their profile; a
//! CLI the image lacks says which image has it.

mod common;

use common::live_podman;
use common::mcp::{connect, error_text, ran, run, tool};
use common::server;

const PROFILES: &str = "\
profiles:
  dev:
    description: tools of the session image
    tools:
      git:
        description: Git, the version control system
        mutating: [push, \"git commit\"]
      jq:
        description: jq, the JSON processor
        help_flag: --help
  extra:
    tools:
      nosuchcli:
        image: the example-tools image (example.org/tools:1)
";

fn profiles_file() -> String {
    let dir = std::env::temp_dir().join(common::unique("pem-profiles"));
    std::fs::create_dir_all(&dir).expect("dir");
    let f = dir.join("profiles.yaml");
    std::fs::write(&f, PROFILES).expect("write");
    f.to_str().expect("path").to_owned()
}

#[tokio::test]
async fn user_profile_gives_working_git_tools() {
    let _podman = live_podman().await;
    let file = profiles_file();
    let s = server::start(&[
        ("POD_EXEC_PROFILES", "dev,extra"),
        ("POD_EXEC_PROFILES_FILE", &file),
    ]);
    let c = connect(&s.url).await;
    let tools = c.list_all_tools().await.expect("tools/list");
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "describe_git",
            "describe_jq",
            "describe_nosuchcli",
            "execute_git",
            "execute_jq",
            "execute_nosuchcli",
            "sandbox_create",
            "sandbox_destroy",
            "sandbox_list",
            "shell_exec"
        ]
    );
    let exec = tools
        .iter()
        .find(|t| t.name == "execute_git")
        .expect("execute_git");
    assert!(exec.output_schema.is_some());
    let schema = serde_json::Value::Object((*exec.input_schema).clone());
    assert!(schema["properties"]["command"].is_object(), "{schema}");
    assert!(schema["properties"]["timeout"].is_object(), "{schema}");
    let describe = tools
        .iter()
        .find(|t| t.name == "describe_git")
        .expect("describe_git");
    assert_eq!(
        describe.annotations.as_ref().and_then(|a| a.read_only_hint),
        Some(true)
    );

    let (out, rv, line) = ran(&c, "execute_git", "--version").await;
    assert!(rv == 0 && out.starts_with("git version"), "{out}");
    assert_eq!(line, "git --version");
    // State persists in the session's sandbox, as with shell_exec.
    let (_, rv, _) = ran(&c, "execute_git", "git init -q /work/repo").await;
    assert_eq!(rv, 0);
    let r = run(&c, "test -d /work/repo/.git && echo yes").await;
    assert_eq!(r.output, "yes\n");
    let (out, rv, _) = ran(
        &c,
        "execute_git",
        "-C /work/repo status --short --branch | head -1",
    )
    .await;
    assert!(rv == 0 && out.starts_with("## "), "{out}");
    // A non-zero exit is a result, with git's own message.
    let (out, rv, _) = ran(&c, "execute_git", "-C /nonexistent status").await;
    assert!(rv != 0 && out.contains("/nonexistent"), "{out}");
    let (out, rv, _) = ran(&c, "execute_jq", "-n '[1,2,3] | add'").await;
    assert_eq!((out.as_str(), rv), ("6\n", 0));
    // With a handle, the tool runs in that sandbox, not the session's.
    let r = tool(&c, "sandbox_create", serde_json::json!({"name": "git"})).await;
    let h = r.structured_content.expect("structured")["sandbox"]
        .as_str()
        .expect("handle")
        .to_owned();
    let r = tool(
        &c,
        "execute_git",
        serde_json::json!({"command": "init -q /work/in-handle", "sandbox": h}),
    )
    .await;
    assert_ne!(r.is_error, Some(true), "{r:?}");
    let r = tool(
        &c,
        "shell_exec",
        serde_json::json!({"command": "test -d /work/in-handle/.git && echo there", "sandbox": h}),
    )
    .await;
    assert_eq!(
        r.structured_content.expect("structured")["output"],
        "there\n"
    );
    let r = run(&c, "test -d /work/in-handle || echo not-here").await;
    assert_eq!(r.output, "not-here\n");
    tool(&c, "sandbox_destroy", serde_json::json!({"sandbox": h})).await;

    let r = tool(&c, "describe_git", serde_json::json!({"command": "commit"})).await;
    let v = r.structured_content.expect("structured");
    assert_eq!(v["command"], "git commit --help");
    let r = tool(&c, "describe_jq", serde_json::json!({})).await;
    let v = r.structured_content.expect("structured");
    assert!(v["output"].as_str().unwrap_or("").contains("Usage:"), "{v}");
    let r = tool(
        &c,
        "describe_git",
        serde_json::json!({"command": "log; id"}),
    )
    .await;
    assert!(error_text(&r).contains("plain words"));

    // Strict mode shapes the line whatever the tool.
    for bad in [
        "--version | sh",
        "--version; rm -rf /",
        "log `id`",
        "log > /tmp/x",
    ] {
        let r = tool(&c, "execute_git", serde_json::json!({"command": bad})).await;
        let e = error_text(&r);
        assert!(e.contains("strict mode"), "{bad}: {e}");
    }
    let r = tool(&c, "execute_git", serde_json::json!({"command": " "})).await;
    assert!(error_text(&r).contains("empty"));
    let r = tool(
        &c,
        "execute_git",
        serde_json::json!({"command": "status", "timeout": -1}),
    )
    .await;
    assert!(error_text(&r).contains("timeout"));

    // A CLI the image lacks: the error names the image that has it.
    let r = tool(
        &c,
        "execute_nosuchcli",
        serde_json::json!({"command": "run"}),
    )
    .await;
    let e = error_text(&r);
    assert!(
        e.contains("not installed") && e.contains("example.org/tools:1"),
        "{e}"
    );
    c.cancel().await.ok();
}

#[tokio::test]
async fn no_profile_no_tools_and_permissive_passes_the_line() {
    let _podman = live_podman().await;
    let plain = server::start(&[]);
    let c = connect(&plain.url).await;
    let tools = c.list_all_tools().await.expect("tools/list");
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "sandbox_create",
            "sandbox_destroy",
            "sandbox_list",
            "shell_exec"
        ]
    );
    let prompts = c.list_all_prompts().await.expect("prompts/list");
    let names: Vec<&str> = prompts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "explore_repository",
            "run_test_suite",
            "diagnose_build_failure"
        ]
    );
    c.cancel().await.ok();

    let file = profiles_file();
    let permissive = server::start(&[
        ("POD_EXEC_PROFILES", "dev"),
        ("POD_EXEC_PROFILES_FILE", &file),
        ("POD_EXEC_SECURITY_MODE", "permissive"),
    ]);
    let c = connect(&permissive.url).await;
    let (out, rv, _) = ran(&c, "execute_git", "--version && echo after").await;
    assert!(
        rv == 0 && out.contains("git version") && out.ends_with("after\n"),
        "{out}"
    );
    c.cancel().await.ok();
}

#[tokio::test]
async fn read_only_refuses_a_user_clis_mutating_verbs() {
    let _podman = live_podman().await;
    let file = profiles_file();
    let s = server::start(&[
        ("POD_EXEC_PROFILES", "dev"),
        ("POD_EXEC_PROFILES_FILE", &file),
        ("POD_EXEC_READ_ONLY", "1"),
    ]);
    let c = connect(&s.url).await;
    for bad in ["push origin main", "-C /work commit -m x"] {
        let r = tool(&c, "execute_git", serde_json::json!({"command": bad})).await;
        let e = error_text(&r);
        assert!(e.contains("read-only"), "{bad}: {e}");
    }
    let r = common::mcp::call(&c, "git push").await;
    assert!(error_text(&r).contains("read-only"));
    let (out, rv, _) = ran(&c, "execute_git", "--version").await;
    assert!(rv == 0 && out.starts_with("git version"), "{out}");
    c.cancel().await.ok();
}

#[tokio::test]
async fn bad_profiles_stop_start_up_with_a_clear_line() {
    let _podman = live_podman().await;
    let (status, logs, took) = server::start_failure(&[("POD_EXEC_PROFILES", "nope")]);
    assert!(!status.success());
    assert!(logs.contains("unknown profile \"nope\""), "{logs}");
    assert!(took.as_secs() < 5, "{took:?}");
    let dir = std::env::temp_dir().join(common::unique("pem-badprof"));
    std::fs::create_dir_all(&dir).expect("dir");
    let f = dir.join("p.yaml");
    std::fs::write(
        &f,
        "profiles:\n  dev:\n    tools:\n      git: {colour: red}\n",
    )
    .expect("write");
    let (status, logs, _) = server::start_failure(&[
        ("POD_EXEC_PROFILES", "dev"),
        ("POD_EXEC_PROFILES_FILE", f.to_str().expect("path")),
    ]);
    assert!(!status.success());
    assert!(
        logs.contains("p.yaml:4:") && logs.contains("colour"),
        "{logs}"
    );
    let (status, logs, _) = server::start_failure(&[
        ("POD_EXEC_PROFILES", "k8s"),
        ("POD_EXEC_KUBECONFIG", "/nonexistent/kubeconfig"),
    ]);
    assert!(!status.success());
    assert!(logs.contains("/nonexistent/kubeconfig"), "{logs}");
}
