//! Parsers of the agent CLIs' JSON event streams, one line at a time. Unknown event types and
//! lines that are not JSON (a truncated last line) are kept for the phase log, never a crash.

use serde_json::Value;

use super::CliError;
use crate::spec::TokenUsage;

/// What a line means for the phase.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    /// Assistant text: a whole message.
    Text(String),
    /// A piece of assistant text streamed in chunks: joined with the next pieces, not a line.
    Delta(String),
    /// A tool use or file change, as a progress line.
    Tool(String),
    /// Anything else: kept in the log only.
    Raw(String),
}

/// The final outcome of a CLI run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CliResult {
    /// The final answer.
    pub text: String,
    /// Tokens as the CLI reported them.
    pub usage: TokenUsage,
    /// USD the CLI reported (Claude Code's `total_cost_usd`).
    pub reported_cost_usd: Option<f64>,
    /// The model the CLI says it used.
    pub served_model: Option<String>,
}

/// What a run reported it used so far, whatever its outcome: billed even when the run fails,
/// runs out of turns, times out or is cancelled.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spent {
    /// The CLI process started (a CLI that never started spent nothing).
    pub started: bool,
    /// A usage or cost report was seen; without one the cost is unknown.
    pub reported: bool,
    /// Tokens as reported.
    pub usage: TokenUsage,
    /// USD the CLI reported.
    pub reported_cost_usd: Option<f64>,
    /// The reported USD is the CLI's own guess (Claude Code's `costBasis: "unknown"`).
    pub cost_is_estimate: bool,
    /// The model the CLI says served.
    pub served_model: Option<String>,
}

/// A parser of one CLI's stream.
pub trait StreamParser: Send {
    /// Reads one line of stdout.
    fn line(&mut self, line: &str) -> Vec<Note>;
    /// The outcome once the process exited with `exit` (None: killed).
    fn finish(&mut self, exit: Option<i32>) -> Result<CliResult, CliError>;
    /// What the stream reported it used so far.
    fn spent(&self) -> Spent;
}

fn target(input: &Value) -> String {
    [
        "file_path",
        "path",
        "command",
        "cmd",
        "pattern",
        "absolute_path",
    ]
    .iter()
    .find_map(|k| input.get(*k).and_then(Value::as_str))
    .unwrap_or("")
    .to_owned()
}

const EDIT_TOOLS: [&str; 7] = [
    "Write",
    "Edit",
    "MultiEdit",
    "NotebookEdit",
    "write_file",
    "edit",
    "replace",
];

/// Claude Code's (and Qwen Code's) `stream-json`: `system/init`, `assistant`, `user`, `result`.
/// Failure is decided by `is_error`, not `subtype`; denied edits fail the phase.
pub struct ClaudeLike {
    /// Whether `input_tokens` includes cache reads (Qwen: yes, OpenAI style; Claude: no).
    pub input_includes_cached: bool,
    /// Whether a denied edit fails the run (the implementer's); a reviewer's refused write is
    /// only reported, and its review goes on.
    pub denials_fail: bool,
    result: Option<Result<CliResult, String>>,
    model: Option<String>,
    spent: Spent,
}

impl ClaudeLike {
    /// A parser for Claude Code (`false`) or Qwen Code (`true`); `denials_fail` for the
    /// implementer.
    pub fn new(input_includes_cached: bool, denials_fail: bool) -> Self {
        Self {
            input_includes_cached,
            denials_fail,
            result: None,
            model: None,
            spent: Spent::default(),
        }
    }
}

