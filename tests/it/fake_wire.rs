//! How the fake LLM server encodes a scripted [`Reply`] in each vendor's wire format: OpenAI
//! chat-completions SSE chunks, Anthropic's message events, Gemini's streamed candidates,
//! Ollama's NDJSON lines and OpenAI Responses events — usage, tool calls and all.

use serde_json::{Value, json};

use crate::fake_llm::Reply;

/// The SSE chunks OpenAI sends: role, content pieces, tool-call pieces, finish, usage, [DONE].
pub fn sse_events(reply: &Reply, model: &str) -> Vec<String> {
    let served = reply
        .served_model
        .clone()
        .unwrap_or_else(|| model.to_owned());
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": served,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for piece in pieces(&reply.text) {
        events.push(chunk(json!({"content": piece}), Value::Null));
    }
    for (i, (name, args)) in reply.tool_calls.iter().enumerate() {
        let args = args.to_string();
        let (a, b) = args.split_at(args.len() / 2);
        events.push(chunk(
            json!({"tool_calls": [{"index": i, "id": format!("call_{i}"), "type": "function", "function": {"name": name, "arguments": a}}]}),
            Value::Null,
        ));
        events.push(chunk(
            json!({"tool_calls": [{"index": i, "function": {"arguments": b}}]}),
            Value::Null,
        ));
    }
    let finish = if reply.tool_calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    events.push(chunk(json!({}), json!(finish)));
    let mut usage = json!({"prompt_tokens": reply.prompt_tokens + reply.cached_tokens, "completion_tokens": reply.completion_tokens,
                  "prompt_tokens_details": {"cached_tokens": reply.cached_tokens}});
    if let Some(cost) = reply.cost {
        usage["cost"] = json!(cost);
    }
    events.push(json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": served, "choices": [], "usage": usage}));
    let mut out: Vec<String> = events
        .into_iter()
        .map(|e| format!("data: {e}\n\n"))
        .collect();
    out.push("data: [DONE]\n\n".to_owned());
    out
}

