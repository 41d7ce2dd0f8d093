"""The official `openai` Python package against a running cocoon client.

Run by tests/e2e/sdk.rs against a test network serving the real default model, with
COCOON_BASE (the client's http://127.0.0.1:PORT), COCOON_MODEL and COCOON_ADMIN_TOKEN (the
client's bearer_token, which is also its admin key) set. Each check prints one line; the last
line is "N passed, M failed" and the exit status is 1 when anything failed.
"""

import json
import os
import sys
import traceback
import urllib.request

import jsonschema
import openai

BASE = os.environ["COCOON_BASE"]
MODEL = os.environ["COCOON_MODEL"]
ADMIN = os.environ["COCOON_ADMIN_TOKEN"]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer"},
        "likes_tea": {"type": "boolean"},
        "pets": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 3},
        "mood": {"type": "string", "enum": ["happy", "sad", "calm"]},
    },
    "required": ["name", "age", "likes_tea", "pets", "mood"],
    "additionalProperties": False,
}


def client(key=ADMIN, **kw):
    return openai.OpenAI(base_url=BASE + "/v1", api_key=key, max_retries=0, timeout=120, **kw)


def admin(path, body):
    req = urllib.request.Request(
        BASE + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + ADMIN, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def check_cost(usage):
    u = usage if isinstance(usage, dict) else usage.model_dump()
    assert isinstance(u.get("cost"), str), f"usage.cost missing: {u}"
    assert isinstance(u.get("cost_nanoton"), int), f"usage.cost_nanoton missing: {u}"
    assert u["cost_nanoton"] > 0, u
    whole, _, frac = u["cost"].partition(".")
    assert int(whole) * 10**9 + int((frac + "000000000")[:9] or 0) == u["cost_nanoton"], u


def test_models():
    ids = [m.id for m in client().models.list()]
    assert MODEL in ids, ids


def test_chat_with_cost():
    r = client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hi"}], max_tokens=16
    )
    assert r.choices[0].message.content, r
    assert r.usage.total_tokens > 0
    check_cost(r.usage)


def test_streaming_with_usage_and_cost():
    stream = client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count to five"}],
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage
    assert text, "no text streamed"
    assert usage is not None and usage.completion_tokens > 0, usage
    check_cost(usage)


def test_tool_call_arguments_validate():
    # One call each (a named function is one call; `required` asks for one): a 135M model
    # left free to make several rarely stops before max_tokens.
    for choice, parallel in [
        ("required", False),
        ({"type": "function", "function": {"name": "get_weather"}}, None),
    ]:
        extra = {} if parallel is None else {"parallel_tool_calls": parallel}
        r = client().chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "What is the weather in Paris?"}],
            tools=[WEATHER],
            tool_choice=choice,
            max_tokens=96,
            temperature=0,
            **extra,
        )
        c = r.choices[0]
        assert c.finish_reason == "tool_calls", c
        call = c.message.tool_calls[0]
        assert call.id and call.type == "function", call
        assert call.function.name == "get_weather", call
        jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])


def test_streamed_tool_call_validates():
    stream = client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Rome?"}],
        tools=[WEATHER],
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=96,
        temperature=0,
        stream=True,
    )
    args, name, finish = "", None, None
    for chunk in stream:
        if not chunk.choices:
            continue
        d = chunk.choices[0].delta
        for tc in d.tool_calls or []:
            name = tc.function.name or name
            args += tc.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert name == "get_weather" and finish == "tool_calls", (name, finish)
    jsonschema.validate(json.loads(args), WEATHER["function"]["parameters"])


def test_json_schema_output_validates():
    for stream in [False, True]:
        kw = dict(
            model=MODEL,
            messages=[{"role": "user", "content": "Describe a person as JSON"}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "person", "schema": PERSON, "strict": True},
            },
            max_tokens=128,
            temperature=0,
        )
        if stream:
            text = "".join(
                c.choices[0].delta.content or ""
                for c in client().chat.completions.create(stream=True, **kw)
                if c.choices
            )
        else:
            text = client().chat.completions.create(**kw).choices[0].message.content
        jsonschema.validate(json.loads(text), PERSON)


def test_responses_text_and_stream():
    r = client().responses.create(
        model=MODEL, instructions="Answer briefly.", input="Say hello", max_output_tokens=16
    )
    assert r.status in ("completed", "incomplete"), r
    assert r.output_text, r
    assert r.usage.output_tokens > 0
    # Raw events: the SDK's `responses.stream()` helper insists on `response.completed`, and a
    # small model may well reach max_output_tokens (`response.incomplete`, as OpenAI sends).
    kinds, text, final = [], "", None
    for ev in client().responses.create(
        model=MODEL, input="Say hello", max_output_tokens=16, stream=True
    ):
        kinds.append(ev.type)
        if ev.type == "response.output_text.delta":
            text += ev.delta
        if ev.type in ("response.completed", "response.incomplete"):
            final = ev.response
    assert kinds[0] == "response.created", kinds
    assert kinds[-1] in ("response.completed", "response.incomplete"), kinds
    assert text and final is not None and final.output_text == text, (text, final)


def test_responses_function_call():
    r = client().responses.create(
        model=MODEL,
        input="What is the weather in Oslo?",
        tools=[{"type": "function", **WEATHER["function"]}],
        tool_choice="required",
        parallel_tool_calls=False,
        max_output_tokens=96,
        temperature=0,
    )
    calls = [o for o in r.output if o.type == "function_call"]
    assert calls and calls[0].name == "get_weather", r.output
    jsonschema.validate(json.loads(calls[0].arguments), WEATHER["function"]["parameters"])


def test_keys():
    # An unknown key: 401.
    try:
        client("sk-cocoon-not-a-key").chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
        raise AssertionError("an unknown key was served")
    except openai.AuthenticationError:
        pass
    # A key with 2 requests a minute: the third gets 429 with Retry-After.
    k = admin("/admin/keys/create", {"name": "sdk-rate", "limits": {"requests_per_minute": 2}})
    c = client(k["secret"])
    for _ in range(2):
        c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    try:
        c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        raise AssertionError("a key over its rate was served")
    except openai.RateLimitError as e:
        assert int(e.response.headers["retry-after"]) >= 1, e.response.headers
    # A key with a budget of 1 token: once spent, 402.
    k = admin(
        "/admin/keys/create",
        {"name": "sdk-budget", "budget": {"amount": 1, "unit": "tokens", "period": "total"}},
    )
    c = client(k["secret"])
    status = None
    for _ in range(3):
        try:
            c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        except openai.APIStatusError as e:
            status = e.status_code
            break
    assert status == 402, status
    # A revoked key: 401.
    k = admin("/admin/keys/create", {"name": "sdk-revoked"})
    c = client(k["secret"])
    c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    admin("/admin/keys/revoke", {"id": k["id"]})
    try:
        c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        raise AssertionError("a revoked key was served")
    except openai.AuthenticationError:
        pass


def main():
    tests = [(n, f) for n, f in globals().items() if n.startswith("test_") and callable(f)]
    only = sys.argv[1:]
    passed = failed = 0
    for name, f in tests:
        if only and name not in only:
            continue
        try:
            f()
            print(f"ok   {name}", flush=True)
            passed += 1
        except Exception:
            print(f"FAIL {name}", flush=True)
            traceback.print_exc()
            failed += 1
    print(f"openai (Python) {openai.__version__}")
    print(f"python: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
