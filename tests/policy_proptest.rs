//! `Policy::check` is total: random shell-ish input never panics, in any
//! mode, with or without a rule file, and stays fast on long runs.

use pod_exec_mcp::policy::{Mode, Policy, RuleFile};
use proptest::prelude::*;

const RULES: &str = "dangerous_commands:\n  shell: [\"kubectl delete\", \"rm\"]\nsafe_patterns:\n  shell: [\"rm -i\"]\nregex_rules:\n  shell:\n    - pattern: \"rm\\\\s+-rf\"\n      description: d\n";

fn policies() -> Vec<Policy> {
    let rules = RuleFile::parse("p.yaml", RULES).expect("test rules parse");
    vec![
        Policy::new(Mode::Strict, None, false),
        Policy::new(Mode::Strict, Some(rules.clone()), false),
        Policy::new(Mode::Permissive, None, false),
        Policy::new(Mode::Permissive, Some(rules), true),
    ]
}

/// Pieces that exercise every branch of the lexer.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "'",
            "\"",
            "\\",
            "`",
            "$(",
            "$((",
            "${",
            "$'",
            "$\"",
            "(",
            ")",
            "{",
            "}",
            ";",
            ";;",
            "&",
            "&&",
            "|",
            "||",
            "|&",
            "\n",
            " ",
            "\t",
            "<",
            "<<",
            "<<-",
            "<<<",
            ">",
            ">>",
            ">&",
            "&>",
            "<(",
            ">(",
            "#",
            "=",
            "()",
            "rm",
            "-rf",
            "/",
            "/*",
            "sh",
            "-c",
            "bash",
            "eval",
            "sudo",
            "env",
            "-S",
            "xargs",
            "timeout",
            "function",
            ":",
            "dd",
            "of=/dev/sda",
            "mkfs",
            "EOF",
            "\\x72",
            "\\u00e9",
            "é",
            "日本",
            "\u{0}",
            "\u{7f}",
            "-",
            "--",
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,8}",
        "\\PC{0,4}",
    ]
}

fn shellish() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(piece(), 0..40).prop_map(|v| v.concat()),
        1 => (piece(), 1usize..3000).prop_map(|(p, n)| p.repeat(n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn check_never_panics(cmd in shellish()) {
        for p in policies() {
            let _ = p.check("shell", &cmd);
            let _ = p.check("kubectl", &cmd);
        }
    }
}

#[test]
fn long_pathological_runs_are_quick() {
    let start = std::time::Instant::now();
    let p = Policy::new(
        Mode::Strict,
        Some(RuleFile::parse("p.yaml", RULES).unwrap()),
        false,
    );
    for unit in [
        "$(", "`", "sh -c \"", "'", "(", "{ ", "eval ", "\\", "<<E\n", "a|", "$'\\x",
    ] {
        let cmd = unit.repeat(100_000 / unit.len());
        let _ = p.check("shell", &cmd);
    }
    assert!(
        start.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}
