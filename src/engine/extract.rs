//! Getting a JSON artifact out of a model's answer: fenced (```json … ```) or bare, then
//! checked against the artifact's schema. The error says what was wrong, for the retry message.

use serde_json::Value;

use crate::spec::{ArtifactType, schema};

/// Finds the JSON object in `text`: the last fenced block that parses, else the first bare
/// object that parses.
pub fn extract_json(text: &str) -> Option<Value> {
    let mut fenced = None;
    let mut rest = text;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let body_start = after.find('\n').map_or(0, |n| n + 1);
        let Some(end) = after[body_start..].find("```") else {
            break;
        };
        let body = &after[body_start..body_start + end];
        if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(body.trim()) {
            fenced = Some(v);
        }
        rest = &after[body_start + end + 3..];
    }
    if fenced.is_some() {
        return fenced;
    }
    text.match_indices('{').find_map(|(i, _)| {
        let mut stream = serde_json::Deserializer::from_str(&text[i..]).into_iter::<Value>();
        match stream.next() {
            Some(Ok(v @ Value::Object(_))) => Some(v),
            _ => None,
        }
    })
}

/// Extracts and validates the JSON artifact of type `kind`; the error is for the model.
pub fn json_artifact(kind: ArtifactType, text: &str) -> Result<Value, String> {
    let value = extract_json(text).ok_or_else(|| {
        format!(
            "no JSON object found; the {} must be one JSON object, e.g. in a ```json block",
            kind.as_str()
        )
    })?;
    if let Some(name) = schema::artifact_schema_name(kind) {
        let problems = schema::validate(name, &value);
        if !problems.is_empty() {
            let list: Vec<String> = problems
                .into_iter()
                .map(|(at, msg)| {
                    if at.is_empty() {
                        msg
                    } else {
                        format!("at {at}: {msg}")
                    }
                })
                .collect();
            return Err(format!(
                "the JSON does not match the {} schema: {}",
                kind.as_str(),
                list.join("; ")
            ));
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_fenced_and_bare_json() {
        let fenced =
            "Here:\n```json\n{\"approved\": true, \"summary\": \"ok\"}\n```\n/review-complete";
        assert_eq!(
            extract_json(fenced).and_then(|v| v.get("approved").cloned()),
            Some(Value::Bool(true))
        );
        let bare = "Result {\"approved\": false, \"summary\": \"no\"} done";
        assert_eq!(
            extract_json(bare).and_then(|v| v.get("approved").cloned()),
            Some(Value::Bool(false))
        );
        assert!(extract_json("no json {here").is_none());
    }

    #[test]
    fn schema_errors_name_the_field() {
        let err = json_artifact(
            ArtifactType::ReviewReport,
            "{\"approved\": \"yes\", \"summary\": \"x\"}",
        )
        .expect_err("invalid");
        assert!(err.contains("/approved"), "{err}");
    }
}
