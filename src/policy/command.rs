//! From lexed simple commands to what actually runs: strips `VAR=value`
//! assignments and wrappers (`sudo`, `env`, `timeout 5`, `xargs`, …), takes
//! the basename of the program, and follows `sh -c`, `eval`, `su -c` and
//! `env -S` payloads into further scripts, with the same depth bound and a
//! total work budget.

use std::collections::HashSet;

use super::lexer::{self, MAX_DEPTH, Redirect};

/// One program invocation, normalized for the rules.
#[derive(Debug)]
pub(crate) struct Invocation {
    /// Basename of the program word (`/bin/rm` -> `rm`).
    pub program: String,
    pub args: Vec<String>,
    pub redirects: Vec<Redirect>,
    pub piped: bool,
    pub background: bool,
    pub function: Option<String>,
}

impl Invocation {
    /// Program and arguments joined by single spaces (for regex rules).
    pub fn joined(&self) -> String {
        let mut s = self.program.clone();
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }
}

/// Everything a command line runs, flattened.
#[derive(Debug, Default)]
pub(crate) struct Expanded {
    pub invocations: Vec<Invocation>,
    /// The command line and each payload, as text (for regex rules).
    pub texts: Vec<String>,
    /// Nesting or the work budget ran out: not everything was examined.
    pub incomplete: bool,
}

/// Lexes `command` and every payload it hands to a shell.
pub(crate) fn expand(command: &str) -> Expanded {
    // Payloads of payloads are re-lexed; the budget keeps a crafted input
    // (each level quoting the next twice over) from costing more than a
    // fixed multiple of its own length.
    let mut budget = command
        .len()
        .saturating_mul(MAX_DEPTH)
        .saturating_add(64 * 1024);
    let mut out = Expanded::default();
    let mut seen = HashSet::new();
    let mut work = vec![(command.to_owned(), 0usize)];
    while let Some((text, depth)) = work.pop() {
        if text.len() > budget {
            out.incomplete = true;
            continue;
        }
        budget -= text.len();
        let script = lexer::parse(&text, depth);
        out.incomplete |= script.too_deep;
        for cmd in script.commands {
            let Some((start, payload)) = unwrap_words(&cmd.words) else {
                continue;
            };
            if let Some(p) = payload {
                if depth + 1 > MAX_DEPTH {
                    out.incomplete = true;
                } else if seen.insert(p.clone()) {
                    work.push((p, depth + 1));
                }
            }
            let mut words = cmd.words.into_iter().skip(start);
            let Some(first) = words.next() else { continue };
            out.invocations.push(Invocation {
                program: basename(&first).to_owned(),
                args: words.collect(),
                redirects: cmd.redirects,
                piped: cmd.piped,
                background: cmd.background,
                function: cmd.function,
            });
        }
        out.texts.push(text);
    }
    out
}

/// `/bin/rm` -> `rm`; a word ending in `/` is kept whole.
pub(crate) fn basename(word: &str) -> &str {
    match word.rsplit_once('/') {
        Some((_, b)) if !b.is_empty() => b,
        _ => word,
    }
}

fn is_assignment(w: &str) -> bool {
    let Some((name, _)) = w.split_once('=') else {
        return false;
    };
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// How to step over a wrapper's own options to the command it runs.
struct Wrapper {
    name: &'static str,
    /// Short options that take a value (attached or as the next word).
    short_values: &'static [u8],
    long_values: &'static [&'static str],
    /// Positional words before the command (`timeout DURATION`).
    positionals: usize,
}

#[rustfmt::skip]
const WRAPPERS: &[Wrapper] = &[
    Wrapper { name: "sudo", short_values: b"uUgCDhpTrt", long_values: &["--user", "--other-user", "--group", "--close-from", "--chdir", "--host", "--prompt", "--role", "--type", "--command-timeout"], positionals: 0 },
    Wrapper { name: "doas", short_values: b"uC", long_values: &[], positionals: 0 },
    Wrapper { name: "env", short_values: b"uCS", long_values: &["--unset", "--chdir", "--split-string"], positionals: 0 },
    Wrapper { name: "nice", short_values: b"n", long_values: &["--adjustment"], positionals: 0 },
    Wrapper { name: "ionice", short_values: b"cnp", long_values: &["--class", "--classdata", "--pid"], positionals: 0 },
    Wrapper { name: "nohup", short_values: b"", long_values: &[], positionals: 0 },
    Wrapper { name: "setsid", short_values: b"", long_values: &[], positionals: 0 },
    Wrapper { name: "timeout", short_values: b"sk", long_values: &["--signal", "--kill-after"], positionals: 1 },
    Wrapper { name: "stdbuf", short_values: b"ioe", long_values: &["--input", "--output", "--error"], positionals: 0 },
    Wrapper { name: "xargs", short_values: b"adEILnPs", long_values: &["--arg-file", "--delimiter", "--replace", "--max-lines", "--max-args", "--max-procs", "--max-chars", "--process-slot-var"], positionals: 0 },
    Wrapper { name: "command", short_values: b"", long_values: &[], positionals: 0 },
    Wrapper { name: "builtin", short_values: b"", long_values: &[], positionals: 0 },
    Wrapper { name: "exec", short_values: b"a", long_values: &[], positionals: 0 },
    Wrapper { name: "busybox", short_values: b"", long_values: &[], positionals: 0 },
    Wrapper { name: "time", short_values: b"fo", long_values: &["--format", "--output"], positionals: 0 },
    Wrapper { name: "chroot", short_values: b"", long_values: &["--userspec", "--groups"], positionals: 1 },
];

const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "posh", "fish",
];

