// The official `openai` Node package against a running cocoon client.
//
// Run by tests/e2e/sdk.rs against a test network serving the real default model, with
// COCOON_BASE, COCOON_MODEL and COCOON_ADMIN_TOKEN set (see openai_python.py). Each check prints
// one line; the last line is "node: N passed, M failed"; the exit status is 1 when anything failed.
import OpenAI from "openai";
import Ajv from "ajv";

const BASE = process.env.COCOON_BASE;
const MODEL = process.env.COCOON_MODEL;
const ADMIN = process.env.COCOON_ADMIN_TOKEN;
const ajv = new Ajv({ strict: false });

const weather = {
  type: "object",
  properties: {
    city: { type: "string" },
    unit: { type: "string", enum: ["celsius", "fahrenheit"] },
  },
  required: ["city", "unit"],
  additionalProperties: false,
};
const tool = {
  type: "function",
  function: { name: "get_weather", description: "Current weather in a city", parameters: weather },
};
const colour = {
  type: "object",
  properties: {
    colour: { type: "string", enum: ["red", "green", "blue"] },
    shades: { type: "integer" },
  },
  required: ["colour", "shades"],
  additionalProperties: false,
};

const client = (key = ADMIN) =>
  new OpenAI({ baseURL: `${BASE}/v1`, apiKey: key, maxRetries: 0, timeout: 120_000 });

async function admin(path, body) {
  const r = await fetch(`${BASE}${path}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${ADMIN}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  assert(r.ok, `${path}: ${r.status}`);
  return r.json();
}

function assert(cond, what) {
  if (!cond) throw new Error(`assertion failed: ${what}`);
}

function validates(schema, text) {
  const value = JSON.parse(text);
  const ok = ajv.validate(schema, value);
  assert(ok, `${text} does not validate: ${ajv.errorsText()}`);
}

function checkCost(usage) {
  assert(typeof usage.cost === "string", `usage.cost: ${JSON.stringify(usage)}`);
  assert(Number.isInteger(usage.cost_nanoton) && usage.cost_nanoton > 0, JSON.stringify(usage));
}

const tests = {
  async chat_with_cost() {
    const r = await client().chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "Say hi" }],
      max_tokens: 16,
    });
    assert(r.choices[0].message.content, "content");
    checkCost(r.usage);
  },
  async streaming_with_usage_and_cost() {
    const stream = await client().chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "Count to five" }],
      max_tokens: 16,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      if (chunk.usage) usage = chunk.usage;
    }
    assert(text.length > 0, "text streamed");
    assert(usage && usage.completion_tokens > 0, "usage");
    checkCost(usage);
  },
  async tool_call_arguments_validate() {
    const r = await client().chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "What is the weather in Paris?" }],
      tools: [tool],
      tool_choice: "required",
      parallel_tool_calls: false,
      max_tokens: 96,
      temperature: 0,
    });
    const c = r.choices[0];
    assert(c.finish_reason === "tool_calls", `finish_reason ${c.finish_reason}`);
    const call = c.message.tool_calls[0];
    assert(call.id && call.function.name === "get_weather", JSON.stringify(call));
    validates(weather, call.function.arguments);
  },
  async json_schema_output_validates() {
    const r = await client().chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "Pick a colour" }],
      response_format: {
        type: "json_schema",
        json_schema: { name: "colour", schema: colour, strict: true },
      },
      max_tokens: 64,
      temperature: 0,
    });
    validates(colour, r.choices[0].message.content);
  },
  async responses_text_and_stream() {
    const r = await client().responses.create({
      model: MODEL,
      input: "Say hello",
      max_output_tokens: 16,
    });
    assert(r.output_text.length > 0, "output_text");
    const stream = await client().responses.create({
      model: MODEL,
      input: "Say hello",
      max_output_tokens: 16,
      stream: true,
    });
    const kinds = [];
    let text = "";
    for await (const ev of stream) {
      kinds.push(ev.type);
      if (ev.type === "response.output_text.delta") text += ev.delta;
    }
    assert(kinds[0] === "response.created", kinds.join(","));
    assert(["response.completed", "response.incomplete"].includes(kinds.at(-1)), kinds.join(","));
    assert(text.length > 0, "streamed text");
  },
  async keys_rate_budget_and_revocation() {
    const hi = { model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 4 };
    const rate = await admin("/admin/keys/create", {
      name: "node-rate",
      limits: { requests_per_minute: 1 },
    });
    await client(rate.secret).chat.completions.create(hi);
    try {
      await client(rate.secret).chat.completions.create(hi);
      throw new Error("a key over its rate was served");
    } catch (e) {
      assert(e instanceof OpenAI.RateLimitError, `${e}`);
      assert(Number(e.headers.get("retry-after")) >= 1, "Retry-After");
    }
    const budget = await admin("/admin/keys/create", {
      name: "node-budget",
      budget: { amount: 1, unit: "tokens", period: "total" },
    });
    let status = null;
    for (let i = 0; i < 3 && status === null; i++) {
      try {
        await client(budget.secret).chat.completions.create(hi);
      } catch (e) {
        status = e.status;
      }
    }
    assert(status === 402, `over budget: ${status}`);
    const gone = await admin("/admin/keys/create", { name: "node-revoked" });
    await client(gone.secret).chat.completions.create(hi);
    await admin("/admin/keys/revoke", { id: gone.id });
    try {
      await client(gone.secret).chat.completions.create(hi);
      throw new Error("a revoked key was served");
    } catch (e) {
      assert(e instanceof OpenAI.AuthenticationError, `${e}`);
    }
  },
  async unknown_key_is_refused() {
    try {
      await client("sk-cocoon-not-a-key").chat.completions.create({
        model: MODEL,
        messages: [{ role: "user", content: "hi" }],
        max_tokens: 4,
      });
    } catch (e) {
      assert(e instanceof OpenAI.AuthenticationError, `${e}`);
      return;
    }
    throw new Error("an unknown key was served");
  },
};

let passed = 0;
let failed = 0;
for (const [name, f] of Object.entries(tests)) {
  try {
    await f();
    console.log(`ok   ${name}`);
    passed++;
  } catch (e) {
    console.log(`FAIL ${name}: ${e?.stack ?? e}`);
    failed++;
  }
}
console.log(`node: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
