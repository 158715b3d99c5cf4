//! Strict mode's shape for a CLI tool's command line (`execute_<tool>`):
//! the tool's own words, then, after pipes, only filters that read stdin
//! and write stdout (grep, jq, yq, head, tail, sort, uniq, wc, awk, sed,
//! cut, tr, column). Sequencing (`;`, `&&`, `||`, `&`, newlines),
//! redirections, subshells, backticks and `$(` are refused, as are the
//! filter options that write files or run programs (`sed -i`, sed's `e`
//! and `w`, awk's `system` and pipes, `sort -o`, `yq -i`, …).
//!
//! A small quote-aware scanner of its own, because the question is not
//! "what does this run" (the lexer's) but "is it only this shape".

use super::Refusal;

/// Programs allowed after a pipe.
pub const FILTERS: &[&str] = &[
    "grep", "egrep", "fgrep", "jq", "yq", "head", "tail", "sort", "uniq", "wc", "awk", "sed",
    "cut", "tr", "column",
];

/// A command line split at its pipes, each part as shell words (quotes
/// removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    /// The segments; the first is the tool's.
    pub segments: Vec<Vec<String>>,
}

fn refusal(rule: &str, what: String) -> Refusal {
    Refusal {
        rule: format!("pipeline:{rule}"),
        message: format!(
            "refused by the command policy (strict mode): {what}. A command may pipe into \
             filters only ({}); run one command per call, without redirections or command \
             substitution. Set POD_EXEC_SECURITY_MODE=permissive to pass the line to the shell \
             as it is.",
            FILTERS.join(", ")
        ),
    }
}

/// Splits `line` into pipe segments of words, refusing every shell
/// construct other than words, quotes, `$VAR` and `|`.
///
/// # Errors
/// A [`Refusal`] naming the construct.
pub fn split(line: &str) -> Result<Pipeline, Refusal> {
    let mut segments = vec![Vec::new()];
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let end_word = |segments: &mut Vec<Vec<String>>, word: &mut String, in_word: &mut bool| {
        if *in_word {
            if let Some(seg) = segments.last_mut() {
                seg.push(std::mem::take(word));
            }
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => word.push(ch),
                        None => return Err(refusal("quote", "an unterminated ' quote".into())),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch @ ('"' | '\\' | '$' | '`')) => word.push(ch),
                            Some('\n') => {}
                            Some(ch) => {
                                word.push('\\');
                                word.push(ch);
                            }
                            None => {
                                return Err(refusal("quote", "an unterminated \" quote".into()));
                            }
                        },
                        Some('`') => {
                            return Err(refusal("substitution", "a backtick substitution".into()));
                        }
                        Some('$') if chars.peek() == Some(&'(') => {
                            return Err(refusal("substitution", "a $( substitution".into()));
                        }
                        Some(ch) => word.push(ch),
                        None => return Err(refusal("quote", "an unterminated \" quote".into())),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(ch) => {
                    in_word = true;
                    word.push(ch);
                }
                None => return Err(refusal("quote", "a trailing backslash".into())),
            },
            ' ' | '\t' => end_word(&mut segments, &mut word, &mut in_word),
            '|' => {
                match chars.peek() {
                    Some('|') => return Err(refusal("sequence", "`||`".into())),
                    Some('&') => return Err(refusal("redirection", "`|&`".into())),
                    _ => {}
                }
                end_word(&mut segments, &mut word, &mut in_word);
                if segments.last().is_none_or(Vec::is_empty) {
                    return Err(refusal("pipe", "an empty pipeline stage".into()));
                }
                segments.push(Vec::new());
            }
            ';' => return Err(refusal("sequence", "`;`".into())),
            '&' if chars.peek() == Some(&'&') => return Err(refusal("sequence", "`&&`".into())),
            '&' => return Err(refusal("sequence", "`&` (a background job)".into())),
            '\n' | '\r' => return Err(refusal("sequence", "a newline".into())),
            '>' | '<' => return Err(refusal("redirection", format!("the redirection `{c}`"))),
            '`' => return Err(refusal("substitution", "a backtick substitution".into())),
            '$' if chars.peek() == Some(&'(') => {
                return Err(refusal("substitution", "a $( substitution".into()));
            }
            '(' | ')' => return Err(refusal("subshell", format!("`{c}` (a subshell)"))),
            '#' if !in_word => return Err(refusal("comment", "a `#` comment".into())),
            ch => {
                in_word = true;
                word.push(ch);
            }
        }
    }
    end_word(&mut segments, &mut word, &mut in_word);
    if segments.iter().any(Vec::is_empty) {
        return Err(refusal("pipe", "an empty pipeline stage".into()));
    }
    Ok(Pipeline { segments })
}

