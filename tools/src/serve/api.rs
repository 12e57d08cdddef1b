//! The routes: the OpenAI-compatible API, `/tokenize`, `/health`, `/metrics` and the page.

use std::fmt::Write as _;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tinygpt_runtime::{Error as RtError, Message, Model, Role, SamplerConfig, Template};

use super::http::{self, Chunked, ReadError, Request};
use super::json::{self, str_lit, Value};
use super::slots::{Counters, Event, Finish, Job, Kind, Queue};

/// The page, with `/*MODEL_INFO*/null` replaced by the model's description at start-up.
const PAGE: &str = include_str!("page.html");

/// Everything a request needs, shared by all connection threads.
pub struct Server<'m> {
    /// The model.
    pub model: &'m Model<'m>,
    /// The model's id in the API (the file name without `.tgpt`).
    pub id: String,
    /// The chat template, for a chat model.
    pub template: Option<Template<'m>>,
    /// Context length of every slot.
    pub ctx: usize,
    /// Limits and defaults.
    pub limits: Limits,
    /// The API key, when one is required.
    pub api_key: Option<String>,
    /// The origin allowed to call the API from a browser.
    pub cors_origin: Option<String>,
    /// The queue in front of the slots.
    pub queue: Queue,
    /// Token counters.
    pub counters: Counters,
    /// Set on Ctrl-C or SIGTERM.
    pub shutdown: AtomicBool,
    /// Responses by status code.
    statuses: Mutex<Vec<(u16, u64)>>,
    /// The page with the model's description in it.
    page: String,
    next_id: AtomicU64,
    created: u64,
}

/// Limits on requests, and the sampler defaults.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body.
    pub max_body: usize,
    /// Largest `max_tokens`.
    pub max_tokens: usize,
    /// Longest a request may take, queueing included.
    pub timeout: Duration,
    /// `max_tokens` when the request gives none.
    pub default_max_tokens: usize,
    /// Sampler settings when the request gives none.
    pub sampler: SamplerConfig,
    /// Seed when the request gives none.
    pub seed: u64,
}

/// An OpenAI-shaped error answer.
pub struct ApiError {
    status: u16,
    message: String,
    kind: &'static str,
    param: Option<String>,
    code: Option<&'static str>,
}

impl ApiError {
    fn new(status: u16, message: impl Into<String>) -> Self {
        let kind = match status {
            401 => "authentication_error",
            404 => "not_found_error",
            503 => "server_busy",
            s if s >= 500 => "server_error",
            _ => "invalid_request_error",
        };
        ApiError { status, message: message.into(), kind, param: None, code: None }
    }
    fn param(status: u16, param: &str, message: impl Into<String>) -> Self {
        let mut e = ApiError::new(status, message);
        e.param = Some(param.to_owned());
        e
    }
    fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
    /// The JSON body, `{"error": {...}}`.
    pub fn body(&self) -> String {
        let param = self.param.as_deref().map_or("null".to_owned(), str_lit);
        let code = self.code.map_or("null".to_owned(), str_lit);
        format!(
            "{{\"error\":{{\"message\":{},\"type\":\"{}\",\"param\":{param},\"code\":{code}}}}}",
            str_lit(&self.message),
            self.kind
        )
    }
}

/// A complete answer to write.
struct Answer {
    status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn json(body: String) -> Self {
        Answer { status: 200, content_type: "application/json", headers: Vec::new(), body: body.into_bytes() }
    }
}

impl From<ApiError> for Answer {
    fn from(e: ApiError) -> Self {
        let mut headers = Vec::new();
        if e.status == 503 {
            headers.push(("Retry-After", "1".to_owned()));
        }
        if e.status == 401 {
            headers.push(("WWW-Authenticate", "Bearer".to_owned()));
        }
        Answer { status: e.status, content_type: "application/json", headers, body: e.body().into_bytes() }
    }
}

/// Status recorded for a client that went away before its answer (nginx's convention).
const CLIENT_CLOSED: u16 = 499;

