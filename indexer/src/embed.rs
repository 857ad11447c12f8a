//! Embeddings computed in-process: all-MiniLM-L6-v2 (ONNX) through
//! fastembed, with onnxruntime loaded at run time from the model directory
//! (`scripts/setup-model.sh` puts both in `vendor/model/`). Mean pooling,
//! at most 256 tokens per input, L2-normalised vectors, onnxruntime
//! threads that do not spin.
//!
//! A document longer than the window ([`Embedder::embed_documents`]) is
//! cut into windows of at most 240 tokens (at line ends where it can),
//! each window is embedded, and the document's vector is the token-weighted
//! mean of its windows' vectors, normalised: every token counts, none is
//! cut off. The model id carries the recipe (`-w256`), so vectors made
//! before (heads only) are never mixed with these.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, PoisonError};

use fastembed::{InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel};

/// Vector dimensions of the model.
pub const DIM: usize = 384;
/// Tokens per input; longer chunks are truncated by the tokenizer.
pub const MAX_TOKENS: usize = 256;
/// Larger batches grow memory without helping on two cores.
pub const BATCH: usize = 8;

const FILES: &[&str] = &[
    "model.onnx",
    "libonnxruntime.so",
    "tokenizer.json",
    "config.json",
    "special_tokens_map.json",
    "tokenizer_config.json",
];

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(
        "no embedding model found (looked in {looked}); run scripts/setup-model.sh or set CTXPLANE_MODEL_DIR"
    )]
    NotFound { looked: String },
    #[error("embedding model in {dir}: {message}")]
    Load { dir: PathBuf, message: String },
    #[error("embedding failed: {0}")]
    Run(String),
}

