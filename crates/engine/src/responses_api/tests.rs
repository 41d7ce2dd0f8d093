use serde_json::{json, Value};

use super::*;

fn events(sse: &str) -> Vec<Value> {
    sse.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let mut lines = e.lines();
            let kind = lines.next().unwrap().strip_prefix("event: ").unwrap();
            let data: Value =
                serde_json::from_str(lines.next().unwrap().strip_prefix("data: ").unwrap())
                    .unwrap();
            assert_eq!(data["type"], kind, "event name and type agree");
            data
        })
        .collect()
}

fn kinds(ev: &[Value]) -> Vec<&str> {
    ev.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[test]
fn a_string_input_with_instructions_becomes_a_system_and_a_user_message() {
    let plan = to_chat(&json!({
        "model": "m", "instructions": "be brief", "input": "hi",
        "max_output_tokens": 16, "temperature": 0.5, "store": false, "stream": true,
        "max_coefficient": 2000,
    }))
    .unwrap();
    assert!(plan.stream);
    assert_eq!(
        plan.chat,
        json!({
            "model": "m",
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
            "max_tokens": 16, "temperature": 0.5, "max_coefficient": 2000,
            "stream": true, "stream_options": {"include_usage": true},
        })
    );
    assert_eq!(plan.echo["instructions"], "be brief");
    assert_eq!(plan.echo["max_output_tokens"], 16);
}

#[test]
fn items_tools_and_formats_translate_to_their_chat_forms() {
    let plan = to_chat(&json!({
        "model": "m",
        "input": [
            {"role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
            {"type": "reasoning", "summary": []},
            {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{\"city\":\"A\"}"},
            {"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{\"city\":\"B\"}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        ],
        "tools": [{"type": "function", "name": "w", "description": "d", "parameters": {"type": "object"}, "strict": true}],
        "tool_choice": {"type": "function", "name": "w"},
        "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}, "strict": true}},
    }))
    .unwrap();
    let m = &plan.chat["messages"];
    assert_eq!(m[0], json!({"role": "system", "content": "rules"}));
    assert_eq!(m[1], json!({"role": "user", "content": "weather?"}));
    assert_eq!(
        m[2]["tool_calls"].as_array().unwrap().len(),
        2,
        "consecutive calls join"
    );
    assert_eq!(m[2]["tool_calls"][1]["id"], "c2");
    assert_eq!(
        m[3],
        json!({"role": "tool", "tool_call_id": "c1", "content": "sunny"})
    );
    assert_eq!(
        plan.chat["tools"][0],
        json!({"type": "function", "function": {"name": "w", "description": "d", "parameters": {"type": "object"}, "strict": true}})
    );
    assert_eq!(
        plan.chat["tool_choice"],
        json!({"type": "function", "function": {"name": "w"}})
    );
    assert_eq!(
        plan.chat["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}, "strict": true}})
    );
}

#[test]
fn stateful_and_unknown_fields_are_refused_by_name() {
    for (body, param) in [
        (
            json!({"model": "m", "input": "x", "previous_response_id": "r"}),
            "previous_response_id",
        ),
        (
            json!({"model": "m", "input": "x", "frobnicate": 1}),
            "frobnicate",
        ),
        (json!({"input": "x"}), "model"),
        (json!({"model": "m"}), "input"),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "robot_arm"}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image"}]}]}),
            "input[0].content[0]",
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}),
            "text.format.type",
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": "sometimes"}),
            "tool_choice",
        ),
    ] {
        let e = to_chat(&body).unwrap_err();
        assert_eq!(e.param, param, "{body}");
    }
}

#[test]
fn a_chat_completion_becomes_a_response_with_text_calls_and_usage() {
    let chat = json!({
        "id": "c", "created": 7,
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": "let me check",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8, "total_cost": 80, "cost": "0.00000008", "cost_nanoton": 80},
    });
    let mut echo = serde_json::Map::new();
    echo.insert("model".into(), "m".into());
    let r = chat_to_response(&chat, &echo);
    assert_eq!(r["object"], "response");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["created_at"], 7);
    assert_eq!(r["model"], "m");
    assert!(r["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(r["output"][0]["type"], "message");
    assert_eq!(r["output"][0]["content"][0]["text"], "let me check");
    assert_eq!(r["output"][1]["type"], "function_call");
    assert_eq!(r["output"][1]["call_id"], "call_1");
    assert_eq!(r["usage"]["input_tokens"], 5);
    assert_eq!(r["usage"]["output_tokens"], 3);
    assert_eq!(r["usage"]["cost"], "0.00000008");
    assert_eq!(r["usage"]["cost_nanoton"], 80);

    let cut = json!({"choices": [{"finish_reason": "length", "message": {"content": "abc"}}]});
    let r = chat_to_response(&cut, &echo);
    assert_eq!(r["status"], "incomplete");
    assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
}

#[test]
fn a_streamed_text_answer_in_any_chunking_gives_the_same_events() {
    let chat = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":2,\"total_tokens\":4}}\n\n",
        "data: [DONE]\n\n",
    );
    for step in [chat.len(), 1, 7] {
        let mut b = StreamBridge::new(serde_json::Map::new());
        let mut out = String::new();
        for piece in chat.as_bytes().chunks(step) {
            out.push_str(&b.push(piece));
        }
        assert!(b.is_over());
        let ev = events(&out);
        assert_eq!(
            kinds(&ev),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ],
            "chunked by {step}"
        );
        let seqs: Vec<u64> = ev
            .iter()
            .map(|e| e["sequence_number"].as_u64().unwrap())
            .collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
        assert_eq!(ev[6]["text"], "Hello");
        let done = &ev[9]["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(done["usage"]["total_tokens"], 4);
    }
}

#[test]
fn streamed_tool_calls_and_failures_become_their_events() {
    let chat = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"w\",\"arguments\":\"\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\\\"A\\\"}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: [DONE]\n\n",
    );
    let mut b = StreamBridge::new(serde_json::Map::new());
    let ev = events(&b.push(chat.as_bytes()));
    assert_eq!(
        kinds(&ev),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(ev[2]["item"]["call_id"], "call_a");
    assert_eq!(ev[4]["arguments"], "{\"city\":\"A\"}");
    assert_eq!(ev[6]["response"]["output"][0]["name"], "w");
    assert!(
        b.push(b"data: [DONE]\n\n").is_empty(),
        "nothing after the end"
    );

    let mut b = StreamBridge::new(serde_json::Map::new());
    let out = b.push(b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\ndata: {\"error\":{\"message\":\"worker lost\"}}\n\n");
    let ev = events(&out);
    let last = ev.last().unwrap();
    assert_eq!(last["type"], "response.failed");
    assert_eq!(last["response"]["error"]["message"], "worker lost");

    let mut b = StreamBridge::new(serde_json::Map::new());
    let out = b.push(b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":\"length\"}]}\n\ndata: [DONE]\n\n");
    let ev = events(&out);
    assert_eq!(ev.last().unwrap()["type"], "response.incomplete");
}

#[test]
fn hosted_tools_are_left_out_and_functions_kept() {
    let plan = to_chat(&json!({
        "model": "m", "input": "x", "store": false, "include": ["reasoning.encrypted_content"],
        "reasoning": {"effort": "low"}, "prompt_cache_key": "k", "text": {"verbosity": "low"},
        "tools": [{"type": "web_search"}, {"type": "function", "name": "shell", "parameters": {"type": "object"}}],
    }))
    .unwrap();
    let tools = plan.chat["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0]["function"]["name"], "shell");
    assert!(plan.chat.get("response_format").is_none());
    let none =
        to_chat(&json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]})).unwrap();
    assert!(
        none.chat.get("tools").is_none(),
        "no tools left: none offered"
    );
}
