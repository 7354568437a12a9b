//! Getting a JSON artifact out of a model's answer: fenced (```json … ```) or bare, then
//! checked against the artifact's schema. The error says what was wrong, for the retry message.

use std::borrow::Cow;
use std::io;

use serde_json::Value;

use crate::providers::ReplyText;
use crate::spec::{ArtifactType, schema};

/// Text a JSON artifact is looked for in: a string, or a model's reply that may sit in a file
/// ([`ReplyText`]), searched without loading it whole.
pub trait AnswerText {
    /// Where `needle` first occurs at or after byte `from`.
    fn find_from(&self, needle: &str, from: usize) -> io::Result<Option<usize>>;
    /// The text between two byte offsets found by [`AnswerText::find_from`].
    fn between(&self, start: usize, end: usize) -> io::Result<Cow<'_, str>>;
    /// The JSON object that starts at byte `at`, if one does.
    fn object_at(&self, at: usize) -> Option<Value>;
}

impl AnswerText for str {
    fn find_from(&self, needle: &str, from: usize) -> io::Result<Option<usize>> {
        Ok(self
            .get(from..)
            .and_then(|t| t.find(needle))
            .map(|i| i + from))
    }
    fn between(&self, start: usize, end: usize) -> io::Result<Cow<'_, str>> {
        Ok(Cow::Borrowed(self.get(start..end).unwrap_or_default()))
    }
    fn object_at(&self, at: usize) -> Option<Value> {
        first_object(serde_json::Deserializer::from_str(self.get(at..)?)).ok()?
    }
}

impl AnswerText for ReplyText {
    fn find_from(&self, needle: &str, from: usize) -> io::Result<Option<usize>> {
        self.find(needle, from)
    }
    fn between(&self, start: usize, end: usize) -> io::Result<Cow<'_, str>> {
        self.slice(start, end).map(Cow::Owned)
    }
    fn object_at(&self, at: usize) -> Option<Value> {
        // Most `{` start no object and fail within a few bytes: try a small window first, and
        // read on from the file only for an object that runs past it.
        let mut window = [0u8; 512];
        let n = io::Read::read(&mut self.reader(at), &mut window).ok()?;
        match first_object(serde_json::Deserializer::from_slice(&window[..n])) {
            Err(e) if e.is_eof() && n == window.len() => {
                let reader = io::BufReader::with_capacity(16 << 10, self.reader(at));
                first_object(serde_json::Deserializer::from_reader(reader)).ok()?
            }
            other => other.ok()?,
        }
    }
}

/// The first value `de` reads, when it is an object.
fn first_object<'de, R: serde_json::de::Read<'de>>(
    de: serde_json::Deserializer<R>,
) -> Result<Option<Value>, serde_json::Error> {
    match de.into_iter::<Value>().next() {
        Some(Ok(v @ Value::Object(_))) => Ok(Some(v)),
        Some(Ok(_)) | None => Ok(None),
        Some(Err(e)) => Err(e),
    }
}

/// Finds the JSON object in `text`: the last fenced block that parses, else the first bare
/// object that parses. Only a fenced block's body or the object itself is read whole.
pub fn extract_json<T: AnswerText + ?Sized>(text: &T) -> io::Result<Option<Value>> {
    let mut fenced = None;
    let mut from = 0;
    while let Some(start) = text.find_from("```", from)? {
        let after = start + 3;
        let body_start = text.find_from("\n", after)?.map_or(after, |n| n + 1);
        let Some(end) = text.find_from("```", body_start)? else {
            break;
        };
        let body = text.between(body_start, end)?;
        if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(body.trim()) {
            fenced = Some(v);
        }
        from = end + 3;
    }
    if fenced.is_some() {
        return Ok(fenced);
    }
    let mut from = 0;
    while let Some(at) = text.find_from("{", from)? {
        if let Some(v) = text.object_at(at) {
            return Ok(Some(v));
        }
        from = at + 1;
    }
    Ok(None)
}

/// Extracts and validates the JSON artifact of type `kind`; the error is for the model.
pub fn json_artifact<T: AnswerText + ?Sized>(
    kind: ArtifactType,
    text: &T,
) -> Result<Value, String> {
    let value = extract_json(text)
        .map_err(|e| format!("the answer could not be read back: {e}"))?
        .ok_or_else(|| {
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
            extract_json(fenced)
                .expect("read")
                .and_then(|v| v.get("approved").cloned()),
            Some(Value::Bool(true))
        );
        let bare = "Result {\"approved\": false, \"summary\": \"no\"} done";
        assert_eq!(
            extract_json(bare)
                .expect("read")
                .and_then(|v| v.get("approved").cloned()),
            Some(Value::Bool(false))
        );
        assert!(extract_json("no json {here").expect("read").is_none());
    }

    #[test]
    fn a_reply_in_a_file_gives_what_the_same_text_gives() {
        let filler = "words { not json } and ``` a fence\n".repeat(40_000);
        let cases = [
            format!("{filler}```json\n{{\"approved\": true, \"summary\": \"late\"}}\n```\n"),
            format!("{filler}then {{\"approved\": false, \"summary\": \"bare\"}} end"),
            format!("```json\n{{\"summary\": \"first\"}}\n```\n{filler}"),
            filler.clone(),
        ];
        for text in cases {
            let mut reply = ReplyText::new();
            for piece in text.as_bytes().chunks(1000) {
                reply.push_str(std::str::from_utf8(piece).expect("ascii"));
            }
            assert!(reply.spilled());
            assert_eq!(
                extract_json(&reply).expect("read"),
                extract_json(text.as_str()).expect("read")
            );
        }
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
