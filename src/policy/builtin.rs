//! Built-in strict-mode rules, per tool. Only `shell` has any so far; a
//! tool's rules are a slice of [`BuiltinRule`]s picked in [`rules_for`], so
//! adding kubectl's or helm's is one more table and one more match arm.
//!
//! Each rule looks at one normalized [`Invocation`] and aims at the few
//! commands that destroy the sandbox's own system or a host device, while
//! letting ordinary cleanup (`rm -rf ./build`) through.

use super::command::{Invocation, basename};

/// A built-in rule: a stable id and a check that returns the reason.
pub(crate) struct BuiltinRule {
    pub id: &'static str,
    pub check: fn(&Invocation) -> Option<String>,
}

/// The built-in rules for `tool` (empty when it has none).
pub(crate) fn rules_for(tool: &str) -> &'static [BuiltinRule] {
    match tool {
        "shell" => SHELL,
        _ => &[],
    }
}

const SHELL: &[BuiltinRule] = &[
    BuiltinRule {
        id: "shell:rm-root",
        check: rm_root,
    },
    BuiltinRule {
        id: "shell:rm-system-dir",
        check: rm_system_dir,
    },
    BuiltinRule {
        id: "shell:block-device-write",
        check: block_device_write,
    },
    BuiltinRule {
        id: "shell:mkfs",
        check: mkfs,
    },
    BuiltinRule {
        id: "shell:fork-bomb",
        check: fork_bomb,
    },
];

/// Top-level directories whose recursive deletion breaks the system.
const SYSTEM_DIRS: &[&str] = &[
    "bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "libx32", "opt", "proc", "root", "sbin",
    "srv", "sys", "usr", "var", "home",
];

/// An `rm` with a recursive flag: its non-option targets, and whether it
/// said `--no-preserve-root`.
fn rm_recursive(inv: &Invocation) -> Option<(Vec<&str>, bool)> {
    if inv.program != "rm" {
        return None;
    }
    let (mut recursive, mut no_preserve) = (false, false);
    let mut targets = Vec::new();
    let mut options_done = false;
    for a in &inv.args {
        if options_done || !a.starts_with('-') || a == "-" {
            targets.push(a.as_str());
        } else if a == "--" {
            options_done = true;
        } else if let Some(long) = a.strip_prefix("--") {
            // getopt accepts any unambiguous abbreviation.
            recursive |= long.len() >= 2 && "recursive".starts_with(long) || long == "r";
            no_preserve |= long.len() >= 2 && "no-preserve-root".starts_with(long);
        } else {
            recursive |= a.contains(['r', 'R']);
        }
    }
    recursive.then_some((targets, no_preserve))
}

fn rm_root(inv: &Invocation) -> Option<String> {
    let (targets, no_preserve) = rm_recursive(inv)?;
    if no_preserve {
        return Some("recursive rm with --no-preserve-root".into());
    }
    targets.into_iter().find_map(|t| match classify(t) {
        Target::Root => Some(format!("recursive deletion of {t:?}, the root directory")),
        _ => None,
    })
}

fn rm_system_dir(inv: &Invocation) -> Option<String> {
    let (targets, _) = rm_recursive(inv)?;
    targets.into_iter().find_map(|t| match classify(t) {
        Target::SystemDir(d) => Some(format!(
            "recursive deletion of {t:?}, which is the system directory /{d}"
        )),
        _ => None,
    })
}