impl<'m> Server<'m> {
    /// A server for `model` with `queue` in front of its slots.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        model: &'m Model<'m>,
        id: String,
        ctx: usize,
        kv: &str,
        limits: Limits,
        api_key: Option<String>,
        cors_origin: Option<String>,
        queue: Queue,
    ) -> Self {
        let template = Template::new(model.tokenizer()).ok();
        let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut s = Server {
            model,
            id,
            template,
            ctx,
            limits,
            api_key,
            cors_origin,
            queue,
            counters: Counters::default(),
            shutdown: AtomicBool::new(false),
            statuses: Mutex::new(Vec::new()),
            page: String::new(),
            next_id: AtomicU64::new(1),
            created,
        };
        let info = s.model_info(kv);
        s.page = PAGE.replacen("/*MODEL_INFO*/null", &info, 1);
        s
    }

    /// The model's description as JSON: id, name, architecture, parameters, dtype, context,
    /// validation loss, chat or not, and the default sampler settings.
    fn model_info(&self, kv: &str) -> String {
        let m = self.model;
        let cfg = m.config();
        let meta = m.metadata();
        let loss = match cfg.dtype {
            tinygpt_runtime::DType::F32 => meta.val_loss_f32,
            tinygpt_runtime::DType::F16 => meta.val_loss_f16,
            tinygpt_runtime::DType::I8 => meta.val_loss_i8,
        };
        let l = &self.limits;
        format!(
            "{{\"id\":{},\"name\":{},\"arch\":\"{}\",\"params\":{},\"dtype\":\"{}\",\"n_layer\":{},\"n_embd\":{},\"vocab_size\":{},\"block_size\":{},\"ctx\":{},\"kv\":\"{kv}\",\"val_loss\":{},\"corpus\":{},\"chat\":{},\"slots\":{},\"defaults\":{{\"max_tokens\":{},\"temperature\":{},\"top_k\":{},\"top_p\":{},\"seed\":{}}},\"max_tokens\":{}}}",
            str_lit(&self.id),
            str_lit(meta.name),
            cfg.arch.name(),
            m.param_count(),
            cfg.dtype.name(),
            cfg.n_layer,
            cfg.n_embd,
            cfg.vocab_size,
            cfg.block_size,
            self.ctx,
            loss.map_or("null".to_owned(), f32_lit),
            str_lit(meta.corpus),
            self.template.is_some(),
            self.queue.slots(),
            l.default_max_tokens,
            f32_lit(l.sampler.temperature),
            l.sampler.top_k,
            f32_lit(l.sampler.top_p),
            l.seed,
            l.max_tokens,
        )
    }

    fn record(&self, status: u16) {
        let mut s = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        match s.iter_mut().find(|(k, _)| *k == status) {
            Some((_, n)) => *n += 1,
            None => {
                s.push((status, 1));
                s.sort_unstable();
            }
        }
    }

    fn cors_headers(&self) -> Vec<(&'static str, String)> {
        match &self.cors_origin {
            Some(o) => vec![("Access-Control-Allow-Origin", o.clone()), ("Vary", "Origin".to_owned())],
            None => Vec::new(),
        }
    }

    fn write(&self, stream: &mut TcpStream, mut a: Answer) {
        a.headers.extend(self.cors_headers());
        self.record(a.status);
        let _ = http::write_response(stream, a.status, a.content_type, &a.headers, &a.body);
    }

    /// Answers the request on `stream`, then closes it.
    pub fn handle(&self, mut stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
        let stop = || self.shutdown.load(Ordering::Relaxed);
        match http::read_request(&mut stream, self.limits.max_body, Duration::from_secs(30), &stop) {
            Err(ReadError::Closed) => {}
            Err(ReadError::Bad(status, msg)) => self.write(&mut stream, ApiError::new(status, msg).into()),
            Ok(req) => self.route(&req, &mut stream),
        }
        http::close(stream);
    }

    /// Answers a connection that cannot be served now (too many open connections).
    pub fn refuse(&self, mut stream: TcpStream) {
        let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
        self.write(&mut stream, ApiError::new(503, "too many open connections; retry later").into());
        http::close(stream);
    }

    fn authorized(&self, req: &Request) -> bool {
        let Some(key) = &self.api_key else { return true };
        let Some(given) = req.header("authorization").and_then(|v| v.strip_prefix("Bearer ")) else { return false };
        // Compared without an early exit, so that the time taken does not reveal a prefix.
        let (a, b) = (given.trim().as_bytes(), key.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    fn route(&self, req: &Request, stream: &mut TcpStream) {
        let path = req.path.as_str();
        let methods: &[&str] = match path {
            "/" | "/index.html" | "/health" | "/metrics" | "/v1/models" | "/models" => &["GET", "HEAD"],
            "/v1/completions" | "/completions" | "/v1/chat/completions" | "/chat/completions" | "/tokenize" => &["POST"],
            _ if path.starts_with("/v1/models/") => &["GET"],
            _ => return self.write(stream, ApiError::new(404, format!("unknown route '{path}'")).code("unknown_route").into()),
        };
        if req.method == "OPTIONS" {
            let mut headers = vec![("Allow", format!("{}, OPTIONS", methods.join(", ")))];
            if self.cors_origin.is_some() {
                headers.push(("Access-Control-Allow-Methods", "GET, POST, OPTIONS".to_owned()));
                headers.push(("Access-Control-Allow-Headers", "Authorization, Content-Type".to_owned()));
                headers.push(("Access-Control-Max-Age", "600".to_owned()));
            }
            return self.write(stream, Answer { status: 204, content_type: "", headers, body: Vec::new() });
        }
        if !methods.contains(&req.method.as_str()) {
            let mut a: Answer = ApiError::new(405, format!("{} is not allowed on {path} (use {})", req.method, methods.join(" or "))).into();
            a.headers.push(("Allow", methods.join(", ")));
            return self.write(stream, a);
        }
        let open = matches!(path, "/" | "/index.html" | "/health");
        if !open && !self.authorized(req) {
            let msg = if req.header("authorization").is_some() { "invalid API key" } else { "an API key is required (Authorization: Bearer KEY)" };
            return self.write(stream, ApiError::new(401, msg).code("invalid_api_key").into());
        }
        let answer = match path {
            "/" | "/index.html" => Ok(Answer {
                status: 200,
                content_type: "text/html; charset=utf-8",
                headers: vec![("Cache-Control", "no-cache".to_owned())],
                body: self.page.clone().into_bytes(),
            }),
            "/health" => Ok(self.health()),
            "/metrics" => Ok(Answer { status: 200, content_type: "text/plain; version=0.0.4", headers: Vec::new(), body: self.metrics().into_bytes() }),
            "/v1/models" | "/models" => Ok(Answer::json(format!("{{\"object\":\"list\",\"data\":[{}]}}", self.model_object()))),
            "/tokenize" => self.tokenize(req),
            "/v1/completions" | "/completions" => return self.generate(req, stream, Kind::Completion),
            "/v1/chat/completions" | "/chat/completions" => return self.generate(req, stream, Kind::Chat),
            _ => {
                let id = &path["/v1/models/".len()..];
                if id == self.id {
                    Ok(Answer::json(self.model_object()))
                } else {
                    Err(ApiError::param(404, "model", format!("unknown model '{id}' (this server has '{}')", self.id)).code("model_not_found"))
                }
            }
        };
        let mut a = answer.unwrap_or_else(Answer::from);
        if req.method == "HEAD" {
            a.body.clear();
        }
        self.write(stream, a);
    }

    fn model_object(&self) -> String {
        format!(
            "{{\"id\":{},\"object\":\"model\",\"created\":{},\"owned_by\":\"tinygpt\",\"meta\":{}}}",
            str_lit(&self.id),
            self.created,
            self.model_info_short()
        )
    }

    fn model_info_short(&self) -> String {
        let cfg = self.model.config();
        format!(
            "{{\"arch\":\"{}\",\"params\":{},\"dtype\":\"{}\",\"vocab_size\":{},\"n_ctx\":{},\"chat\":{}}}",
            cfg.arch.name(),
            self.model.param_count(),
            cfg.dtype.name(),
            cfg.vocab_size,
            self.ctx,
            self.template.is_some()
        )
    }

    fn health(&self) -> Answer {
        let (busy, waiting) = self.queue.load();
        let status = if self.shutdown.load(Ordering::Relaxed) { "shutting down" } else { "ok" };
        let mut a = Answer::json(format!(
            "{{\"status\":\"{status}\",\"slots_idle\":{},\"slots_processing\":{busy},\"queue\":{waiting}}}",
            self.queue.slots() - busy
        ));
        if status != "ok" {
            a.status = 503;
        }
        a
    }

    fn metrics(&self) -> String {
        let (busy, waiting) = self.queue.load();
        let c = &self.counters;
        let mut m = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, u64)]| {
            let _ = writeln!(m, "# HELP tinygpt_{name} {help}\n# TYPE tinygpt_{name} {kind}");
            for (labels, v) in lines {
                let _ = writeln!(m, "tinygpt_{name}{labels} {v}");
            }
        };
        let statuses: Vec<(String, u64)> = {
            let s = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
            s.iter().map(|(k, v)| (format!("{{status=\"{k}\"}}"), *v)).collect()
        };
        metric("requests_total", "counter", "Requests answered, by HTTP status (499: the client went away first).", &statuses);
        metric("prompt_tokens_total", "counter", "Prompt tokens processed.", &[(String::new(), c.prompt_tokens.load(Ordering::Relaxed))]);
        metric("generated_tokens_total", "counter", "Tokens generated.", &[(String::new(), c.generated_tokens.load(Ordering::Relaxed))]);
        metric(
            "cancelled_total",
            "counter",
            "Generations ended early, by reason.",
            &[
                ("{reason=\"disconnect\"}".to_owned(), c.disconnected.load(Ordering::Relaxed)),
                ("{reason=\"timeout\"}".to_owned(), c.timed_out.load(Ordering::Relaxed)),
            ],
        );
        metric("slots_busy", "gauge", "Slots generating now.", &[(String::new(), busy as u64)]);
        metric("slots_total", "gauge", "Slots (sessions allocated at start-up).", &[(String::new(), self.queue.slots() as u64)]);
        metric("queue_length", "gauge", "Requests waiting for a slot.", &[(String::new(), waiting as u64)]);
        metric("queue_capacity", "gauge", "Requests that may wait before new ones get 503.", &[(String::new(), self.queue.capacity() as u64)]);
        if let Some(rss) = resident_bytes() {
            metric("resident_memory_bytes", "gauge", "Resident memory of the process.", &[(String::new(), rss)]);
        }
        m
    }

    fn tokenize(&self, req: &Request) -> Result<Answer, ApiError> {
        let body = parse_body(req)?;
        let text = match body.get("content") {
            Some(Value::String(s)) => s,
            Some(v) => return Err(ApiError::param(400, "content", format!("'content' must be a string, not {}", v.type_name()))),
            None => return Err(ApiError::param(400, "content", "'content' is required")),
        };
        let tokens = self.encode(text, "content", true)?;
        let list: Vec<String> = tokens.iter().map(u32::to_string).collect();
        Ok(Answer::json(format!("{{\"tokens\":[{}]}}", list.join(","))))
    }

    /// Encodes `text`; a character the vocabulary lacks is named.
    fn encode(&self, text: &str, param: &str, allow_empty: bool) -> Result<Vec<u32>, ApiError> {
        if text.is_empty() {
            if allow_empty {
                return Ok(Vec::new());
            }
            return Err(ApiError::param(400, param, format!("'{param}' is empty")));
        }
        let mut tokens = vec![0u32; text.len()];
        let n = self.model.tokenizer().encode(text, &mut tokens).map_err(|e| ApiError::param(400, param, format!("cannot encode '{param}': {e}")))?;
        tokens.truncate(n);
        Ok(tokens)
    }

    fn generate(&self, req: &Request, stream: &mut TcpStream, kind: Kind) {
        let (job, rx, streaming, include_usage) = match self.prepare(req, stream, kind) {
            Ok(p) => p,
            Err(e) => return self.write(stream, e.into()),
        };
        let cancel = job.cancel.clone();
        if !self.queue.push(job) {
            let e = if self.shutdown.load(Ordering::Relaxed) {
                ApiError::new(503, "the server is shutting down")
            } else {
                ApiError::new(503, format!("all {} slots are busy and {} requests are waiting; retry later", self.queue.slots(), self.queue.capacity()))
            };
            return self.write(stream, e.into());
        }
        let id = format!("{}-{}", if kind == Kind::Chat { "chatcmpl" } else { "cmpl" }, self.next_id.fetch_add(1, Ordering::Relaxed));
        let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let out = Out { server: self, kind, id, created };
        let status = if streaming { out.stream(stream, &rx, include_usage) } else { out.whole(stream, &rx) };
        if status == CLIENT_CLOSED {
            cancel.store(true, Ordering::Relaxed);
        }
        self.record(status);
    }

    /// Validates a generation request and builds its job.
    fn prepare(&self, req: &Request, stream: &TcpStream, kind: Kind) -> Result<(Job, mpsc::Receiver<Event>, bool, bool), ApiError> {
        let body = parse_body(req)?;
        let p = Params { v: &body };
        if let Some(m) = p.string("model")? {
            if m != self.id {
                return Err(ApiError::param(404, "model", format!("unknown model '{m}' (this server has '{}')", self.id)).code("model_not_found"));
            }
        }
        let l = &self.limits;
        let max_key = if kind == Kind::Chat && body.get("max_completion_tokens").is_some() { "max_completion_tokens" } else { "max_tokens" };
        let max_tokens = p.uint(max_key, 1, l.max_tokens as u64)?.map_or(l.default_max_tokens, |v| v as usize);
        let temperature = p.float("temperature", 0.0, f64::MAX, "0 or more")?.map_or(l.sampler.temperature, |v| v as f32);
        let top_p = p.float("top_p", f32::MIN_POSITIVE as f64, 1.0, "above 0 and at most 1")?.map_or(l.sampler.top_p, |v| v as f32);
        let top_k = p.uint("top_k", 0, u32::MAX as u64)?.map_or(l.sampler.top_k, |v| v as u32);
        let seed = p.uint("seed", 0, u64::MAX)?.unwrap_or(l.seed);
        if let Some(n) = p.uint("n", 1, u64::MAX)? {
            if n != 1 {
                return Err(ApiError::param(400, "n", "only n = 1 is supported"));
            }
        }
        if p.bool("echo")? == Some(true) {
            return Err(ApiError::param(400, "echo", "'echo' is not supported: the text is the generated part only"));
        }
        let streaming = p.bool("stream")?.unwrap_or(false);
        let include_usage = match body.get("stream_options") {
            None | Some(Value::Null) => false,
            Some(o @ Value::Object(_)) => Params { v: o }.bool("include_usage")?.unwrap_or(false),
            Some(v) => return Err(ApiError::param(400, "stream_options", format!("'stream_options' must be an object, not {}", v.type_name()))),
        };
        let stop = match body.get("stop") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => {
                if a.len() > 4 {
                    return Err(ApiError::param(400, "stop", "'stop' has more than 4 strings"));
                }
                a.iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s.clone()),
                        v => Err(ApiError::param(400, "stop", format!("'stop' must hold strings, not {}", v.type_name()))),
                    })
                    .collect::<Result<_, _>>()?
            }
            Some(v) => return Err(ApiError::param(400, "stop", format!("'stop' must be a string or an array of strings, not {}", v.type_name()))),
        };
        let tokens = match kind {
            Kind::Completion => {
                let prompt = match body.get("prompt") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(a)) if a.len() == 1 && matches!(a[0], Value::String(_)) => match &a[0] {
                        Value::String(s) => s.clone(),
                        _ => unreachable!(),
                    },
                    Some(Value::Array(_)) => return Err(ApiError::param(400, "prompt", "'prompt' must be a string (or an array of exactly one string)")),
                    Some(v) => return Err(ApiError::param(400, "prompt", format!("'prompt' must be a string, not {}", v.type_name()))),
                    None => return Err(ApiError::param(400, "prompt", "'prompt' is required")),
                };
                let tokens = self.encode(&prompt, "prompt", false)?;
                if tokens.len() > self.ctx {
                    return Err(ApiError::param(400, "prompt", format!("the prompt has {} tokens but the context holds {}", tokens.len(), self.ctx))
                        .code("context_length_exceeded"));
                }
                tokens
            }
            Kind::Chat => self.render_chat(&body)?,
        };
        let (tx, rx) = mpsc::channel();
        let job = Job {
            kind,
            tokens,
            sampler: SamplerConfig { temperature, top_k, top_p },
            seed,
            max_tokens,
            stop,
            events: tx,
            cancel: Arc::new(AtomicBool::new(false)),
            peer: stream.try_clone().ok(),
            deadline: Instant::now() + l.timeout,
        };
        Ok((job, rx, streaming, include_usage))
    }

    /// The conversation of a chat request rendered as `tinygpt chat` renders it.
    fn render_chat(&self, body: &Value) -> Result<Vec<u32>, ApiError> {
        let Some(template) = &self.template else {
            return Err(ApiError::param(400, "messages", format!("'{}' is not a chat model: use /v1/completions", self.id)).code("not_a_chat_model"));
        };
        let msgs = match body.get("messages") {
            Some(Value::Array(a)) if !a.is_empty() => a,
            Some(Value::Array(_)) => return Err(ApiError::param(400, "messages", "'messages' is empty")),
            Some(v) => return Err(ApiError::param(400, "messages", format!("'messages' must be an array, not {}", v.type_name()))),
            None => return Err(ApiError::param(400, "messages", "'messages' is required")),
        };
        let mut turns: Vec<(Role, String)> = Vec::with_capacity(msgs.len());
        for (i, m) in msgs.iter().enumerate() {
            let param = format!("messages[{i}]");
            let role = match m.get("role") {
                Some(Value::String(r)) if r == "developer" => Role::System,
                Some(Value::String(r)) => Role::from_name(r)
                    .ok_or_else(|| ApiError::param(400, &param, format!("{param}.role '{r}' is not system, user or assistant")))?,
                Some(v) => return Err(ApiError::param(400, &param, format!("{param}.role must be a string, not {}", v.type_name()))),
                None => return Err(ApiError::param(400, &param, format!("{param} has no role"))),
            };
            let content = match m.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => {
                    let mut s = String::new();
                    for part in parts {
                        match (part.get("type"), part.get("text")) {
                            (Some(Value::String(t)), Some(Value::String(text))) if t == "text" => s.push_str(text),
                            _ => return Err(ApiError::param(400, &param, format!("{param}.content parts must be {{\"type\": \"text\", \"text\": ...}}"))),
                        }
                    }
                    s
                }
                Some(v) => return Err(ApiError::param(400, &param, format!("{param}.content must be a string, not {}", v.type_name()))),
                None => return Err(ApiError::param(400, &param, format!("{param} has no content"))),
            };
            // The same check as the prompt's, so that the character is named.
            self.encode(&content, &format!("{param}.content"), true)?;
            turns.push((role, content));
        }
        let messages: Vec<Message<'_>> = turns.iter().map(|(role, content)| Message { role: *role, content }).collect();
        let mut buf = vec![0u32; self.ctx];
        match template.render_fitting(&messages, 1, &mut buf) {
            Ok((_, n)) => {
                buf.truncate(n);
                Ok(buf)
            }
            Err(RtError::EmptyPrompt) => Err(ApiError::param(400, "messages", "'messages' has no user or assistant turn")),
            Err(e @ RtError::PromptTooLong { .. }) => Err(ApiError::param(400, "messages", format!("{e}")).code("context_length_exceeded")),
            Err(e) => Err(ApiError::param(400, "messages", format!("cannot render the conversation: {e}"))),
        }
    }
}

