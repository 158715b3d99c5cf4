//! Lexer unit tests: splitting, nesting, redirects, bounds.

use super::*;

fn words(src: &str) -> Vec<Vec<String>> {
    parse(src, 0)
        .commands
        .into_iter()
        .map(|c| c.words)
        .collect()
}

#[test]
fn splits_on_operators_and_respects_quotes() {
    assert_eq!(
        words("a 'b;c' \"d|e\" f\\;g; h && i || j | k & l\nm"),
        [
            vec!["a", "b;c", "d|e", "f;g"],
            vec!["h"],
            vec!["i"],
            vec!["j"],
            vec!["k"],
            vec!["l"],
            vec!["m"]
        ]
    );
}

#[test]
fn looks_inside_substitutions_groups_and_heredocs() {
    let w = words("echo $(rm -rf /) `mkfs /dev/sda` ( ls ) { pwd; } <(cat x) $'\\x72m'");
    assert!(w.contains(&vec!["rm".into(), "-rf".into(), "/".into()]));
    assert!(w.contains(&vec!["mkfs".into(), "/dev/sda".into()]));
    assert!(w.contains(&vec!["ls".to_string()]));
    assert!(w.contains(&vec!["pwd".to_string()]));
    assert!(w.contains(&vec!["cat".into(), "x".into()]));
    assert_eq!(words("$'\\x72\\155' -rf /"), [vec!["rm", "-rf", "/"]]);
    // A quoted here-document is data; an unquoted one still runs `$( )`.
    assert_eq!(
        words("cat <<'EOF'\nrm -rf /\nEOF\necho"),
        [vec!["cat"], vec!["echo"]]
    );
    assert!(words("cat <<EOF\n$(id)\nEOF").contains(&vec!["id".to_string()]));
}

#[test]
fn records_redirects_pipes_and_function_bodies() {
    let s = parse(":(){ :|:& };:", 0);
    let body: Vec<_> = s
        .commands
        .iter()
        .filter(|c| c.function.as_deref() == Some(":"))
        .collect();
    assert_eq!(body.len(), 2);
    assert!(body.iter().all(|c| c.piped) && body[1].background);
    let s = parse("cat x 2>&1 >/dev/sda 2>/tmp/e", 0);
    let targets: Vec<_> = s.commands[0]
        .redirects
        .iter()
        .map(|r| r.target.as_str())
        .collect();
    assert_eq!(targets, ["/dev/sda", "/tmp/e"]);
    assert_eq!(s.commands[0].words, ["cat", "x"]);
}

#[test]
fn unterminated_and_deep_input_is_bounded() {
    assert_eq!(words("echo 'abc"), [vec!["echo", "abc"]]);
    let deep = "$(".repeat(100) + "rm -rf /";
    assert!(parse(&deep, 0).too_deep);
}