impl StreamParser for ClaudeLike {
    fn line(&mut self, line: &str) -> Vec<Note> {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            return vec![Note::Raw(line.to_owned())];
        };
        match v["type"].as_str().unwrap_or("") {
            "system" => {
                if let Some(m) = v["model"].as_str() {
                    self.model = Some(m.to_owned());
                }
                vec![]
            }
            "assistant" => {
                let mut notes = Vec::new();
                for block in v["message"]["content"].as_array().into_iter().flatten() {
                    match block["type"].as_str() {
                        Some("text") => {
                            notes.push(Note::Text(block["text"].as_str().unwrap_or("").to_owned()))
                        }
                        Some("tool_use") => notes.push(Note::Tool(format!(
                            "> {} {}",
                            block["name"].as_str().unwrap_or("?"),
                            target(&block["input"])
                        ))),
                        _ => {}
                    }
                }
                if let Some(m) = v["message"]["model"].as_str() {
                    self.model = Some(m.to_owned());
                }
                notes
            }
            "user" => vec![],
            "result" => {
                let u = &v["usage"];
                let n = |k: &str| u[k].as_u64().unwrap_or(0);
                let cached = n("cache_read_input_tokens");
                let input = if self.input_includes_cached {
                    n("input_tokens").saturating_sub(cached)
                } else {
                    n("input_tokens")
                };
                let usage = TokenUsage {
                    input,
                    output: n("output_tokens"),
                    cached_input: cached,
                    cache_write: n("cache_creation_input_tokens"),
                };
                // Billed whatever the outcome: an error or max turns still cost money.
                let estimate = v["costBasis"] == "unknown"
                    || v["modelUsage"]
                        .as_object()
                        .is_some_and(|m| m.values().any(|u| u["costBasis"] == "unknown"));
                self.spent = Spent {
                    started: true,
                    reported: true,
                    usage,
                    reported_cost_usd: v["total_cost_usd"].as_f64(),
                    cost_is_estimate: estimate,
                    served_model: self.model.clone(),
                };
                let text = v["result"].as_str().unwrap_or("").to_owned();
                let denials: Vec<(bool, String)> = v["permission_denials"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| {
                        let tool = d["tool_name"].as_str().unwrap_or("?");
                        (
                            EDIT_TOOLS.contains(&tool),
                            format!("{tool} {}", target(&d["tool_input"])),
                        )
                    })
                    .collect();
                let denied: Vec<String> = denials
                    .iter()
                    .filter(|(edit, _)| *edit && self.denials_fail)
                    .map(|(_, what)| what.clone())
                    .collect();
                let errors: Vec<&str> = v["errors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                self.result = Some(if v["is_error"].as_bool() == Some(true) {
                    Err(match (text.is_empty(), errors.is_empty()) {
                        (false, _) => text,
                        (true, false) => errors.join("; "),
                        (true, true) => "the CLI reported an error".to_owned(),
                    })
                } else if !denied.is_empty() {
                    Err(format!("permission denied for {}", denied.join(", ")))
                } else {
                    Ok(CliResult {
                        text,
                        usage,
                        reported_cost_usd: v["total_cost_usd"].as_f64(),
                        served_model: self.model.clone(),
                    })
                });
                // Every refusal is said; the final report goes to the log whole (the bill's
                // evidence).
                let mut notes: Vec<Note> = denials
                    .into_iter()
                    .map(|(_, what)| Note::Tool(format!("> refused by the CLI: {what}")))
                    .collect();
                notes.push(Note::Raw(line.to_owned()));
                notes
            }
            _ => vec![Note::Raw(line.to_owned())],
        }
    }

    fn finish(&mut self, exit: Option<i32>) -> Result<CliResult, CliError> {
        self.result
            .take()
            .unwrap_or_else(|| Err(format!("ended without a result line (exit {exit:?})")))
            .map_err(CliError::Failed)
    }

    fn spent(&self) -> Spent {
        self.spent.clone()
    }
}

/// Codex's `exec --json`: `thread.started`, `turn.*`, `item.*`; usage per `turn.completed`.
#[derive(Default)]
pub struct Codex {
    text: String,
    usage: TokenUsage,
    failed: Option<String>,
    completed: bool,
    reported: bool,
}

impl StreamParser for Codex {
    fn line(&mut self, line: &str) -> Vec<Note> {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            return vec![Note::Raw(line.to_owned())];
        };
        match v["type"].as_str().unwrap_or("") {
            "item.completed" => {
                let item = &v["item"];
                match item["type"].as_str().unwrap_or("") {
                    "agent_message" => {
                        let text = item["text"].as_str().unwrap_or("").to_owned();
                        self.text = text.clone();
                        vec![Note::Text(text)]
                    }
                    "command_execution" => vec![Note::Tool(format!(
                        "> $ {} (exit {})",
                        item["command"].as_str().unwrap_or(""),
                        item["exit_code"]
                            .as_i64()
                            .map_or("?".to_owned(), |c| c.to_string())
                    ))],
                    "file_change" => {
                        let files: Vec<&str> = item["changes"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|c| c["path"].as_str())
                            .collect();
                        vec![Note::Tool(format!("> changed {}", files.join(", ")))]
                    }
                    _ => vec![Note::Raw(line.to_owned())],
                }
            }
            "turn.completed" => {
                let u = &v["usage"];
                let n = |k: &str| u[k].as_u64().unwrap_or(0);
                let cached = n("cached_input_tokens");
                self.usage.add(&TokenUsage {
                    input: n("input_tokens").saturating_sub(cached),
                    output: n("output_tokens"),
                    cached_input: cached,
                    cache_write: n("cache_write_input_tokens"),
                });
                self.completed = true;
                self.reported = true;
                vec![]
            }
            "turn.failed" => {
                self.failed = Some(
                    v["error"]["message"]
                        .as_str()
                        .unwrap_or("turn failed")
                        .to_owned(),
                );
                vec![]
            }
            "error" => {
                let message = v["message"].as_str().unwrap_or("error").to_owned();
                self.failed.get_or_insert(message.clone());
                vec![Note::Raw(message)]
            }
            _ => vec![Note::Raw(line.to_owned())],
        }
    }

    fn finish(&mut self, exit: Option<i32>) -> Result<CliResult, CliError> {
        if let Some(f) = self
            .failed
            .take()
            .filter(|_| !self.completed || exit != Some(0))
        {
            return Err(CliError::Failed(f));
        }
        if !self.completed {
            return Err(CliError::Failed(format!(
                "ended without turn.completed (exit {exit:?})"
            )));
        }
        Ok(CliResult {
            text: self.text.clone(),
            usage: self.usage,
            reported_cost_usd: None,
            served_model: None,
        })
    }

    fn spent(&self) -> Spent {
        Spent {
            started: true,
            reported: self.reported,
            usage: self.usage,
            ..Spent::default()
        }
    }
}

