//! The decode thread: one OS thread owns the llama.cpp context and runs continuous batching.
//!
//! Each admitted request gets a slot (a llama.cpp sequence id, its own sampler chain, its
//! own KV-cache cells). Every step builds ONE `LlamaBatch` holding the next token of every
//! generating slot plus a chunk of pending prompt tokens (prefill is split so a long prompt
//! does not stall the others), calls `decode` once, then samples one token per slot whose
//! logits were requested (through the slot's grammar too, when its request constrains the
//! output: see [`pick`]). New requests join between steps; finished or cancelled ones leave
//! between steps (their KV cells are removed), so nothing waits for a whole batch to end.
//!
//! Requests arrive over a bounded `std::sync::mpsc` channel (the wait queue: a full queue is
//! answered 503 by the caller) and are taken only when a slot is free. Results go back over a
//! per-request tokio channel; a closed channel (the response body was dropped) cancels the
//! request at the next step. No llama.cpp call happens anywhere else, so none runs on a tokio
//! worker. The thread ends when the engine is dropped (its shutdown flag or the closed queue).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc::UnboundedSender;

use super::params::{GenParams, Stage};
use super::stop::{StopMatcher, Utf8Buf};

/// The prompt of a job, already rendered.
#[derive(Debug)]
pub(crate) enum JobPrompt {
    /// Text to tokenize; `parse_special` lets control-token text (`<|im_start|>`) become
    /// control tokens (true for rendered chat templates, false for raw completion prompts).
    Text { text: String, parse_special: bool },
    /// Token ids given by the client.
    Tokens(Vec<u32>),
}

/// One request for the decode thread.
#[derive(Debug)]
pub(crate) struct Job {
    pub prompt: JobPrompt,
    pub params: GenParams,
    pub stages: Vec<Stage>,
    /// A GBNF grammar (root rule `root`) that filters candidates before the pick.
    pub grammar: Option<String>,
    pub events: UnboundedSender<Event>,
}

/// What the decode thread reports for a job, in order: `Started` or `Rejected`, then `Text`s,
/// then `Done` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    /// The job has a slot; the prompt is this many tokens.
    Started { prompt_tokens: u32 },
    /// The job cannot run (prompt too long, bad token ids): an OpenAI 400.
    Rejected { message: String, code: &'static str },
    /// A text delta, and the tokens sampled so far (held-back text included).
    Text {
        text: String,
        completion_tokens: u32,
    },
    /// Generation ended. `completion_tokens` counts every sampled token, the end-of-generation
    /// token included (it was computed, as vLLM counts it).
    Done {
        finish_reason: &'static str,
        completion_tokens: u32,
    },
    /// llama.cpp failed mid-way.
    Failed(String),
}

/// Counters shared with the engine handle.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub started: AtomicU64,
    pub completed: AtomicU64,
    pub cancelled: AtomicU64,
    pub rejected: AtomicU64,
    pub failed: AtomicU64,
    pub completion_tokens: AtomicU64,
    pub decode_steps: AtomicU64,
    pub active: AtomicUsize,
    pub queued: AtomicUsize,
    pub alive: AtomicBool,
    pub shutdown: AtomicBool,
}

/// Context geometry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub context_size: u32,
    pub slots: u32,
    pub threads: u32,
    pub batch: u32,
}

impl Geometry {
    /// KV cells one slot may use (prompt + completion).
    pub(crate) fn per_slot(&self) -> u32 {
        self.context_size / self.slots.max(1)
    }
}

struct Slot {
    seq: i32,
    events: UnboundedSender<Event>,
    sampler: LlamaSampler,
    /// The grammar, checked against the chain's pick (see [`pick`]).
    grammar: Option<LlamaSampler>,
    prompt: Vec<LlamaToken>,
    /// Prompt tokens already in the batch/KV cache.
    fed: usize,
    /// Next position in the sequence.
    pos: i32,
    /// The token to feed next step (after prefill).
    next: Option<LlamaToken>,
    /// Batch index whose logits this slot samples after the current decode.
    logits_at: Option<i32>,
    generated: u32,
    max_tokens: u32,
    utf8: Utf8Buf,
    stop: StopMatcher,
    /// Grammar-constrained: control tokens the grammar matched by their text are emitted as
    /// text (the grammar saw them that way).
    special_text: bool,
}