/// The model directory: `explicit` (config or `CTXPLANE_MODEL_DIR`) if
/// given, else `vendor/model` beside the binary's build tree, in the
/// working directory, or in the source tree it was built from. Only a directory holding every model file counts.
pub fn find_model_dir(explicit: Option<&Path>) -> Result<PathBuf, EmbedError> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = explicit {
        candidates.push(p.to_path_buf());
    } else {
        if let Ok(exe) = std::env::current_exe() {
            // target/{debug,release}/ctxplane -> <repo>/vendor/model
            for up in exe.ancestors().skip(1).take(4) {
                candidates.push(up.join("vendor/model"));
            }
        }
        candidates.push(PathBuf::from("vendor/model"));
        // The source tree this binary was built from (any target dir).
        candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../vendor/model"));
    }
    for c in &candidates {
        if FILES.iter().all(|f| c.join(f).is_file()) {
            return Ok(c.clone());
        }
    }
    Err(EmbedError::NotFound {
        looked: candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

pub struct Embedder {
    /// The bulk session, made on first use: a process that only answers
    /// queries (a replica) never holds its copy of the model.
    model: Mutex<Option<TextEmbedding>>,
    make_bulk: Box<dyn Fn() -> Result<TextEmbedding, EmbedError> + Send + Sync>,
    interactive: SessionPool<TextEmbedding>,
    /// The model's tokenizer without truncation, to cut windows; made on
    /// first use (only indexing cuts windows).
    tokenizer: std::sync::OnceLock<Result<tokenizers::Tokenizer, String>>,
    tokenizer_json: Vec<u8>,
    id: String,
    dir: PathBuf,
}

/// The model's tokenizer without truncation or padding.
fn window_tokenizer(json: &[u8]) -> Result<tokenizers::Tokenizer, String> {
    let mut t = tokenizers::Tokenizer::from_bytes(json).map_err(|e| format!("tokenizer.json: {e}"))?;
    t.with_truncation(None)
        .map_err(|e| format!("tokenizer.json: {e}"))?;
    t.with_padding(None);
    Ok(t)
}

/// Tokens of text per window: the two special tokens and a margin for a
/// window re-tokenized on its own (a cut inside a word) stay within the model's.
pub const WINDOW_TOKENS: usize = MAX_TOKENS - 16;

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("id", &self.id)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads the model in `dir` (see [`find_model_dir`]) with `threads`
    /// onnxruntime threads.
    pub fn load(dir: &Path, threads: usize) -> Result<Embedder, EmbedError> {
        Self::load_with(dir, threads, threads)
    }

    /// Loads with separate thread counts for the bulk (indexing) session
    /// and the interactive (query) sessions; a server gives indexing fewer
    /// threads so queries keep a core while it embeds. Queries run on up
    /// to `query_threads` single-threaded sessions, made as concurrent
    /// queries first need them: a query's few tokens gain nothing from
    /// being split across threads, while concurrent queries on one session
    /// would wait for each other.
    pub fn load_with(dir: &Path, bulk_threads: usize, query_threads: usize) -> Result<Embedder, EmbedError> {
        let err = |message: String| EmbedError::Load {
            dir: dir.to_path_buf(),
            message,
        };
        let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| err(format!("{name}: {e}")));
        let onnx = read("model.onnx")?;
        // The id names the exact weights: vectors from other weights never mix.
        let id = format!(
            "all-MiniLM-L6-v2-int8-{}-w{MAX_TOKENS}",
            &blake3::hash(&onnx).to_hex()[..12]
        );
        let environment = ort::init_from(dir.join("libonnxruntime.so"))
            .map_err(|e| err(format!("loading onnxruntime: {e}")))?
            .with_name("ctxplane")
            .build()
            .map_err(|e| err(format!("starting onnxruntime: {e}")))?;
        let files = TokenizerFiles {
            tokenizer_file: read("tokenizer.json")?,
            config_file: read("config.json")?,
            special_tokens_map_file: read("special_tokens_map.json")?,
            tokenizer_config_file: read("tokenizer_config.json")?,
        };
        // Checked now, so a broken tokenizer fails the load, not the first
        // pass.
        window_tokenizer(&files.tokenizer_file).map_err(err)?;
        let tokenizer_json = files.tokenizer_file.clone();
        // Sessions on one environment: bulk embedding for the indexer, and
        // a pool for queries, so a query never waits behind a batch.
        let owned_dir = dir.to_path_buf();
        // The weights are read again for each session made later, not kept
        // (23 MB a process would hold for nothing), and must be the ones
        // the id names.
        let weights = blake3::hash(&onnx);
        let loaded = Mutex::new(Some(onnx));
        let session = move |threads: usize| {
            let onnx = match loaded.lock().unwrap_or_else(PoisonError::into_inner).take() {
                Some(bytes) => bytes,
                None => {
                    let bytes =
                        std::fs::read(owned_dir.join("model.onnx")).map_err(|e| EmbedError::Load {
                            dir: owned_dir.clone(),
                            message: format!("model.onnx: {e}"),
                        })?;
                    if blake3::hash(&bytes) != weights {
                        return Err(EmbedError::Load {
                            dir: owned_dir.clone(),
                            message: "model.onnx changed since the model was loaded; restart to use the new weights"
                                .into(),
                        });
                    }
                    bytes
                }
            };
            let model = UserDefinedEmbeddingModel::new(onnx, files.clone()).with_pooling(Pooling::Mean);
            let options = InitOptionsUserDefined::new()
                .with_environment(environment.clone())
                .with_max_length(MAX_TOKENS)
                .with_intra_threads(threads.max(1))
                // No CPU memory arena: onnxruntime's arena grows to each new
                // high-water mark (a batch of long texts needs tens of MB of
                // attention scratch) and never gives it back; heaptrack on a
                // serve soak found ~740 MB held there while RSS crept up
                // ~3 MB/min. Without it each run's scratch is allocated and
                // freed (and returned to the OS: see `bound_native_heap` in
                // the binary's main.rs).
                .with_execution_providers(vec![ort::ep::CPU::default().with_arena_allocator(false).build()])
                .with_session_config("session.intra_op.allow_spinning", "0")
                .with_session_config("session.inter_op.allow_spinning", "0");
            TextEmbedding::try_new_from_user_defined(model, options).map_err(|e| EmbedError::Load {
                dir: owned_dir.clone(),
                message: e.to_string(),
            })
        };
        let session = std::sync::Arc::new(session);
        let first = session(1)?;
        let bulk = session.clone();
        Ok(Embedder {
            model: Mutex::new(None),
            make_bulk: Box::new(move || bulk(bulk_threads)),
            interactive: SessionPool::new(first, query_threads, Box::new(move || session(1))),
            tokenizer: std::sync::OnceLock::new(),
            tokenizer_json,
            id,
            dir: dir.to_path_buf(),
        })
    }

    /// Identifies the model and its weights, e.g. `all-MiniLM-L6-v2-int8-8199be6f699a`.
    pub fn model_id(&self) -> &str {
        &self.id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Unit-length vectors for `texts`, in order (the bulk session, for
    /// indexing). Each text is cut at the window: see
    /// [`Embedder::embed_documents`] for texts that may be longer.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut model = self.bulk()?;
        let model = model.as_mut().ok_or_else(|| self.no_bulk())?;
        Self::run_ordered(model, texts, true)
    }

    /// The bulk session, made now if it was not yet.
    fn bulk(&self) -> Result<std::sync::MutexGuard<'_, Option<TextEmbedding>>, EmbedError> {
        let mut model = self.model.lock().unwrap_or_else(PoisonError::into_inner);
        if model.is_none() {
            *model = Some((self.make_bulk)()?);
        }
        Ok(model)
    }

    fn no_bulk(&self) -> EmbedError {
        EmbedError::Load {
            dir: self.dir.clone(),
            message: "the bulk session could not be made".into(),
        }
    }

    /// The byte ranges of `text`'s windows and their token counts: one
    /// window when it fits, else windows of at most [`WINDOW_TOKENS`]
    /// tokens, each ending at the last line end in its second half when
    /// there is one.
    pub fn windows(&self, text: &str) -> Result<Vec<(std::ops::Range<usize>, usize)>, EmbedError> {
        let tokenizer = self
            .tokenizer
            .get_or_init(|| window_tokenizer(&self.tokenizer_json))
            .as_ref()
            .map_err(|e| EmbedError::Run(e.clone()))?;
        let enc = tokenizer
            .encode(text, false)
            .map_err(|e| EmbedError::Run(format!("tokenizing: {e}")))?;
        let offsets = enc.get_offsets();
        if offsets.len() <= WINDOW_TOKENS {
            return Ok(vec![(0..text.len(), offsets.len().max(1))]);
        }
        let mut out = Vec::new();
        let (mut first, mut start) = (0usize, 0usize);
        while first < offsets.len() {
            let last = (first + WINDOW_TOKENS).min(offsets.len()) - 1;
            let mut end = if last + 1 == offsets.len() {
                text.len()
            } else {
                offsets[last + 1].0
            };
            let mut next = last + 1;
            if last + 1 < offsets.len() {
                // Prefer a line end in the window's second half.
                let half = offsets[first + WINDOW_TOKENS / 2].0;
                if let Some(nl) = text.get(half..end).and_then(|s| s.rfind('\n')) {
                    let cut = half + nl + 1;
                    if let Some(k) = (first..=last).find(|&k| offsets[k].0 >= cut)
                        && k > first
                    {
                        end = cut;
                        next = k;
                    }
                }
            }
            let end = end.max(start).min(text.len());
            let end = (end..=text.len())
                .find(|&e| text.is_char_boundary(e))
                .unwrap_or(text.len());
            out.push((start..end, next - first));
            start = end;
            first = next;
        }
        Ok(out)
    }

    /// Unit-length vectors for documents of any length, in order: each is
    /// the token-weighted mean of its windows' vectors (bulk session).
    pub fn embed_documents(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut pieces: Vec<&str> = Vec::new();
        let mut owner: Vec<(usize, f32)> = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            for (range, tokens) in self.windows(t)? {
                pieces.push(&t[range]);
                owner.push((i, tokens as f32));
            }
        }
        let vectors = self.embed(&pieces)?;
        let mut out = vec![vec![0.0f32; DIM]; texts.len()];
        for (v, (i, w)) in vectors.iter().zip(&owner) {
            for (o, x) in out[*i].iter_mut().zip(v) {
                *o += w * x;
            }
        }
        for v in &mut out {
            normalize(v);
        }
        Ok(out)
    }

    /// The same, on the sessions kept for queries and other short,
    /// latency-bound texts, which indexing never holds.
    pub fn embed_interactive(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut session = self.interactive.take();
        Self::run_ordered(session.get(), texts, true)
    }

    /// Makes all the query sessions now (a server does this before the
    /// first queries overlap, which would otherwise wait for one to be
    /// made). A failure leaves the pool with the sessions it has.
    pub fn warm_interactive(&self) -> Result<(), EmbedError> {
        self.interactive.fill()
    }

    /// [`Embedder::embed`] without sorting by length: the baseline the
    /// embedding benchmark compares against.
    pub fn embed_unsorted(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut model = self.bulk()?;
        let model = model.as_mut().ok_or_else(|| self.no_bulk())?;
        Self::run_ordered(model, texts, false)
    }

    /// Each batch is padded to its longest text, so texts go to the model
    /// shortest first (batches of similar lengths compute little padding);
    /// the vectors come back in the input order.
    fn run_ordered(
        model: &mut TextEmbedding,
        texts: &[&str],
        sort: bool,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let mut order: Vec<usize> = (0..texts.len()).collect();
        if sort {
            order.sort_by_key(|&i| texts[i].len());
        }
        let sorted: Vec<&str> = order.iter().map(|&i| texts[i]).collect();
        let vectors = model
            .embed(sorted, Some(BATCH))
            .map_err(|e| EmbedError::Run(e.to_string()))?;
        if vectors.len() != texts.len() {
            return Err(EmbedError::Run(format!(
                "model returned {} vectors for {} texts",
                vectors.len(),
                texts.len()
            )));
        }
        let mut out = vec![Vec::new(); texts.len()];
        for (v, &i) in vectors.into_iter().zip(&order) {
            out[i] = v;
        }
        for v in &mut out {
            if v.len() != DIM {
                return Err(EmbedError::Run(format!(
                    "model returned {} dimensions, not {DIM}",
                    v.len()
                )));
            }
            normalize(v);
        }
        Ok(out)
    }
}

