//! The shell built-ins, as a table: commands that must be refused (with
//! the bypass spellings a model might produce) and ordinary work that must
//! pass.

use pod_exec_mcp::policy::{Mode, Policy};

/// (command, expected rule id) for strict mode.
const REFUSED: &[(&str, &str)] = &[
    ("rm -rf /", "shell:rm-root"),
    ("rm -rf /*", "shell:rm-root"),
    ("rm -fr //", "shell:rm-root"),
    ("rm -r -f /./", "shell:rm-root"),
    ("rm --recursive --force /", "shell:rm-root"),
    ("rm --recur /", "shell:rm-root"),
    ("rm -rf --no-preserve-root /tmp/x", "shell:rm-root"),
    ("rm -Rf /usr", "shell:rm-system-dir"),
    ("rm -rf /etc/", "shell:rm-system-dir"),
    ("rm -rf /var/*", "shell:rm-system-dir"),
    ("rm -rf /tmp/../home", "shell:rm-system-dir"),
    ("rm -rf -- /boot", "shell:rm-system-dir"),
    ("rm -rf / --no-preserve-root", "shell:rm-root"),
    ("rm -v -R /lib64", "shell:rm-system-dir"),
    ("rm -rf /u*", "shell:rm-system-dir"),
    // Bypass spellings.
    ("rm  -rf  /", "shell:rm-root"),
    ("   rm -rf /", "shell:rm-root"),
    ("\"rm\" -rf /", "shell:rm-root"),
    ("'rm' '-rf' '/'", "shell:rm-root"),
    ("r\\m -rf /", "shell:rm-root"),
    ("$'\\x72m' -rf /", "shell:rm-root"),
    ("/bin/rm -rf /", "shell:rm-root"),
    ("/usr/bin/../bin/rm -rf /usr", "shell:rm-system-dir"),
    ("sudo rm -rf /", "shell:rm-root"),
    ("sudo -u root -- rm -rf /", "shell:rm-root"),
    ("FOO=1 BAR=2 rm -rf /", "shell:rm-root"),
    (
        "env -i PATH=/bin nice -n 10 nohup timeout 5 rm -rf /",
        "shell:rm-root",
    ),
    ("echo / | xargs rm -rf /", "shell:rm-root"),
    ("busybox rm -rf /", "shell:rm-root"),
    ("exec rm -rf /", "shell:rm-root"),
    ("command rm -rf /", "shell:rm-root"),
    ("sh -c 'rm -rf /'", "shell:rm-root"),
    ("bash -lc \"cd /tmp && rm -rf /\"", "shell:rm-root"),
    ("sh -c \"sh -c 'rm -rf /'\"", "shell:rm-root"),
    ("eval 'rm -rf /'", "shell:rm-root"),
    ("echo $(rm -rf /)", "shell:rm-root"),
    ("echo \"`rm -rf /`\"", "shell:rm-root"),
    ("cd /tmp; rm -rf /", "shell:rm-root"),
    ("true && rm -rf /", "shell:rm-root"),
    ("false || rm -rf /", "shell:rm-root"),
    ("ls | rm -rf /", "shell:rm-root"),
    ("sleep 1 & rm -rf /", "shell:rm-root"),
    ("echo hi\nrm -rf /", "shell:rm-root"),
    ("( rm -rf / )", "shell:rm-root"),
    ("{ rm -rf /; }", "shell:rm-root"),
    ("if true; then rm -rf /; fi", "shell:rm-root"),
    ("cat <<EOF\n$(rm -rf /)\nEOF", "shell:rm-root"),
    // Block devices.
    (
        "dd if=/dev/zero of=/dev/sda bs=1M",
        "shell:block-device-write",
    ),
    ("dd if=img of=/dev/nvme0n1p1", "shell:block-device-write"),
    ("dd if=x of=/dev/mapper/root", "shell:block-device-write"),
    ("cat x > /dev/sda", "shell:block-device-write"),
    ("echo x >>/dev/vdb", "shell:block-device-write"),
    (
        "head -c 1M /dev/urandom 1>/dev/xvda",
        "shell:block-device-write",
    ),
    ("echo x | tee -a /dev/sdb", "shell:block-device-write"),
    ("shred -n 1 /dev/sda", "shell:block-device-write"),
    ("wipefs -a /dev/sda", "shell:block-device-write"),
    ("blkdiscard /dev/nvme0n1", "shell:block-device-write"),
    // Filesystems.
    ("mkfs -t ext4 /dev/sda1", "shell:mkfs"),
    ("mkfs.ext4 /dev/sdb", "shell:mkfs"),
    ("sudo mkfs.xfs -f /dev/vdb", "shell:mkfs"),
    ("mke2fs /dev/sda2", "shell:mkfs"),
    ("mkswap /dev/sda3", "shell:mkfs"),
    ("/sbin/mkntfs -Q /dev/sdc1", "shell:mkfs"),
    // Fork bombs.
    (":(){ :|:& };:", "shell:fork-bomb"),
    (":() { : | : & } ; :", "shell:fork-bomb"),
    (":(){\n  :|:&\n};:", "shell:fork-bomb"),
    ("bomb(){ bomb|bomb& }; bomb", "shell:fork-bomb"),
    ("function bomb { bomb | bomb & }; bomb", "shell:fork-bomb"),
    ("bash -c ':(){ :|:& };:'", "shell:fork-bomb"),
];