/// Creates the context and runs the loop until shutdown. `ready` gets the context result.
pub(crate) fn run(
    backend: &'static LlamaBackend,
    model: Arc<LlamaModel>,
    geo: Geometry,
    jobs: Receiver<Job>,
    counters: Arc<Counters>,
    ready: std::sync::mpsc::SyncSender<Result<(), String>>,
) {
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(geo.context_size))
        .with_n_batch(geo.batch)
        .with_n_ubatch(geo.batch)
        .with_n_seq_max(geo.slots)
        .with_n_threads(i32::try_from(geo.threads).unwrap_or(1))
        .with_n_threads_batch(i32::try_from(geo.threads).unwrap_or(1))
        // One shared KV buffer: slot limits are enforced here (`per_slot`), and a unified
        // cache lets one batch mix all sequences freely.
        .with_kv_unified(true);
    let ctx = match model.new_context(backend, params) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    counters.alive.store(true, Ordering::SeqCst);
    let _ = ready.send(Ok(()));
    // Positions beyond the training context give garbage; never let a sequence go there.
    let max_seq = geo.per_slot().min(model.n_ctx_train().max(1));
    let mut l = Loop {
        max_seq,
        model: &model,
        ctx,
        geo,
        counters: &counters,
        slots: Vec::new(),
        free: (0..i32::try_from(geo.slots).unwrap_or(i32::MAX))
            .rev()
            .collect(),
        batch: LlamaBatch::new(geo.batch as usize, i32::try_from(geo.slots).unwrap_or(1)),
    };
    l.run(&jobs);
    // Anyone still waiting hears that the engine is gone (their channel closes on drop).
    for s in l.slots.drain(..) {
        let _ = s.events.send(Event::Failed("engine shut down".into()));
    }
    counters.active.store(0, Ordering::SeqCst);
    counters.alive.store(false, Ordering::SeqCst);
}

struct Loop<'m> {
    /// KV cells one request may use (prompt + completion).
    max_seq: u32,
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    geo: Geometry,
    counters: &'m Counters,
    slots: Vec<Slot>,
    free: Vec<i32>,
    batch: LlamaBatch<'static>,
}