type MakeSession<T> = Box<dyn Fn() -> Result<T, EmbedError> + Send + Sync>;

/// Up to `max` sessions, each used by one caller at a time; a caller takes
/// an idle one, makes a new one while fewer than `max` exist, or waits.
/// The first session exists from the start and is never lost (a lease
/// gives its session back even when the model panics), so a caller always
/// gets one eventually.
struct SessionPool<T> {
    state: Mutex<PoolState<T>>,
    returned: Condvar,
    make: MakeSession<T>,
}

struct PoolState<T> {
    idle: Vec<T>,
    /// Sessions that exist or are being made (idle ones included).
    live: usize,
    /// Most sessions to have: `max`, or as many as there were when making
    /// one failed (not tried again: the pool works with what it has).
    cap: usize,
    /// Callers waiting for a session.
    waiting: usize,
}

/// A session taken from the pool; it goes back when dropped (a panic in
/// the model included), so the pool never shrinks by accident.
struct Lease<'a, T> {
    pool: &'a SessionPool<T>,
    session: Option<T>,
}

/// A slot counted in `live` while its session is being made: given up
/// (`live` decremented, a waiter woken) unless the make succeeded, a
/// panicking one included.
struct Making<'a, T> {
    pool: &'a SessionPool<T>,
    made: bool,
}