const ALLOWED: &[&str] = &[
    "rm -rf /tmp/x",
    "rm -rf ./build /work/out",
    "rm -r node_modules",
    "rm /etc/hosts.bak",
    "rm -f /usr",
    "rm -rf /usr/local/lib/foo",
    "rm -rf /tmp*",
    "rm -rf build/",
    "rm -rf \"$HOME/.cache/pip\"",
    "dd if=/dev/zero of=/tmp/f bs=1M count=1",
    "dd if=/dev/sda of=/tmp/mbr bs=512 count=1",
    "echo mkfs",
    "grep -r \"rm -rf /\" .",
    "echo 'rm -rf /'",
    "man mkfs",
    "mkfs.ext4 --help",
    "cat /dev/sda | head",
    "head -c 512 < /dev/sda",
    "ls /usr",
    "find / -name x",
    "f(){ echo hi; }; f",
    "countdown(){ countdown; }",
    "echo hi > /dev/null 2>&1",
    "echo hi >/dev/stderr",
    "yes | head -n 3 | tee /tmp/out",
    "cat <<'EOF' > script.sh\nrm -rf /\nmkfs /dev/sda\nEOF",
    "git commit -m 'rm -rf / is bad'",
    "python3 -c 'import os; print(os.getcwd())'",
    "sh -c 'echo hello'",
    "sudo apt-get install -y curl",
    "ls -la /dev/sd*",
    "export X=1; echo $X",
    "arr=(rm -rf /); echo ${arr[0]}",
    "cargo test -- --nocapture",
    "echo ':(){ :|:& };:'",
    "find . -name '*.o' -exec rm -rf {} +",
    "git clean -fdx",
    "rm -rf \"$(pwd)/target\"",
    "timeout 5s sh -c 'make -j4 && rm -rf ./dist'",
    "docker run --rm -v /tmp:/tmp alpine ls",
    "cp /dev/null /tmp/empty",
    "",
    "   ",
];

#[test]
fn strict_refuses_the_destructive_table() {
    let p = Policy::new(Mode::Strict, None, false);
    let mut failures = Vec::new();
    for (cmd, rule) in REFUSED {
        match p.check("shell", cmd) {
            Err(r) if r.rule == *rule => {
                assert!(
                    r.message
                        .starts_with("refused by the command policy (strict mode): "),
                    "{}",
                    r.message
                );
                assert!(
                    r.message.contains("POD_EXEC_SECURITY_MODE=permissive"),
                    "{}",
                    r.message
                );
            }
            other => failures.push(format!("{cmd:?}: expected {rule}, got {other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} wrong:\n{}",
        failures.len(),
        REFUSED.len(),
        failures.join("\n")
    );
}

#[test]
fn strict_allows_ordinary_work() {
    let p = Policy::new(Mode::Strict, None, false);
    let failures: Vec<String> = ALLOWED
        .iter()
        .filter_map(|cmd| {
            p.check("shell", cmd)
                .err()
                .map(|r| format!("{cmd:?}: {} ({})", r.rule, r.message))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} refused:\n{}",
        failures.len(),
        ALLOWED.len(),
        failures.join("\n")
    );
}

#[test]
fn messages_quote_the_rule() {
    let p = Policy::new(Mode::Strict, None, false);
    let r = p.check("shell", "rm -rf /usr").unwrap_err();
    assert_eq!(
        r.message,
        "refused by the command policy (strict mode): recursive deletion of \"/usr\", which is the system directory /usr. Set POD_EXEC_SECURITY_MODE=permissive to allow it."
    );
}

#[test]
fn permissive_allows_everything() {
    let p = Policy::new(Mode::Permissive, None, false);
    for (cmd, _) in REFUSED {
        assert_eq!(p.check("shell", cmd), Ok(()), "{cmd:?}");
    }
}

#[test]
fn read_only_keeps_the_destructive_rules_in_permissive_mode() {
    let p = Policy::new(Mode::Permissive, None, true);
    for (cmd, rule) in REFUSED {
        let r = p.check("shell", cmd).expect_err(cmd);
        assert_eq!(r.rule, *rule, "{cmd:?}");
        assert!(r.message.contains("read-only"), "{}", r.message);
    }
    for cmd in ALLOWED {
        assert_eq!(p.check("shell", cmd), Ok(()), "{cmd:?}");
    }
}

#[test]
fn too_deep_nesting_is_refused_when_enforcing_only() {
    let cmd = "eval ".repeat(40) + "echo hi";
    let strict = Policy::new(Mode::Strict, None, false);
    assert_eq!(
        strict.check("shell", &cmd).map_err(|r| r.rule),
        Err("policy:too-deep".to_string())
    );
    let permissive = Policy::new(Mode::Permissive, None, false);
    assert_eq!(permissive.check("shell", &cmd), Ok(()));
}

#[test]
fn table_is_large_enough() {
    assert!(REFUSED.len() + ALLOWED.len() >= 40);
}