/// Checks the strict shape: `line` splits cleanly and every segment after
/// the first is an allowed filter used without writing or running
/// anything.
///
/// # Errors
/// A [`Refusal`] saying what to change.
pub fn check(line: &str) -> Result<Pipeline, Refusal> {
    let p = split(line)?;
    for seg in p.segments.iter().skip(1) {
        check_filter(seg)?;
    }
    Ok(p)
}

fn check_filter(words: &[String]) -> Result<(), Refusal> {
    let Some((prog, args)) = words.split_first() else {
        return Err(refusal("pipe", "an empty pipeline stage".into()));
    };
    if !FILTERS.contains(&prog.as_str()) {
        return Err(refusal(
            "not-a-filter",
            format!("`{prog}` after a pipe is not one of the allowed filters"),
        ));
    }
    let bad = |what: &str| {
        Err(refusal(
            "filter-option",
            format!("`{prog}` {what}, which could write files or run programs"),
        ))
    };
    match prog.as_str() {
        "sed" => {
            let mut scripts = Vec::new();
            let mut i = 0;
            let mut explicit = false;
            while let Some(a) = args.get(i) {
                i += 1;
                if a == "--" {
                    break;
                }
                if a.starts_with("--in-place") || a.starts_with("--file") {
                    return bad(&format!("with {a}"));
                }
                if a == "--expression" {
                    scripts.extend(args.get(i).cloned());
                    explicit = true;
                    i += 1;
                } else if let Some(e) = a.strip_prefix("--expression=") {
                    scripts.push(e.to_owned());
                    explicit = true;
                } else if a.starts_with("--") {
                } else if let Some(flags) = a.strip_prefix('-').filter(|f| !f.is_empty()) {
                    for (k, f) in flags.char_indices() {
                        match f {
                            'i' | 'f' => return bad(&format!("with -{f}")),
                            'e' => {
                                let rest = &flags[k + 1..];
                                if rest.is_empty() {
                                    scripts.extend(args.get(i).cloned());
                                    i += 1;
                                } else {
                                    scripts.push(rest.to_owned());
                                }
                                explicit = true;
                                break;
                            }
                            'l' => break, // -l N
                            _ => {}
                        }
                    }
                } else if !explicit {
                    scripts.push(a.clone());
                    explicit = true;
                }
            }
            if scripts.iter().any(|s| sed_runs_or_writes(s)) {
                return bad("with an `e`, `w` or `W` command or flag");
            }
        }
        "awk" => {
            let mut program = None;
            let mut i = 0;
            while let Some(a) = args.get(i) {
                i += 1;
                match a.as_str() {
                    "-f" | "--file" | "-i" | "--include" | "-l" | "--load" | "-E" | "--exec" => {
                        return bad(&format!("with {a}"));
                    }
                    "-v" | "-F" | "--assign" | "--field-separator" => i += 1,
                    "--" => {
                        program = args.get(i);
                        break;
                    }
                    s if s.starts_with('-') && s.len() > 1 => {
                        if s.starts_with("-f") || s.starts_with("-E") {
                            return bad(&format!("with {s}"));
                        }
                    }
                    _ => {
                        program = Some(a);
                        break;
                    }
                }
            }
            if let Some(p) = program
                && awk_runs_or_writes(p)
            {
                return bad("with `system`, a pipe, `@` or an output redirection in its program");
            }
        }
        "sort" => {
            for a in args {
                if a.starts_with("--output") || a.starts_with("--compress-program") {
                    return bad(&format!("with {a}"));
                }
                if let Some(flags) = a.strip_prefix('-')
                    && !flags.starts_with('-')
                {
                    // -o FILE, possibly in a cluster (-ro); -k/-t/-S/-T take
                    // a value that may contain an `o`.
                    for f in flags.chars() {
                        if matches!(f, 'k' | 't' | 'S' | 'T') {
                            break;
                        }
                        if f == 'o' {
                            return bad("with -o");
                        }
                    }
                }
            }
        }
        "uniq" => {
            let operands = args
                .iter()
                .filter(|a| *a == "-" || !a.starts_with('-'))
                .count();
            if operands > 1 {
                return bad("with an output file operand");
            }
        }
        "yq" => {
            for a in args {
                let name = a.split('=').next().unwrap_or(a);
                if matches!(
                    name,
                    "-i" | "--inplace" | "--in-place" | "-s" | "--split-exp"
                ) {
                    return bad(&format!("with {a}"));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Whether a sed script has an `e`, `w` or `W` command, or an `s` command
/// with an `e` or `w` flag. What it cannot parse counts as yes.
fn sed_runs_or_writes(script: &str) -> bool {
    let s: Vec<char> = script.chars().collect();
    let mut i = 0;
    // Skips a delimited part starting after its opening delimiter; returns
    // the index after the closing one.
    let skip_delimited = |mut i: usize, d: char| -> Option<usize> {
        while i < s.len() {
            if s[i] == '\\' {
                i += 2;
                continue;
            }
            if s[i] == d {
                return Some(i + 1);
            }
            i += 1;
        }
        None
    };
    while i < s.len() {
        let c = s[i];
        // Separators, blocks, negation and address characters.
        if c.is_whitespace()
            || matches!(c, ';' | '{' | '}' | '!' | ',' | '$' | '~' | '+')
            || c.is_ascii_digit()
        {
            i += 1;
            continue;
        }
        match c {
            '/' => match skip_delimited(i + 1, '/') {
                Some(j) => i = j,
                None => return true,
            },
            '\\' => {
                let Some(&d) = s.get(i + 1) else { return true };
                match skip_delimited(i + 2, d) {
                    Some(j) => i = j,
                    None => return true,
                }
            }
            'e' | 'w' | 'W' => return true,
            's' | 'y' => {
                let Some(&d) = s.get(i + 1) else { return true };
                if d == '\\' || d == '\n' {
                    return true;
                }
                let Some(j) = skip_delimited(i + 2, d) else {
                    return true;
                };
                let Some(j) = skip_delimited(j, d) else {
                    return true;
                };
                i = j;
                if c == 's' {
                    while i < s.len() && !matches!(s[i], ';' | '\n' | '}') {
                        if matches!(s[i], 'e' | 'w' | 'W') {
                            return true;
                        }
                        i += 1;
                    }
                }
            }
            // Text and label commands: the rest of the line is theirs.
            'a' | 'i' | 'c' | ':' | 'b' | 't' | 'T' | 'r' | 'R' => {
                while i < s.len()
                    && s[i] != '\n'
                    && !(matches!(c, ':' | 'b' | 't' | 'T') && s[i] == ';')
                {
                    i += 1;
                }
            }
            'p' | 'P' | 'd' | 'D' | 'n' | 'N' | 'g' | 'G' | 'h' | 'H' | 'x' | 'l' | '=' | 'q'
            | 'Q' | 'z' | 'F' => i += 1,
            _ => return true,
        }
    }
    false
}

/// Whether an awk program could run a command or write a file: `system`,
/// any `|` (`cmd | getline`, `print | "sh"`), gawk's `@` extensions, or a
/// `print`/`printf` redirected with `>`.
fn awk_runs_or_writes(program: &str) -> bool {
    if program.contains("system") || program.contains('|') || program.contains('@') {
        return true;
    }
    // `print … > "file"` / `printf … >> f`: a `>` in the same statement as
    // a print. Comparisons elsewhere (`$3 > 5 { print }`) stay allowed.
    for stmt in program.split([';', '{', '}', '\n']) {
        if let Some(p) = stmt.find("print")
            && stmt[p..].contains('>')
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<Vec<String>> {
        split(line).expect(line).segments
    }

    #[test]
    fn splits_words_and_pipes_with_quotes() {
        assert_eq!(
            words("kubectl get pods -o json | jq '.items[] | .metadata.name'"),
            vec![
                vec!["kubectl", "get", "pods", "-o", "json"],
                vec!["jq", ".items[] | .metadata.name"]
            ]
        );
        assert_eq!(
            words(r#"kubectl get pods -o "jsonpath={.items[*].metadata.name}" | grep "a b""#),
            vec![
                vec![
                    "kubectl",
                    "get",
                    "pods",
                    "-o",
                    "jsonpath={.items[*].metadata.name}"
                ],
                vec!["grep", "a b"]
            ]
        );
        assert_eq!(words("a\\ b c"), vec![vec!["a b", "c"]]);
        assert_eq!(words("x 'a;b' \"c&&d\""), vec![vec!["x", "a;b", "c&&d"]]);
    }

    #[test]
    fn refuses_every_operator() {
        for line in [
            "kubectl get pods; rm -rf /",
            "kubectl get pods && rm x",
            "kubectl get pods || rm x",
            "kubectl get pods & rm x",
            "kubectl get pods > /tmp/x",
            "kubectl get pods < /etc/passwd",
            "kubectl get pods 2>/dev/null",
            "kubectl get `id`",
            "kubectl get $(id)",
            "kubectl get \"$(id)\"",
            "kubectl get \"`id`\"",
            "kubectl get pods\nrm -rf /",
            "kubectl get (pods)",
            "kubectl get pods |& cat",
            "kubectl get pods |",
            "kubectl get pods | | jq",
            "kubectl get 'pods",
            "kubectl get pods # ; x",
        ] {
            let e = check(line).expect_err(line);
            assert!(e.message.contains("strict mode"), "{line}: {}", e.message);
            assert!(e.rule.starts_with("pipeline:"), "{line}");
        }
    }

    #[test]
    fn only_filters_after_a_pipe() {
        for ok in [
            "kubectl get pods | grep web | wc -l",
            "kubectl get pods -o json | jq -r '.items[].metadata.name' | sort | uniq -c",
            "kubectl get pods | awk '$3 > 5 { print $1 }'",
            "kubectl get pods | sed -n 's/web/app/gp; 1,3p'",
            "kubectl get pods | sed -e '/x/d' -e 'y/abc/xyz/'",
            "kubectl get pods | cut -d' ' -f1 | tr a-z A-Z | column -t | head -n 3 | tail -1",
            "kubectl get pods -o yaml | yq '.items'",
            "kubectl get pods | sort -k2 -t: -r",
            "kubectl get pods | grep -o web",
        ] {
            assert!(check(ok).is_ok(), "{ok}: {:?}", check(ok));
        }
        for bad in [
            "kubectl get pods | sh",
            "kubectl get pods | bash -c 'rm -rf /'",
            "kubectl get pods | xargs rm",
            "kubectl get pods | tee /etc/x",
            "kubectl get pods | /usr/bin/jq .",
            "kubectl get pods | sed -i s/a/b/ file",
            "kubectl get pods | sed 's/a/id/e'",
            "kubectl get pods | sed 's/a/b/w /tmp/x'",
            "kubectl get pods | sed '1e id'",
            "kubectl get pods | sed -n 'w /tmp/x'",
            "kubectl get pods | sed -f script.sed",
            "kubectl get pods | awk '{ system(\"id\") }'",
            "kubectl get pods | awk '{ print $1 > \"/tmp/x\" }'",
            "kubectl get pods | awk '{ print | \"sh\" }'",
            "kubectl get pods | awk -f prog.awk",
            "kubectl get pods | sort -o /tmp/x",
            "kubectl get pods | sort -ro /tmp/x",
            "kubectl get pods | sort --compress-program=sh",
            "kubectl get pods | uniq - /tmp/out",
            "kubectl get pods -o yaml | yq -i '.a = 1' f.yaml",
        ] {
            let e = check(bad).expect_err(bad);
            assert!(e.message.contains("filters only"), "{bad}: {}", e.message);
        }
    }
}