/// A finite f32 as its shortest decimal (`0.8`, not `0.800000011920929`).
fn f32_lit(v: f32) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".to_owned()
    }
}

/// The request body as a JSON object.
fn parse_body(req: &Request) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(&req.body)
        .map_err(|e| ApiError::new(400, format!("the body is not UTF-8 (invalid byte at offset {})", e.valid_up_to())))?;
    if text.trim().is_empty() {
        return Err(ApiError::new(400, "the body is empty: send a JSON object"));
    }
    let v = json::parse(text).map_err(|e| ApiError::new(400, format!("the body is not valid JSON: {e}")))?;
    if !matches!(v, Value::Object(_)) {
        return Err(ApiError::new(400, format!("the body must be a JSON object, not {}", v.type_name())));
    }
    Ok(v)
}

/// Typed access to a request's fields; a wrong type or value names the field.
struct Params<'v> {
    v: &'v Value,
}

impl Params<'_> {
    fn string(&self, k: &str) -> Result<Option<String>, ApiError> {
        match self.v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(ApiError::param(400, k, format!("'{k}' must be a string, not {}", v.type_name()))),
        }
    }
    fn bool(&self, k: &str) -> Result<Option<bool>, ApiError> {
        match self.v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(ApiError::param(400, k, format!("'{k}' must be true or false, not {}", v.type_name()))),
        }
    }
    fn number(&self, k: &str) -> Result<Option<(f64, &str)>, ApiError> {
        match self.v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n, text)) => {
                if !n.is_finite() {
                    return Err(ApiError::param(400, k, format!("'{k}' must be a finite number, not {text}")));
                }
                Ok(Some((*n, text.as_str())))
            }
            Some(v) => Err(ApiError::param(400, k, format!("'{k}' must be a number, not {}", v.type_name()))),
        }
    }
    fn float(&self, k: &str, min: f64, max: f64, range: &str) -> Result<Option<f64>, ApiError> {
        match self.number(k)? {
            None => Ok(None),
            Some((n, _)) if n >= min && n <= max && (n as f32).is_finite() => Ok(Some(n)),
            Some((_, text)) => Err(ApiError::param(400, k, format!("'{k}' must be {range}, not {text}"))),
        }
    }
    fn uint(&self, k: &str, min: u64, max: u64) -> Result<Option<u64>, ApiError> {
        let Some((n, text)) = self.number(k)? else { return Ok(None) };
        let v = match text.parse::<u64>() {
            Ok(v) => v,
            Err(_) if n.fract() == 0.0 && (0.0..18446744073709551616.0).contains(&n) => n as u64,
            Err(_) if n < 0.0 => return Err(ApiError::param(400, k, format!("'{k}' must be {min} or more, not {text}"))),
            Err(_) if n.fract() != 0.0 => return Err(ApiError::param(400, k, format!("'{k}' must be a whole number, not {text}"))),
            Err(_) => return Err(ApiError::param(400, k, format!("'{k}' must be at most {max}, not {text}"))),
        };
        if v < min || v > max {
            return Err(ApiError::param(400, k, format!("'{k}' must be between {min} and {max}, not {text}")));
        }
        Ok(Some(v))
    }
}

