//! Finds the line and column of a JSON pointer in block-style YAML text.
//!
//! serde_yaml gives positions for syntax errors but not for values, and jsonschema reports a
//! pointer (`/phases/2/provider_config/provider_type`). Templates are block-style YAML, so an
//! indentation walk finds the key; where it cannot (flow style), the deepest key found is used.

/// One line, or the part of a line after a `- ` marker.
struct Item<'a> {
    line: usize,
    indent: usize,
    dash: bool,
    text: &'a str,
}

fn items(source: &str) -> Vec<Item<'_>> {
    let mut out = Vec::new();
    for (n, raw) in source.lines().enumerate() {
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
            continue;
        }
        let mut indent = raw.len() - trimmed.len();
        let mut text = trimmed;
        // "- - key: v" opens nested sequences on one line; split every marker off.
        while let Some(rest) = text
            .strip_prefix("- ")
            .or_else(|| (text == "-").then_some(""))
        {
            out.push(Item {
                line: n + 1,
                indent,
                dash: true,
                text,
            });
            let inner = rest.trim_start();
            indent += text.len() - inner.len();
            text = inner;
            if text.is_empty() {
                break;
            }
        }
        if !text.is_empty() {
            out.push(Item {
                line: n + 1,
                indent,
                dash: false,
                text,
            });
        }
    }
    out
}

fn key_matches(text: &str, key: &str) -> bool {
    let unquoted = [
        text.strip_prefix(key),
        text.strip_prefix('"')
            .and_then(|t| t.strip_prefix(key))
            .and_then(|t| t.strip_prefix('"')),
        text.strip_prefix('\'')
            .and_then(|t| t.strip_prefix(key))
            .and_then(|t| t.strip_prefix('\'')),
    ];
    unquoted
        .into_iter()
        .flatten()
        .any(|rest| rest.trim_start().starts_with(':'))
}

/// Decodes one JSON-pointer segment (`~1` is `/`, `~0` is `~`).
fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

/// Returns the 1-based `(line, column)` of the value at `pointer`, or of its deepest ancestor
/// that could be found; `(1, 1)` for the root.
pub fn locate(source: &str, pointer: &str) -> (usize, usize) {
    let all = items(source);
    let mut range = 0..all.len();
    let mut found = (1, 1);
    for raw in pointer.split('/').skip(1) {
        let segment = unescape(raw);
        let Some(first) = all.get(range.start).filter(|_| !range.is_empty()) else {
            break;
        };
        let level = first.indent;
        let at_level = range.clone().filter(|&i| all[i].indent == level);
        let hit = match segment.parse::<usize>() {
            Ok(index) if first.dash => at_level.filter(|&i| all[i].dash).nth(index),
            _ => at_level
                .filter(|&i| !all[i].dash)
                .find(|&i| key_matches(all[i].text, &segment)),
        };
        let Some(i) = hit else { break };
        found = (all[i].line, all[i].indent + 1);
        let end = (i + 1..range.end)
            .find(|&j| {
                all[j].indent <= level && all[j].line != all[i].line || all[j].indent < level
            })
            .unwrap_or(range.end);
        // A dash item's first key sits on its own line's next item, one level deeper.
        range = i + 1..end;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::locate;

    const DOC: &str = "name: x\nphases:\n  - id: a\n    provider_config:\n      provider_type: openai\n  - id: b\n    provider_config:\n      provider_type: bogus\n      model_name: m\n";

    #[test]
    fn finds_nested_keys_in_sequences() {
        assert_eq!(
            locate(DOC, "/phases/1/provider_config/provider_type"),
            (8, 7)
        );
        assert_eq!(locate(DOC, "/phases/0/id"), (3, 5));
        assert_eq!(locate(DOC, "/name"), (1, 1));
    }

    #[test]
    fn falls_back_to_the_deepest_found_key() {
        assert_eq!(locate(DOC, "/phases/1/nothing"), (6, 3));
    }
}