/// Gemini CLI's `stream-json`: `init`, `message`, `tool_use`, `tool_result`, `result`.
#[derive(Default)]
pub struct GeminiCli {
    text: String,
    model: Option<String>,
    result: Option<Result<CliResult, String>>,
    spent: Spent,
}

impl StreamParser for GeminiCli {
    fn line(&mut self, line: &str) -> Vec<Note> {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            return vec![Note::Raw(line.to_owned())];
        };
        match v["type"].as_str().unwrap_or("") {
            "init" => {
                self.model = v["model"].as_str().map(str::to_owned);
                vec![]
            }
            "message" if v["role"] == "assistant" => {
                let text = v["content"].as_str().unwrap_or("").to_owned();
                self.text.push_str(&text);
                if v["delta"] == true {
                    vec![Note::Delta(text)]
                } else {
                    vec![Note::Text(text)]
                }
            }
            // A refused or failed tool call is said, like Claude's permission denials.
            "tool_result" if v["status"] == "error" => vec![Note::Tool(format!(
                "> refused by the CLI: {}",
                v["error"]["message"]
                    .as_str()
                    .or(v["output"].as_str())
                    .unwrap_or("a tool call failed")
            ))],
            "message" | "tool_result" => vec![],
            "tool_use" => vec![Note::Tool(format!(
                "> {} {}",
                v["tool_name"].as_str().unwrap_or("?"),
                target(&v["parameters"])
            ))],
            "result" => {
                let s = &v["stats"];
                let n = |k: &str| s[k].as_u64().unwrap_or(0);
                let usage = TokenUsage {
                    input: n("input"),
                    output: n("output_tokens"),
                    cached_input: n("cached"),
                    cache_write: 0,
                };
                // The model that did the most work, where the stats name them.
                let served = s["models"]
                    .as_object()
                    .and_then(|m| {
                        m.iter()
                            .max_by_key(|(_, u)| {
                                u["total_tokens"].as_u64().or(u["tokens"]["total"].as_u64())
                            })
                            .map(|(name, _)| name.clone())
                    })
                    .or_else(|| self.model.clone());
                self.spent = Spent {
                    started: true,
                    reported: true,
                    usage,
                    reported_cost_usd: None,
                    cost_is_estimate: false,
                    served_model: served.clone(),
                };
                self.result = Some(if v["status"] == "success" {
                    Ok(CliResult {
                        text: self.text.clone(),
                        usage,
                        reported_cost_usd: None,
                        served_model: served,
                    })
                } else {
                    Err(v["error"]["message"]
                        .as_str()
                        .unwrap_or("the run did not succeed")
                        .to_owned())
                });
                vec![]
            }
            "error" => {
                let message = v["message"]
                    .as_str()
                    .or(v["error"]["message"].as_str())
                    .unwrap_or("error")
                    .to_owned();
                self.result.get_or_insert(Err(message.clone()));
                vec![Note::Raw(message)]
            }
            _ => vec![Note::Raw(line.to_owned())],
        }
    }

    fn finish(&mut self, exit: Option<i32>) -> Result<CliResult, CliError> {
        let outcome = match (self.result.take(), exit) {
            (Some(r), _) => r,
            // API errors exit with the HTTP status mod 256 (500 → 244).
            (None, Some(code)) if code != 0 => Err(format!(
                "exited with {code} (an API error; HTTP status mod 256)"
            )),
            (None, _) => Err("ended without a result line".to_owned()),
        };
        outcome.map_err(CliError::Failed)
    }

    fn spent(&self) -> Spent {
        self.spent.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_result_decides_by_is_error_and_denials() {
        let mut p = ClaudeLike::new(false, true);
        assert_eq!(
            p.line(r#"{"type":"system","subtype":"init","model":"m"}"#),
            vec![]
        );
        let notes = p.line(r#"{"type":"assistant","message":{"content":[{"type":"text","text":"hi"},{"type":"tool_use","name":"Write","input":{"file_path":"/a"}}]}}"#);
        assert_eq!(
            notes,
            vec![Note::Text("hi".into()), Note::Tool("> Write /a".into())]
        );
        assert!(matches!(
            p.line(r#"{"type":"brand_new_event"}"#)[0],
            Note::Raw(_)
        ));
        assert!(
            matches!(p.line(r#"{"type":"result","is_er"#)[0], Note::Raw(_)),
            "a truncated line is kept, not fatal"
        );
        p.line(r#"{"type":"result","subtype":"success","is_error":false,"result":"done","total_cost_usd":0.25,"usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":100,"cache_creation_input_tokens":7},"permission_denials":[]}"#);
        let r = p.finish(Some(0)).expect("ok");
        assert_eq!((r.text.as_str(), r.reported_cost_usd), ("done", Some(0.25)));
        assert_eq!(
            r.usage,
            TokenUsage {
                input: 10,
                output: 5,
                cached_input: 100,
                cache_write: 7
            }
        );

        let mut p = ClaudeLike::new(false, true);
        p.line(
            r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 500"}"#,
        );
        assert_eq!(
            p.finish(Some(0)),
            Err(CliError::Failed("API Error: 500".into())),
            "is_error wins over subtype"
        );
        let mut p = ClaudeLike::new(false, true);
        p.line(r#"{"type":"result","subtype":"success","is_error":false,"result":"ok","permission_denials":[{"tool_name":"Write","tool_input":{"file_path":"/x"}}]}"#);
        assert!(
            p.finish(Some(0))
                .expect_err("denied")
                .to_string()
                .contains("Write /x")
        );
        assert!(ClaudeLike::new(false, true).finish(Some(1)).is_err());
    }

    #[test]
    fn qwen_input_includes_cached_tokens() {
        let mut p = ClaudeLike::new(true, true);
        p.line(r#"{"type":"result","is_error":false,"result":"ok","usage":{"input_tokens":700,"output_tokens":25,"cache_read_input_tokens":70}}"#);
        assert_eq!(
            p.finish(Some(0)).expect("ok").usage,
            TokenUsage {
                input: 630,
                output: 25,
                cached_input: 70,
                cache_write: 0
            }
        );
    }

    #[test]
    fn codex_sums_turn_usage_and_fails_on_turn_failed() {
        let mut p = Codex::default();
        p.line(r#"{"type":"thread.started","thread_id":"t"}"#);
        let notes = p.line(r#"{"type":"item.completed","item":{"type":"command_execution","command":"ls","exit_code":0}}"#);
        assert_eq!(notes, vec![Note::Tool("> $ ls (exit 0)".into())]);
        p.line(r#"{"type":"item.completed","item":{"type":"agent_message","text":"done"}}"#);
        p.line(r#"{"type":"turn.completed","usage":{"input_tokens":600,"cached_input_tokens":200,"output_tokens":80}}"#);
        let r = p.finish(Some(0)).expect("ok");
        assert_eq!(
            r.usage,
            TokenUsage {
                input: 400,
                output: 80,
                cached_input: 200,
                cache_write: 0
            }
        );
        let mut p = Codex::default();
        p.line(r#"{"type":"turn.failed","error":{"message":"stream error: 500"}}"#);
        assert_eq!(
            p.finish(Some(1)),
            Err(CliError::Failed("stream error: 500".into()))
        );
    }

    #[test]
    fn gemini_result_status_and_exit_codes() {
        let mut p = GeminiCli::default();
        p.line(r#"{"type":"init","model":"g"}"#);
        // Streamed chunks are pieces of one text, not lines of their own.
        assert_eq!(
            p.line(r#"{"type":"message","role":"assistant","content":"Do","delta":true}"#),
            vec![Note::Delta("Do".into())]
        );
        p.line(r#"{"type":"message","role":"assistant","content":"ne","delta":true}"#);
        p.line(r#"{"type":"result","status":"success","stats":{"input_tokens":1000,"input":900,"cached":100,"output_tokens":60}}"#);
        let r = p.finish(Some(0)).expect("ok");
        assert_eq!(
            (
                r.text.as_str(),
                r.usage.input,
                r.usage.cached_input,
                r.usage.output
            ),
            ("Done", 900, 100, 60)
        );
        assert!(
            GeminiCli::default()
                .finish(Some(244))
                .expect_err("api error")
                .to_string()
                .contains("244")
        );
    }
}