/// Where the real program starts in `words`, and any script text the
/// command hands to a shell. `None` when nothing runs (only assignments).
fn unwrap_words(words: &[String]) -> Option<(usize, Option<String>)> {
    let mut i = 0;
    let mut payload = None;
    // Each pass consumes at least the wrapper's name, so this ends.
    loop {
        while words.get(i).is_some_and(|w| is_assignment(w)) {
            i += 1;
        }
        let prog = basename(words.get(i)?);
        let Some(w) = WRAPPERS.iter().find(|w| w.name == prog) else {
            break;
        };
        let (next, split) = skip_options(&words[i + 1..], w);
        if let Some(s) = split {
            payload = Some(s); // `env -S 'cmd args'`
        }
        i += 1 + next;
        if i >= words.len() {
            return payload.map(|p| (words.len(), Some(p)));
        }
    }
    let prog = basename(&words[i]);
    let args = &words[i + 1..];
    payload = payload.or_else(|| match prog {
        "eval" => Some(args.join(" ")),
        "su" => args
            .iter()
            .position(|a| a == "-c" || a == "--command")
            .and_then(|p| args.get(p + 1).cloned())
            .or_else(|| {
                args.iter()
                    .find_map(|a| a.strip_prefix("--command=").map(str::to_owned))
            }),
        p if SHELLS.contains(&p) => shell_c_payload(args),
        _ => None,
    });
    Some((i, payload))
}

/// Returns how many words are the wrapper's options and positionals, and
/// the value of `env -S` if given.
fn skip_options(args: &[String], w: &Wrapper) -> (usize, Option<String>) {
    let mut i = 0;
    let mut split = None;
    while let Some(a) = args.get(i) {
        if a == "--" {
            i += 1;
            break;
        }
        if w.name == "env" && is_assignment(a) {
            i += 1;
            continue;
        }
        if let Some(long) = a.strip_prefix("--") {
            i += 1;
            let name = format!("--{}", long.split('=').next().unwrap_or(""));
            if !long.contains('=') && w.long_values.contains(&name.as_str()) {
                if name == "--split-string" {
                    split = args.get(i).cloned();
                }
                i += 1;
            } else if name == "--split-string" {
                split = long.split_once('=').map(|(_, v)| v.to_owned());
            }
            continue;
        }
        let Some(flags) = a.strip_prefix('-').filter(|f| !f.is_empty()) else {
            break;
        };
        i += 1;
        for (k, f) in flags.bytes().enumerate() {
            if w.short_values.contains(&f) {
                let value = if k + 1 < flags.len() {
                    Some(flags[k + 1..].to_owned())
                } else {
                    i += 1;
                    args.get(i - 1).cloned()
                };
                if w.name == "env" && f == b'S' {
                    split = value;
                }
                break;
            }
        }
    }
    let mut pos = 0;
    while pos < w.positionals && i < args.len() {
        i += 1;
        pos += 1;
    }
    (i.min(args.len()), split)
}

/// `bash -xc 'script' arg0`: the script, if a `c` flag is among the
/// options.
fn shell_c_payload(args: &[String]) -> Option<String> {
    let mut has_c = false;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        i += 1;
        if a == "--" {
            break;
        }
        if a.starts_with("--") {
            if a == "--rcfile" || a == "--init-file" {
                i += 1;
            }
            continue;
        }
        match a.strip_prefix('-').or_else(|| a.strip_prefix('+')) {
            Some(flags) if !flags.is_empty() => {
                has_c |= a.starts_with('-') && flags.contains('c');
                if flags.ends_with('o') || flags.ends_with('O') {
                    i += 1;
                }
            }
            _ => return has_c.then(|| a.clone()),
        }
    }
    has_c.then(|| args.get(i).cloned()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn programs(cmd: &str) -> Vec<String> {
        expand(cmd)
            .invocations
            .into_iter()
            .map(|i| i.joined())
            .collect()
    }

    #[test]
    fn strips_assignments_wrappers_and_paths() {
        assert_eq!(programs("A=1 B=2 /bin/rm -rf x"), ["rm -rf x"]);
        assert_eq!(
            programs("sudo -u root env -i X=1 nice -n 5 timeout -s KILL 10 rm x"),
            ["rm x"]
        );
        assert_eq!(
            programs("find . | xargs -n 1 -I{} rm {}"),
            ["find .", "rm {}"]
        );
        assert_eq!(programs("A=1"), Vec::<String>::new());
    }

    #[test]
    fn follows_shell_payloads() {
        let p = programs("bash -ec 'rm -rf /; echo \"$(mkfs x)\"'");
        assert!(p.contains(&"rm -rf /".to_string()), "{p:?}");
        assert!(p.contains(&"mkfs x".to_string()), "{p:?}");
        assert!(programs("eval rm -rf /").contains(&"rm -rf /".to_string()));
        assert!(programs("env -S 'rm -rf /'").contains(&"rm -rf /".to_string()));
        assert!(programs("su -c 'rm x' root").contains(&"rm x".to_string()));
        assert!(programs("sh script.sh").iter().all(|p| p == "sh script.sh"));
    }

    #[test]
    fn nested_payloads_stop_at_the_bound() {
        let cmd = "eval ".repeat(MAX_DEPTH + 2) + "rm -rf /";
        assert!(expand(&cmd).incomplete);
        let cmd = "eval ".repeat(MAX_DEPTH - 1) + "rm -rf /";
        let ex = expand(&cmd);
        assert!(!ex.incomplete);
        assert!(ex.invocations.iter().any(|i| i.joined() == "rm -rf /"));
    }
}