impl Loop<'_> {
    fn run(&mut self, jobs: &Receiver<Job>) {
        let mut open = true;
        loop {
            if self.counters.shutdown.load(Ordering::SeqCst) {
                return;
            }
            self.reap_cancelled();
            // Admit while slots are free; block only when there is nothing else to do.
            while open && !self.free.is_empty() {
                let job = if self.slots.is_empty() {
                    match jobs.recv() {
                        Ok(j) => j,
                        Err(_) => {
                            open = false;
                            break;
                        }
                    }
                } else {
                    match jobs.try_recv() {
                        Ok(j) => j,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                };
                self.counters.queued.fetch_sub(1, Ordering::SeqCst);
                if self.counters.shutdown.load(Ordering::SeqCst) {
                    return;
                }
                self.admit(job);
            }
            if self.slots.is_empty() {
                if !open {
                    return;
                }
                continue;
            }
            self.step();
        }
    }

    fn finish_slot(&mut self, i: usize) -> Slot {
        let s = self.slots.swap_remove(i);
        // Frees the sequence's KV cells so the slot starts clean for the next request.
        let _ = self
            .ctx
            .clear_kv_cache_seq(u32::try_from(s.seq).ok(), None, None);
        self.free.push(s.seq);
        self.counters
            .active
            .store(self.slots.len(), Ordering::SeqCst);
        s
    }

    fn reap_cancelled(&mut self) {
        let mut i = 0;
        while i < self.slots.len() {
            if self.slots[i].events.is_closed() {
                self.finish_slot(i);
                self.counters.cancelled.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("llama generation cancelled");
            } else {
                i += 1;
            }
        }
    }

    fn reject(&self, job: &Job, message: String, code: &'static str) {
        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
        let _ = job.events.send(Event::Rejected { message, code });
    }

    fn admit(&mut self, job: Job) {
        if job.events.is_closed() {
            // Cancelled while queued.
            self.counters.cancelled.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let vocab = self.model.vocab();
        let prompt: Vec<LlamaToken> = match &job.prompt {
            JobPrompt::Text {
                text,
                parse_special,
            } => vocab.tokenize(text.as_bytes(), true, *parse_special),
            JobPrompt::Tokens(ids) => {
                let n = u32::try_from(vocab.n_tokens()).unwrap_or(0);
                if ids.iter().any(|t| *t >= n) {
                    return self.reject(
                        &job,
                        format!("'prompt': token ids must be below the vocabulary size {n}"),
                        "invalid_value",
                    );
                }
                ids.iter()
                    .map(|t| LlamaToken(i32::try_from(*t).unwrap_or(0)))
                    .collect()
            }
        };
        let per_slot = self.max_seq;
        let n_prompt = u32::try_from(prompt.len()).unwrap_or(u32::MAX);
        if prompt.is_empty() {
            return self.reject(&job, "the prompt is empty".into(), "invalid_value");
        }
        if n_prompt >= per_slot {
            return self.reject(
                &job,
                format!(
                    "the prompt is {n_prompt} tokens; this engine's limit is {} per request",
                    per_slot.saturating_sub(1)
                ),
                "context_length_exceeded",
            );
        }
        let room = per_slot - n_prompt;
        let max_tokens = job.params.max_tokens.map_or(room, |m| m.min(room));
        let Some(seq) = self.free.pop() else {
            return self.reject(&job, "no free slot".into(), "overloaded");
        };
        let (sampler, grammar) =
            match build_sampler(self.model, &job.stages, job.grammar.as_deref()) {
                Ok(s) => s,
                Err(e) => {
                    self.free.push(seq);
                    return self.reject(&job, e, "invalid_value");
                }
            };
        // Count before telling the caller, so its view of the stats includes this start.
        self.counters.started.fetch_add(1, Ordering::Relaxed);
        let _ = job.events.send(Event::Started {
            prompt_tokens: n_prompt,
        });
        self.slots.push(Slot {
            seq,
            events: job.events,
            sampler,
            grammar,
            prompt,
            fed: 0,
            pos: 0,
            next: None,
            logits_at: None,
            generated: 0,
            max_tokens,
            utf8: Utf8Buf::default(),
            stop: StopMatcher::new(job.params.stop),
            special_text: job.grammar.is_some(),
        });
        self.counters
            .active
            .store(self.slots.len(), Ordering::SeqCst);
    }

    /// One decode step over all slots.
    fn step(&mut self) {
        self.batch.clear();
        let mut budget = self.geo.batch as usize;
        // Generating slots first: one token each keeps every stream moving.
        for s in &mut self.slots {
            s.logits_at = None;
            if let Some(t) = s.next.take() {
                if budget == 0 || self.batch.add(t, s.pos, &[s.seq], true).is_err() {
                    s.next = Some(t);
                    continue;
                }
                s.pos += 1;
                budget -= 1;
                s.logits_at = Some(self.batch.n_tokens() - 1);
            }
        }
        // Then prefill chunks with what is left of the batch.
        for s in &mut self.slots {
            while s.fed < s.prompt.len() && budget > 0 {
                let last = s.fed + 1 == s.prompt.len();
                if self
                    .batch
                    .add(s.prompt[s.fed], s.pos, &[s.seq], last)
                    .is_err()
                {
                    budget = 0;
                    break;
                }
                s.fed += 1;
                s.pos += 1;
                budget -= 1;
                if last {
                    s.logits_at = Some(self.batch.n_tokens() - 1);
                }
            }
        }
        if self.batch.n_tokens() == 0 {
            return;
        }
        if let Err(e) = self.ctx.decode(&mut self.batch) {
            tracing::warn!(error = %e, slots = self.slots.len(), "llama decode failed");
            while !self.slots.is_empty() {
                let s = self.finish_slot(0);
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                let _ = s.events.send(Event::Failed(format!("decode failed: {e}")));
            }
            return;
        }
        self.counters.decode_steps.fetch_add(1, Ordering::Relaxed);
        let mut i = 0;
        while i < self.slots.len() {
            match self.sample(i) {
                Some(done) => {
                    let s = self.finish_slot(i);
                    self.counters.completed.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .completion_tokens
                        .fetch_add(u64::from(s.generated), Ordering::Relaxed);
                    let _ = s.events.send(done);
                }
                None => i += 1,
            }
        }
    }

    /// Samples slot `i` if it has logits; returns the final event when it is done.
    fn sample(&mut self, i: usize) -> Option<Event> {
        let vocab = self.model.vocab();
        let s = &mut self.slots[i];
        let idx = s.logits_at.take()?;
        let token = match &mut s.grammar {
            None => Some(s.sampler.sample(&self.ctx, idx)),
            Some(g) => pick(&self.ctx, idx, &mut s.sampler, g),
        };
        s.generated += 1;
        let done = |s: &mut Slot, reason: &'static str| {
            Some(Event::Done {
                finish_reason: reason,
                completion_tokens: s.generated,
            })
        };
        let Some(token) = token else {
            // No token fits the grammar (cannot happen with a byte-fallback vocabulary).
            flush(s);
            return done(s, "stop");
        };
        if vocab.is_eog(token) {
            flush(s);
            return done(s, "stop");
        }
        let piece = vocab.token_to_piece(token, s.special_text, None);
        let text = s.utf8.push(&piece);
        let step = s.stop.push(&text);
        if !step.emit.is_empty() {
            let _ = s.events.send(Event::Text {
                text: step.emit,
                completion_tokens: s.generated,
            });
        }
        if step.stopped {
            return done(s, "stop");
        }
        if s.generated >= s.max_tokens {
            let stopped = flush(s);
            return done(s, if stopped { "stop" } else { "length" });
        }
        s.next = Some(token);
        None
    }
}

