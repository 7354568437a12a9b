//! Pieces of request building that vendors share.

use serde_json::{Value, json};

/// Appends `items` as a turn of `role`, merged into the previous turn when it has the same
/// role (Anthropic and Gemini require alternating roles). `key` is `content` or `parts`.
pub fn push_turn(out: &mut Vec<Value>, role: &str, key: &str, items: Vec<Value>) {
    match out.last_mut() {
        Some(prev) if prev["role"] == role => {
            if let Some(list) = prev[key].as_array_mut() {
                list.extend(items);
            }
        }
        _ => out.push(json!({"role": role, key: items})),
    }
}