impl<T> Drop for Making<'_, T> {
    fn drop(&mut self) {
        if !self.made {
            let mut state = self.pool.lock();
            state.live -= 1;
            state.cap = state.live.max(1);
            drop(state);
            self.pool.returned.notify_one();
        }
    }
}

impl<T> SessionPool<T> {
    fn new(first: T, max: usize, make: MakeSession<T>) -> SessionPool<T> {
        SessionPool {
            state: Mutex::new(PoolState {
                idle: vec![first],
                live: 1,
                cap: max.max(1),
                waiting: 0,
            }),
            returned: Condvar::new(),
            make,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes one more session if below the cap; `Ok(false)` when full.
    fn grow(&self) -> Result<bool, EmbedError> {
        let mut state = self.lock();
        if state.live >= state.cap {
            return Ok(false);
        }
        state.live += 1;
        drop(state);
        let mut making = Making {
            pool: self,
            made: false,
        };
        let session = (self.make)()?;
        making.made = true;
        self.lock().idle.push(session);
        self.returned.notify_one();
        Ok(true)
    }

    /// Makes every session up to the cap now, so that no query pays for
    /// making one. Stops at the first failure (the pool keeps working
    /// with the sessions it has) and returns it.
    fn fill(&self) -> Result<(), EmbedError> {
        while self.grow()? {}
        Ok(())
    }

    fn take(&self) -> Lease<'_, T> {
        let mut state = self.lock();
        loop {
            if let Some(session) = state.idle.pop() {
                return Lease {
                    pool: self,
                    session: Some(session),
                };
            }
            if state.live < state.cap {
                drop(state);
                // A failure lowers the cap (the pool goes on with the
                // sessions it has); a server sees it from `fill`, which it
                // calls at start.
                let _ = self.grow();
                state = self.lock();
                continue;
            }
            state.waiting += 1;
            state = self.returned.wait(state).unwrap_or_else(PoisonError::into_inner);
            state.waiting -= 1;
        }
    }
}

impl<T> Lease<'_, T> {
    fn get(&mut self) -> &mut T {
        // Present from `take` until `drop`.
        self.session
            .as_mut()
            .unwrap_or_else(|| unreachable!("a lease holds its session"))
    }
}