/// Writes the answer of one generation request from the slot's events.
struct Out<'s, 'm> {
    server: &'s Server<'m>,
    kind: Kind,
    id: String,
    created: u64,
}

fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "stop",
        _ => "length",
    }
}

fn usage(prompt: usize, completion: usize) -> String {
    format!("{{\"prompt_tokens\":{prompt},\"completion_tokens\":{completion},\"total_tokens\":{}}}", prompt + completion)
}

impl Out<'_, '_> {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Completion, _) => "text_completion",
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
        }
    }

    fn head(&self, chunk: bool) -> String {
        format!(
            "\"id\":\"{}\",\"object\":\"{}\",\"created\":{},\"model\":{}",
            self.id,
            self.object(chunk),
            self.created,
            str_lit(&self.server.id)
        )
    }

    /// One streamed choice: a piece of text (or the role, first) and the finish reason.
    fn chunk(&self, text: Option<&str>, role: bool, finish: Option<Finish>) -> String {
        let reason = finish.map_or("null".to_owned(), |f| format!("\"{}\"", finish_reason(f)));
        let choice = match self.kind {
            Kind::Completion => format!("{{\"index\":0,\"text\":{},\"logprobs\":null,\"finish_reason\":{reason}}}", str_lit(text.unwrap_or(""))),
            Kind::Chat => {
                let mut delta = String::new();
                if role {
                    delta.push_str("\"role\":\"assistant\"");
                }
                if let Some(t) = text {
                    if !delta.is_empty() {
                        delta.push(',');
                    }
                    let _ = write!(delta, "\"content\":{}", str_lit(t));
                }
                format!("{{\"index\":0,\"delta\":{{{delta}}},\"logprobs\":null,\"finish_reason\":{reason}}}")
            }
        };
        format!("{{{},\"choices\":[{choice}]}}", self.head(true))
    }

    /// A non-streamed answer: waits for the whole text.
    fn whole(&self, stream: &mut TcpStream, rx: &mpsc::Receiver<Event>) -> u16 {
        let mut text = String::new();
        loop {
            match rx.recv() {
                Ok(Event::Started) => {}
                Ok(Event::Text(t)) => text.push_str(&t),
                Ok(Event::Done { prompt_tokens, completion_tokens, finish }) => {
                    let e = match finish {
                        Finish::Disconnected => return CLIENT_CLOSED,
                        Finish::TimedOut => ApiError::new(504, format!("the request took longer than {} s (--timeout)", self.server.limits.timeout.as_secs())),
                        Finish::Shutdown => ApiError::new(503, "the server is shutting down"),
                        Finish::Stop | Finish::Length => {
                            let choice = match self.kind {
                                Kind::Completion => format!("{{\"index\":0,\"text\":{},\"logprobs\":null,\"finish_reason\":\"{}\"}}", str_lit(&text), finish_reason(finish)),
                                Kind::Chat => format!(
                                    "{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":{}}},\"logprobs\":null,\"finish_reason\":\"{}\"}}",
                                    str_lit(&text),
                                    finish_reason(finish)
                                ),
                            };
                            let body = format!("{{{},\"choices\":[{choice}],\"usage\":{}}}", self.head(false), usage(prompt_tokens, completion_tokens));
                            let mut headers = vec![];
                            headers.extend(self.server.cors_headers());
                            let _ = http::write_response(stream, 200, "application/json", &headers, body.as_bytes());
                            return 200;
                        }
                    };
                    return self.error(stream, e);
                }
                Ok(Event::Failed(msg)) => return self.error(stream, ApiError::new(500, msg)),
                Err(_) => return self.error(stream, ApiError::new(500, "the slot ended without an answer")),
            }
        }
    }

    fn error(&self, stream: &mut TcpStream, e: ApiError) -> u16 {
        let status = e.status;
        let mut a: Answer = e.into();
        a.headers.extend(self.server.cors_headers());
        let _ = http::write_response(stream, a.status, a.content_type, &a.headers, &a.body);
        status
    }

    /// A streamed answer: Server-Sent Events, one per piece of text, then `data: [DONE]`.
    fn stream(&self, stream: &mut TcpStream, rx: &mpsc::Receiver<Event>, include_usage: bool) -> u16 {
        let mut w = match stream.try_clone() {
            Ok(w) => w,
            Err(_) => return CLIENT_CLOSED,
        };
        let headers = self.server.cors_headers();
        let Ok(mut out) = Chunked::start(&mut w, "text/event-stream", &headers) else { return CLIENT_CLOSED };
        let event = |data: &str| format!("data: {data}\n\n");
        let mut first = true;
        loop {
            let msg = match rx.recv() {
                Ok(Event::Started) => {
                    if self.kind == Kind::Chat && first {
                        first = false;
                        event(&self.chunk(Some(""), true, None))
                    } else {
                        continue;
                    }
                }
                Ok(Event::Text(t)) => event(&self.chunk(Some(&t), false, None)),
                Ok(Event::Done { prompt_tokens, completion_tokens, finish }) => {
                    let mut s = match finish {
                        Finish::Disconnected => return CLIENT_CLOSED,
                        Finish::TimedOut => event(
                            &ApiError::new(504, format!("the request took longer than {} s (--timeout)", self.server.limits.timeout.as_secs())).body(),
                        ),
                        Finish::Shutdown => event(&ApiError::new(503, "the server is shutting down").body()),
                        Finish::Stop | Finish::Length => {
                            let text = if self.kind == Kind::Chat { None } else { Some("") };
                            event(&self.chunk(text, false, Some(finish)))
                        }
                    };
                    if include_usage {
                        s += &event(&format!("{{{},\"choices\":[],\"usage\":{}}}", self.head(true), usage(prompt_tokens, completion_tokens)));
                    }
                    s += "data: [DONE]\n\n";
                    if out.send(s.as_bytes()).and_then(|()| out.finish()).is_err() {
                        return CLIENT_CLOSED;
                    }
                    return 200;
                }
                Ok(Event::Failed(msg)) => {
                    let s = event(&ApiError::new(500, msg).body()) + "data: [DONE]\n\n";
                    let _ = out.send(s.as_bytes()).and_then(|()| out.finish());
                    return 500;
                }
                Err(_) => {
                    let s = event(&ApiError::new(500, "the slot ended without an answer").body()) + "data: [DONE]\n\n";
                    let _ = out.send(s.as_bytes()).and_then(|()| out.finish());
                    return 500;
                }
            };
            if out.send(msg.as_bytes()).is_err() {
                return CLIENT_CLOSED;
            }
        }
    }
}

/// Resident memory of this process, from `/proc/self/statm`.
fn resident_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}
