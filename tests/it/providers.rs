//! Each chat client against the fake server speaking its vendor's protocol: streamed text, a
//! tool-call round trip, usage equal to what the server sent; then the failure rules.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use autowrkers::providers::{
    AnthropicMessages, ChatProvider, ChatRequest, GeminiGenerate, HttpClient, Message, OllamaChat,
    OpenAiChat, ProviderError, RetryPolicy, Retrying, Role, Secret, ToolSpec,
};
use autowrkers::spec::TokenUsage;
use serde_json::{Value, json};

use crate::fake_llm::{FakeLlm, Protocol, Reply, Rule};
use crate::support::SECRET;

const ANSWER: &str = "The file says hello; nothing else needs reading. Done.";

fn rules(model: &str) -> Vec<Rule> {
    let mut tool = Reply::tool("read_file", json!({"path": "a.txt"}));
    (
        tool.prompt_tokens,
        tool.completion_tokens,
        tool.cached_tokens,
        tool.cache_write_tokens,
    ) = (120, 15, 30, 7);
    let mut text = Reply::text(ANSWER);
    (
        text.prompt_tokens,
        text.completion_tokens,
        text.cached_tokens,
    ) = (200, 40, 100);
    vec![
        Rule::new(model, Some(0), tool),
        Rule::new(model, Some(1), text),
    ]
}

fn request(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.to_owned(),
        messages: vec![
            Message::text(Role::System, "You are a test."),
            Message::text(Role::User, "Read a.txt"),
        ],
        tools: vec![ToolSpec {
            name: "read_file",
            description: "Read a file",
            parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
        }],
        temperature: 0.1,
        max_tokens: None,
        phase_id: "p".into(),
        iteration: 1,
    }
}

/// Runs the two-turn round trip and returns the server's view of both requests.
async fn round_trip(
    provider: &dyn ChatProvider,
    server: &FakeLlm,
    model: &str,
    cached_counts_apart: bool,
) -> Vec<Value> {
    let mut req = request(model);
    let streamed = Mutex::new(String::new());
    let sink = |d: &str| streamed.lock().expect("lock").push_str(d);
    let first = provider.chat(&req, &sink).await.expect("first call");
    assert_eq!(first.tool_calls.len(), 1, "{first:?}");
    assert_eq!(first.tool_calls[0].name, "read_file");
    let args: Value = serde_json::from_str(&first.tool_calls[0].arguments).expect("arguments JSON");
    assert_eq!(args, json!({"path": "a.txt"}));
    let expected_first = if cached_counts_apart {
        TokenUsage {
            input: 120,
            output: 15,
            cached_input: 30,
            cache_write: 7,
        }
    } else {
        TokenUsage {
            input: 120,
            output: 15,
            cached_input: 30,
            cache_write: 0,
        }
    };
    assert_eq!(first.usage, expected_first);

    req.messages.push(Message {
        role: Role::Assistant,
        content: first.text.slice(0, first.text.len()).expect("text"),
        tool_calls: first.tool_calls.clone(),
        tool_call_id: None,
    });
    req.messages.push(Message {
        role: Role::Tool,
        content: "hello".into(),
        tool_calls: vec![],
        tool_call_id: Some(first.tool_calls[0].id.clone()),
    });
    streamed.lock().expect("lock").clear();
    let second = provider.chat(&req, &sink).await.expect("second call");
    assert_eq!(second.text, ANSWER);
    assert_eq!(
        *streamed.lock().expect("lock"),
        ANSWER,
        "text arrives streamed, piece by piece"
    );
    assert!(second.tool_calls.is_empty());
    assert_eq!(
        second.usage,
        TokenUsage {
            input: 200,
            output: 40,
            cached_input: 100,
            cache_write: 0
        }
    );
    server.calls(model).into_iter().map(|r| r.body).collect()
}