/// The text in streamed pieces: 16 characters, as a model streams; a megabyte-long test reply
/// in pieces of 4096, so it does not take half a minute to stream.
fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = if chars.len() > 500_000 { 4096 } else { 16 };
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// Anthropic Messages SSE: message_start … message_stop, with named events.
pub fn anthropic_events(reply: &Reply, model: &str) -> Vec<String> {
    let served = reply
        .served_model
        .clone()
        .unwrap_or_else(|| model.to_owned());
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut out = vec![ev(
        "message_start",
        json!({"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": served, "content": [],
        "usage": {"input_tokens": reply.prompt_tokens, "cache_read_input_tokens": reply.cached_tokens,
                  "cache_creation_input_tokens": reply.cache_write_tokens, "output_tokens": 1}}}),
    )];
    out.push(ev("ping", json!({"type": "ping"})));
    let mut index = 0;
    if !reply.text.is_empty() {
        out.push(ev("content_block_start", json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})));
        for p in pieces(&reply.text) {
            out.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": p}})));
        }
        out.push(ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    for (i, (name, args)) in reply.tool_calls.iter().enumerate() {
        out.push(ev("content_block_start", json!({"type": "content_block_start", "index": index,
            "content_block": {"type": "tool_use", "id": format!("toolu_{i}"), "name": name, "input": {}}})));
        let args = args.to_string();
        let (a, b) = args.split_at(args.len() / 2);
        for part in [a, b] {
            out.push(ev("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": part}})));
        }
        out.push(ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    let stop = if reply.tool_calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    // The output count is cumulative: send a smaller one first, then the total.
    out.push(ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": reply.completion_tokens / 2}})));
    out.push(ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": reply.completion_tokens}})));
    out.push(ev("message_stop", json!({"type": "message_stop"})));
    out
}

/// Gemini streamGenerateContent?alt=sse: candidates with parts, usageMetadata in every chunk.
pub fn gemini_events(reply: &Reply, model: &str) -> Vec<String> {
    let served = reply
        .served_model
        .clone()
        .unwrap_or_else(|| format!("{model}-001"));
    let usage = |out: u64| {
        json!({"promptTokenCount": reply.prompt_tokens + reply.cached_tokens,
        "cachedContentTokenCount": reply.cached_tokens, "candidatesTokenCount": out,
        "totalTokenCount": reply.prompt_tokens + reply.cached_tokens + out})
    };
    let mut chunks: Vec<Value> = pieces(&reply.text)
        .into_iter()
        .map(|p| json!({"candidates": [{"content": {"role": "model", "parts": [{"text": p}]}}], "usageMetadata": usage(1), "modelVersion": served}))
        .collect();
    for (i, (name, args)) in reply.tool_calls.iter().enumerate() {
        chunks.push(json!({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": name, "args": args}, "thoughtSignature": format!("sig-{i}")}]}}],
            "usageMetadata": usage(1), "modelVersion": served}));
    }
    chunks.push(
        json!({"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "STOP"}],
        "usageMetadata": usage(reply.completion_tokens), "modelVersion": served}),
    );
    chunks
        .into_iter()
        .map(|c| format!("data: {c}\r\n\r\n"))
        .collect()
}

/// Ollama /api/chat: one JSON object per line, the last with done: true and the counts.
pub fn ollama_lines(reply: &Reply, model: &str) -> Vec<String> {
    let served = reply
        .served_model
        .clone()
        .unwrap_or_else(|| model.to_owned());
    let mut lines: Vec<Value> = pieces(&reply.text)
        .into_iter()
        .map(|p| json!({"model": served, "message": {"role": "assistant", "content": p}, "done": false}))
        .collect();
    if !reply.tool_calls.is_empty() {
        let calls: Vec<Value> = reply
            .tool_calls
            .iter()
            .map(|(n, a)| json!({"function": {"name": n, "arguments": a}}))
            .collect();
        lines.push(json!({"model": served, "message": {"role": "assistant", "content": "", "tool_calls": calls}, "done": false}));
    }
    lines.push(json!({"model": served, "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "stop",
        "prompt_eval_count": reply.prompt_tokens, "eval_count": reply.completion_tokens}));
    lines.into_iter().map(|l| format!("{l}\n")).collect()
}

/// OpenAI Responses API (what Codex speaks): response.created … response.completed.
pub fn responses_events(reply: &Reply, model: &str) -> Vec<String> {
    let ev = |name: &str, mut data: Value| {
        data["type"] = json!(name);
        format!("event: {name}\ndata: {data}\n\n")
    };
    let mut out = vec![ev(
        "response.created",
        json!({"response": {"id": "resp_1", "model": model}}),
    )];
    let mut index = 0;
    for (i, (name, args)) in reply.tool_calls.iter().enumerate() {
        let item = json!({"type": "function_call", "id": format!("fc_{i}"), "call_id": format!("call_{i}"), "name": name, "arguments": args.to_string()});
        out.push(ev(
            "response.output_item.added",
            json!({"output_index": index, "item": item}),
        ));
        out.push(ev(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        ));
        index += 1;
    }
    if !reply.text.is_empty() {
        out.push(ev("response.output_item.added", json!({"output_index": index, "item": {"type": "message", "id": "msg_1", "role": "assistant", "content": []}})));
        for p in pieces(&reply.text) {
            out.push(ev(
                "response.output_text.delta",
                json!({"output_index": index, "content_index": 0, "delta": p}),
            ));
        }
        out.push(ev("response.output_item.done", json!({"output_index": index, "item": {"type": "message", "id": "msg_1", "role": "assistant",
            "content": [{"type": "output_text", "text": reply.text}]}})));
    }
    out.push(ev("response.completed", json!({"response": {"id": "resp_1", "model": model, "usage": {
        "input_tokens": reply.prompt_tokens + reply.cached_tokens, "input_tokens_details": {"cached_tokens": reply.cached_tokens},
        "output_tokens": reply.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": reply.prompt_tokens + reply.cached_tokens + reply.completion_tokens}}})));
    out
}