/// Sends the text still held back (an incomplete character, a possible stop prefix) at the
/// end of a generation; returns whether it completed a stop sequence.
fn flush(s: &mut Slot) -> bool {
    let tail = s.utf8.finish();
    let mut rest = s.stop.push(&tail);
    if !rest.stopped {
        rest.emit.push_str(&s.stop.finish());
    }
    if !rest.emit.is_empty() {
        let _ = s.events.send(Event::Text {
            text: rest.emit,
            completion_tokens: s.generated,
        });
    }
    rest.stopped
}

/// Samples with a grammar the way llama.cpp's own sampler does: the chain picks from the
/// raw candidates, and only when the grammar rejects that pick is the grammar applied to all
/// candidates (one check instead of a whole-vocabulary pass on most steps) and the chain run
/// again on what is left. Both are then told the token. None when no token fits.
fn pick(
    ctx: &LlamaContext<'_>,
    idx: i32,
    chain: &mut LlamaSampler,
    grammar: &mut LlamaSampler,
) -> Option<LlamaToken> {
    let mut cur = ctx.token_data_array_ith(idx);
    cur.apply_sampler(chain);
    let mut token = cur.selected_token();
    if let Some(t) = token {
        let mut one = LlamaTokenDataArray::new(vec![LlamaTokenData::new(t, 1.0, 0.0)], false);
        one.apply_sampler(grammar);
        if !one.data.first().is_some_and(|d| d.logit().is_finite()) {
            token = None;
        }
    }
    let token = match token {
        Some(t) => t,
        None => {
            let mut cur = ctx.token_data_array_ith(idx);
            cur.apply_sampler(grammar);
            cur.apply_sampler(chain);
            let i = cur.selected?;
            // Never hand the grammar a token it rejected: llama.cpp aborts on that.
            let d = cur.data.get(i).filter(|d| d.logit().is_finite())?;
            d.id()
        }
    };
    grammar.accept(token);
    chain.accept(token);
    Some(token)
}

/// Builds the llama.cpp sampler chain for `stages`, and the grammar sampler when there is a
/// grammar (kept apart: [`pick`] runs it). A grammar llama.cpp does not accept is an error
/// (ours always parse; this is a backstop).
pub(crate) fn build_sampler(
    model: &LlamaModel,
    stages: &[Stage],
    grammar: Option<&str>,
) -> Result<(LlamaSampler, Option<LlamaSampler>), String> {
    let n_vocab = model.n_vocab();
    let grammar = match grammar {
        Some(g) => Some(
            LlamaSampler::grammar(model, g, "root")
                .map_err(|e| format!("the output grammar was not accepted: {e}"))?,
        ),
        None => None,
    };
    let samplers = stages.iter().map(|st| match *st {
        Stage::Penalties {
            last_n,
            frequency,
            presence,
        } => LlamaSampler::penalties(n_vocab, last_n, 1.0, frequency, presence),
        Stage::TopP(p) => LlamaSampler::top_p(p, 1),
        Stage::Temp(t) => LlamaSampler::temp(t),
        Stage::Dist(seed) => LlamaSampler::dist(seed),
        Stage::Greedy => LlamaSampler::greedy(),
    });
    Ok((LlamaSampler::chain_simple(samplers), grammar))
}