fn http() -> HttpClient {
    HttpClient::new().expect("client")
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_chat_completions() {
    let (server, _h) = FakeLlm::start(rules("gpt-x")).await;
    let p = OpenAiChat::new(
        http(),
        "openai",
        &server.url(),
        Some(Secret::new(SECRET)),
        vec![],
    );
    let bodies = round_trip(&p, &server, "gpt-x", false).await;
    assert_eq!(bodies[0]["stream_options"]["include_usage"], true);
    let tool_msg = bodies[1]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["role"] == "tool")
        .cloned()
        .expect("tool message");
    assert_eq!(tool_msg["tool_call_id"], "call_0");
    assert_eq!(
        server.log()[0].authorization.as_deref(),
        Some(format!("Bearer {SECRET}").as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_messages_with_prompt_caching() {
    let (server, _h) = FakeLlm::start(rules("claude-x")).await;
    let base = format!("http://{}", server.addr);
    let p = AnthropicMessages::new(http(), &base, Some(Secret::new(SECRET)));
    let bodies = round_trip(&p, &server, "claude-x", true).await;
    assert_eq!(
        bodies[0]["system"][0]["cache_control"]["type"], "ephemeral",
        "the stable prefix is cached"
    );
    assert_eq!(bodies[0]["tools"][0]["cache_control"]["type"], "ephemeral");
    let last = bodies[1]["messages"]
        .as_array()
        .expect("messages")
        .last()
        .cloned()
        .expect("last");
    assert_eq!(last["role"], "user");
    assert_eq!(last["content"][0]["type"], "tool_result");
    assert_eq!(last["content"][0]["tool_use_id"], "toolu_0");
    assert_eq!(
        last["content"][0]["cache_control"]["type"], "ephemeral",
        "the conversation so far is cached"
    );
    assert_eq!(
        server.log()[0].authorization.as_deref(),
        Some(SECRET),
        "x-api-key header"
    );
    assert!(
        server
            .log()
            .iter()
            .all(|r| r.protocol == Protocol::Anthropic && r.path == "/v1/messages")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_generate_content_echoes_thought_signatures() {
    let (server, _h) = FakeLlm::start(rules("gemini-x")).await;
    let base = format!("http://{}", server.addr);
    let p = GeminiGenerate::new(http(), &base, Some(Secret::new(SECRET)));
    let mut req = request("gemini-x");
    let first = p.chat(&req, &|_| {}).await.expect("first");
    assert_eq!(first.served_model.as_deref(), Some("gemini-x-001"));
    assert_eq!(first.tool_calls[0].signature.as_deref(), Some("sig-0"));
    drop(req.messages.drain(..0));
    let bodies = round_trip(&p, &server, "gemini-x", false).await;
    let contents = bodies.last().expect("last")["contents"]
        .as_array()
        .expect("contents");
    let model_turn = contents
        .iter()
        .find(|c| c["role"] == "model")
        .expect("model turn");
    assert_eq!(
        model_turn["parts"][0]["thoughtSignature"], "sig-0",
        "signature sent back unchanged"
    );
    let response = &contents.last().expect("last")["parts"][0]["functionResponse"];
    assert_eq!(response["name"], "read_file");
    assert_eq!(
        bodies[0]["systemInstruction"]["parts"][0]["text"],
        "You are a test."
    );
    let log = server.log();
    assert!(
        log[0]
            .path
            .ends_with("gemini-x:streamGenerateContent?alt=sse"),
        "{}",
        log[0].path
    );
    assert_eq!(
        log[0].authorization.as_deref(),
        Some(SECRET),
        "x-goog-api-key header"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ollama_native_chat_sends_num_ctx() {
    let mut r = rules("qwen-x");
    for rule in &mut r {
        rule.reply.cached_tokens = 0;
    }
    let (server, _h) = FakeLlm::start(r).await;
    let base = format!("http://{}", server.addr);
    let p = OllamaChat::new(http(), &base, 32768);
    let mut req = request("qwen-x");
    let first = p.chat(&req, &|_| {}).await.expect("first");
    assert_eq!(
        first.usage,
        TokenUsage {
            input: 120,
            output: 15,
            cached_input: 0,
            cache_write: 0
        }
    );
    req.messages.push(Message {
        role: Role::Assistant,
        content: String::new(),
        tool_calls: first.tool_calls.clone(),
        tool_call_id: None,
    });
    req.messages.push(Message {
        role: Role::Tool,
        content: "hello".into(),
        tool_calls: vec![],
        tool_call_id: Some(first.tool_calls[0].id.clone()),
    });
    let second = p.chat(&req, &|_| {}).await.expect("second");
    assert_eq!(second.text, ANSWER);
    assert_eq!(
        second.usage,
        TokenUsage {
            input: 200,
            output: 40,
            cached_input: 0,
            cache_write: 0
        }
    );
    let bodies: Vec<Value> = server.calls("qwen-x").into_iter().map(|r| r.body).collect();
    assert_eq!(bodies[0]["options"]["num_ctx"], 32768);
    let tool = bodies[1]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["role"] == "tool")
        .cloned()
        .expect("tool");
    assert_eq!(tool["tool_name"], "read_file");
    assert_eq!(
        bodies[1]["messages"][2]["tool_calls"][0]["function"]["arguments"],
        json!({"path": "a.txt"})
    );
}

fn fast(p: impl ChatProvider + 'static) -> Retrying {
    Retrying::new(
        Arc::new(p),
        RetryPolicy {
            retries: 3,
            base: Duration::from_millis(10),
            max: Duration::from_secs(5),
        },
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_honoured() {
    let mut limited = Reply::status(429);
    limited.retry_after = Some(1);
    let (server, _h) = FakeLlm::start(vec![
        Rule::new("m", None, limited).times(1),
        Rule::new("m", None, Reply::text("ok")),
    ])
    .await;
    let p = fast(OpenAiChat::new(
        http(),
        "openai",
        &server.url(),
        None,
        vec![],
    ));
    let answer = p
        .chat(&request("m"), &|_| {})
        .await
        .expect("answer after the limit");
    assert_eq!(answer.text, "ok");
    let log = server.calls("m");
    assert_eq!(log.len(), 2);
    let waited = log[1]
        .started
        .duration_since(log[0].finished.expect("finished"));
    assert!(
        waited >= Duration::from_secs(1),
        "retried after {waited:?}, before Retry-After: 1"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_errors_are_not_retried_and_never_show_the_key() {
    let mut denied = Reply::status(401);
    denied.echo_key = true;
    let (server, _h) = FakeLlm::start(vec![Rule::new("m", None, denied)]).await;
    let p = fast(OpenAiChat::new(
        http(),
        "openai",
        &server.url(),
        Some(Secret::new(SECRET)),
        vec![],
    ));
    let err = p.chat(&request("m"), &|_| {}).await.expect_err("401");
    assert!(
        matches!(err, ProviderError::Auth { status: 401, .. }),
        "{err:?}"
    );
    assert_eq!(server.calls("m").len(), 1, "401 is not retried");
    let text = format!("{err} {err:?}");
    assert!(
        text.contains("[redacted]") && !text.contains(SECRET),
        "{text}"
    );

    let (server, _h) = FakeLlm::start(vec![Rule::new("m", None, Reply::status(400))]).await;
    let p = fast(OpenAiChat::new(
        http(),
        "openai",
        &server.url(),
        None,
        vec![],
    ));
    assert!(matches!(
        p.chat(&request("m"), &|_| {}).await,
        Err(ProviderError::BadRequest { .. })
    ));
    assert_eq!(server.calls("m").len(), 1, "400 is not retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_stream_is_retried_whole_and_its_tokens_still_count() {
    let mut cut = Reply::text(ANSWER);
    cut.cut_after = Some(4);
    let ok = Reply::text(ANSWER);
    let (server, _h) = FakeLlm::start(vec![
        Rule::new("claude", None, cut).times(1),
        Rule::new("claude", None, ok),
    ])
    .await;
    let p = fast(AnthropicMessages::new(
        http(),
        &format!("http://{}", server.addr),
        None,
    ));
    let answer = p.chat(&request("claude"), &|_| {}).await.expect("answer");
    assert_eq!(answer.text, ANSWER);
    assert_eq!(server.calls("claude").len(), 2);
    // message_start of the cut attempt reported 100 input and 1 output token: billed too.
    assert_eq!(
        answer.usage,
        TokenUsage {
            input: 200,
            output: 21,
            cached_input: 0,
            cache_write: 0
        }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_and_invalid_streams_are_retried() {
    let mut truncated = Reply::text("partial answer that never ends");
    truncated.truncate_after = Some(2);
    let mut garbage = Reply::text("x");
    garbage.garbage = true;
    let slow = Reply::text("finally").delayed(Duration::from_millis(200));
    let (server, _h) = FakeLlm::start(vec![
        Rule::new("m", None, truncated).times(1),
        Rule::new("m", None, garbage).times(1),
        Rule::new("m", None, Reply::status(500)).times(1),
        Rule::new("m", None, slow),
    ])
    .await;
    let p = fast(OpenAiChat::new(
        http(),
        "openai",
        &server.url(),
        None,
        vec![],
    ));
    let answer = p.chat(&request("m"), &|_| {}).await.expect("answer");
    assert_eq!(answer.text, "finally");
    assert_eq!(server.calls("m").len(), 4);

    let (server, _h) = FakeLlm::start(vec![Rule::new("m", None, Reply::status(503))]).await;
    let p = fast(OpenAiChat::new(
        http(),
        "openai",
        &server.url(),
        None,
        vec![],
    ));
    assert!(matches!(
        p.chat(&request("m"), &|_| {}).await,
        Err(ProviderError::Server { status: 503, .. })
    ));
    assert_eq!(
        server.calls("m").len(),
        4,
        "one call and 3 retries, then the error"
    );
}