impl<T> Drop for Lease<'_, T> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.pool.lock().idle.push(session);
            self.pool.returned.notify_one();
        }
    }
}

/// A model id as part of a file name: letters, digits and `-`, anything
/// else `_` (the embedding cache and the topic vectors name their files so).
pub fn file_stem(model_id: &str) -> String {
    model_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in v {
            *x /= norm;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    /// A pool whose sessions are numbers: 0 first, then 1, 2... as made;
    /// making the `fail_from`th one and later fails.
    fn counting_pool(max: usize, made: Arc<AtomicUsize>, fail_from: usize) -> SessionPool<usize> {
        SessionPool::new(
            0,
            max,
            Box::new(move || {
                let n = made.fetch_add(1, Ordering::SeqCst) + 1;
                if n >= fail_from {
                    return Err(EmbedError::Run("no more sessions".into()));
                }
                Ok(n)
            }),
        )
    }

    fn wait_until(what: &str, cond: impl Fn() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out waiting: {what}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn callers_past_the_bound_wait_and_sessions_are_reused() {
        let made = Arc::new(AtomicUsize::new(0));
        let pool = Arc::new(counting_pool(2, made.clone(), usize::MAX));
        let mut a = pool.take();
        let mut b = pool.take();
        assert_ne!(*a.get(), *b.get(), "two callers hold two sessions");
        assert_eq!(made.load(Ordering::SeqCst), 1);
        // A third caller waits: no third session is made.
        let third = {
            let pool = pool.clone();
            std::thread::spawn(move || *pool.take().get())
        };
        wait_until("the third caller waits", || pool.lock().waiting == 1);
        assert_eq!(made.load(Ordering::SeqCst), 1);
        let given_back = *b.get();
        drop(b);
        assert_eq!(third.join().unwrap(), given_back, "it gets the returned session");
        drop(a);
        for _ in 0..5 {
            let _a = pool.take();
            let _b = pool.take();
        }
        assert_eq!(made.load(Ordering::SeqCst), 1, "returned sessions are reused");
        let state = pool.lock();
        assert_eq!((state.idle.len(), state.live), (2, 2));
    }

    #[test]
    fn a_failed_make_caps_the_pool_and_the_caller_waits_for_a_session() {
        let made = Arc::new(AtomicUsize::new(0));
        let pool = Arc::new(counting_pool(3, made.clone(), 1));
        let held = pool.take();
        let second = {
            let pool = pool.clone();
            std::thread::spawn(move || *pool.take().get())
        };
        wait_until("the second caller waits after the failed make", || {
            pool.lock().waiting == 1
        });
        {
            let state = pool.lock();
            assert_eq!((state.live, state.cap), (1, 1), "the failed slot is given up");
        }
        drop(held);
        assert_eq!(second.join().unwrap(), 0);
        assert_eq!(made.load(Ordering::SeqCst), 1, "not tried again");
        assert!(pool.fill().is_ok(), "a full pool has nothing to make");
    }

    #[test]
    fn a_panicking_model_or_make_loses_no_session() {
        let pool = Arc::new(SessionPool::new(
            0usize,
            2,
            Box::new(|| -> Result<usize, EmbedError> { panic!("making a session panicked") }),
        ));
        let p = pool.clone();
        let panicked = std::thread::spawn(move || {
            let _lease = p.take();
            panic!("the model panicked");
        })
        .join();
        assert!(panicked.is_err());
        let p = pool.clone();
        let held = pool.take();
        assert!(
            std::thread::spawn(move || p.fill()).join().is_err(),
            "make panicked"
        );
        drop(held);
        let state = pool.lock();
        assert_eq!(
            (state.idle.len(), state.live),
            (1, 1),
            "the session came back, the slot was given up"
        );
    }

    #[test]
    fn fill_makes_every_session_up_front() {
        let made = Arc::new(AtomicUsize::new(0));
        let pool = counting_pool(4, made.clone(), usize::MAX);
        pool.fill().unwrap();
        assert_eq!(made.load(Ordering::SeqCst), 3);
        assert_eq!(pool.lock().idle.len(), 4);
        let err = counting_pool(4, Arc::new(AtomicUsize::new(0)), 2).fill();
        assert!(err.is_err(), "the first failure is returned");
    }
}