enum Target {
    Root,
    SystemDir(&'static str),
    Other,
}

/// Lexically normalizes an absolute path (`//`, `/./`, `..`, trailing `/`
/// and `/*`) and says whether it is `/` or a system directory. A glob in
/// the top-level segment (`/u*`) counts if it could match one.
fn classify(path: &str) -> Target {
    if !path.starts_with('/') {
        return Target::Other;
    }
    let mut segs: Vec<&str> = Vec::new();
    for s in path.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    // `/usr/*` deletes what `/usr` holds: as bad as `/usr` itself.
    if segs.last().is_some_and(|s| s.bytes().all(|b| b == b'*')) {
        segs.pop();
    }
    match segs.as_slice() {
        [] => Target::Root,
        [top] => SYSTEM_DIRS
            .iter()
            .find(|d| glob_match(top.as_bytes(), d.as_bytes()))
            .map_or(Target::Other, |d| Target::SystemDir(d)),
        _ => Target::Other,
    }
}

/// `*`, `?` and `[…]` (any class counts as matching one character: the
/// conservative reading). Iterative, with one backtrack point for `*`.
fn glob_match(pat: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pat.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
                continue;
            }
            Some(b'?') => {
                p += 1;
                n += 1;
                continue;
            }
            Some(b'[') => {
                if let Some(end) = pat[p..].iter().position(|&c| c == b']') {
                    p += end + 1;
                    n += 1;
                    continue;
                }
                if name[n] == b'[' {
                    p += 1;
                    n += 1;
                    continue;
                }
            }
            Some(&c) if c == name[n] => {
                p += 1;
                n += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, sn)) => {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

/// `/dev/sda`, `/dev/nvme0n1p2`, `/dev/mapper/root`, … but not
/// `/dev/null`, `/dev/zero`, `/dev/stdout` or `/dev/shm/x`.
fn is_block_device(path: &str) -> bool {
    let Some(dev) = path.strip_prefix("/dev/") else {
        return false;
    };
    const PREFIXES: &[&str] = &[
        "sd", "vd", "xvd", "nvme", "mmcblk", "hd", "dm-", "loop", "md", "mapper/", "disk/",
    ];
    PREFIXES
        .iter()
        .any(|p| dev.starts_with(p) && dev.len() > p.len())
}

fn block_device_write(inv: &Invocation) -> Option<String> {
    if let Some(r) = inv
        .redirects
        .iter()
        .find(|r| r.output && is_block_device(&r.target))
    {
        return Some(format!(
            "redirecting output into the block device {:?}",
            r.target
        ));
    }
    let operands = || inv.args.iter().filter(|a| !a.starts_with('-'));
    match inv.program.as_str() {
        "dd" => operands()
            .filter_map(|a| a.strip_prefix("of="))
            .find(|t| is_block_device(t))
            .map(|t| format!("dd writing to the block device {t:?}")),
        "tee" => operands()
            .find(|t| is_block_device(t))
            .map(|t| format!("tee writing to the block device {t:?}")),
        "shred" => operands()
            .find(|t| t.starts_with("/dev/"))
            .map(|t| format!("shred overwriting the device {t:?}")),
        "wipefs" | "blkdiscard" if !help_only(inv) => {
            Some(format!("{}, which erases a block device", inv.program))
        }
        _ => None,
    }
}

/// `--help`/`--version` and nothing else: prints and exits.
fn help_only(inv: &Invocation) -> bool {
    matches!(inv.args.as_slice(), [a] if a == "--help" || a == "--version" || a == "-h")
}

fn mkfs(inv: &Invocation) -> Option<String> {
    let p = inv.program.as_str();
    let is_mkfs = p == "mkfs"
        || p.starts_with("mkfs.")
        || matches!(
            p,
            "mke2fs" | "mkswap" | "mkntfs" | "mkdosfs" | "mkexfatfs" | "mkreiserfs" | "mkudffs"
        );
    (is_mkfs && !help_only(inv))
        .then(|| format!("{p}, which creates a filesystem (erasing what the device holds)"))
}

/// A command inside function `f`'s body that calls `f` in a pipeline or in
/// the background: each call starts two more (`:(){ :|:& };:`).
fn fork_bomb(inv: &Invocation) -> Option<String> {
    let f = inv.function.as_deref()?;
    (basename(f) == inv.program && (inv.piped || inv.background)).then(|| {
        format!(
            "a fork bomb: function {f:?} starts copies of itself in a pipeline or the background"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_normalizes_paths() {
        for p in ["/", "//", "/./", "/*", "/tmp/..", "/../.."] {
            assert!(matches!(classify(p), Target::Root), "{p}");
        }
        for p in [
            "/usr",
            "/usr/",
            "/usr/*",
            "//usr",
            "/./etc/",
            "/u*",
            "/[e]tc",
            "/tmp/../var",
        ] {
            assert!(matches!(classify(p), Target::SystemDir(_)), "{p}");
        }
        for p in [
            "/tmp/x",
            "/usr/local/x",
            "./usr",
            "usr",
            "/tmp*",
            "/work/out",
            "/home/u/x",
        ] {
            assert!(matches!(classify(p), Target::Other), "{p}");
        }
    }

    #[test]
    fn block_devices() {
        for d in [
            "/dev/sda",
            "/dev/sdb1",
            "/dev/nvme0n1",
            "/dev/mapper/root",
            "/dev/dm-0",
            "/dev/loop0",
        ] {
            assert!(is_block_device(d), "{d}");
        }
        for d in [
            "/dev/null",
            "/dev/zero",
            "/dev/stdout",
            "/dev/shm/x",
            "/dev/tty",
            "/tmp/sda",
            "/dev/sd",
        ] {
            assert!(!is_block_device(d), "{d}");
        }
    }
}
